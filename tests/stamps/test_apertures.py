# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Aperture sums on stamps against photutils, and the signal circle."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from photutils.aperture import CircularAperture, aperture_photometry
from photutils.geometry import circular_overlap_grid

from satphotutils.network import StampFeatures
from satphotutils.stamps import stamp_aperture_photometry
from satphotutils.stamps.apertures import (
    aperture_sums,
    circle_index,
    circle_mask,
)
from satphotutils.stamps.cutout import cut_stamps

# The exact weights are interpolated between nodes 1/40 px apart. Over
# 3,000 random offsets the root sum of squares of a stamp's weight errors
# was at most 2.7e-3 (r = 1.5), 2.3e-3 (r = 2), 2.8e-3 (r = 3) and 3.6e-3
# (r = 5), and the errors sum to zero (the area is exact). On noise of
# mean 100 and standard deviation 71 (the gamma stamps below) that is a
# relative error of the sum with a standard deviation of at most
# 71 x rss / (100 pi r^2): 2.7e-4, 1.3e-4, 6.9e-5 and 3.2e-5. The
# tolerances are five of those (a star's smooth profile adds less).
_RTOL = {1.5: 1.4e-3, 2.0: 6.5e-4, 3.0: 3.5e-4, 5.0: 1.6e-4}


