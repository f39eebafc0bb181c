import numpy as np
import pytest

from satphotutils.calibration import FrameZeropoint, frame_zeropoint


def _stars(n, slope, rng, noise=0.01):
    colour = rng.uniform(0.3, 2.5, n)
    mag = rng.uniform(11.0, 15.0, n)
    # mag + 2.5 log10 N = 25 + slope (colour - 1), with photon-like noise.
    log_counts = -0.4 * (mag - 25.0 - slope * (colour - 1.0)) \
        + rng.normal(0, noise, n) / 2.5
    return log_counts, mag, colour


def test_colour_term_is_recovered_through_outliers():
    rng = np.random.default_rng(1)
    log_counts, mag, colour = _stars(400, 0.12, rng)
    log_counts[:30] += 0.3  # blends and variables
    fit = frame_zeropoint(log_counts, mag, colour=colour)
    assert fit.colour_term == pytest.approx(
        0.12, abs=3 * fit.colour_term_error)
    assert fit.colour_term_error < 0.003
    assert fit.at(1.0) == pytest.approx(25.0, abs=0.002)
    assert fit.n_rejected >= 30
    # The stated errors are those of the fit: over many frames the
    # zero point at the reference colour scatters by its error.
    pulls = []
    for seed in range(40):
        lc, m, c = _stars(200, 0.12, np.random.default_rng(100 + seed))
        f = frame_zeropoint(lc, m, colour=c)
        pulls.append((f.at(f.colour_ref) - (25.0 + 0.12 * (f.colour_ref
                                                          - 1.0)))
                     / f.error)
    assert 0.7 < np.std(pulls) < 1.4


def test_without_colour_the_fit_is_the_median_and_at_needs_no_colour():
    rng = np.random.default_rng(2)
    log_counts, mag, _ = _stars(100, 0.0, rng)
    fit = frame_zeropoint(log_counts, mag)
    assert np.isnan(fit.colour_term)
    assert fit.at() == fit.zeropoint
    np.testing.assert_array_equal(fit.at([0.5, 2.0]), [fit.zeropoint] * 2)


def test_colour_fit_needs_colours_and_enough_stars():
    fit = FrameZeropoint(25.0, 0.01, 9, 0, colour_term=0.1,
                         colour_term_error=0.01, colour_ref=1.0)
    with pytest.raises(ValueError, match='give the colours'):
        fit.at()
    rng = np.random.default_rng(3)
    log_counts, mag, colour = _stars(5, 0.1, rng)
    assert not frame_zeropoint(log_counts, mag, colour=colour).valid
    with pytest.raises(ValueError, match='colour must have the shape'):
        frame_zeropoint(log_counts, mag, colour=colour[:3])


@pytest.mark.parametrize('case', ['equal', 'one_differs'])
def test_colours_that_cannot_set_a_slope_give_the_plain_zero_point(case,
                                                                   caplog):
    # All colours equal (a catalogue with one colour filled in), or all
    # but one outlier: the slope is not determined, and the fit falls
    # back to the median zero point instead of failing or trusting one
    # star.
    rng = np.random.default_rng(5)
    log_counts, mag, _ = _stars(60, 0.0, rng)
    colour = np.full(60, 0.8)
    if case == 'one_differs':
        colour[0] = 0.9
        log_counts[0] += 0.1  # 0.25 mag off
    fit = frame_zeropoint(log_counts, mag, colour=colour)
    plain = frame_zeropoint(log_counts, mag)
    assert np.isnan(fit.colour_term)
    assert fit == plain
    assert 'span too little for a colour term' in caplog.text
