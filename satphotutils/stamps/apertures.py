# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Circular apertures on stacks of stamps: the signal circle and aperture sums.

The one implementation of circular aperture sums on stamps in
satphotutils; the photometry baselines, the frame hybrid and the network
features all use it. Stamps are centred on the pixel nearest the target
(odd shape ``(ny, nx)``, the target within half a pixel of the central
pixel's centre), so that one table of pixel weights serves every stamp.

Two of photutils' aperture methods are offered:

``'exact'``
    The exact overlap of the circle with each pixel (photutils'
    ``circular_overlap_grid``), tabulated once per radius on a grid of
    41 x 41 sub-pixel offsets and interpolated bilinearly between its
    nodes. The aperture area is exact and a pixel's weight within 2.5e-3
    of photutils' (r = 1-5 px; see `aperture_sums`).

``'center'``
    Each pixel whose centre lies within the radius counts fully. Unlike
    photutils, a centre *on* the circle counts: this is the paper's signal
    circle (81 pixels within 5 px), `circle_mask`.

Everything here is NumPy; photutils is imported when an exact table is
first built.
"""

import functools
import warnings
from typing import NamedTuple

import numpy as np
from astropy.stats import SigmaClip
from astropy.utils.exceptions import AstropyUserWarning

__all__ = ['ApertureSums', 'PixelPhaseCorrection', 'aperture_sums',
           'center_sums', 'circle_index', 'circle_mask', 'clipped_medians',
           'phase_terms_matter', 'stamp_aperture_photometry']

# Nodes per axis of the exact-overlap weight table over offsets -0.5..0.5:
# 1/40 px apart (see the accuracy figures in `aperture_sums`).
_GRID = 41
_METHODS = ('exact', 'center')


class ApertureSums(NamedTuple):
    """
    The result of `aperture_sums`.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.stamps.apertures import aperture_sums
    >>> result = aperture_sums(np.ones((1, 11, 11)), 2.0)
    >>> result._fields
    ('sum', 'area', 'non_finite')
    """

    #: Aperture sums, shape (N,); NaN where ``non_finite``.
    sum: np.ndarray
    #: Aperture areas (pixels), shape (N,).
    area: np.ndarray
    #: Whether the aperture touches a non-finite pixel, shape (N,).
    non_finite: np.ndarray


def _check_shape(shape):
    shape = tuple(int(n) for n in np.atleast_1d(shape))
    if len(shape) == 1:
        shape = shape * 2
    if len(shape) != 2 or any(n < 1 or n % 2 == 0 for n in shape):
        msg = (f'the stamp shape must be two odd sizes (ny, nx), got '
               f'{shape}: stamps are centred on a pixel')
        raise ValueError(msg)
    return shape


def _offsets(shape):
    """Pixel-centre offsets (y, x) from the central pixel, as 2D grids."""
    ny, nx = shape
    return np.mgrid[-(ny // 2):ny // 2 + 1, -(nx // 2):nx // 2 + 1]


@functools.lru_cache(maxsize=32)
def _circle(shape, radius):
    yy, xx = _offsets(shape)
    mask = xx**2 + yy**2 <= radius**2
    mask.flags.writeable = False
    index = np.flatnonzero(mask.ravel())
    index.flags.writeable = False
    return mask, index


def circle_mask(shape, radius):
    """
    Return the pixels whose centres lie within ``radius`` of the centre.

    This is the signal circle: the paper's 81 pixels within 5 px of a
    21 x 21 stamp's central pixel, which the network sees, where
    exactly-1 pixels are counted (``n_unity``) and the saturated pixels
    are looked for. A centre on the circle counts.

    Parameters
    ----------
    shape : int or tuple of int
        Stamp shape ``(ny, nx)`` (odd sizes); an int for a square.

    radius : float
        Radius (pixels) about the central pixel's centre.

    Returns
    -------
    mask : `~numpy.ndarray` of bool, shape ``shape``
        Read-only.

    Raises
    ------
    ValueError
        If a size is even or the radius is negative.

    Examples
    --------
    >>> from satphotutils.stamps.apertures import circle_mask
    >>> int(circle_mask((21, 21), 5.0).sum())
    81
    >>> circle_mask((3, 5), 1.0).astype(int)
    array([[0, 0, 1, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 1, 0, 0]])
    """
    return _circle(_check_shape(shape), _check_radius(radius))[0]


def circle_index(shape, radius):
    """
    Return the flat indices of the pixels of `circle_mask`.

    Parameters
    ----------
    shape : int or tuple of int
        Stamp shape ``(ny, nx)`` (odd sizes); an int for a square.

    radius : float
        Radius (pixels) about the central pixel's centre.

    Returns
    -------
    index : `~numpy.ndarray` of int
        Indices into a stamp flattened in C order, ascending; read-only.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.stamps.apertures import circle_index
    >>> stamps = np.arange(2 * 25.0).reshape(2, 5, 5)
    >>> circle_index(5, 1.0).tolist()
    [7, 11, 12, 13, 17]
    >>> stamps.reshape(2, -1)[:, circle_index(5, 1.0)].sum(axis=1)
    array([ 60., 185.])
    """
    return _circle(_check_shape(shape), _check_radius(radius))[1]


def _check_radius(radius):
    radius = float(radius)
    if not radius >= 0 or not np.isfinite(radius):
        msg = f'the radius must be a finite number >= 0, got {radius}'
        raise ValueError(msg)
    return radius


def center_sums(values, radii, *, dx=None, dy=None, shape=None, index=None):
    """
    Pixel-centre (``'center'``) aperture sums of stamps.

    A pixel counts if its centre is within the radius of the aperture
    centre (on the circle included). The distances are computed in the
    floating-point type of ``values`` (float32 for float32 stamps), so
    that float32 features are reproduced exactly.

    Parameters
    ----------
    values : array-like, shape (N, ny, nx) or (N, M)
        The stamps, or the values of the ``M`` pixels ``index`` of stamps
        of ``shape`` (e.g. those of the signal circle).

    radii : float or sequence of float
        Aperture radii (pixels).

    dx, dy : array-like, shape (N,), optional
        Offsets of the aperture centre from the central pixel's centre.

    shape : tuple of int, optional
        Stamp shape, with ``index``.

    index : array-like of int, optional
        Flat (C-order) stamp indices of the columns of a 2D ``values``.

    Returns
    -------
    sums : `~numpy.ndarray`, shape (N,) or (len(radii), N)
        One row per radius for a sequence of radii; NaN where a pixel in
        the aperture is NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.stamps.apertures import center_sums, circle_index
    >>> stamps = np.ones((2, 11, 11), dtype=np.float32)
    >>> center_sums(stamps, [1.0, 2.0]).tolist()
    [[5.0, 5.0], [13.0, 13.0]]

    The same sums from the pixels of the 5-px circle only:

    >>> idx = circle_index(11, 5.0)
    >>> center_sums(stamps.reshape(2, -1)[:, idx], [1.0, 2.0],
    ...             shape=(11, 11), index=idx).tolist()
    [[5.0, 5.0], [13.0, 13.0]]
    """
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(float)
    if index is None:
        if values.ndim != 3:
            msg = ('values must be stamps of shape (N, ny, nx), or give '
                   'shape and index for values of shape (N, M)')
            raise ValueError(msg)
        shape = _check_shape(values.shape[1:])
        values = values.reshape(len(values), -1)
        index = slice(None)
    else:
        shape = _check_shape(shape)
        if values.ndim != 2 or values.shape[1] != np.size(index):
            msg = (f'values must have shape (N, {np.size(index)}) for '
                   f'{np.size(index)} indices, got {values.shape}')
            raise ValueError(msg)
    d2 = _distance2(shape, index, dx, dy, len(values), values.dtype)
    scalar = np.ndim(radii) == 0
    sums = np.stack([np.where(d2 <= float(r)**2, values, 0).sum(axis=1)
                     for r in np.atleast_1d(radii)])
    return sums[0] if scalar else sums


def _distance2(shape, index, dx, dy, n, dtype):
    """Squared distances of pixel centres from the aperture centres."""
    yy, xx = _offsets(shape)
    cx = xx.ravel()[index].astype(dtype)
    cy = yy.ravel()[index].astype(dtype)
    dx = np.zeros(n, dtype) if dx is None else np.asarray(dx, dtype=dtype)
    dy = np.zeros(n, dtype) if dy is None else np.asarray(dy, dtype=dtype)
    return (cx[None, :] - dx[:, None])**2 + (cy[None, :] - dy[:, None])**2


@functools.lru_cache(maxsize=16)
def _weight_table(radius, half):
    """
    Exact circle-pixel overlaps of a (2 half + 1)^2 core, per sub-pixel node.

    Returns the weights, shape (_GRID, _GRID, K) with K the core's pixels
    (node (i, j) is the circle at dy, dx = -0.5 + (i, j) / (_GRID - 1)),
    and the areas per node.
    """
    from photutils.geometry import circular_overlap_grid

    size = 2 * half + 1
    nodes = np.linspace(-0.5, 0.5, _GRID)
    table = np.empty((_GRID, _GRID, size * size))
    for i, dy in enumerate(nodes):
        for j, dx in enumerate(nodes):
            # Pixel centres at -half..half; the circle at (dx, dy).
            table[i, j] = circular_overlap_grid(
                -half - 0.5 - dx, half + 0.5 - dx,
                -half - 0.5 - dy, half + 0.5 - dy,
                size, size, radius, 1, 1).ravel()
    table.flags.writeable = False
    return table


def _reach(radius, method):
    """Largest pixel offset an aperture centred within 0.5 px can touch."""
    if method == 'center':
        return int(np.floor(radius + 0.5))
    # A pixel |j| touches the circle when |j| - 0.5 < radius + 0.5.
    return max(int(np.ceil(radius + 1.0)) - 1, 0)


def aperture_sums(stamps, radius, *, dx=None, dy=None, method='exact'):
    """
    Circular-aperture sums of a stack of stamps.

    The aperture is centred ``(dx, dy)`` from the central pixel's centre
    of each stamp, and must lie within the stamp.

    Parameters
    ----------
    stamps : array-like, shape (N, ny, nx)
        Stamps of odd sizes, centred on the pixel nearest the target.

    radius : float
        Aperture radius (pixels).

    dx, dy : array-like, shape (N,), optional
        Offsets of the aperture centre, in [-0.5, 0.5] (zero if `None`).

    method : {'exact', 'center'}, optional
        photutils' aperture methods: the exact circle-pixel overlap, or
        the pixels whose centres are within the radius (see the module
        notes for the one difference: centres on the circle count).

    Returns
    -------
    result : `ApertureSums`
        ``sum`` (float64), ``area`` (the sum of the weights: pi r^2 for
        ``'exact'``, the number of pixels for ``'center'``) and
        ``non_finite``: the aperture gives a pixel that is NaN or
        infinite a non-zero weight, and the sum is NaN. Non-finite pixels
        outside the aperture do not matter.

    Raises
    ------
    ValueError
        If the stamps are not (N, ny, nx) with odd sizes, the aperture
        does not fit in them, an offset is not finite or beyond half a
        pixel, or the method is unknown.

    Notes
    -----
    The ``'exact'`` weights are bilinear interpolations between exact
    overlaps (photutils' ``circular_overlap_grid``) on nodes 1/40 px
    apart. Over 3,000 random offsets a weight differed from the exact
    overlap by at most 1.6e-3 (r = 2) to 2.5e-3 (r = 5), with errors
    that sum to zero (the area is exact to 1e-14). On noise stamps of
    mean 100 and standard deviation 71 the relative error of a sum has a
    standard deviation of at most 1.3e-4 (r = 2), 7e-5 (r = 3) and 3e-5
    (r = 5) against ``aperture_photometry(method='exact')``; on a
    star's profile it is within 1e-4 (r = 2) to 1e-7 (r = 5). Each
    stamp's core is multiplied with the four corner weights of its table
    cell, gathered for all stamps at once: 10^5 stamps of 21 x 21 take
    about 0.1 s at r = 2, a thousand stamps at r = 9 a few milliseconds.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.stamps.apertures import aperture_sums
    >>> stamps = np.ones((2, 21, 21))
    >>> stamps[1, 10, 12] = np.nan
    >>> result = aperture_sums(stamps, 2.0, dx=[0.0, -0.3], dy=[0.0, 0.2])
    >>> result.sum.round(6).tolist(), result.area.round(6).tolist()
    ([12.566371, nan], [12.566371, 12.566371])
    >>> result.non_finite
    array([False,  True])
    >>> aperture_sums(stamps[:1], 2.0, method='center').sum
    array([13.])
    """
    if method not in _METHODS:
        msg = f'method must be one of {_METHODS}, got {method!r}'
        raise ValueError(msg)
    stamps = np.asarray(stamps)
    if stamps.ndim != 3:
        msg = f'stamps must have shape (N, ny, nx), got {stamps.shape}'
        raise ValueError(msg)
    ny, nx = _check_shape(stamps.shape[1:])
    radius = _check_radius(radius)
    n = len(stamps)
    dx = _offset(dx, n, 'dx')
    dy = _offset(dy, n, 'dy')
    half = _reach(radius, method)
    if half > min(ny, nx) // 2:
        need = 2 * half + 1
        msg = (f'an aperture of radius {radius:g} px ({method!r}) needs '
               f'stamps of at least {need} x {need} pixels, got '
               f'{ny} x {nx}')
        raise ValueError(msg)
    cy, cx = ny // 2, nx // 2
    core = stamps[:, cy - half:cy + half + 1, cx - half:cx + half + 1]
    core = core.reshape(n, -1).astype(float)
    finite = np.isfinite(core)
    if method == 'center':
        size = 2 * half + 1
        inside = _distance2((size, size), slice(None), dx, dy, n,
                            float) <= radius**2
        bad = (inside & ~finite).any(axis=1)
        sums = np.where(inside, core, 0.0).sum(axis=1)
        sums[bad] = np.nan
        return ApertureSums(sums, inside.sum(axis=1).astype(float), bad)
    return _exact_sums(core, finite, radius, half, dx, dy)


def _offset(d, n, name):
    if d is None:
        return np.zeros(n)
    d = np.broadcast_to(np.asarray(d, dtype=float), (n,))
    if not np.all(np.abs(d) <= 0.5):
        msg = (f'{name} must be finite offsets within [-0.5, 0.5] px of '
               'the central pixel: cut the stamps at the rounded '
               'positions (satphotutils.stamps.cutout.cut_stamps)')
        raise ValueError(msg)
    return d


# Stamps whose gathered corner weights are held at once (memory bound).
_CHUNK = 4096


def _exact_sums(core, finite, radius, half, dx, dy):
    table = _weight_table(radius, half)
    cells = _GRID - 1
    fy = (dy + 0.5) * cells
    fx = (dx + 0.5) * cells
    iy = np.minimum(fy.astype(int), cells - 1)
    ix = np.minimum(fx.astype(int), cells - 1)
    ty, tx = fy - iy, fx - ix
    coef = np.column_stack([(1 - ty) * (1 - tx), (1 - ty) * tx,
                            ty * (1 - tx), ty * tx])
    has_bad = ~finite.all(axis=1)
    if has_bad.any():
        core = np.where(finite, core, 0.0)
    n = len(core)
    flat = table.reshape(_GRID * _GRID, -1)
    node = iy * _GRID + ix
    # The four corners of each stamp's cell, in the order of coef; a sum
    # is the bilinear combination of the stamp's core against each.
    corners = (0, 1, _GRID, _GRID + 1)
    sums = np.zeros(n)
    area = np.zeros(n)
    bad = np.zeros(n, dtype=bool)
    node_area = flat.sum(axis=1)
    for start in range(0, n, _CHUNK):
        rows = slice(start, start + _CHUNK)
        spoilt = np.flatnonzero(has_bad[rows])
        touched = np.zeros((len(spoilt), flat.shape[1]), dtype=bool)
        for k, corner in enumerate(corners):
            weights = flat[node[rows] + corner]
            c = coef[rows, k]
            sums[rows] += c * np.einsum('nk,nk->n', core[rows], weights)
            area[rows] += c * node_area[node[rows] + corner]
            if len(spoilt):
                # The pixels given weight by a corner that is used.
                touched |= (weights[spoilt] > 0) & (c[spoilt, None] > 0)
        if len(spoilt):
            bad[start + spoilt] = (touched
                                   & ~finite[rows][spoilt]).any(axis=1)
    sums[bad] = np.nan
    return ApertureSums(sums, area, bad)


def clipped_medians(values):
    """
    Sigma-clipped median of each row (3 sigma, 5 iterations).

    The value of astropy's ``sigma_clipped_stats(values, axis=1,
    sigma=3.0)[1]``: the rows are clipped by astropy's
    `~astropy.stats.SigmaClip` and the median of what is left is read
    from the sorted rows, which for a thousand annuli is three times
    faster than the masked-array median.

    Parameters
    ----------
    values : array-like, shape (N, M)
        One sample per row (a stamp's annulus); non-finite values are
        left out.

    Returns
    -------
    median : `~numpy.ndarray`, shape (N,)
        NaN for a row with nothing left.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.stamps.apertures import clipped_medians
    >>> rows = np.array([[10.0, 11.0, 9.0, 10.0, 500.0],
    ...                  [1.0, 2.0, 3.0, 4.0, np.nan]])
    >>> clipped_medians(rows).tolist()
    [10.0, 2.5]
    """
    values = np.asarray(values, dtype=float)
    with warnings.catch_warnings():
        # Non-finite values are left out, as documented.
        warnings.simplefilter('ignore', AstropyUserWarning)
        kept = SigmaClip(sigma=3.0, maxiters=5)(values, axis=1,
                                                masked=False)
    kept = np.sort(kept, axis=1)  # NaN (clipped, missing) last
    n = np.count_nonzero(np.isfinite(kept), axis=1)
    low = np.maximum((n - 1) // 2, 0)[:, None]
    high = np.maximum(n // 2, 0)[:, None]
    with np.errstate(invalid='ignore'):
        median = 0.5 * (np.take_along_axis(kept, low, axis=1)
                        + np.take_along_axis(kept, high, axis=1))[:, 0]
    median[n == 0] = np.nan
    return median


def stamp_aperture_photometry(stamps, radii, *, dx=None, dy=None,
                              annulus=(7.0, 10.0), local_bkg=None):
    """
    Aperture photometry of the central star of each stamp.

    Parameters
    ----------
    stamps : array-like, shape (N, ny, nx)
        The stamps (odd sizes), the star within half a pixel of the
        central pixel's centre.

    radii : float or sequence of float
        Aperture radii (pixels).

    dx, dy : array-like, shape (N,), optional
        Offsets of the star from the central pixel's centre, within
        [-0.5, 0.5].

    annulus : tuple of float, optional
        Inner and outer radius of the background annulus; its
        sigma-clipped median (3 sigma) is the local background.

    local_bkg : array-like, shape (N,), optional
        The local background per pixel, instead of the annulus.

    Returns
    -------
    flux : `~numpy.ndarray`, shape (N, len(radii))
        Background-subtracted aperture sums; NaN where the aperture
        touches a non-finite pixel.

    local_bkg : `~numpy.ndarray`, shape (N,)
        The background per pixel that was subtracted.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.stamps import stamp_aperture_photometry
    >>> stamps = np.full((1, 21, 21), 100.0)
    >>> stamps[0, 10, 10] += 5000.0
    >>> flux, bkg = stamp_aperture_photometry(stamps, [1.0, 3.0])
    >>> flux.round(1), bkg
    (array([[5000., 5000.]]), array([100.]))
    """
    stamps = np.asarray(stamps)
    if stamps.ndim != 3:
        msg = f'stamps must have shape (N, ny, nx), got {stamps.shape}'
        raise ValueError(msg)
    n, ny, nx = stamps.shape
    radii = np.atleast_1d(np.asarray(radii, dtype=float))
    if local_bkg is None:
        yy, xx = np.mgrid[-(ny // 2):ny // 2 + 1, -(nx // 2):nx // 2 + 1]
        r = np.hypot(xx, yy)
        ring = (r >= annulus[0]) & (r <= annulus[1])
        local_bkg = clipped_medians(stamps[:, ring])
    local_bkg = np.broadcast_to(np.asarray(local_bkg, dtype=float), n)
    flux = np.empty((n, len(radii)))
    for j, radius in enumerate(radii):
        # The sum of the background-subtracted pixels, without a
        # background-subtracted copy of every stamp.
        total, area, _ = aperture_sums(stamps, radius, dx=dx, dy=dy)
        flux[:, j] = total - local_bkg * area
    return flux, np.array(local_bkg)


# The largest condition number of the phase terms' design that is fitted:
# about 2-3 for stars spread at random over their pixels.
_MAX_PHASE_CONDITION = 30.0


def _phase_terms(dx, dy, n_terms):
    """Return the periodic, even terms of a pixel-phase correction."""
    cx, cy = np.cos(2 * np.pi * dx), np.cos(2 * np.pi * dy)
    terms = [np.ones_like(cx), cx, cy, cx * cy][:n_terms]
    return np.column_stack(terms)


class PixelPhaseCorrection:
    """
    An aperture correction that depends on where a star falls in its pixel.

    On an undersampled frame (FWHM below about 2.5 px) the light a small
    aperture holds depends on the star's position within its pixel: the
    exact aperture weighs each pixel by the area it covers, as though the
    light were spread evenly over it, while a pixel-integrated PSF has it
    concentrated towards the star. For a FWHM-1.7 px frame and a 1.5-px
    aperture the held fraction changes by 3% between a star at a pixel's
    centre and one at its corner, which is most of the scatter of small
    apertures on bright stars. The correction is the ratio of a wide
    aperture's sum to the small one's, measured on a frame's bright
    isolated stars and fitted, in log, with the periodic terms a
    centrally symmetric PSF allows: ``1``, ``cos 2 pi dx``,
    ``cos 2 pi dy``, ``cos 2 pi dx cos 2 pi dy`` (``dx``, ``dy`` the
    offsets from the pixel's centre). With fewer than ``min_stars``
    stars, stars that do not spread over their pixels (the terms'
    design has a condition number above 30; about 2-3 for stars at
    random phases), or terms that do not pass an F test at 1%
    (`phase_terms_matter`: a well-sampled star's share hardly changes
    across a pixel), only the constant (their median) is fitted.

    Use `fit` to measure one; an instance applies it with ``__call__``.

    Parameters
    ----------
    coefficients : sequence of float
        The log-ratio coefficients of the terms (1 to 4 of them).

    n_stars : int, optional
        Stars it was measured on.

    scatter : float, optional
        Robust scatter (natural log) of the stars about the fit.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.stamps.apertures import PixelPhaseCorrection
    >>> rng = np.random.default_rng(1)
    >>> dx, dy = rng.uniform(-0.5, 0.5, (2, 200))
    >>> ratio = 1.8 * np.exp(-0.01 * (np.cos(2 * np.pi * dx)
    ...                               + np.cos(2 * np.pi * dy)))
    >>> phase = PixelPhaseCorrection.fit(dx, dy, ratio)
    >>> phase.n_stars, np.round(phase.coefficients, 3).tolist()
    (200, [0.588, -0.01, -0.01, 0.0])
    >>> np.round(phase([0.0, 0.5], [0.0, 0.5]), 4).tolist()
    [1.7644, 1.8364]
    """

    def __init__(self, coefficients, *, n_stars=0, scatter=np.nan):
        coefficients = np.atleast_1d(np.asarray(coefficients, dtype=float))
        if not 1 <= coefficients.size <= 4 or coefficients.ndim != 1:
            msg = ('coefficients must be 1 to 4 numbers, got shape '
                   f'{coefficients.shape}')
            raise ValueError(msg)
        if not np.all(np.isfinite(coefficients)):
            msg = 'coefficients must be finite'
            raise ValueError(msg)
        self.coefficients = coefficients
        self.n_stars = int(n_stars)
        self.scatter = float(scatter)

    def __repr__(self):
        return (f'<PixelPhaseCorrection {self.coefficients.size} terms, '
                f'{self.n_stars} stars>')

    @classmethod
    def fit(cls, dx, dy, ratio, *, min_stars=20, clip=3.0, max_iter=5):
        """
        Fit the correction to measured wide-to-small aperture ratios.

        Parameters
        ----------
        dx, dy : array-like, shape (N,)
            Offsets of the stars from their pixels' centres.

        ratio : array-like, shape (N,)
            Each star's wide-aperture sum over its small-aperture sum;
            values that are not finite and positive are left out.

        min_stars : int, optional
            Stars needed for the phase terms; with fewer (and at least
            one) the correction is their median ratio.

        clip : float, optional
            Stars further than this many robust standard deviations from
            the fit are left out of the next iteration.

        max_iter : int, optional
            Iterations of the clipped least-squares fit.

        Returns
        -------
        correction : `PixelPhaseCorrection`
            `None` if no star is usable.
        """
        dx, dy, ratio = (np.asarray(v, dtype=float).ravel()
                         for v in (dx, dy, ratio))
        if not dx.shape == dy.shape == ratio.shape:
            msg = 'dx, dy and ratio must have the same length'
            raise ValueError(msg)
        with np.errstate(invalid='ignore', divide='ignore'):
            good = np.isfinite(dx) & np.isfinite(dy) & (ratio > 0) \
                & np.isfinite(ratio)
        if not good.any():
            return None
        dx, dy, value = dx[good], dy[good], np.log(ratio[good])
        # The phases must be spread over the pixel for the terms to be
        # told apart (stars placed on a grid all fall at one phase).
        design, spread = cls.terms(dx, dy)
        if value.size < max(int(min_stars), 4) or not spread:
            return cls([np.median(value)], n_stars=value.size,
                       scatter=_robust_std(value - np.median(value)))
        keep = np.ones(value.size, dtype=bool)
        for _ in range(int(max_iter)):
            coef = np.linalg.lstsq(design[keep], value[keep], rcond=None)[0]
            resid = value - design @ coef
            scatter = _robust_std(resid[keep])
            new = np.abs(resid) <= clip * scatter if scatter > 0 else keep
            if new.sum() < 4 or np.array_equal(new, keep):
                break
            keep = new
        kept = value[keep]
        if not phase_terms_matter(np.sum((kept - kept.mean()) ** 2),
                                  np.sum(resid[keep] ** 2), kept.size,
                                  design.shape[1]):
            # A well-sampled star's share does not change across a pixel:
            # terms fitted to noise would only add it.
            return cls([np.median(value)], n_stars=value.size,
                       scatter=_robust_std(value - np.median(value)))
        return cls(coef, n_stars=int(keep.sum()), scatter=scatter)

    def __call__(self, dx, dy):
        """
        Return the multiplicative correction at offsets ``dx``, ``dy``.

        Offsets beyond half a pixel are taken modulo the pixel (the terms
        are periodic).
        """
        dx, dy = np.broadcast_arrays(np.asarray(dx, dtype=float),
                                     np.asarray(dy, dtype=float))
        terms = _phase_terms(dx.ravel(), dy.ravel(), self.coefficients.size)
        return np.exp(terms @ self.coefficients).reshape(dx.shape)

    @staticmethod
    def terms(dx, dy):
        """
        Return the correction's terms at offsets ``dx``, ``dy``.

        The columns ``1``, ``cos 2 pi dx``, ``cos 2 pi dy`` and
        ``cos 2 pi dx cos 2 pi dy``, shape (N, 4), and whether the
        offsets spread over the pixel enough for the last three to be
        told apart (the condition number of the terms at most 30); for
        other fits that need the same terms beside their own.
        """
        design = _phase_terms(np.ravel(np.asarray(dx, dtype=float)),
                              np.ravel(np.asarray(dy, dtype=float)), 4)
        spread = len(design) >= 4 and \
            np.linalg.cond(design) <= _MAX_PHASE_CONDITION
        return design, bool(spread)

    @property
    def median(self):
        """The correction averaged over pixel phases (the constant term)."""
        return float(np.exp(self.coefficients[0]))

    def to_dict(self):
        """Return the correction as a dictionary (for table meta)."""
        return {'value': self.median,
                'phase_terms': self.coefficients[1:].tolist(),
                'n_stars': self.n_stars, 'scatter': self.scatter}


def phase_terms_matter(rss, rss_phase, n, n_parameters, *, level=0.01):
    """
    Say whether the pixel-phase terms improve a least-squares fit.

    An F test of the three terms of `PixelPhaseCorrection` added to a
    fit: ``rss`` and ``rss_phase`` are the residual sums of squares
    without and with them, ``n`` the points, ``n_parameters`` the fit's
    parameters with them. True when the improvement is significant at
    ``level``.

    Examples
    --------
    >>> from satphotutils.stamps.apertures import phase_terms_matter
    >>> phase_terms_matter(2.0, 1.0, 100, 4), phase_terms_matter(
    ...     1.02, 1.0, 100, 4)
    (True, False)
    """
    from scipy.stats import f as f_distribution

    dof = n - n_parameters
    if dof <= 0 or not rss_phase > 0:
        return False
    statistic = (rss - rss_phase) / 3.0 / (rss_phase / dof)
    return bool(statistic > f_distribution.ppf(1.0 - level, 3, dof))


def _robust_std(values):
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float('nan')
    return float(1.4826 * np.median(np.abs(values - np.median(values))))
