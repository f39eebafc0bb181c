# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
What a frame's pixels say about its camera: PSF width and saturation.

A camera-agnostic network (feature version 3) reads two numbers per
frame that no header reliably carries: the width of the PSF and the level
at which pixels stop responding. Both are measured here from the frame
itself, the same way for training stamps and for photometry, so that the
network sees the same quantity in both.

The FWHM is that of a circular Gaussian fitted (photutils
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

__all__ = ['frame_fwhm', 'gaussian_fit_fwhm', 'saturation_level']

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
    ok = isolated & (peak < 0.5 * saturation) & (peak > 3 * threshold)
    order = np.argsort(-peak[ok])[:n_stars]
    return np.column_stack([x[ok][order], y[ok][order]])


def frame_fwhm(data, *, saturation=None, mask=None, n_stars=20,
               min_stars=5, snr=20.0):
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
    from photutils.psf import fit_fwhm

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
    values = fit_fwhm(residual, xypos=positions, fit_shape=_FIT_SHAPE,
                      fwhm=2.0)
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values > 0.3)
                    & (values < _FIT_SHAPE)]
    if len(values) < min_stars:
        return float('nan')
    return float(np.median(values))


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
    from photutils.psf import fit_fwhm

    image = np.asarray(psf_image, dtype=float)
    if image.ndim != 2 or image.shape[0] % 2 == 0 or \
            image.shape[0] != image.shape[1]:
        msg = 'psf_image must be a square 2-D array of odd size'
        raise ValueError(msg)
    c = image.shape[0] // 2
    return float(fit_fwhm(image, xypos=[(c, c)], fit_shape=_FIT_SHAPE,
                          fwhm=2.0)[0])
