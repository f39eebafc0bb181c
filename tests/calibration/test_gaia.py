import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table
from numpy.testing import assert_allclose

from satphotutils.calibration import (
    GAIA_RELATIONS,
    gaia_saturation_correction,
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


# Published sizes of the saturation corrections (shared/reference/gaia.md
# section 1a): X_corr - X.
SATURATION_SAMPLES = {
    'G': ([2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
          [-0.016, 0.003, 0.012, 0.013, 0.010, 0.004, 0.000]),
    'BP': ([2.0, 2.5, 3.0, 3.5, 3.94], [-0.540, -0.359, -0.193, -0.065,
                                         0.000]),
    'RP': ([2.0, 2.5, 3.0, 3.45], [-0.724, -0.162, -0.042, 0.000]),
}


@pytest.mark.parametrize('band', ['G', 'BP', 'RP'])
def test_saturation_correction_published_values(band):
    mags, expected = SATURATION_SAMPLES[band]
    correction = gaia_saturation_correction(**{band: mags})
    assert not np.ma.getmaskarray(correction).any()
    assert_allclose(correction.filled(np.nan), expected, atol=1e-3)


@pytest.mark.parametrize(('band', 'upper'), [('G', 8.0), ('BP', 3.94),
                                             ('RP', 3.45)])
def test_saturation_correction_is_continuous_and_zero_outside(band, upper):
    from satphotutils.calibration.gaia import _SATURATION

    coefficients, _ = _SATURATION[band]
    just_inside = np.polynomial.polynomial.polyval(upper - 1e-9,
                                                   coefficients)
    assert abs(just_inside) < 1e-3
    faint = gaia_saturation_correction(**{band: [upper, upper + 0.5, 15.0]})
    assert_allclose(faint.filled(np.nan), 0.0)


def test_saturation_correction_masks_beyond_the_fit_and_missing_values():
    correction = gaia_saturation_correction(G=[1.5, np.nan, 5.0])
    assert list(np.ma.getmaskarray(correction)) == [True, True, False]


def test_saturation_correction_inputs():
    table = Table({'G': [3.0, 9.0] * u.mag, 'BP': [3.0, 9.5] * u.mag})
    dg, dbp = gaia_saturation_correction(G=table['G'].quantity,
                                         BP=table['BP'].quantity)
    assert dg.unit == u.mag
    assert_allclose(dg.unmasked.value, [0.003, 0.0], atol=1e-3)
    assert_allclose(dbp.unmasked.value, [-0.193, 0.0], atol=1e-3)
    plain = gaia_saturation_correction(G=table['G'])
    assert_allclose(plain.filled(np.nan), dg.unmasked.value)
    with pytest.raises(ValueError, match='at least one'):
        gaia_saturation_correction()
    with pytest.raises(u.UnitsError, match='RP must be in magnitudes'):
        gaia_saturation_correction(RP=[3.0] * u.Jy)
