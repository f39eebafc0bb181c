# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""A frame's zero point from aperture photometry of its catalogue stars."""

import dataclasses

import numpy as np

from .apertures import stamp_aperture_photometry
from .cutout import cut_stamps

__all__ = ['catalogue_zeropoint']

# The aperture correction is measured out to this many aperture radii,
# where the simulated ASAS-SN-like PSF holds ~98.5% of its flux.
_TOTAL_RADII = 3.0
_CORE = 1  # half-width of the core box whose peak is compared to saturation
# The aperture correction's stars: enough for a median to a few 0.1%,
# few enough to be the frame's brightest.
_GROWTH_STARS = 25


def catalogue_zeropoint(data, x, y, catalog_mag, *, usable=None, radius=3.0,
                        saturation_level=None, sky_rms=None, min_snr=20.0,
                        sigma=3.0, min_stars=5, colour=None,
                        max_stars=None):
    """
    Fit a frame's zero point to aperture photometry of catalogue stars.

    Each star is measured in a circular aperture of ``radius`` pixels with
    a local background from an annulus; an aperture correction to the
    total flux, the median ratio of the flux within ``3 radius`` to that
    within ``radius`` over the 25 brightest usable stars without a
    catalogue neighbour there (faint stars the catalogue does not list
    add to a wide aperture, least to the brightest; over all those
    measured well without a ``saturation_level``, since the brightest
    may then be saturated), makes the measurements total counts; its
    error is part of the zero point's.
    Only stars whose catalogue neighbours add less than 2% of their flux
    within ``radius + 4`` pixels are used. The zero point is then
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

    max_stars : int, optional
        Measure at most this many stars for the zero point: every k-th
        in catalogue magnitude order of those that pass the checks
        needing no photometry (isolated, whole, not damaged, not near
        saturation, a rough signal-to-noise ratio of at least half
        ``min_snr``); all if `None`. The
        statistical error of the zero point falls as one over the root
        of the number of stars, so a few hundred measure it to a few
        0.1 mmag, far below the systematic errors of any calibration,
        at a fraction of the cost on a frame with thousands.

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
    # The checks that need no photometry first, on the aperture's pixels,
    # so that only the stars that can be used are cut out whole and
    # measured: a non-finite pixel (masked, or a saturated core blanked)
    # would spoil the aperture, a pixel exactly 1 is a pipeline's damage
    # mark, and a core near the saturation level may be clipped.
    use = np.flatnonzero(ok)
    reach = int(np.ceil(radius + 1))
    core, inside = cut_stamps(data, x[use], y[use], 2 * reach + 1)
    yy, xx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    in_aperture = np.hypot(xx, yy) <= radius + 1
    good = inside.all(axis=(1, 2)) & np.isfinite(core).all(axis=(1, 2))
    good &= ~np.any((core == 1.0) & in_aperture, axis=(1, 2))
    if saturation_level is not None:
        centre = core[:, reach - _CORE:reach + _CORE + 1,
                      reach - _CORE:reach + _CORE + 1]
        good &= np.max(centre, axis=(1, 2)) < 0.8 * float(saturation_level)
    # The curve of growth out to 3 radii comes from the brightest stars
    # with no catalogue neighbour adding 2% within 2 px of that radius:
    # stars the catalogue does not list add to the wide aperture too, and
    # least to the brightest (on a crowded simulated frame the ratio of
    # g 13-14 stars was 40% above the truth, of g 9-11 stars 2%).
    far = _isolated(x, y, catalog_mag, big + 2.0, limit=0.02)
    if sky_rms is None:
        _, sky_rms = frame_background(data)
    noise = float(sky_rms) * np.sqrt(np.pi) * np.array([radius, big])
    if max_stars is not None:
        # Stars far below min_snr never count: a rough sum of the core
        # stamp (integer pixels, its edge as the sky) leaves them out
        # before a cap spends its stars on them (with a catalogue
        # deeper than the frame, most of an even spread would be).
        edge = np.ones(core.shape[1:], dtype=bool)
        edge[1:-1, 1:-1] = False
        sky = np.median(core[:, edge], axis=1)
        inner = np.hypot(xx, yy) <= radius
        rough = (core[:, inner].sum(axis=1) - sky * inner.sum()) / noise[0]
        good &= rough >= 0.5 * min_snr
    order = np.flatnonzero(good)[np.argsort(catalog_mag[use][good],
                                            kind='stable')]
    growth = np.zeros(len(use), dtype=bool)
    if saturation_level is None:
        # The brightest may be saturated: the stars measured well.
        growth[order[far[use][order]]] = True
    else:
        growth[order[far[use][order]][:_GROWTH_STARS]] = True
    if max_stars is not None and len(order) > max_stars:
        # Every k-th star in magnitude order: the same mix of bright and
        # faint stars as all of them (a zero point from the brightest
        # alone would carry any non-linearity near saturation), and the
        # same stars whatever the frame's noise.
        keep = np.unique(np.linspace(0, len(order) - 1, int(max_stars)
                                     ).round().astype(int))
        good[:] = False
        good[order[keep]] = True
    measured = good | growth
    # The whole stamps of those, in the stored type: the annulus must be
    # on the frame and finite too.
    stamps, inside = cut_stamps(data, x[use[measured]], y[use[measured]],
                                2 * half + 1)
    whole = inside.all(axis=(1, 2)) & np.isfinite(stamps).all(axis=(1, 2))
    index = use[measured][whole]
    flux = np.full((len(x), 2), np.nan)
    if len(index):
        flux[index], _ = stamp_aperture_photometry(
            stamps[whole].astype(float), [radius, big],
            dx=(x - np.rint(x))[index], dy=(y - np.rint(y))[index],
            annulus=annulus)
    ok[:] = False
    ok[use[good]] = True
    for_growth = np.zeros(len(x), dtype=bool)
    for_growth[use[growth]] = True
    ok &= np.isfinite(flux[:, 0])
    with np.errstate(invalid='ignore', divide='ignore'):
        snr = flux / noise
    ok &= snr[:, 0] >= min_snr
    # Of those, the ones measured well in the wide aperture.
    clean = for_growth & (snr[:, 0] >= min_snr) & np.isfinite(flux[:, 1]) \
        & far
    bright = clean & (snr[:, 1] >= 5 * min_snr)
    if np.count_nonzero(bright) < 3:
        bright = clean
    if not bright.any():
        return FrameZeropoint(np.nan, np.nan, 0, 0), np.nan
    ratio = flux[bright, 1] / flux[bright, 0]
    correction = float(np.median(ratio))
    with np.errstate(invalid='ignore', divide='ignore'):
        log_counts = np.log10(flux[:, 0] * correction)
    fit = frame_zeropoint(log_counts, catalog_mag, usable=ok, sigma=sigma,
                          min_stars=min_stars, colour=colour)
    # Every star shares the correction: its error (that of a median,
    # from a robust spread) adds to the zero point's.
    from astropy.stats import mad_std

    spread = mad_std(ratio) if len(ratio) > 1 else np.nan
    error = 1.2533 * spread / np.sqrt(len(ratio)) / correction
    if np.isfinite(error) and fit.valid:
        fit = dataclasses.replace(
            fit, error=float(np.hypot(fit.error, 2.5 / np.log(10) * error)))
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
