import numpy as np
import pytest

from satphotutils.stamps import catalogue_zeropoint


def _field(n=600, seed=0, zeropoint=25.0, size=1600, faint=0):
    """
    Gaussian stars of known magnitudes, photon and read noise.

    ``faint`` more stars of 14-17 mag are on the image but not returned
    (a catalogue that stops short of the frame's depth).
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(30, size - 30, n + faint)
    y = rng.uniform(30, size - 30, n + faint)
    mag = np.r_[rng.uniform(10.0, 15.0, n), rng.uniform(14.0, 17.0, faint)]
    counts = 10 ** (-0.4 * (mag - zeropoint))
    sigma = 1.2
    image = np.full((size, size), 300.0)
    yy, xx = np.mgrid[-12:13, -12:13]
    for xi, yi, c in zip(x, y, counts, strict=True):
        ix, iy = int(np.rint(xi)), int(np.rint(yi))
        image[iy - 12:iy + 13, ix - 12:ix + 13] += c * np.exp(
            -((xx + ix - xi) ** 2 + (yy + iy - yi) ** 2) / 2 / sigma ** 2
        ) / (2 * np.pi * sigma ** 2)
    image = rng.poisson(image).astype(float) + rng.normal(0, 5, image.shape)
    return np.minimum(image, 60_000.0), x[:n], y[:n], mag[:n]


def test_a_capped_fit_measures_few_stars_spread_in_magnitude():
    # Simulated truth: Z = 25. At most max_stars are measured, evenly
    # spread in magnitude over the usable ones (not the brightest), and
    # the zero point agrees with the truth and with all the stars' fit
    # within the errors; uncapped and a cap above the count are the same.
    image, x, y, mag = _field()
    full, _ = catalogue_zeropoint(image, x, y, mag, saturation_level=60_000)
    capped, _ = catalogue_zeropoint(image, x, y, mag, saturation_level=60_000,
                                    max_stars=80)
    above, _ = catalogue_zeropoint(image, x, y, mag, saturation_level=60_000,
                                   max_stars=10_000)
    assert above == full
    assert full.n_used + full.n_rejected > 300
    assert capped.n_used + capped.n_rejected <= 80
    assert capped.n_used >= 60
    assert capped.error > full.error
    for fit in (full, capped):
        assert fit.zeropoint == pytest.approx(25.0, abs=4 * fit.error + 0.003)
    assert capped.zeropoint == pytest.approx(
        full.zeropoint, abs=4 * np.hypot(capped.error, full.error))


def test_saturated_stars_are_never_measured():
    # The checks that need no photometry (core near saturation) come
    # before the cap: a cap never spends its stars on saturated ones.
    image, x, y, mag = _field(seed=1)
    level = 20_000.0
    image = np.minimum(image, level)
    bright = mag < 11.5
    assert bright.sum() > 50
    fit, _ = catalogue_zeropoint(image, x, y, mag, saturation_level=level,
                                 max_stars=50)
    only_faint, _ = catalogue_zeropoint(image, x[~bright], y[~bright],
                                        mag[~bright], saturation_level=level,
                                        max_stars=50)
    # All 50 measured stars are usable: the saturated third of the list
    # was left out before the cap, not after it.
    assert 45 <= fit.n_used + fit.n_rejected <= 50
    assert fit.zeropoint == pytest.approx(25.0, abs=4 * fit.error + 0.003)
    assert only_faint.zeropoint == pytest.approx(fit.zeropoint,
                                                 abs=5 * fit.error)


@pytest.mark.parametrize('max_stars', [None, 40])
def test_the_stated_error_covers_the_truth(max_stars):
    # Simulated truth over 24 frames: the zero point's error, which
    # includes that of the aperture correction all stars share, matches
    # the scatter of the fitted zero points about the truth (Z = 25; the
    # Gaussian PSF holds all its flux within the 3-radius aperture).
    pulls = []
    for seed in range(24):
        image, x, y, mag = _field(n=160, seed=100 + seed, size=700)
        fit, _ = catalogue_zeropoint(image, x, y, mag,
                                     saturation_level=60_000,
                                     max_stars=max_stars)
        pulls.append((fit.zeropoint - 25.0) / fit.error)
    assert 0.6 < np.std(pulls) < 1.5
    assert abs(np.mean(pulls)) < 0.8


def test_stars_missing_from_the_catalogue_do_not_bias_the_correction():
    # Simulated truth: a frame deeper than its catalogue (4,000 stars of
    # 14-17 mag on it, none listed). They fall into the wide aperture of
    # the curve of growth, most heavily for the faint listed stars; the
    # correction from the brightest keeps the zero point within 0.01 mag
    # of the truth (all the usable stars gave 0.021, 58 times the error
    # they stated).
    image, x, y, mag = _field(n=400, seed=4, size=1200, faint=4000)
    fit, correction = catalogue_zeropoint(image, x, y, mag,
                                          saturation_level=60_000)
    assert fit.zeropoint == pytest.approx(25.0, abs=max(0.01,
                                                        3 * fit.error))
    # A Gaussian of sigma 1.2 px holds 95.7% of its flux within 3 px;
    # even the brightest stars' wide apertures hold some of the faint
    # ones here (1.7%; all the stars gave 2.8%).
    assert correction == pytest.approx(1 / 0.9567, rel=0.02)


def test_a_cap_is_not_spent_on_stars_too_faint_to_count():
    # A catalogue deeper than the frame (review finding): the cap's even
    # spread is taken over the stars bright enough to be measured, so
    # most of the capped stars are used (an even spread over all of them
    # used 75 of 300 and 16 of 100).
    rng = np.random.default_rng(5)
    n, size = 1500, 1100
    x, y = rng.uniform(30, size - 30, n), rng.uniform(30, size - 30, n)
    mag = np.clip(19.5 - rng.exponential(2.0, n), 9.5, None)
    counts = 10 ** (-0.4 * (mag - 25.0))
    image = np.full((size, size), 100.0)
    yy, xx = np.mgrid[-12:13, -12:13]
    for xi, yi, c in zip(x, y, counts, strict=True):
        ix, iy = int(np.rint(xi)), int(np.rint(yi))
        image[iy - 12:iy + 13, ix - 12:ix + 13] += c * np.exp(
            -((xx + ix - xi) ** 2 + (yy + iy - yi) ** 2) / 2 / 1.3 ** 2
        ) / (2 * np.pi * 1.3 ** 2)
    image = np.minimum(rng.normal(image, np.sqrt(image) + 30.0), 65535.0)
    for cap in (300, 100):
        fit, _ = catalogue_zeropoint(image, x, y, mag, max_stars=cap,
                                     saturation_level=65535.0)
        assert fit.n_used + fit.n_rejected >= 0.4 * cap
        assert fit.zeropoint == pytest.approx(25.0, abs=4 * fit.error + 0.003)


def test_without_a_saturation_level_the_correction_avoids_saturated_stars():
    # Review finding: the aperture correction from the brightest stars is
    # that of clipped ones when no level says which are saturated; then
    # it comes from every star measured well, as before.
    image, x, y, mag = _field(n=500, seed=6, size=1200)
    image = np.minimum(image, 30_000.0)
    _, c_given = catalogue_zeropoint(image, x, y, mag,
                                     saturation_level=30_000.0)
    unknown, c_unknown = catalogue_zeropoint(image, x, y, mag)
    assert c_unknown == pytest.approx(c_given, rel=0.01)
    assert unknown.zeropoint == pytest.approx(25.0, abs=0.01)