def _field(rng, n, shape, *, stars=False):
    """An image with n targets on a grid, their positions and stamps."""
    sy, sx = shape
    per_row = 40
    gy, gx = sy + 4, sx + 4
    image = rng.gamma(2.0, 50.0, ((n // per_row + 1) * gy + gy,
                                  per_row * gx + gx))
    k = np.arange(n)
    x = gx + gx * (k % per_row) + rng.uniform(-0.5, 0.5, n)
    y = gy + gy * (k // per_row) + rng.uniform(-0.5, 0.5, n)
    if stars:
        yy, xx = np.mgrid[:image.shape[0], :image.shape[1]]
        for xi, yi in zip(x, y, strict=True):
            sl = (slice(int(yi) - 8, int(yi) + 9),
                  slice(int(xi) - 8, int(xi) + 9))
            image[sl] += 2e4 * np.exp(-((xx[sl] - xi)**2
                                        + (yy[sl] - yi)**2) / 1.2)
    stamps, inside = cut_stamps(image, x, y, shape)
    assert inside.all()
    return image, x, y, stamps, x - np.rint(x), y - np.rint(y)


@pytest.mark.parametrize('radius', [1.5, 2.0, 3.0, 5.0])
@pytest.mark.parametrize('shape', [(21, 21), (31, 13)])
@pytest.mark.parametrize('stars', [False, True])
def test_exact_sums_equal_photutils(radius, shape, stars):
    rng = np.random.default_rng(int(radius * 10) + shape[0] + stars)
    image, x, y, stamps, dx, dy = _field(rng, 400, shape, stars=stars)
    result = aperture_sums(stamps, radius, dx=dx, dy=dy)
    ref = aperture_photometry(image, CircularAperture(
        np.column_stack([x, y]), r=radius), method='exact')['aperture_sum']
    assert_allclose(result.sum, np.asarray(ref), rtol=_RTOL[radius])
    assert_allclose(result.area, np.pi * radius**2, rtol=1e-12)
    assert not result.non_finite.any()


def test_exact_sums_on_the_table_nodes_are_exact():
    # At the nodes the weights are photutils' own overlaps: no tolerance
    # beyond rounding.
    rng = np.random.default_rng(1)
    nodes = np.linspace(-0.5, 0.5, 41)
    dx, dy = rng.choice(nodes, 300), rng.choice(nodes, 300)
    stamps = rng.gamma(2.0, 50.0, (300, 15, 15))
    sums = aperture_sums(stamps, 3.0, dx=dx, dy=dy).sum
    ref = [np.sum(s * circular_overlap_grid(-7.5 - a, 7.5 - a, -7.5 - b,
                                            7.5 - b, 15, 15, 3.0, 1, 1))
           for s, a, b in zip(stamps, dx, dy, strict=True)]
    assert_allclose(sums, ref, rtol=1e-12)


@pytest.mark.parametrize('radius', [2.0, 3.0, 4.7])
def test_center_sums_equal_photutils_center(radius):
    # At random offsets no pixel centre lies exactly on the circle, where
    # photutils (centre strictly inside) and the signal circle differ.
    rng = np.random.default_rng(2)
    image, x, y, stamps, dx, dy = _field(rng, 300, (21, 21))
    result = aperture_sums(stamps, radius, dx=dx, dy=dy, method='center')
    aperture = CircularAperture(np.column_stack([x, y]), r=radius)
    ref = aperture_photometry(image, aperture, method='center')
    assert_allclose(result.sum, np.asarray(ref['aperture_sum']),
                    rtol=1e-12)
    counts = aperture_photometry(np.ones_like(image), aperture,
                                 method='center')['aperture_sum']
    assert_array_equal(result.area, np.asarray(counts))


def test_centres_on_the_circle_count():
    # The signal circle of the paper: 81 pixels within 5 px, 13 within
    # 2 px of a centred target; photutils' 'center' leaves out the
    # pixels whose centre is on the circle (69 and 9).
    ones = np.ones((1, 21, 21))
    assert aperture_sums(ones, 5.0, method='center').area[0] == 81
    assert aperture_sums(ones, 2.0, method='center').area[0] == 13
    ref = CircularAperture((10, 10), r=2.0).to_mask(method='center')
    assert ref.data.sum() == 9
    assert circle_mask(21, 5.0).sum() == 81
    assert_array_equal(np.flatnonzero(circle_mask((21, 21), 5.0)),
                       circle_index((21, 21), 5.0))


@pytest.mark.parametrize('method', ['exact', 'center'])
def test_non_finite_pixels_spoil_only_the_apertures_they_are_in(method):
    rng = np.random.default_rng(3)
    stamps = rng.gamma(2.0, 50.0, (4, 21, 21))
    stamps[0, 10, 12] = np.nan      # within 2 px of the centre
    stamps[1, 0, 0] = np.inf        # far outside
    stamps[2, 10, 13] = np.nan      # 3 px: outside r = 2 at dx = -0.3
    dx = np.array([0.0, 0.0, -0.3, 0.0])
    result = aperture_sums(stamps, 2.0, dx=dx, method=method)
    assert_array_equal(result.non_finite, [True, False, False, False])
    assert np.isnan(result.sum[0])
    assert np.isfinite(result.sum[1:]).all()
    clean = stamps.copy()
    clean[1:][~np.isfinite(clean[1:])] = 0.0
    assert_allclose(result.sum[1:], aperture_sums(clean[1:], 2.0,
                    dx=dx[1:], method=method).sum, rtol=1e-13)
    # A pixel 3 px out that the circle reaches 2.95 px only overlaps:
    # its centre (2.55 px away) is outside.
    stamps = np.ones((1, 11, 11))
    stamps[0, 5, 8] = np.nan
    edge = aperture_sums(stamps, 2.5, dx=[0.45], method=method)
    assert edge.non_finite[0] == (method == 'exact')


def test_bad_arguments_are_refused():
    stamps = np.ones((2, 11, 11))
    with pytest.raises(ValueError, match='odd sizes'):
        aperture_sums(np.ones((2, 10, 11)), 2.0)
    with pytest.raises(ValueError, match='needs stamps of at least 13 x 13'):
        aperture_sums(stamps, 5.2)
    with pytest.raises(ValueError, match=r'dx must be .* \[-0.5, 0.5\]'):
        aperture_sums(stamps, 2.0, dx=[0.0, 0.7])
    with pytest.raises(ValueError, match='dy must be'):
        aperture_sums(stamps, 2.0, dy=[0.0, np.nan])
    with pytest.raises(ValueError, match='method must be one of'):
        aperture_sums(stamps, 2.0, method='subpixel')
    with pytest.raises(ValueError, match='radius must be'):
        circle_mask(11, -1.0)


def test_features_are_reproduced_bit_for_bit():
    # The network's ap2/ap3 features come from center_sums on the signal
    # circle's pixels minus the annulus background. They must equal the
    # sums the bundled model was trained on, written out here as they
    # were: pixel centres within r of the target, in float32.
    rng = np.random.default_rng(5)
    n = 3000
    features = StampFeatures(version=2)
    stamps = rng.gamma(2.0, 50.0, (n, 21, 21)).astype(np.float32)
    stamps[:, 10, 10] += rng.uniform(0, 1e5, n).astype(np.float32)
    stamps[::50, 9, 11] = np.nan
    dx, dy = rng.uniform(-0.5, 0.5, (2, n)).astype(np.float32)
    # Offsets that put pixel centres on the 2- and 3-px circles.
    dx[:100], dy[:100] = 0.0, 0.0
    dx[100:200], dy[100:200] = 0.5, 0.0
    x = features(stamps, sky=np.full(n, 200.0), dx=dx, dy=dy)
    index = circle_index((21, 21), features.radius)
    flat = stamps.reshape(n, -1)
    bkg = x.local_bkg.astype(np.float32)[:, None]
    # A missing pixel within the circle is taken at the background.
    flat = np.where(np.isfinite(flat), flat, bkg)
    pix = flat[:, index] - bkg
    scale = np.maximum(x.aperture_sum, 30.0)
    yy, xx = np.mgrid[-10:11, -10:11]
    cx = xx.ravel()[index].astype(np.float32)
    cy = yy.ravel()[index].astype(np.float32)
    d2 = (cx[None, :] - dx[:, None])**2 + (cy[None, :] - dy[:, None])**2
    names = list(features.names)
    for name, r2 in (('ap2_ratio', 4), ('ap3_ratio', 9)):
        value = np.where(d2 <= r2, pix, 0).sum(axis=1)
        expected = np.clip(value / scale, -2, 3).astype(np.float32)
        assert_array_equal(x.features[:, names.index(name)], expected)
    assert_array_equal(x.features[:, :len(index)],
                       np.clip(pix / scale[:, None].astype(np.float32),
                               -5, 5))


def test_stamp_aperture_photometry_uses_the_exact_sums():
    rng = np.random.default_rng(6)
    image, x, y, stamps, dx, dy = _field(rng, 200, (21, 21), stars=True)
    flux, bkg = stamp_aperture_photometry(stamps, [2.0, 5.0], dx=dx, dy=dy)
    for j, r in enumerate((2.0, 5.0)):
        ref = aperture_photometry(image, CircularAperture(
            np.column_stack([x, y]), r=r), method='exact')['aperture_sum']
        assert_allclose(flux[:, j] + bkg * np.pi * r**2, np.asarray(ref),
                        rtol=_RTOL[r])


@pytest.mark.parametrize('seed', range(12))
def test_clipped_medians_are_astropys_sigma_clipped_medians(seed):
    # Peer library: the row medians equal sigma_clipped_stats' (axis=1,
    # 3 sigma) exactly, with outliers, integer ties, odd and even
    # counts left and NaN values.
    import warnings

    from astropy.stats import sigma_clipped_stats
    from astropy.utils.exceptions import AstropyUserWarning

    from satphotutils.stamps.apertures import clipped_medians

    rng = np.random.default_rng(seed)
    values = np.rint(rng.normal(1000, 30, (400, 37 + seed)))
    values[rng.random(values.shape) < 0.05] += 4000.0
    values[rng.random(values.shape) < 0.02] -= 900.0
    if seed % 2:
        values[rng.random(values.shape) < 0.02] = np.nan
        values[7] = np.nan
    if seed % 3 == 0:
        values[rng.random(values.shape) < 0.01] = np.inf
        values[3, :5] = -np.inf
    if seed >= 8:
        # Continuous values (no ties) far from zero.
        values = values + rng.uniform(0, 1, values.shape) + 1e6
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', AstropyUserWarning)
        warnings.simplefilter('ignore', RuntimeWarning)
        _, theirs, _ = sigma_clipped_stats(values, axis=1, sigma=3.0)
    np.testing.assert_array_equal(clipped_medians(values),
                                  np.ma.filled(theirs, np.nan))


def test_pixel_phase_correction_recovers_its_terms():
    from satphotutils.stamps.apertures import PixelPhaseCorrection

    rng = np.random.default_rng(3)
    dx, dy = rng.uniform(-0.5, 0.5, (2, 300))
    truth = np.array([0.55, -0.012, -0.008, 0.003])
    log_ratio = (truth[0] + truth[1] * np.cos(2 * np.pi * dx)
                 + truth[2] * np.cos(2 * np.pi * dy)
                 + truth[3] * np.cos(2 * np.pi * dx) * np.cos(2 * np.pi * dy))
    noisy = log_ratio + rng.normal(0, 0.002, 300)
    # Ten stars with a neighbour's light in the wide aperture: clipped.
    noisy[:10] += 0.2
    phase = PixelPhaseCorrection.fit(dx, dy, np.exp(noisy))
    assert_allclose(phase.coefficients, truth, atol=7e-4)
    assert phase.n_stars == 290
    assert phase.scatter == pytest.approx(0.002, rel=0.2)
    assert_allclose(np.log(phase(dx, dy)), log_ratio, atol=1e-3)
    # Periodic: a whole pixel further on, the same correction.
    assert_allclose(phase(dx + 1, dy - 1), phase(dx, dy))


def test_pixel_phase_correction_falls_back_to_the_median():
    from satphotutils.stamps.apertures import PixelPhaseCorrection

    rng = np.random.default_rng(4)
    ratio = rng.normal(1.7, 0.01, 40)
    # Stars on a half-pixel grid: every one at the same phase, the terms
    # cannot be told apart (once a fit with coefficients of 3e5).
    grid = PixelPhaseCorrection.fit(np.full(40, 0.5), np.full(40, -0.5),
                                    ratio)
    assert grid.coefficients.size == 1
    assert grid.median == pytest.approx(np.median(ratio))
    # Too few stars for the terms.
    few = PixelPhaseCorrection.fit(rng.uniform(-0.5, 0.5, 10),
                                   rng.uniform(-0.5, 0.5, 10), ratio[:10])
    assert few.coefficients.size == 1
    assert few.n_stars == 10
    # A well-sampled star: the share does not change across the pixel,
    # and terms fitted to the noise would only add it (review finding:
    # FWHM 5 px, 25 stars, 0.0054 -> 0.0072 mag).
    dx, dy = rng.uniform(-0.5, 0.5, (2, 100))
    flat = PixelPhaseCorrection.fit(dx, dy, rng.normal(1.3, 0.005, 100))
    assert flat.coefficients.size == 1
    # Nothing usable.
    assert PixelPhaseCorrection.fit([0.1], [0.2], [-1.0]) is None
    with pytest.raises(ValueError, match='same length'):
        PixelPhaseCorrection.fit([0.1, 0.2], [0.2], [1.0])
    with pytest.raises(ValueError, match='coefficients'):
        PixelPhaseCorrection([1, 2, 3, 4, 5])
