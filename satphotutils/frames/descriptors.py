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
import warnings

import numpy as np
from astropy.stats import sigma_clipped_stats

__all__ = ['frame_fwhm', 'gaussian_fit_fwhm', 'saturation_level',
           'stamp_fwhm']

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
        plateau rather than the peak of an unsaturated star.

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
    """
    data = np.asarray(data)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return None
    top = finite.max()
    if np.count_nonzero(finite == top) >= min_pixels:
        return float(top)
    return None


def _isolated_peaks(data, threshold, box, saturation, n_stars, mask):
    """Positions of isolated, unsaturated peaks, brightest first."""
    from photutils.detection import find_peaks
    from photutils.utils.exceptions import NoDetectionsWarning

    with warnings.catch_warnings():
        # No peak is an answer here (the caller gets NaN), not a warning.
        warnings.simplefilter('ignore', NoDetectionsWarning)
        table = find_peaks(data, threshold, box_size=box, mask=mask,
                           border_width=box)
    if table is None:
        return np.empty((0, 2))
    x = np.asarray(table['x_peak'], dtype=float)
    y = np.asarray(table['y_peak'], dtype=float)
    peak = np.asarray(table['peak_value'], dtype=float)
    # Isolated: no other detected peak within two fitting boxes.
    isolated = np.ones(len(x), dtype=bool)
    if len(x) > 1:
        from scipy.spatial import cKDTree

        dist, _ = cKDTree(np.column_stack([x, y])).query(
            np.column_stack([x, y]), k=2)
        isolated = dist[:, 1] > 2 * _FIT_SHAPE
    # Unsaturated with a margin: a peak within a factor two of the level
    # may have a clipped pixel beside it.
    ok = isolated & (peak < 0.5 * saturation) & (peak > threshold)
    order = np.argsort(-peak[ok])[:n_stars]
    return np.column_stack([x[ok][order], y[ok][order]])


def frame_fwhm(data, *, saturation=None, mask=None, n_stars=20,
               min_stars=3, snr=20.0):
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
    data = np.asarray(data, dtype=float)
    if data.ndim != 2:
        msg = f'data must be a 2-D image, got shape {data.shape}'
        raise ValueError(msg)
    bad = ~np.isfinite(data)
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)
    # The background from a sparse sample: the statistics of a few
    # hundred thousand pixels are as good as of all of them.
    step = max(1, int(np.sqrt(data.size / 250_000)))
    sample = data[::step, ::step][~bad[::step, ::step]]
    if sample.size < 100:
        return float('nan')
    _, median, std = sigma_clipped_stats(sample, sigma=3.0, maxiters=5)
    if saturation is None:
        saturation = saturation_level(data)
        if saturation is None:
            saturation = float(np.nanmax(np.where(bad, np.nan, data)))
    residual = data - median
    positions = _isolated_peaks(residual, snr * max(std, 1e-12),
                                _FIT_SHAPE, saturation - median, n_stars,
                                bad)
    if len(positions) < min_stars:
        log.debug('frame_fwhm: %d isolated unsaturated stars, fewer than '
                  '%d', len(positions), min_stars)
        return float('nan')
    residual[bad] = np.nan
    values = _fit(residual, positions)
    values = values[np.isfinite(values)]
    if len(values) < min_stars:
        return float('nan')
    return float(np.median(values))


def _gaussian_prf(x0, y0, sigma, xx, yy):
    """Return a unit-flux circular Gaussian integrated over each pixel."""
    from scipy.special import erf

    k = 1.0 / (np.sqrt(2.0) * sigma)
    fx = erf((xx - x0 + 0.5) * k) - erf((xx - x0 - 0.5) * k)
    fy = erf((yy - y0 + 0.5) * k) - erf((yy - y0 - 0.5) * k)
    return 0.25 * fx * fy


def _fit(image, positions):
    """
    Fit the FWHM of the stars at ``positions``: the one FWHM fit.

    A circular Gaussian PRF in a 7 x 7 box around each star.

    The model of photutils' `~photutils.psf.fit_fwhm`
    (`~photutils.psf.CircularGaussianPRF`: flux, centre and FWHM free, no
    background, non-finite pixels left out), fitted with
    `scipy.optimize.least_squares` directly: the same answer (tested
    against photutils) several times faster, which lets the simulator label
    every exposure with what this measurement gives.
    """
    from scipy.optimize import least_squares

    image = np.asarray(image, dtype=float)
    half = _FIT_SHAPE // 2
    ny, nx = image.shape
    out = np.full(len(positions), np.nan)
    for i, (x, y) in enumerate(np.asarray(positions, dtype=float)):
        ix, iy = int(np.rint(x)), int(np.rint(y))
        if not (half <= ix < nx - half and half <= iy < ny - half):
            continue
        yy, xx = np.mgrid[iy - half:iy + half + 1, ix - half:ix + half + 1]
        box = image[iy - half:iy + half + 1, ix - half:ix + half + 1]
        good = np.isfinite(box)
        if good.sum() < 10:
            continue
        data, xx, yy = box[good], xx[good], yy[good]
        flux0 = max(float(data.sum()), 1e-12)

        def residual(p, data=data, xx=xx, yy=yy, flux0=flux0):
            return p[0] * flux0 * _gaussian_prf(
                p[1], p[2], p[3] / 2.3548200450309493, xx, yy) - data

        fit = least_squares(residual, [1.0, x, y, 2.0],
                            x_scale=[0.1, 0.1, 0.1, 0.1], method='lm')
        if fit.success:
            out[i] = abs(fit.x[3])
    # A fit that ran to the edge of the box measured nothing.
    out[~((out > 0.3) & (out < _FIT_SHAPE))] = np.nan
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
