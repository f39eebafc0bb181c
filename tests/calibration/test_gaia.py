import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table
from numpy.testing import assert_allclose

from satphotutils.calibration import (
    GAIA_RELATIONS,
    gaia_to_johnson_v,
    gaia_to_sdss_g,
)

# Published sample values of G - g and G - V (Riello et al. 2021 relations,
# shared/reference/gaia.md section 2).
COLOURS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 3.0]
G_MINUS_G = [0.015, -0.136, -0.385, -0.565, -1.062, -1.621, -2.239, -2.910]
G_MINUS_V = [-0.042, -0.072, -0.146, -0.214, -0.443, -0.747, -1.116,
             -1.540]


def test_published_sample_values():
    g, g_err = gaia_to_sdss_g(np.full(8, 10.0), COLOURS)
    assert_allclose(10.0 - g, G_MINUS_G, atol=1e-3)
    assert_allclose(g_err, 0.0745)
    v, _ = gaia_to_johnson_v(np.full(8, 10.0), COLOURS)
    assert_allclose(10.0 - v, G_MINUS_V, atol=1e-3)


def test_colours_outside_the_range_are_masked_not_extrapolated():
    g, _ = gaia_to_sdss_g([10.0, 10.0, 10.0, np.nan], [0.1, 1.0, 3.2, 1.0])
    assert list(np.ma.getmaskarray(g)) == [True, False, True, True]


def test_quantities_and_table_columns():
    table = Table({'G': [9.0, 11.0] * u.mag, 'bp_rp': [1.0, 1.5] * u.mag})
    g, err = gaia_to_sdss_g(table['G'].quantity, table['bp_rp'].quantity)
    assert g.unit == u.mag
    assert err.unit == u.mag
    assert_allclose(g.unmasked.value, [9.565, 12.0615], atol=1e-3)
    g2, _ = gaia_to_sdss_g(table['G'], table['bp_rp'])
    assert_allclose(g2, g.unmasked.value)
    with pytest.raises(u.UnitsError, match='G must be in magnitudes'):
        gaia_to_sdss_g([1.0] * u.Jy, [1.0])


@pytest.mark.parametrize('band', ['g', 'r', 'i', 'V'])
def test_relations_are_valid_at_their_boundaries(band):
    relation = GAIA_RELATIONS[band]
    lo, hi = relation.x_range
    assert relation.valid([lo, hi]).all()
    assert not relation.valid([lo - 1e-6, hi + 1e-6]).any()
