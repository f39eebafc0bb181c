import numpy as np
from astropy.table import Table
from numpy.testing import assert_allclose

from satphotutils.calibration import training_labels


def test_labels_follow_the_paper_steps_by_hand():
    stars = Table({'phot_g_mean_mag': [3.0, 9.0, 9.0],
                   'phot_bp_mean_mag': [3.0, 9.5, 9.0],
                   'phot_rp_mean_mag': [2.5, 8.5, 5.0]})
    labels = training_labels(stars, zeropoint=25.0, transparency=[1.0, 2.0,
                                                                  1.0])
    # Star 0: corrected G 3.003, BP 2.807, RP 2.338 -> x = 0.469.
    G = 3.0 + 0.0030
    x = (3.0 - 0.1930) - (2.5 - 0.1620)
    g = G - np.polynomial.polynomial.polyval(
        x, (0.2199, -0.6365, -0.1548, 0.0064))
    assert_allclose(labels['mag'][0].value, g, atol=2e-3)
    assert_allclose(labels['log_counts'][0], -0.4 * (g - 25.0), atol=1e-3)
    # Star 1: x = 1, g = 9.565, t = 2.
    assert_allclose(labels['log_counts'][1],
                    -0.4 * (9.565 - 25.0) - np.log10(2.0), atol=1e-3)
    # Star 2: x = 4 is outside the g relation: no label.
    assert list(labels['valid']) == [True, True, False]
    assert np.isnan(labels['log_counts'][2])


def test_labels_with_neighbours_apply_eq2():
    stars = Table({'ra': [10.0], 'dec': [0.0], 'phot_g_mean_mag': [9.0],
                   'bp_rp': [1.0]})
    gaia = Table({'ra': [10.0, 10.0 + 4 / 3600], 'dec': [0.0, 0.0],
                  'phot_g_mean_mag': [9.0, 11.5], 'bp_rp': [1.0, 1.0]})
    labels = training_labels(stars, zeropoint=25.5, neighbours=gaia,
                             seed=1)
    assert_allclose(labels['f_c'], 0.1, rtol=1e-6)
    # Two stars only: random 8" regions within 52" miss both.
    assert_allclose(labels['b_c'], 0.0)
    assert_allclose(labels['log_counts'],
                    -0.4 * (9.565 - 25.5) + np.log10(1.1), atol=1e-3)
