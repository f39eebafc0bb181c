import numpy as np
from numpy.testing import assert_allclose

from satphotutils.network.evaluate import (
    lightcurve_dispersion,
    summary_statistics,
)
from satphotutils.utils.stats import dispersion


def test_summary_statistics_of_a_normal_sample(rng):
    d = rng.normal(0.02, 0.1, 400_000)
    s = summary_statistics(d)
    assert abs(s['median'] - 0.02) < 1e-3
    assert abs(s['range68'] - 0.1) < 1e-3
    assert abs(s['range95'] - 0.2) < 2e-3
    assert abs(s['rms'] - np.hypot(0.1, 0.02)) < 1e-3
    # Half the 15-85% range of a Gaussian is 1.036 sigma.
    assert abs(s['dispersion'] - 0.1036) < 1e-3
    assert dispersion([0, 1, 2, 3]) == (np.percentile([0, 1, 2, 3], 85)
                                        - np.percentile([0, 1, 2, 3], 15)) / 2


def test_lightcurve_dispersion_uses_epoch_medians(rng):
    n_stars, n_epochs = 50, 40
    star = np.repeat(np.arange(n_stars), n_epochs * 3)
    epoch = np.tile(np.repeat(np.arange(n_epochs), 3), n_stars)
    # Each exposure has a 0.05-mag error and one in three a 1-mag outlier
    # that the median of three rejects.
    mag = rng.normal(0, 0.05, star.size)
    mag[::3] += 1.0
    stars, disp, counts = lightcurve_dispersion(star, epoch, mag)
    assert list(stars) == list(range(n_stars))
    assert np.all(counts == n_epochs)
    # Brute force for one star.
    one = mag[star == 7].reshape(n_epochs, 3)
    values = np.median(one, axis=1)
    assert_allclose(disp[7], dispersion(values - np.median(values)))
    assert np.median(disp) < 0.06
    # Too few epochs give NaN.
    _, disp2, _ = lightcurve_dispersion([1, 1], [0, 1], [0.0, 0.1])
    assert np.isnan(disp2[0])
