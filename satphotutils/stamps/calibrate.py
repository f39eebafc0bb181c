# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""A frame's zero point from aperture photometry of its catalogue stars."""

import numpy as np

from .apertures import stamp_aperture_photometry
from .cutout import cut_stamps

__all__ = ['catalogue_zeropoint']

# The aperture correction is measured out to this many aperture radii,
# where the simulated ASAS-SN-like PSF holds ~98.5% of its flux.
_TOTAL_RADII = 3.0
_CORE = 1  # half-width of the core box whose peak is compared to saturation


def catalogue_zeropoint(data, x, y, catalog_mag, *, usable=None, radius=3.0,
                        saturation_level=None, sky_rms=None, min_snr=20.0,
                        sigma=3.0, min_stars=5, colour=None):
    """
    Fit a frame's zero point to aperture photometry of catalogue stars.

    Each star is measured in a circular aperture of ``radius`` pixels with
    a local background from an annulus; an aperture correction to the
    total flux, the median ratio of the flux within ``3 radius`` to that
    within ``radius`` over the brighter stars without a catalogue
    neighbour there, makes the measurements total counts. Only stars
    whose catalogue neighbours add less than 2% of their flux within
    ``radius + 4`` pixels are used. The zero point is then
    `~satphotutils.calibration.frame_zeropoint`'s sigma-clipped median of
    ``catalog_mag + 2.5 log10(counts)``, so a few saturated, blended or
    variable stars do not pull it.

    Parameters
    ----------
    data : 2D array-like
        The reduced frame (counts).

    x, y : array-like, shape (N,)
        Pixel positions of the stars (0-based).

    catalog_mag : array-like, shape (N,)
        Their catalogue magnitudes in the frame's band.

    usable : array-like of bool, shape (N,), optional
        Stars that may be used, e.g. those without a bright neighbour in
        the catalogue; all if `None`.

    radius : float, optional
        Aperture radius (pixels).

    saturation_level : float, optional
        Stars with a core pixel above 80% of it are not used. With
        `None` only stars whose aperture holds a non-finite pixel or a
        pixel exactly 1 (a survey pipeline's damage mark) are left out,
        and the clipping handles the rest.

    sky_rms : float, optional
        Background noise per pixel, for the ``min_snr`` cut; measured on
        the frame if `None`.

    min_snr : float, optional
        Stars measured with a lower signal-to-noise ratio (background
        noise only) are not used.

    sigma : float, optional
        Clipping threshold of the fit.

    min_stars : int, optional
        Fewest stars for a zero point; with fewer it is NaN.

    colour : array-like, shape (N,), optional
        The stars' colours (e.g. Gaia BP - RP): a colour term is fitted
        too (see `~satphotutils.calibration.frame_zeropoint`).

    Returns
    -------
    fit : `~satphotutils.calibration.FrameZeropoint`
        The zero point ``Z`` with ``mag = Z - 2.5 log10(counts)``, its
        standard error and the stars used and rejected.

    aperture_correction : float
        The factor (>= 1 for a real PSF) from aperture to total flux;
        NaN when no star was bright enough to measure it.

    Examples
    --------
    Eight isolated Gaussian stars of known magnitude on a flat sky, with
    photon noise:

    >>> import numpy as np
    >>> from satphotutils.stamps import catalogue_zeropoint
    >>> rng = np.random.default_rng(0)
    >>> yy, xx = np.mgrid[:200, :200]
    >>> x = np.array([30.2, 60.7, 90.1, 120.4, 150.6, 170.3, 40.5, 100.0])
    >>> y = np.array([40.1, 150.3, 90.6, 30.2, 120.8, 170.5, 100.4, 160.0])
    >>> mag = np.linspace(11.0, 14.5, 8)
    >>> counts = 10 ** (-0.4 * (mag - 25.0))
    >>> image = rng.normal(100.0, 3.0, (200, 200))
    >>> for xi, yi, n in zip(x, y, counts):
    ...     image += n * np.exp(-((xx - xi)**2 + (yy - yi)**2) / 2 / 1.2**2
    ...                         ) / (2 * np.pi * 1.2**2)
    >>> image = rng.poisson(image).astype(float)
    >>> fit, correction = catalogue_zeropoint(image, x, y, mag)
    >>> round(fit.zeropoint, 2), fit.n_used + fit.n_rejected
    (25.0, 8)
    """
    from satphotutils.calibration import FrameZeropoint, frame_zeropoint
    from satphotutils.frames import frame_background

    # The stored pixels: only the stamps are made float64, not the frame.
    data = np.asarray(data)
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    catalog_mag = np.asarray(catalog_mag, dtype=float)
    ok = np.ones(x.shape, bool) if usable is None else \
        np.asarray(usable, dtype=bool).copy()
    if not ok.any():
        return FrameZeropoint(np.nan, np.nan, 0, 0), np.nan
    radius = float(radius)
    big = _TOTAL_RADII * radius
    annulus = (big + 2.0, big + 6.0)
    half = int(np.ceil(annulus[1])) + 1
    # Stars whose catalogue neighbours add under 2% to the aperture; the
    # annulus's clipped median ignores a neighbour there.
    ok &= _isolated(x, y, catalog_mag, radius + 4.0, limit=0.02)
    # Stamps of the usable stars only (the others are never measured).
    use = np.flatnonzero(ok)
    stamps, inside = cut_stamps(data, x[use], y[use], 2 * half + 1,
                                dtype=float)
    # A non-finite pixel (masked, or a saturated core blanked) anywhere
    # in the stamp would spoil the aperture or the annulus.
    whole = inside.all(axis=(1, 2)) & np.isfinite(stamps).all(axis=(1, 2))
    ok[use] = whole
    flux = np.full((len(x), 2), np.nan)
    if whole.any():
        flux[use[whole]], _ = stamp_aperture_photometry(
            stamps[whole], [radius, big],
            dx=(x - np.rint(x))[use[whole]],
            dy=(y - np.rint(y))[use[whole]], annulus=annulus)
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    in_aperture = np.hypot(xx, yy) <= radius + 1
    ok[use] &= ~np.any((stamps == 1.0) & in_aperture, axis=(1, 2))
    ok &= np.isfinite(flux[:, 0])
    if saturation_level is not None:
        core = stamps[:, half - _CORE:half + _CORE + 1,
                      half - _CORE:half + _CORE + 1]
        ok[use] &= np.max(core, axis=(1, 2)) < 0.8 * float(
            saturation_level)
    if sky_rms is None:
        _, sky_rms = frame_background(data)
    noise = float(sky_rms) * np.sqrt(np.pi) * np.array([radius, big])
    with np.errstate(invalid='ignore', divide='ignore'):
        snr = flux / noise
    ok &= snr[:, 0] >= min_snr
    # The curve of growth out to 3 radii from the stars with no
    # catalogue neighbour adding 2% within 2 px of that radius, the
    # brighter ones when there are enough.
    clean = ok & np.isfinite(flux[:, 1]) & _isolated(
        x, y, catalog_mag, big + 2.0, limit=0.02)
    bright = clean & (snr[:, 1] >= 5 * min_snr)
    if np.count_nonzero(bright) < 3:
        bright = clean
    if not bright.any():
        return FrameZeropoint(np.nan, np.nan, 0, 0), np.nan
    correction = float(np.median(flux[bright, 1] / flux[bright, 0]))
    with np.errstate(invalid='ignore', divide='ignore'):
        log_counts = np.log10(flux[:, 0] * correction)
    fit = frame_zeropoint(log_counts, catalog_mag, usable=ok, sigma=sigma,
                          min_stars=min_stars, colour=colour)
    return fit, correction


def _isolated(x, y, mag, distance, limit=0.01):
    """Whether neighbours within ``distance`` px add < ``limit`` flux."""
    from scipy.spatial import cKDTree

    flux = 10 ** (-0.4 * np.where(np.isfinite(mag), mag, np.inf))
    points = np.column_stack([x, y])
    finite = np.isfinite(points).all(axis=1)
    points = np.where(finite[:, None], points, -1e9)
    pairs = cKDTree(points).query_pairs(distance, output_type='ndarray')
    neighbours = np.zeros(len(x))
    np.add.at(neighbours, pairs[:, 0], flux[pairs[:, 1]])
    np.add.at(neighbours, pairs[:, 1], flux[pairs[:, 0]])
    with np.errstate(invalid='ignore', divide='ignore'):
        return finite & (neighbours < limit * flux)
