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


def test_statistics_align_stars_a_method_could_not_measure(rng):
    # Star 1 has no finite 5-px aperture value in any exposure; its other
    # methods' light curves must still be attributed to star 1, not to
    # star 2.
    from astropy.table import QTable

    from satphotutils.network import Evaluation

    n_epochs = 6
    star = np.repeat([0, 1, 2], n_epochs * 3)
    rows = QTable()
    rows['star_id'] = star
    rows['epoch'] = np.tile(np.repeat(np.arange(n_epochs), 3), 3)
    rows['mag'] = np.repeat([8.0, 9.0, 13.0], n_epochs * 3)
    rows['saturated'] = rows['mag'] < 11.5
    scale = np.repeat([0.01, 0.1, 0.3], n_epochs * 3)
    for name in ('network', 'ap2', 'ap3', 'ap5'):
        rows[f'diff_{name}'] = rng.normal(0, 1, star.size) * scale
    rows['diff_ap5'][star == 1] = np.nan
    rows['z'] = rng.normal(0, 1, star.size)
    rows['flags'] = np.zeros(star.size, int)
    rows['n_unity'] = np.zeros(star.size, int)
    per_star = Evaluation(None).statistics(rows)['per_star']
    assert list(per_star['star_id']) == [0, 1, 2]
    assert list(per_star['saturated']) == [True, True, False]
    for name in ('network', 'ap2', 'ap3'):
        assert_allclose(per_star[name], lightcurve_dispersion(
            star, rows['epoch'], rows[f'diff_{name}'])[1])
    measured = star != 1
    assert_allclose(per_star['ap5'][[0, 2]], lightcurve_dispersion(
        star[measured], rows['epoch'][measured],
        rows['diff_ap5'][measured])[1])
    assert np.isnan(per_star['ap5'][1])
