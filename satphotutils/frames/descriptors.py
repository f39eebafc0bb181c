# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
What a frame's pixels say about its camera: PSF width and saturation.

A camera-agnostic network (feature version 3) reads two numbers per
frame that no header reliably carries: the width of the PSF and the level
at which pixels stop responding. Both are measured here from the frame
itself, the same way for training stamps and for photometry, so that the
network sees the same quantity in both.

The FWHM is that of a circular Gaussian PRF fitted (the model of photutils'
`~photutils.psf.fit_fwhm`) to the frame's isolated, unsaturated, well
exposed stars, the median over up to ``n_stars`` of them. For a Moffat
or core-plus-halo PSF this is not the profile's true half width but a
well-defined, reproducible width of its core;
`gaussian_fit_fwhm` gives the same quantity for a model PSF, which is how
the simulator labels its stamps.

The saturation level is the frame's maximum when at least ``min_pixels``
pixels share it exactly: the plateau of a clipped ADC or of 16-bit
storage. A frame whose saturated pixels were flat-fielded or replaced by
a pipeline shows no plateau; its level must come from the header
(``SATURATE``) or the user.
"""

import logging

import numpy as np

__all__ = ['frame_background', 'frame_fwhm', 'frame_psf',
           'gaussian_fit_fwhm', 'saturation_level', 'stamp_fwhm']

log = logging.getLogger(__name__)

# Side of the box fitted around each star (pixels): the core and a
# little wing at FWHM 1.2-4 px.
_FIT_SHAPE = 7


def saturation_level(data, *, min_pixels=5):
    """
    Return the frame's saturation plateau, or `None` if it shows none.

    Parameters
    ----------
    data : array-like, 2-D
        The frame, in its stored counts.

    min_pixels : int, optional
        Pixels that must share the maximum value exactly for it to be a
        plateau rather than the peak of an unsaturated star; failing
        that, connected pixels whose values lie within 0.2% of their
        median, as flat fielding leaves a clipped ADC's plateaus (the
        lowest such plateau is the level).

    Returns
    -------
    level : float or None
        The plateau value (counts, sky included), or `None`.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.frames import saturation_level
    >>> image = np.full((50, 50), 300.0)
    >>> image[20:30, 24:26] = 65535.0
    >>> saturation_level(image)
    65535.0
    >>> image[20:30, 24:26] = np.linspace(1e4, 2e4, 20).reshape(10, 2)
    >>> saturation_level(image) is None
    True

    Flat fielding spreads a clipped ADC's plateaus over a few per cent;
    the lowest is the level:

    >>> image[20:30, 24:26] = 4095 / np.linspace(0.979, 0.9795, 20).reshape(
    ...     10, 2)
    >>> image[5:8, 5:8] = 4095 / np.linspace(0.999, 0.9995, 9).reshape(3, 3)
    >>> round(saturation_level(image), 1)
    4090.9
    """
    data = np.asarray(data)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return None
    top = finite.max()
    if np.count_nonzero(finite == top) >= min_pixels:
        return float(top)
    return _flat_fielded_plateau(data, finite, min_pixels)


# Pixels looked at for plateaus that differ (the brightest of a frame).
_PLATEAU_CANDIDATES = 20000
# Plateaus are looked for down to this fraction of the frame's maximum.
_PLATEAU_SPAN = 0.4
# A flat-fielded plateau's pixels lie within this fraction of its median:
# the flat changes by far less across a star's core, while read noise
# alone spreads an unsaturated peak by more.
_PLATEAU_TOLERANCE = 0.002


def _flat_fielded_plateau(data, finite, min_pixels):
    """
    Return the lowest plateau of a frame whose plateaus differ, or None.

    Flat fielding divides each clipped pixel by its flat: the plateaus
    of a vignetted camera lie 0-10% apart across the frame, none is the
    frame's maximum on more than a pixel or two, and the exact test finds
    none. Among the brightest pixels (the 20,000 brightest, and no lower
    than 40% of the maximum), each connected region whose top
    holds at least ``min_pixels`` pixels within `_PLATEAU_TOLERANCE` of
    its maximum is a plateau; the lowest such top (the centre's, as a
    ``SATURATE`` keyword gives it) is returned, less that tolerance: the
    lowest plateau the frame shows, above the true level by as much as
    the flat changes between the frame's centre and that star.
    """
    from scipy import ndimage

    if finite.size <= min_pixels:
        return None
    k = min(_PLATEAU_CANDIDATES, finite.size - 1)
    # Plateaus of a vignetted camera lie within a factor 2 of each other
    # (corners at half the throughput), and far above the sky.
    floor = max(np.partition(finite, finite.size - k)[finite.size - k],
                _PLATEAU_SPAN * float(finite.max()))
    with np.errstate(invalid='ignore'):
        bright = data >= floor
    label, n = ndimage.label(bright)
    if not n:
        return None
    regions = np.arange(1, n + 1)
    peak = np.asarray(ndimage.maximum(data, label, regions), dtype=float)
    inside = label > 0
    near = np.zeros(data.shape, dtype=bool)
    near[inside] = data[inside] >= (1 - _PLATEAU_TOLERANCE) * \
        peak[label[inside] - 1]
    count = np.bincount(label[near], minlength=n + 1)[1:]
    plateau = count >= min_pixels
    if not plateau.any():
        return None
    return float(peak[plateau].min() * (1 - _PLATEAU_TOLERANCE))


def _local_maxima(data, threshold, box, mask):
    """
    Return the local maxima above ``threshold``, as photutils finds them.

    The peaks `~photutils.detection.find_peaks` returns for ``box_size``
    and ``border_width = box`` (a pixel that equals the maximum of the
    ``box`` x ``box`` square around it, is above the threshold and not
    masked; NaN pixels never win), in its order (row-major). Only the
    pixels above the threshold are examined, and each square is checked
    one neighbour at a time on the survivors: a frame holds a few
    thousand peaks among millions of pixels, so this is some ten times
    faster than filtering the whole image.

    Returns
    -------
    y, x : `~numpy.ndarray` of int
    """
    ny, nx = data.shape
    if ny <= 2 * box or nx <= 2 * box:
        return np.empty(0, dtype=int), np.empty(0, dtype=int)
    flat = np.ascontiguousarray(data).ravel()
    with np.errstate(invalid='ignore'):
        index = np.flatnonzero(flat > threshold)
    iy, ix = np.divmod(index, nx)
    keep = (iy >= box) & (iy < ny - box) & (ix >= box) & (ix < nx - box)
    if mask is not None:
        keep &= ~np.asarray(mask).ravel()[index]
    index = index[keep]
    value = flat[index]
    half = box // 2
    # Nearest neighbours first: most candidates fail at once.
    offsets = sorted(((dy, dx) for dy in range(-half, half + 1)
                      for dx in range(-half, half + 1) if dy or dx),
                     key=lambda o: o[0] ** 2 + o[1] ** 2)
    for dy, dx in offsets:
        with np.errstate(invalid='ignore'):
            keep = ~(flat[index + dy * nx + dx] > value)
        index, value = index[keep], value[keep]
    return np.divmod(index, nx)


def _isolated_peaks(data, threshold, box, saturation, n_stars, mask,
                    background=0.0):
    """
    Positions of isolated, unsaturated peaks, brightest first.

    ``threshold`` and ``saturation`` are in the units of ``data``;
    ``background`` is the sky level under both.
    """
    y, x = _local_maxima(data, threshold, box, mask)
    peak = data[y, x].astype(float)
    x, y = x.astype(float), y.astype(float)
    # Isolated: no other detected peak within two fitting boxes.
    isolated = np.ones(len(x), dtype=bool)
    if len(x) > 1:
        from scipy.spatial import cKDTree

        dist, _ = cKDTree(np.column_stack([x, y])).query(
            np.column_stack([x, y]), k=2)
        isolated = dist[:, 1] > 2 * _FIT_SHAPE
    # Unsaturated with a margin: a peak within a factor two of the level
    # may have a clipped pixel beside it.
    ok = isolated & (peak - background < 0.5 * (saturation - background)) \
        & (peak > threshold)
    order = np.argsort(-peak[ok])[:n_stars]
    return np.column_stack([x[ok][order], y[ok][order]])


def _given_peaks(data, positions, threshold, saturation, n_stars, mask,
                 background=0.0, search=2):
    """
    Return the stars at given positions that `_isolated_peaks` keeps.

    Each position moves to the brightest finite, unmasked pixel within
    ``search`` pixels, which must be a local maximum; stars whose peak is
    below ``threshold`` or within a factor two of ``saturation`` (both
    above ``background``) are dropped; the ``n_stars`` brightest remain,
    brightest first.
    """
    positions = np.asarray(positions, dtype=float).reshape(-1, 2)
    ny, nx = data.shape
    finite = np.isfinite(positions).all(axis=1)
    ix = np.rint(np.where(finite, positions[:, 0], -1.0)).astype(int)
    iy = np.rint(np.where(finite, positions[:, 1], -1.0)).astype(int)
    # The square must lie on the frame, and so must the fitting box
    # around any pixel of it.
    margin = search + _FIT_SHAPE // 2
    on = finite & (ix >= margin) & (ix < nx - margin) & (iy >= margin) \
        & (iy < ny - margin)
    ix, iy = ix[on], iy[on]
    if not len(ix):
        return np.empty((0, 2))
    grid = np.arange(-search, search + 1)
    rows = iy[:, None, None] + grid[None, :, None]
    cols = ix[:, None, None] + grid[None, None, :]
    square = data[rows, cols].astype(float)
    if mask is not None:
        square[mask[rows, cols]] = np.nan
    square = np.where(np.isfinite(square), square, -np.inf).reshape(
        len(ix), -1)
    best = np.argmax(square, axis=1)
    peak = square[np.arange(len(ix)), best]
    dy, dx = np.divmod(best, 2 * search + 1)
    px, py = ix + dx - search, iy + dy - search
    # A real star peaks there: the brightest pixel of the square must be
    # the brightest of its own 3 x 3 too (on the square's edge it may be
    # the wing of a star that is not where the position says).
    grid = np.arange(-1, 2)
    around = data[py[:, None, None] + grid[None, :, None],
                  px[:, None, None] + grid[None, None, :]].astype(float)
    if mask is not None:
        around[mask[py[:, None, None] + grid[None, :, None],
                    px[:, None, None] + grid[None, None, :]]] = np.nan
    around = np.where(np.isfinite(around), around, -np.inf)
    x, y = px.astype(float), py.astype(float)
    ok = (peak > threshold) & (peak - background
                               < 0.5 * (saturation - background)) \
        & (around.reshape(len(px), -1).max(axis=1) <= peak)
    order = np.argsort(-peak[ok], kind='stable')[:n_stars]
    return np.column_stack([x[ok][order], y[ok][order]])


def frame_background(data, *, mask=None):
    """
    Return a frame's sky level and noise: sigma-clipped median and std.

    The one measurement of a frame's global background (the photometry's
    sky without a header value, the stamp builder's, the FWHM's
    detection threshold). It is taken on a regular sample of at least
    65,536 pixels (every ``step``-th row and column of a large frame),
    whose median is within 0.5% of the noise of that of all the pixels,
    at a fraction of the time (clipping is most of the cost of measuring
    a frame).

    Parameters
    ----------
    data : array-like, 2-D
        The frame (counts, sky included).

    mask : array-like of bool, optional
        Pixels to ignore (non-finite pixels are always ignored).

    Returns
    -------
    median, std : float
        The 3-sigma clipped (5 iterations) median and standard deviation;
        NaN when fewer than 100 sampled pixels are usable.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.frames import frame_background
    >>> rng = np.random.default_rng(0)
    >>> image = rng.normal(1000.0, 10.0, (2048, 2048))
    >>> image[100:110, 200:260] = 65535.0  # a bleed trail
    >>> median, std = frame_background(image)
    >>> round(median), round(std)
    (1000, 10)
    """
    data = np.asarray(data)
    if data.ndim != 2:
        msg = f'data must be a 2-D image, got shape {data.shape}'
        raise ValueError(msg)
    step = max(1, int(np.sqrt(data.size / 65_536)))
    sample = data[::step, ::step]
    good = np.isfinite(sample)
    if mask is not None:
        good &= ~np.asarray(mask, dtype=bool)[::step, ::step]
    sample = sample[good]
    if sample.size < 100:
        return float('nan'), float('nan')
    return _clipped_stats(sample, sigma=3.0, maxiters=5)


def _clipped_stats(values, *, sigma, maxiters):
    """
    Return `~astropy.stats.sigma_clipped_stats`' median and std of values.

    The same iteration (median +- ``sigma`` std of the values kept so
    far, until nothing changes or ``maxiters``), on the values sorted
    once: what is kept is then a slice, its median the middle element and
    its moments differences of running sums, so that each iteration costs
    two binary searches instead of a median and a std of the whole
    sample. Equal to astropy's to rounding (tested).
    """
    a = np.sort(np.asarray(values).ravel()).astype(np.float64)
    n = len(a)
    # Sums of the differences from a central value keep the variance
    # free of cancellation.
    d = a - a[n // 2]
    s1 = np.concatenate([[0.0], np.cumsum(d)])
    s2 = np.concatenate([[0.0], np.cumsum(d * d)])

    def stats(lo, hi):
        m = hi - lo
        k = lo + (m - 1) // 2
        median = a[k] if m % 2 else 0.5 * (a[k] + a[k + 1])
        mean = (s1[hi] - s1[lo]) / m
        return median, np.sqrt(max((s2[hi] - s2[lo]) / m - mean * mean,
                                   0.0))

    lo, hi = 0, n
    for _ in range(maxiters):
        median, std = stats(lo, hi)
        # Clipped values never come back (as in astropy).
        new_lo = max(lo, int(np.searchsorted(a, median - sigma * std,
                                             side='left')))
        new_hi = min(hi, int(np.searchsorted(a, median + sigma * std,
                                             side='right')))
        if (new_lo, new_hi) == (lo, hi) or new_hi <= new_lo:
            break
        lo, hi = new_lo, new_hi
    median, std = stats(lo, hi)
    return float(median), float(std)


def frame_fwhm(data, *, saturation=None, mask=None, n_stars=20,
               min_stars=3, snr=20.0, background=None, positions=None):
    """
    Measure a frame's PSF FWHM from its isolated unsaturated stars.

    Parameters
    ----------
    data : array-like, 2-D
        The frame (counts, sky included).

    saturation : float, optional
        The saturation level; stars whose peak above the background
        reaches half of it are left out. Without it the plateau
        (`saturation_level`) or the frame's maximum is used.

    mask : array-like of bool, optional
        Pixels to ignore.

    n_stars : int, optional
        Stars fitted (the brightest that qualify).

    min_stars : int, optional
        Fewer qualifying stars than this and the FWHM is not measured.

    snr : float, optional
        Least peak height, in units of the background noise, of a star
        that qualifies.

    background : tuple of float, optional
        The frame's ``(median, std)`` from `frame_background`, when the
        caller has it already; measured if `None`.

    positions : array-like, shape (N, 2), optional
        ``x, y`` (pixels) of isolated stars to choose from, e.g.
        catalogue stars without a neighbour within 14 px (twice the
        fitting box); each is centred on the brightest pixel of the 5 x
        5 square around it (a WCS a pixel off still finds its star) and
        then chosen like a detected star. The frame's isolated peaks are
        detected if `None`: on a 2048^2 frame the detection costs three
        times the fit.

    Returns
    -------
    fwhm : float
        The median fitted FWHM (pixels), NaN when fewer than
        ``min_stars`` stars qualify or the fits fail.

    Examples
    --------
    >>> import numpy as np
    >>> from photutils.datasets import make_model_image
    >>> from photutils.psf import CircularGaussianPRF
    >>> from astropy.table import QTable
    >>> from satphotutils.frames import frame_fwhm
    >>> rng = np.random.default_rng(1)
    >>> stars = QTable({'x_0': rng.uniform(20, 280, 40),
    ...                 'y_0': rng.uniform(20, 280, 40),
    ...                 'flux': rng.uniform(5e3, 2e4, 40),
    ...                 'fwhm': np.full(40, 2.5)})
    >>> image = make_model_image((300, 300), CircularGaussianPRF(), stars,
    ...                          model_shape=(15, 15)) + 100.0
    >>> image = rng.normal(image, 3.0)
    >>> round(frame_fwhm(image, saturation=6e4), 1)
    2.5
    """
    # The stored pixels (integers, float32) are read in place: a float64
    # copy and a background-subtracted one of a 2048^2 frame cost more
    # than the whole measurement.
    data = np.asarray(data)
    if data.ndim != 2:
        msg = f'data must be a 2-D image, got shape {data.shape}'
        raise ValueError(msg)
    if data.dtype.kind not in 'fiu':
        data = data.astype(float)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
    if positions is not None:
        # Only the fitted boxes are looked at: no whole-frame mask.
        bad = mask
    else:
        bad = None if data.dtype.kind != 'f' else ~np.isfinite(data)
        if mask is not None:
            bad = mask if bad is None else bad | mask
    if background is None:
        background = frame_background(data, mask=bad)
    median, std = (float(v) for v in background)
    if not (np.isfinite(median) and np.isfinite(std)):
        return float('nan')
    if saturation is None:
        saturation = saturation_level(data)
        if saturation is None:
            saturation = float(np.nanmax(data if bad is None
                                         else np.where(bad, np.nan, data)))
    threshold = median + snr * max(std, 1e-12)
    if positions is None:
        positions = _isolated_peaks(data, threshold, _FIT_SHAPE,
                                    saturation, n_stars, bad,
                                    background=median)
    else:
        positions = _given_peaks(data, positions, threshold, saturation,
                                 n_stars, bad, background=median)
    if len(positions) < min_stars:
        log.debug('frame_fwhm: %d isolated unsaturated stars, fewer than '
                  '%d', len(positions), min_stars)
        return float('nan')
    values = _fit(data, positions, background=median, mask=bad)
    values = values[np.isfinite(values)]
    if len(values) < min_stars:
        return float('nan')
    return float(np.median(values))


def frame_psf(data, *, saturation, mask=None, n_stars=40, min_stars=5,
              snr=50.0, size=25, oversampling=1, background=None):
    """
    Build a frame's empirical PSF from its isolated unsaturated stars.

    The stars are chosen as `frame_fwhm` chooses them (isolated local
    maxima whose peak stays below half the saturation level), only
    brighter (``snr``), since the PSF's wings are what a fit of a
    saturated star uses; photutils' `~photutils.psf.EPSFBuilder` stacks
    them. A Gaussian of the frame's FWHM misses the wings of a Moffat-like
    PSF by 10-30%, which on a saturated star, whose core is masked, is
    the whole measurement.

    Parameters
    ----------
    data : array-like, 2-D
        The frame (counts, sky included).

    saturation : float
        The saturation level (counts, sky included).

    mask : array-like of bool, optional
        Pixels to ignore.

    n_stars : int, optional
        Most stars stacked (the brightest that qualify).

    min_stars : int, optional
        Fewer qualifying stars than this and no PSF is built.

    snr : float, optional
        Least peak height of a star, in units of the background noise.

    size : int, optional
        Side of the PSF image in frame pixels (odd).

    oversampling : int, optional
        ``EPSFBuilder``'s oversampling; 1 is enough for FWHM >= 2 px.

    background : tuple of float, optional
        The frame's ``(median, std)`` from `frame_background`.

    Returns
    -------
    psf : `~photutils.psf.ImagePSF` or `None`
        Normalised to unit flux over its ``size x size`` pixels; `None`
        when fewer than ``min_stars`` stars qualify.

    n : int
        The stars stacked.

    Examples
    --------
    >>> import numpy as np
    >>> from photutils.datasets import make_model_image
    >>> from photutils.psf import MoffatPSF
    >>> from astropy.table import QTable
    >>> from satphotutils.frames import frame_psf
    >>> rng = np.random.default_rng(1)
    >>> stars = QTable({'x_0': rng.uniform(20, 380, 40),
    ...                 'y_0': rng.uniform(20, 380, 40),
    ...                 'flux': rng.uniform(2e4, 5e4, 40)})
    >>> image = make_model_image((400, 400), MoffatPSF(alpha=2.0, beta=2.5),
    ...                          stars, model_shape=(25, 25)) + 100.0
    >>> psf, n = frame_psf(rng.normal(image, 3.0), saturation=6e4)
    >>> n >= 5, psf.data.shape
    (True, (25, 25))
    """
    import warnings

    from astropy.nddata import NDData
    from astropy.table import Table
    from photutils.psf import EPSFBuilder, ImagePSF, extract_stars

    if size % 2 == 0:
        msg = f'size must be odd, got {size}'
        raise ValueError(msg)
    data = np.asarray(data)
    bad = ~np.isfinite(data) if data.dtype.kind == 'f' else None
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        bad = mask if bad is None else bad | mask
    if background is None:
        background = frame_background(data, mask=bad)
    median, std = (float(v) for v in background)
    if not (np.isfinite(median) and np.isfinite(std)):
        return None, 0
    positions = _isolated_peaks(data, median + snr * max(std, 1e-12),
                                _FIT_SHAPE, float(saturation), n_stars, bad,
                                background=median)
    half = size // 2
    ny, nx = data.shape
    on = (positions[:, 0] >= half) & (positions[:, 1] >= half) \
        & (positions[:, 0] < nx - half - 1) & (positions[:, 1] < ny - half - 1)
    positions = positions[on]
    if len(positions) < min_stars:
        log.debug('frame_psf: %d isolated unsaturated stars, fewer than %d',
                  len(positions), min_stars)
        return None, len(positions)
    image = np.asarray(data, dtype=float) - median
    if bad is not None:
        image = np.where(bad, np.nan, image)
    stars = extract_stars(NDData(image), Table({'x': positions[:, 0],
                                                'y': positions[:, 1]}),
                          size=size)
    with warnings.catch_warnings():
        # Its convergence notes, per star and iteration.
        warnings.simplefilter('ignore')
        psf, _ = EPSFBuilder(oversampling=oversampling, maxiters=5,
                             progress_bar=False)(stars)
    # EPSFBuilder's unit is the light within its normalisation radius
    # (5.5 px); a fitted flux should be the star's whole light, as far
    # as the image reaches.
    return ImagePSF(psf.data / (psf.data.sum() / oversampling ** 2),
                    oversampling=oversampling), len(positions)


_SIGMA_PER_FWHM = 1.0 / 2.3548200450309493  # 1 / (2 sqrt(2 ln 2))
# Widths (FWHM, px) the fit may step to: below, a hot pixel; above, wider
# than the 7 x 7 box can show.
_WIDTH_RANGE = (0.3, 8.0)


def _fit(image, positions, *, background=0.0, mask=None, max_iter=100):
    """
    Fit the FWHM of the stars at ``positions``: the one FWHM fit.

    A circular Gaussian PRF in a 7 x 7 box around each star: the model of
    photutils' `~photutils.psf.fit_fwhm`
    (`~photutils.psf.CircularGaussianPRF`: flux, centre and FWHM free, no
    background, non-finite pixels left out). All the stars are fitted at
    once by a Levenberg-Marquardt iteration on the stack of boxes with the
    analytic Jacobian, which reaches the least-squares solution of
    `scipy.optimize.least_squares` (tested against it and against
    photutils) some twenty times faster than one call per star: the
    simulator labels every exposure with this measurement, and the stamp
    builder measures every frame.
    """
    from scipy.special import erf

    image = np.asarray(image)
    positions = np.asarray(positions, dtype=float).reshape(-1, 2)
    half = _FIT_SHAPE // 2
    ny, nx = image.shape
    out = np.full(len(positions), np.nan)
    ix = np.rint(positions[:, 0]).astype(int)
    iy = np.rint(positions[:, 1]).astype(int)
    inside = ((ix >= half) & (ix < nx - half) & (iy >= half)
              & (iy < ny - half))
    grid = np.arange(-half, half + 1)
    boxes = np.full((len(positions), _FIT_SHAPE, _FIT_SHAPE), np.nan)
    rows = iy[inside, None, None] + grid[None, :, None]
    cols = ix[inside, None, None] + grid[None, None, :]
    boxes[inside] = image[rows, cols].astype(float) - float(background)
    if mask is not None:
        boxes[inside] = np.where(mask[rows, cols], np.nan, boxes[inside])
    good = np.isfinite(boxes)
    fit = inside & (good.sum(axis=(1, 2)) >= 10)
    if not fit.any():
        return out
    data = np.where(good, boxes, 0.0)[fit]
    weight = good[fit].astype(float)
    # Pixel coordinates of each box: the model is evaluated there.
    xx = (ix[fit, None] + grid[None, :])[:, None, :]
    yy = (iy[fit, None] + grid[None, :])[:, :, None]
    flux0 = np.maximum(data.sum(axis=(1, 2)), 1e-12)[:, None, None]
    # Parameters: flux / flux0, x, y, FWHM. The width starts from the
    # box's second moment (a pixel-integrated Gaussian's is sigma^2 +
    # 1/12): from a fixed start an undersampled star's first steps
    # overshoot to the bottom of the width range and stall there.
    pos = np.clip(data, 0.0, None)
    total = np.maximum(pos.sum(axis=(1, 2)), 1e-12)
    mx = (pos * xx).sum(axis=(1, 2)) / total
    my = (pos * yy).sum(axis=(1, 2)) / total
    var = 0.5 * ((pos * (xx - mx[:, None, None]) ** 2).sum(axis=(1, 2))
                 + (pos * (yy - my[:, None, None]) ** 2).sum(axis=(1, 2))
                 ) / total - 1.0 / 12.0
    start = np.clip(np.sqrt(np.maximum(var, 0.0)) / _SIGMA_PER_FWHM,
                    0.5, 5.0)
    p = np.column_stack([np.ones(fit.sum()), positions[fit], start])
    root = 2.0 / np.sqrt(np.pi)

    def model(p, rows, jacobian):
        """Return the model of the stars ``rows`` and its Jacobian."""
        a, x0, y0, w = (p[:, i][:, None, None] for i in range(4))
        k = 1.0 / (np.sqrt(2.0) * w * _SIGMA_PER_FWHM)
        ux1, ux2 = (xx[rows] - x0 + 0.5) * k, (xx[rows] - x0 - 0.5) * k
        uy1, uy2 = (yy[rows] - y0 + 0.5) * k, (yy[rows] - y0 - 0.5) * k
        fx, fy = erf(ux1) - erf(ux2), erf(uy1) - erf(uy2)
        f0 = flux0[rows]
        m = 0.25 * a * f0 * fx * fy
        if not jacobian:
            return m, None
        ex1, ex2 = np.exp(-ux1 ** 2), np.exp(-ux2 ** 2)
        ey1, ey2 = np.exp(-uy1 ** 2), np.exp(-uy2 ** 2)
        scale = 0.25 * a * f0
        dx0 = scale * fy * (-k * root * (ex1 - ex2))
        dy0 = scale * fx * (-k * root * (ey1 - ey2))
        # d/dw through k = 1 / (sqrt(2) sigma), dk/dw = -k / w.
        dfx = root * (ux1 * ex1 - ux2 * ex2) * (-1.0 / w)
        dfy = root * (uy1 * ey1 - uy2 * ey2) * (-1.0 / w)
        dw = scale * (dfx * fy + fx * dfy)
        da = 0.25 * f0 * fx * fy
        jac = np.stack([np.broadcast_to(d, m.shape) for d in
                        (da, dx0, dy0, dw)], axis=-1)
        return m, jac.reshape(len(p), -1, 4) * weight[rows].reshape(
            len(p), -1, 1)

    def cost(m, rows):
        r = (m - data[rows]) * weight[rows]
        return r.reshape(len(r), -1), 0.5 * np.einsum('nij,nij->n', r, r)

    everyone = np.arange(len(p))
    m, jac = model(p, everyone, True)
    r, c = cost(m, everyone)
    lam = np.full(len(p), 1e-3)
    active = np.ones(len(p), dtype=bool)
    for _iteration in range(max_iter):
        rows = np.flatnonzero(active)
        if not len(rows):
            break
        # Only the stars still moving: one artefact that creeps along
        # must not cost the converged stars their iterations.
        j_act = jac[rows]
        a = np.einsum('npi,npj->nij', j_act, j_act)
        g = np.einsum('npi,np->ni', j_act, r[rows])
        damped = a + lam[rows, None, None] * (
            np.eye(4) * np.diagonal(a, axis1=1, axis2=2)[:, None, :])
        with np.errstate(all='ignore'):
            try:
                step = -np.linalg.solve(damped, g[..., None])[..., 0]
            except np.linalg.LinAlgError:
                step = -np.array([np.linalg.lstsq(d, v, rcond=None)[0]
                                  for d, v in zip(damped, g, strict=True)])
            trial = p[rows] + step
            m_new, _ = model(trial, rows, False)
            _, c_new = cost(m_new, rows)
        # A step that takes the width out of the range a result may take
        # is refused like one that raises the cost (the damping grows),
        # so that an undersampled star overshooting from the start
        # comes back, as scipy's least_squares does.
        width = np.abs(trial[:, 3])
        better = np.isfinite(c_new) & (c_new <= c[rows]) \
            & (width >= _WIDTH_RANGE[0]) & (width <= _WIDTH_RANGE[1])
        done = better & ((c[rows] - c_new <= 1e-10 * c[rows])
                         | (np.abs(step).max(axis=1) <= 1e-8
                            * (1 + np.abs(p[rows]).max(axis=1))))
        moved = rows[better]
        p[moved] = trial[better]
        lam[rows] = np.where(better, lam[rows] * 0.3, lam[rows] * 10.0)
        if len(moved):
            m_moved, jac[moved] = model(p[moved], moved, True)
            r[moved], c[moved] = cost(m_moved, moved)
        active[rows] = ~done & (lam[rows] < 1e12)
    fwhm = np.abs(p[:, 3])
    # Still moving after max_iter steps: a blend or an artefact whose
    # width creeps towards zero, not a star.
    fwhm[~np.isfinite(c) | active] = np.nan
    out[fit] = fwhm
    # A fit that ran to the edge of the box, or that the range held at
    # its lower end (a hot pixel, an artefact), measured nothing.
    out[~((out > 1.1 * _WIDTH_RANGE[0]) & (out < _FIT_SHAPE))] = np.nan
    return out


def stamp_fwhm(stamps, dx, dy, *, background):
    """
    Fit the FWHM of the star at the centre of each stamp.

    The same fit as `frame_fwhm`, for stamps cut from frames that are no
    longer at hand (a simulated stamp table): the median over a frame's
    unsaturated stamps is that frame's FWHM.

    Parameters
    ----------
    stamps : array-like, shape (N, n, n)
        Stamps, the star at the central pixel plus ``(dx, dy)``.

    dx, dy : array-like, shape (N,)
        Offsets of the stars from the central pixel's centre.

    background : array-like, shape (N,)
        Background level of each stamp.

    Returns
    -------
    fwhm : `~numpy.ndarray`, shape (N,)
        Fitted FWHM (pixels); NaN where the fit failed.

    Examples
    --------
    >>> import numpy as np
    >>> from photutils.psf import CircularGaussianPRF
    >>> from satphotutils.frames import stamp_fwhm
    >>> yy, xx = np.mgrid[-10:11, -10:11]
    >>> stamps = np.array([1e4 * CircularGaussianPRF(fwhm=w)(xx - 0.2, yy)
    ...                    for w in (1.6, 2.4)]) + 50.0
    >>> stamp_fwhm(stamps, [0.2, 0.2], [0.0, 0.0], background=[50.0] * 2
    ...            ).round(2).tolist()
    [1.6, 2.4]
    """
    stamps = np.asarray(stamps, dtype=float)
    n, size = len(stamps), stamps.shape[-1]
    if n == 0:
        return np.empty(0)
    # Side by side in one image, a fitting box apart: one photutils call.
    gap = _FIT_SHAPE
    width = size + gap
    mosaic = np.full((size, n * width), np.nan)
    for i, stamp in enumerate(stamps):
        mosaic[:, i * width:i * width + size] = stamp - np.asarray(
            background, dtype=float)[i]
    c = size // 2
    positions = np.column_stack([np.arange(n) * width + c + np.asarray(dx),
                                 c + np.asarray(dy, dtype=float)])
    return _fit(mosaic, positions)


def gaussian_fit_fwhm(psf_image):
    """
    Return the FWHM `frame_fwhm` would measure for a model PSF.

    Parameters
    ----------
    psf_image : array-like, 2-D
        The PSF rendered (pixel-integrated, noiseless) on an odd-sized
        grid centred on its central pixel.

    Returns
    -------
    fwhm : float
        The FWHM (pixels) of the circular Gaussian fitted to its central
        ``7 x 7`` pixels, as `frame_fwhm` fits stars.

    Examples
    --------
    A pixel-integrated Gaussian gives back its FWHM:

    >>> import numpy as np
    >>> from photutils.psf import CircularGaussianPRF
    >>> from satphotutils.frames import gaussian_fit_fwhm
    >>> yy, xx = np.mgrid[-10:11, -10:11]
    >>> psf = CircularGaussianPRF(fwhm=2.2)(xx, yy)
    >>> round(gaussian_fit_fwhm(psf), 2)
    2.2
    """
    image = np.asarray(psf_image, dtype=float)
    if image.ndim != 2 or image.shape[0] % 2 == 0 or \
            image.shape[0] != image.shape[1]:
        msg = 'psf_image must be a square 2-D array of odd size'
        raise ValueError(msg)
    c = image.shape[0] // 2
    return float(_fit(image, [(c, c)])[0])
