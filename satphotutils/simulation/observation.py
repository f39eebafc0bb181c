# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
One exposure of a window of the sky, from photons to the reduced frame.

`observe` is the physics core shared by the frame simulator and the
stamp-set generator: both call it, the first on the whole detector, the
second on a strip of columns around each target (tall enough to hold its
bleed trail), so stamps and frames come from the same model.
"""

import dataclasses
import functools

import numpy as np

from satphotutils.calibration.counts import expected_log_counts

from .exposure import expose_and_read
from .pipeline import shift_images
from .psf import CoreHaloPSF, GaussianPSF, MoffatPSF, render_stars

__all__ = ['ExposureConditions', 'Observation', 'draw_conditions',
           'measured_fwhm', 'observe', 'observe_many']

_MARGIN = 3  # detector pixels around a window, for the interpolation
_PSF_ZONES = 3


@dataclasses.dataclass
class ExposureConditions:
    """
    The circumstances of one exposure.

    Attributes
    ----------
    mjd : float
        Mid-exposure time (MJD, UTC).
    zeropoint : float
        Zero point Z of the frame (magnitude of a star giving 1 count).
    transparency : float
        Transparency t: a star gives ``10**(-0.4 (m - Z)) / t`` counts.
    sky : float
        Sky level in counts per pixel (flat-fielded).
    fwhm : float
        PSF FWHM at the detector centre, in pixels.
    ellipticity, theta : float
        PSF shape.
    beta : float
        Moffat index of the PSF.
    fwhm_gradient : float
        Fractional FWHM increase from the centre to the corners.
    dither : tuple of float
        ``(dy, dx)``: detector pixel on which reference pixel (0, 0) falls.
    damaged : bool
        Whether the frame is stored with the integer-overflow damage.
    exptime : float
        Exposure time in seconds.
    psf_family : {None, 'moffat', 'gaussian', 'core_halo'}
        The profile: `None` is the survey's own Moffat with the rendering
        footprints of the bundled model; a name selects
        `~satphotutils.simulation.MoffatPSF`,
        `~satphotutils.simulation.GaussianPSF` or
        `~satphotutils.simulation.CoreHaloPSF` with footprints that widen
        with the profile.
    halo_fraction, halo_scale : float
        The halo of a ``'core_halo'`` PSF (see
        `~satphotutils.simulation.CoreHaloPSF`); ``beta`` is its index.
    ellipticity_gradient : float
        Ellipticity added from the centre to the corners (optics).

    Examples
    --------
    >>> from satphotutils.simulation import ExposureConditions
    >>> cond = ExposureConditions(mjd=59000.0, zeropoint=25.5)
    >>> float(cond.counts(15.5))
    10000.0
    """

    mjd: float
    zeropoint: float
    transparency: float = 1.0
    sky: float = 250.0
    fwhm: float = 1.8
    ellipticity: float = 0.05
    theta: float = 0.0
    beta: float = 2.5
    fwhm_gradient: float = 0.1
    dither: tuple = (0.0, 0.0)
    damaged: bool = False
    exptime: float = 90.0
    psf_family: str = None
    halo_fraction: float = 0.1
    halo_scale: float = 5.0
    ellipticity_gradient: float = 0.0

    def psf(self, detector, y=None, x=None):
        """
        Return the PSF at detector position ``(y, x)`` (centre if `None`).

        The FWHM grows quadratically with radius by ``fwhm_gradient`` at
        the corners (and the ellipticity by ``ellipticity_gradient``), in
        three zones of equal radius squared, so that PSFs (and their
        rendering tables) are shared between nearby windows.
        """
        zone = 0.0 if y is None else float(_zones(detector, y, x))
        return self._zone_psf(zone)

    def _zone_psf(self, zone):
        """Return the PSF of a zone (`_zones`) of the detector."""
        fwhm = round(self.fwhm * (1 + self.fwhm_gradient * zone), 2)
        if self.psf_family is None:
            return _cached_psf(fwhm, self.beta, self.ellipticity, self.theta)
        ellipticity = round(min(self.ellipticity
                                + self.ellipticity_gradient * zone, 0.6), 3)
        return _family_psf(self.psf_family, fwhm, self.beta, ellipticity,
                           round(self.theta, 2), round(self.halo_fraction, 3),
                           round(self.halo_scale, 2))

    def counts(self, mag):
        """Total counts of stars of magnitude ``mag`` (Eq. 1)."""
        return 10 ** expected_log_counts(mag, self.zeropoint,
                                         self.transparency)


def _zones(detector, y, x):
    """Return the PSF zone (0, 0.5 or 1 of three) at ``(y, x)``."""
    ny, nx = detector.shape
    r2 = (((np.asarray(y) - (ny - 1) / 2) ** 2
           + (np.asarray(x) - (nx - 1) / 2) ** 2)
          / (((ny - 1) / 2) ** 2 + ((nx - 1) / 2) ** 2))
    return np.round(np.minimum(r2, 1.0) * (_PSF_ZONES - 1)) \
        / (_PSF_ZONES - 1)


@functools.lru_cache(maxsize=256)
def _cached_psf(fwhm, beta, ellipticity, theta):
    return MoffatPSF(fwhm=fwhm, beta=beta, ellipticity=ellipticity,
                     theta=theta)


@functools.lru_cache(maxsize=256)
def _family_psf(family, fwhm, beta, ellipticity, theta, halo_fraction,
                halo_scale):
    shape = {'ellipticity': ellipticity, 'theta': theta, 'adaptive': True}
    if family == 'moffat':
        return MoffatPSF(fwhm=fwhm, beta=beta, **shape)
    if family == 'gaussian':
        return GaussianPSF(fwhm=fwhm, **shape)
    if family == 'core_halo':
        return CoreHaloPSF(fwhm=fwhm, beta=beta, halo_fraction=halo_fraction,
                           halo_scale=halo_scale, **shape)
    msg = (f"psf_family must be None, 'moffat', 'gaussian' or 'core_halo', "
           f'not {family!r}')
    raise ValueError(msg)


def measured_fwhm(conditions, detector, pipeline):
    """
    Return the FWHM a measurement on this exposure's frame would give.

    `~satphotutils.frames.frame_fwhm` fits a Gaussian to the frame's
    stars, after the pipeline resampled them onto the reference grid.
    That is not the PSF's own FWHM: a Gaussian fit to a Moffat or
    core-plus-halo profile differs from it, undersampled stars look
    broader, and the interpolation of a fractional shift broadens them
    further (bilinear at half a pixel adds 1.4 square pixels to the
    squared FWHM). So the stamps are labelled with the same fit to a
    noiseless star of the exposure's PSF, halfway out in the field,
    resampled by the exposure's fractional shift.

    Parameters
    ----------
    conditions : `ExposureConditions`
        The exposure.

    detector : `~satphotutils.simulation.Detector`
        Its detector (the PSF varies over the field).

    pipeline : `~satphotutils.simulation.SurveyPipeline`
        The reduction that resampled it.

    Returns
    -------
    fwhm : float
        Pixels.

    Examples
    --------
    >>> from satphotutils.simulation import (
    ...     Detector, ExposureConditions, SurveyPipeline, measured_fwhm)
    >>> cond = ExposureConditions(mjd=59000.0, zeropoint=25.5, fwhm=1.6,
    ...                           dither=(0.5, 0.5), fwhm_gradient=0.0)
    >>> round(measured_fwhm(cond, Detector(), SurveyPipeline()), 2) > 1.9
    True
    """
    return float(_measured_fwhms([conditions], detector, pipeline)[0])


def _measured_fwhms(conditions, detector, pipeline):
    """`measured_fwhm` of several exposures, fitted together."""
    from satphotutils.frames import stamp_fwhm

    ny, nx = detector.shape
    # Halfway out in radius squared: the median star of a uniform field.
    r = np.sqrt(0.5)
    yy, xx = np.mgrid[-10:11, -10:11]
    # A quarter pixel: between the phases a frame's stars fall on.
    phase = 0.25
    stars, offsets = [], []
    for cond in conditions:
        psf = cond.psf(detector, (ny - 1) / 2 * (1 + r),
                       (nx - 1) / 2 * (1 + r))
        dy, dx = (float(d - np.floor(d)) for d in cond.dither)
        stars.append(pipeline.resample(psf.integrate(xx - phase,
                                                     yy - phase), (dy, dx)))
        offsets.append((phase - dx, phase - dy))
    offsets = np.array(offsets).reshape(-1, 2)
    # One fit for all: it iterates on every star at once.
    return stamp_fwhm(np.array(stars), offsets[:, 0], offsets[:, 1],
                      background=np.zeros(len(stars)))


def draw_conditions(rng, *, mjd, zeropoint=25.5, damage_fraction=0.2,
                    max_dither=12.0):
    """
    Draw realistic exposure conditions.

    FWHM follows the survey's distribution (median about 1.7 px, 10-90%
    about 1.5-2.1, a tail to 2.8); transparency is mostly near 1 with a
    tail from thin cloud; the sky is 150-450 counts.

    Parameters
    ----------
    rng : `~numpy.random.Generator`
        Random generator.

    mjd : float
        Exposure time (MJD).

    zeropoint : float, optional
        Zero point of the camera's reference image.

    damage_fraction : float, optional
        Probability that the frame carries the overflow damage.

    max_dither : float, optional
        Largest dither offset in pixels along each axis.

    Returns
    -------
    conditions : `ExposureConditions`

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.simulation import draw_conditions
    >>> cond = draw_conditions(np.random.default_rng(1), mjd=59000.0)
    >>> cond.mjd, cond.zeropoint
    (59000.0, 25.5)
    """
    fwhm = min(1.35 + rng.lognormal(np.log(0.35), 0.6), 2.8)
    cloud = rng.exponential(0.04) if rng.random() < 0.3 else 0.0
    transparency = 10 ** (0.4 * (abs(rng.normal(0, 0.02)) + cloud))
    return ExposureConditions(
        mjd=float(mjd), zeropoint=float(zeropoint),
        transparency=float(transparency),
        sky=float(rng.uniform(150, 450)), fwhm=float(fwhm),
        ellipticity=float(rng.uniform(0, 0.12)),
        theta=float(rng.uniform(0, np.pi)),
        dither=tuple(rng.uniform(-max_dither, max_dither, 2)),
        damaged=bool(rng.random() < damage_fraction))


@dataclasses.dataclass
class Observation:
    """
    What `observe` returns.

    Attributes
    ----------
    image : `~numpy.ndarray` of float32
        The reduced window on the reference grid, in counts; NaN where no
        exposure pixel maps.
    bad : `~numpy.ndarray` of bool
        Pixels set to 1 by the overflow damage.
    regions : dict of `~numpy.ndarray`
        The saturation correction's record of each saturated region.
    saturated : `~numpy.ndarray` of bool
        Per star: a raw pixel within 2 px of it hit the ADC maximum.
    outcome : `~numpy.ndarray` of str
        Per star: the correction outcome of the region it lies in
        ('none' if it is in no saturated region).
    received : `~numpy.ndarray` of bool
        Per star: it was given another star's misplaced flux.
    lost_charge : float
        Electrons that ran off the ends of the detector's columns.
    truncated : bool
        A bleed trail through the window reached an end of the simulated
        detector rows that is not a detector edge: ``trail_rows`` was too
        small.

    Examples
    --------
    `observe` returns one:

    >>> import numpy as np
    >>> from satphotutils.simulation import (Camera, Detector,
    ...     ExposureConditions, SurveyPipeline, observe)
    >>> cond = ExposureConditions(mjd=59000.0, zeropoint=25.5)
    >>> obs = observe(np.array([20.0]), np.array([20.0]),
    ...               np.array([cond.counts(12.0)]), window=(0, 0, 41, 41),
    ...               camera=Camera(detector=Detector(shape=(41, 41))),
    ...               conditions=cond, pipeline=SurveyPipeline(),
    ...               rng=np.random.default_rng(8))
    >>> obs.outcome.tolist(), bool(obs.truncated)
    (['none'], False)
    """

    image: np.ndarray
    bad: np.ndarray
    regions: object
    saturated: np.ndarray
    outcome: np.ndarray
    received: np.ndarray
    lost_charge: float
    truncated: bool


def observe(x, y, flux, *, window, camera, conditions, pipeline, rng,
            catalog_mag=None, trail_rows=0, trail_cols=0):
    """
    Simulate one exposure of a window of the reference grid.

    This is `observe_many` for a single window.

    Parameters
    ----------
    x, y : `~numpy.ndarray`
        Star positions on the reference grid (pixels).

    flux : `~numpy.ndarray`
        True total counts of each star in this exposure (flat-fielded
        units, i.e. before vignetting).

    window : tuple of int
        ``(y0, x0, ny, nx)``: the part of the reference grid to produce.

    camera : `~satphotutils.simulation.Camera`
        The camera.

    conditions : `ExposureConditions`
        The exposure.

    pipeline : `~satphotutils.simulation.SurveyPipeline`
        The reduction.

    rng : `~numpy.random.Generator`
        Random generator.

    catalog_mag : `~numpy.ndarray`, optional
        The reference catalogue's magnitude of each star (NaN for stars
        it lacks); the correction puts a region's flux at the brightest
        catalogue star in it. By default every star, with
        ``-2.5 log10(flux)``.

    trail_rows : int, optional
        Extra detector rows simulated above and below the window so that
        bleed trails (and the correction's estimate of their flux) are
        complete.

    trail_cols : int, optional
        Extra detector columns on each side, so that the correction finds
        unsaturated columns beside a wide saturated core.

    Returns
    -------
    observation : `Observation`

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.simulation import (Camera, Detector,
    ...     ExposureConditions, SurveyPipeline, observe)
    >>> camera = Camera(detector=Detector(shape=(400, 100)))
    >>> cond = ExposureConditions(mjd=59000.0, zeropoint=25.5)
    >>> obs = observe(np.array([50.0]), np.array([200.0]),
    ...               np.array([cond.counts(7.0)]), window=(180, 30, 41, 41),
    ...               camera=camera, conditions=cond,
    ...               pipeline=SurveyPipeline(),
    ...               rng=np.random.default_rng(6), trail_rows=150)
    >>> obs.image.shape, bool(obs.saturated[0])
    ((41, 41), True)
    """
    if catalog_mag is None:
        with np.errstate(divide='ignore'):
            catalog_mag = -2.5 * np.log10(np.asarray(flux, dtype=float))
    return observe_many([(x, y, flux, catalog_mag, window)], camera=camera,
                        conditions=conditions, pipeline=pipeline, rng=rng,
                        trail_rows=trail_rows, trail_cols=trail_cols)[0]


def observe_many(requests, *, camera, conditions, pipeline, rng,
                 trail_rows=0, trail_cols=0, faint_pixels=False):
    """
    Simulate several windows of one exposure at once.

    All windows go through the same physics and pipeline as one frame
    would, as a stack ``(n, rows, columns)`` of detector windows, so that
    the work is vectorised over windows. Windows are independent: no
    light, charge or correction crosses from one to another.

    Parameters
    ----------
    requests : list of tuple
        ``(x, y, flux, catalog_mag, window)`` per window, as for `observe`;
        every ``window`` has the same ``(ny, nx)``.

    camera, conditions, pipeline, rng
        As for `observe`.

    trail_rows, trail_cols : int, optional
        As for `observe`, shared by all windows.

    faint_pixels : bool, optional
        As for `~satphotutils.simulation.expose_and_read`.

    Returns
    -------
    observations : list of `Observation`
        One per request, in order.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.simulation import (Camera, Detector,
    ...     ExposureConditions, SurveyPipeline, observe_many)
    >>> camera = Camera(detector=Detector(shape=(400, 200)))
    >>> cond = ExposureConditions(mjd=59000.0, zeropoint=25.5)
    >>> flux = np.array([cond.counts(8.0)])
    >>> requests = [(np.array([50.0]), np.array([200.0]), flux, None,
    ...              (180, 30, 41, 41)),
    ...             (np.array([150.0]), np.array([100.0]), flux, None,
    ...              (80, 130, 41, 41))]
    >>> obs = observe_many(requests, camera=camera, conditions=cond,
    ...                    pipeline=SurveyPipeline(),
    ...                    rng=np.random.default_rng(7), trail_rows=100)
    >>> len(obs)
    2
    """
    detector = camera.detector
    det_ny, det_nx = detector.shape
    n_items = len(requests)
    ny, nx = requests[0][4][2:]
    if any(tuple(r[4][2:]) != (ny, nx) for r in requests):
        msg = 'all windows of observe_many must have the same shape'
        raise ValueError(msg)
    dy, dx = conditions.dither
    iy, ix = int(np.floor(dy)), int(np.floor(dx))
    fy, fx = dy - iy, dx - ix
    # Detector windows: the reference window, the margins for the
    # interpolation and the trails, moved inside the detector if needed.
    rows = min(ny + 2 * (_MARGIN + trail_rows) + 1, det_ny)
    cols = min(nx + 2 * (_MARGIN + trail_cols) + 1, det_nx)
    y0 = np.array([r[4][0] for r in requests])
    x0 = np.array([r[4][1] for r in requests])
    ry0 = np.clip(y0 + iy - _MARGIN - trail_rows, 0, det_ny - rows)
    rx0 = np.clip(x0 + ix - _MARGIN - trail_cols, 0, det_nx - cols)

    # Stars of all windows, in their window's pixel coordinates.
    counts_per = [len(np.atleast_1d(r[0])) for r in requests]
    item = np.repeat(np.arange(n_items), counts_per)
    sx = np.concatenate([np.atleast_1d(np.asarray(r[0], dtype=float))
                         for r in requests]) + dx - rx0[item]
    sy = np.concatenate([np.atleast_1d(np.asarray(r[1], dtype=float))
                         for r in requests]) + dy - ry0[item]
    flux = np.concatenate([np.atleast_1d(np.asarray(r[2], dtype=float))
                           for r in requests])
    catalog_mag = np.concatenate([np.atleast_1d(np.asarray(r[3],
                                                           dtype=float))
                                  for r in requests])

    # Light: the PSF of each window's zone of the detector.
    scene = np.empty((n_items, rows, cols))
    zones = _zones(detector, ry0 + rows / 2, rx0 + cols / 2)
    psfs = {zone: conditions._zone_psf(float(zone))
            for zone in np.unique(zones)}
    for zone, psf in psfs.items():
        members = np.flatnonzero(zones == zone)
        local = np.full(n_items, -1)
        local[members] = np.arange(members.size)
        mine = local[item] >= 0
        scene[members] = render_stars((members.size, rows, cols), sx[mine],
                                      sy[mine], flux[mine], psf,
                                      item=local[item[mine]])
    yy = np.arange(rows)[None, :, None] + ry0[:, None, None]
    xx = np.arange(cols)[None, None, :] + rx0[:, None, None]
    flat = detector.flat(yy, xx).astype(np.float32)
    scene += conditions.sky
    scene *= flat
    scene *= detector.gain
    raw, lost, full_ends = expose_and_read(scene, detector, rng,
                                           faint_pixels=faint_pixels)
    # A trail through the requested window that reaches an end of the
    # simulated window which is not a detector edge: the window was too
    # short (trails of other stars, in other columns, do not matter).
    local = np.arange(cols)[None, :] - (x0 + ix - rx0)[:, None]
    own = (local >= -1) & (local <= nx)
    truncated = (((full_ends[:, 0] & own).any(axis=1) & (ry0 > 0))
                 | ((full_ends[:, 1] & own).any(axis=1)
                    & (ry0 + rows < det_ny)))
    saturated_px = raw >= pipeline.saturation_threshold(detector)

    # Which stars saturated (a raw pixel at the ADC maximum within 2 px).
    ix_s, iy_s = np.rint(sx).astype(int), np.rint(sy).astype(int)
    on = (ix_s >= 0) & (ix_s < cols) & (iy_s >= 0) & (iy_s < rows)
    saturated = np.zeros(len(sx), dtype=bool)
    if saturated_px.any():
        offsets = np.arange(-2, 3)
        py = np.clip(iy_s[:, None, None] + offsets[None, :, None], 0,
                     rows - 1)
        px = np.clip(ix_s[:, None, None] + offsets[None, None, :], 0,
                     cols - 1)
        saturated = on & saturated_px[item[:, None, None], py, px].any(
            axis=(1, 2))

    counts, sat_mask = pipeline.calibrate(raw, flat, detector)
    known = np.flatnonzero(np.isfinite(catalog_mag))
    # The FWHM the pipeline re-inserts with, mis-set by some pipelines.
    fwhm = np.array([psfs[zone].fwhm for zone in zones]) \
        * pipeline.fwhm_factor
    regions, labels, corrected = pipeline._correct(
        counts, sat_mask, detector=detector, fwhm=fwhm,
        catalog_x=sx[known], catalog_y=sy[known],
        catalog_mag=catalog_mag[known], catalog_item=item[known], rng=rng)
    outcome = np.full(len(sx), 'none', dtype='<U9')
    received = np.zeros(len(sx), dtype=bool)
    if len(regions['outcome']):
        star_label = np.zeros(len(sx), dtype=int)
        star_label[on] = labels[item[on], iy_s[on], ix_s[on]]
        has = star_label > 0
        outcome[has] = regions['outcome'][star_label[has] - 1]
        mis = regions['outcome'] == 'misplaced'
        received[known[regions['assigned'][mis]]] = True

    # Onto the reference grid: reference pixel (Y, X) of a window is
    # exposure pixel (y0 + Y + dy, x0 + X + dx).
    crop = np.full((n_items, ny + 2 * _MARGIN, nx + 2 * _MARGIN), np.nan)
    crop_corrected = np.zeros(crop.shape, dtype=bool)
    for i in range(n_items):
        cy0, cx0 = y0[i] + iy - _MARGIN - ry0[i], x0[i] + ix - _MARGIN \
            - rx0[i]
        sy0, sy1 = max(cy0, 0), min(cy0 + crop.shape[1], rows)
        sx0, sx1 = max(cx0, 0), min(cx0 + crop.shape[2], cols)
        if sy1 > sy0 and sx1 > sx0:
            crop[i, sy0 - cy0:sy1 - cy0, sx0 - cx0:sx1 - cx0] = \
                counts[i, sy0:sy1, sx0:sx1]
            crop_corrected[i, sy0 - cy0:sy1 - cy0, sx0 - cx0:sx1 - cx0] = \
                corrected[i, sy0:sy1, sx0:sx1]
    shift = (_MARGIN + fy, _MARGIN + fx)
    resampled = pipeline.resample(crop, shift)
    # A reference pixel is corrected if any corrected exposure pixel
    # contributes to it.
    touched = shift_images(crop_corrected, (-shift[0], -shift[1]), order=1,
                           cval=0.0) > 0.01
    image, bad = pipeline.store(resampled[:, :ny, :nx],
                                damaged=conditions.damaged,
                                corrected=touched[:, :ny, :nx])

    bounds = np.concatenate([[0], np.cumsum(counts_per)])
    out = []
    for i in range(n_items):
        stars = slice(bounds[i], bounds[i + 1])
        mine = regions['item'] == i
        out.append(Observation(
            image=image[i], bad=bad[i],
            regions={k: v[mine] for k, v in regions.items()},
            saturated=saturated[stars], outcome=outcome[stars],
            received=received[stars], lost_charge=float(lost[i]),
            truncated=bool(truncated[i])))
    return out
