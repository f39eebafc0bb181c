# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Whole reduced frames (`CCDData` with a WCS) and multi-epoch fields."""

import dataclasses
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.table import QTable, vstack
from astropy.time import Time

from satphotutils.calibration.counts import (
    crowded_log_counts,
    expected_log_counts,
)
from satphotutils.calibration.crowding import (
    blended_flux_ratio,
    stellar_background,
)
from satphotutils.calibration.gaia import GAIA_RELATIONS
from satphotutils.stamps.apertures import circle_mask
from satphotutils.stamps.cutout import cut_stamps
from satphotutils.utils._parameters import as_integer
from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.io import atomic_output

from .detector import Camera
from .observation import draw_conditions, observe
from .pipeline import SurveyPipeline
from .scene import _draw_arrays, galactic_density_factor
from .stamps import _saturation_level

__all__ = ['FrameSimulator', 'Scene', 'simulate_field']

_BLEND_RADIUS = 8.0 * u.arcsec


class Scene:
    """
    The stars of a field: sky positions, magnitudes and light curves.

    Parameters
    ----------
    coord : `~astropy.coordinates.SkyCoord`
        Star positions.

    g : array-like
        Mean SDSS g magnitudes.

    bp_rp : array-like
        Gaia BP - RP colours; G and V follow from the Riello et al.
        (2021) relations.

    variability : list, optional
        One light-curve model per star (see
        ``satphotutils.simulation``) or `None` for constant
        stars.

    name : array-like of str, optional
        Star names; anonymous field stars are called 'field'.

    Examples
    --------
    >>> from astropy import units as u
    >>> from astropy.coordinates import SkyCoord
    >>> from satphotutils.simulation import Scene
    >>> centre = SkyCoord(60.0, -30.0, unit='deg')
    >>> scene = Scene.random(centre, radius=0.5 * u.deg, g_max=12.0, seed=1)
    >>> n = len(scene.g)
    >>> _ = scene.add(centre, [6.0], [1.0], name=['target'])
    >>> len(scene.g) == n + 1
    True
    """

    def __init__(self, coord, g, bp_rp, *, variability=None, name=None):
        self.coord = SkyCoord(coord)
        if self.coord.isscalar:
            self.coord = self.coord.reshape(1)
        n = len(self.coord)
        self.g = np.asarray(g, dtype=float)
        self.bp_rp = np.asarray(bp_rp, dtype=float)
        if self.g.shape != (n,) or self.bp_rp.shape != (n,):
            msg = 'g and bp_rp must have one value per coordinate'
            raise ValueError(msg)
        self.G = self.g + GAIA_RELATIONS['g'].g_minus_x(self.bp_rp)
        self.V = self.G - GAIA_RELATIONS['V'].g_minus_x(self.bp_rp)
        if variability is not None and not isinstance(variability,
                                                      (list, tuple)):
            variability = [variability]
        self.variability = (list(variability) if variability is not None
                            else [None] * n)
        if len(self.variability) != n:
            msg = 'variability must have one entry per star'
            raise ValueError(msg)
        self.name = (np.atleast_1d(np.asarray(name, dtype=str))
                     if name is not None
                     else np.full(n, 'field', dtype='<U5'))

    def __len__(self):
        return len(self.coord)

    def __repr__(self):
        n_var = sum(v is not None for v in self.variability)
        return f'<Scene {len(self)} stars, {n_var} variable>'

    @classmethod
    def random(cls, center, *, radius=10 * u.deg, g_min=2.0, g_max=19.0,
               density_factor=None, seed=None):
        """
        Draw a random star field around ``center``.

        Parameters
        ----------
        center : `~astropy.coordinates.SkyCoord`
            Field centre.

        radius : `~astropy.units.Quantity`, optional
            Radius of the circular field (cover the detector's diagonal
            and the pointing offsets of all cameras).

        g_min, g_max : float, optional
            Magnitude range.

        density_factor : float, optional
            Star density relative to the sky average; by default from the
            Galactic latitude of ``center``.

        seed : int, optional
            Random seed.

        Returns
        -------
        scene : `Scene`
        """
        rng = np.random.default_rng(seed)
        if density_factor is None:
            density_factor = float(galactic_density_factor(center))
        radius = u.Quantity(radius, u.deg)
        area = 2 * np.pi * (1 - np.cos(radius)) * u.sr
        g, _, bp_rp = _draw_arrays(area.to(u.deg**2), g_min, g_max,
                                   density_factor, rng)
        # Uniform on the sphere within the cap.
        cos_r = np.cos(radius).value
        sep = np.arccos(rng.uniform(cos_r, 1.0, g.size)) * u.rad
        pa = rng.uniform(0, 2 * np.pi, g.size) * u.rad
        coord = SkyCoord(center).icrs.directional_offset_by(pa, sep)
        return cls(coord, g, bp_rp)

    def add(self, coord, g, bp_rp, *, variability=None, name=None):
        """
        Add stars (for instance variable targets); return their indices.

        Parameters are as for `Scene`.
        """
        other = Scene(coord, np.atleast_1d(g), np.atleast_1d(bp_rp),
                      variability=variability, name=name)
        start = len(self)
        self.coord = SkyCoord([self.coord, other.coord]) if len(self) \
            else other.coord
        for attr in ('g', 'bp_rp', 'G', 'V', 'name'):
            setattr(self, attr, np.concatenate([getattr(self, attr),
                                                getattr(other, attr)]))
        self.variability += other.variability
        return np.arange(start, len(self))

    def magnitudes(self, filter, mjd):
        """Magnitudes in ``filter`` ('g' or 'V') at time ``mjd``."""
        mag = (self.g if filter == 'g' else self.V).copy()
        for i, model in enumerate(self.variability):
            if model is not None:
                mag[i] += float(model(mjd))
        return mag


class FrameSimulator:
    """
    Simulate reduced survey frames of a `Scene`.

    Parameters
    ----------
    camera : `~satphotutils.simulation.Camera`, optional
        The camera; the default ASAS-SN-like ``'bi'`` in g if `None`.

    pipeline : `~satphotutils.simulation.SurveyPipeline`, optional
        The survey reduction.

    zeropoint : float, optional
        Zero point of the camera's reference image before the camera's
        ``zeropoint_offset``.

    pointing : `~astropy.coordinates.SkyCoord`
        Centre of the camera's reference image.

    rotation : `~astropy.units.Quantity`, optional
        Position angle of the reference image's y axis.

    truth_g_max : float, optional
        Stars brighter than this (and every named or variable star) get
        a row in the truth table.

    catalog_g_max : float, optional
        Depth of the pipeline's reference catalogue.

    signal_radius : float, optional
        Radius (pixels) of the signal circle about a star's pixel, within
        which the truth's ``n_unity`` counts the pixels set to exactly 1:
        the paper's 5 px (81 pixels), that of the bundled model
        (`~satphotutils.network.StampFeatures` ``radius``).

    Examples
    --------
    >>> from astropy.coordinates import SkyCoord
    >>> from satphotutils.simulation import (Camera, Detector,
    ...                                      FrameSimulator, Scene)
    >>> centre = SkyCoord(150.0, -40.0, unit='deg')
    >>> camera = Camera(detector=Detector(shape=(128, 128)))
    >>> scene = Scene.random(centre, radius=0.25 * u.deg, g_max=17, seed=1)
    >>> sim = FrameSimulator(camera=camera, pointing=centre)
    >>> frame, truth = sim(scene, mjd=59000.0, seed=2)
    >>> frame.shape, frame.unit, frame.meta['FILTER']
    ((128, 128), Unit("adu"), 'g')
    """

    def __init__(self, *, camera=None, pipeline=None, zeropoint=25.5,
                 pointing, rotation=0.0 * u.deg, truth_g_max=16.0,
                 catalog_g_max=17.0, signal_radius=5.0):
        self.camera = Camera() if camera is None else camera
        self.pipeline = SurveyPipeline() if pipeline is None else pipeline
        self.zeropoint = float(zeropoint)
        self.pointing = SkyCoord(pointing)
        self.wcs = self.camera.detector.wcs(self.pointing, rotation=rotation)
        self.truth_g_max = float(truth_g_max)
        self.catalog_g_max = float(catalog_g_max)
        self.signal_radius = float(signal_radius)
        # Refused here, not at the first frame.
        circle_mask(1, self.signal_radius)

    def __repr__(self):
        return f'<FrameSimulator {self.camera!r}>'

    def draw_conditions(self, mjd, rng):
        """Draw exposure conditions for this camera at ``mjd``."""
        return draw_conditions(
            rng, mjd=mjd, zeropoint=self.zeropoint
            + self.camera.zeropoint_offset,
            damage_fraction=self.pipeline.damage_fraction)

    def __call__(self, scene, *, mjd=None, conditions=None, seed=None):
        """
        Simulate one reduced frame.

        Parameters
        ----------
        scene : `Scene`
            The stars.

        mjd : float, optional
            Exposure time; required unless ``conditions`` is given.

        conditions : `~satphotutils.simulation.ExposureConditions`, optional
            The exposure; drawn at random if `None`.

        seed : int or `~numpy.random.Generator`, optional
            Random seed.

        Returns
        -------
        frame : `~astropy.nddata.CCDData`
            The reduced frame on the reference grid, in ADU (flat-fielded
            counts), with the reference WCS; ``mask`` marks pixels without
            data. ``meta`` holds DATE-OBS, MJD-OBS (the start), DATE-AVG,
            MJD-AVG (mid-exposure), TIMESYS, EXPTIME, ZP, TRANSP,
            SKY, FWHM, SATURATE, GAIN, RDNOISE, CAMERA, FILTER, REFGRID
            (``True``: on the reference grid, with its exact WCS),
            SATCORR (whether the pipeline's saturation correction replaced
            the bleed trails) and the simulation truth DAMAGED.

        truth : `~astropy.table.QTable`
            One row per star brighter than ``truth_g_max`` (or named or
            variable) on the frame: ``star`` (scene index), ``name``,
            ``x``, ``y``, ``sky_coord``, ``g``, ``mag`` (in the filter,
            at this time), ``true_counts``, ``log_counts`` (the paper's
            label, Eq. 2), ``f_c``, ``b_c``, ``saturated``, ``n_unity``
            (exactly-1 pixels within ``signal_radius``), ``damaged``
            (``n_unity > 0``), ``outcome``, ``received``.
        """
        rng = np.random.default_rng(seed)
        if conditions is None:
            if mjd is None:
                msg = 'give mjd or conditions'
                raise ValueError(msg)
            conditions = self.draw_conditions(mjd, rng)
        camera, detector = self.camera, self.camera.detector
        ny, nx = detector.shape
        x, y = self.wcs.world_to_pixel(scene.coord)
        margin = 30
        on = ((x > -margin) & (x < nx + margin) & (y > -margin)
              & (y < ny + margin))
        idx = np.flatnonzero(on)
        x, y = x[idx], y[idx]
        mag = scene.magnitudes(camera.filter, conditions.mjd)[idx]
        colour = scene.bp_rp[idx]
        flux = conditions.counts(mag + camera.colour_term * (colour - 1.0))
        catalog_mag = np.where(scene.g[idx] <= self.catalog_g_max,
                               (scene.g if camera.filter == 'g'
                                else scene.V)[idx], np.nan)
        obs = observe(x, y, flux, window=(0, 0, ny, nx), camera=camera,
                      conditions=conditions, pipeline=self.pipeline,
                      rng=rng, catalog_mag=catalog_mag)

        header = self._header(conditions)
        frame = CCDData(obs.image, unit=u.adu, wcs=self.wcs,
                        mask=~np.isfinite(obs.image), meta=header)
        truth = self._truth(scene, idx, x, y, mag, flux, obs, conditions,
                            detector)
        return frame, truth

    def _header(self, c):
        # FITS times: DATE-OBS/MJD-OBS the start, DATE-AVG/MJD-AVG the
        # middle of the exposure (the time of the conditions).
        mid = Time(c.mjd, format='mjd', scale='utc')
        start = mid - c.exptime / 2 * u.s
        cards = {
            'DATE-OBS': (start.isot, 'start of the exposure (UTC)'),
            'MJD-OBS': (start.mjd, 'start of the exposure (UTC)'),
            'DATE-AVG': (mid.isot, 'mid-exposure time (UTC)'),
            'MJD-AVG': (c.mjd, 'mid-exposure time (UTC)'),
            'TIMESYS': 'UTC',
            'EXPTIME': (c.exptime, 'exposure time (s)'),
            'ZP': (c.zeropoint, 'reference zero point Z'),
            'TRANSP': (c.transparency,
                       'transparency t: N = 10**(-0.4(m - Z)) / t'),
            'SKY': (c.sky, 'sky level (counts per pixel)'),
            'FWHM': (c.fwhm, 'PSF FWHM at centre (pixels)'),
            'SATURATE': (_saturation_level(
                self.camera.detector, self.pipeline,
                (self.camera.detector.shape[0] - 1) / 2,
                (self.camera.detector.shape[1] - 1) / 2),
                'counts at which pixels stop responding (centre)'),
            'GAIN': (self.camera.detector.gain, 'gain (e-/ADU)'),
            'RDNOISE': (self.camera.detector.read_noise, 'read noise (e-)'),
            'CAMERA': self.camera.name,
            'FILTER': self.camera.filter,
            # The stars are where the reference WCS puts them.
            'REFGRID': (True, 'resampled onto the reference grid'),
            'DAMAGED': (bool(c.damaged), 'simulation truth: overflow damage'),
            'SIMULATE': (True, 'satphotutils.simulation frame'),
            # Whether the bleed trails were replaced (ASAS) or kept.
            'SATCORR': (self.pipeline.correction,
                        'saturated regions corrected (trails replaced)'),
        }
        header = fits.Header()
        for key, value in cards.items():
            header[key] = value
        return header

    def _truth(self, scene, idx, x, y, mag, flux, obs, c, detector):
        ny, nx = detector.shape
        inside = (x >= 0) & (x <= nx - 1) & (y >= 0) & (y <= ny - 1)
        keep = inside & ((scene.g[idx] <= self.truth_g_max)
                         | (scene.name[idx] != 'field')
                         | np.array([scene.variability[i] is not None
                                     for i in idx], dtype=bool))
        sel = np.flatnonzero(keep)
        blend_px = (_BLEND_RADIUS / detector.pixel_scale).decompose().value
        points = np.column_stack([x, y])
        f_c = blended_flux_ratio(points[sel], flux[sel], points, flux,
                                 radius=blend_px, target_index=sel)
        b_c = stellar_background(points, flux, radius=blend_px,
                                 bounds=(blend_px, nx - 1 - blend_px,
                                         blend_px, ny - 1 - blend_px),
                                 seed=0)
        # Eq. 1 (without the colour term) and Eq. 2.
        log_label = crowded_log_counts(
            expected_log_counts(mag[sel], c.zeropoint, c.transparency),
            f_c, b_c)
        size = 2 * int(self.signal_radius) + 1
        bad, on = cut_stamps(obs.bad, x[sel], y[sel], size)
        n_unity = np.count_nonzero(
            bad & on & circle_mask(size, self.signal_radius), axis=(1, 2))
        star = idx[sel]
        truth = QTable({
            'star': star, 'name': scene.name[star], 'x': x[sel],
            'y': y[sel], 'sky_coord': scene.coord[star],
            'g': scene.g[star] * u.mag, 'mag': mag[sel] * u.mag,
            'true_counts': flux[sel] * u.adu, 'log_counts': log_label,
            'f_c': f_c, 'b_c': np.full(sel.size, b_c) * u.adu,
            'saturated': obs.saturated[sel], 'n_unity': n_unity,
            'damaged': n_unity > 0, 'outcome': obs.outcome[sel],
            'received': obs.received[sel]})
        truth.meta.update(dataclasses.asdict(c))
        truth.meta['camera'] = self.camera.name
        truth.meta['filter'] = self.camera.filter
        return truth


# What a camera's own software writes: the start time, the exposure, the
# detector's numbers; a survey pipeline's calibration keywords are not.
_CAMERA_DROPS = ('ZP', 'TRANSP', 'MJD-OBS', 'MJD-AVG', 'DATE-AVG', 'SKY',
                 'FWHM', 'REFGRID', 'DAMAGED', 'BUNIT')


def _as_camera_writes(frame):
    """Return the frame as 32-bit integers with a camera's header."""
    hdul = frame.to_hdu(as_image_hdu=False, hdu_mask=None,
                        hdu_uncertainty=None, hdu_flags=None)
    header = hdul[0].header
    for key in _CAMERA_DROPS:
        header.remove(key, ignore_missing=True, remove_all=True)
    # Pixels with no data (off the resampled grid) read as zero.
    data = np.rint(np.nan_to_num(np.asarray(frame.data, dtype=float),
                                 nan=0.0))
    hdul[0].data = np.clip(data, -2**31, 2**31 - 1).astype(np.int32)
    return hdul


def simulate_field(directory, scene, simulators, *, n_epochs,
                   start_mjd=58000.0, cadence=2.5, exposures_per_epoch=3,
                   seed=None, overwrite=False, progress=False,
                   style='survey'):
    """
    Simulate a multi-epoch, multi-camera field and write it to disk.

    Each epoch is observed by one camera (chosen at random) with
    ``exposures_per_epoch`` dithered 90-s exposures a couple of minutes
    apart, sharing the night's seeing, sky and transparency up to small
    changes. Frames are FITS files (``CCDData``) named
    ``{camera}_{filter}_{epoch:05d}_{k}.fits``; ``truth.ecsv`` holds the
    truth of every frame (with a ``file`` column) and ``frames.ecsv`` one
    row per frame.

    Parameters
    ----------
    directory : str or `~pathlib.Path`
        Output directory (created if needed).

    scene : `Scene`
        The stars.

    simulators : list of `FrameSimulator`
        One per camera (each with its own pointing and filter).

    n_epochs : int
        Number of epochs.

    start_mjd : float, optional
        Time of the first epoch.

    cadence : float, optional
        Mean time between epochs in days.

    exposures_per_epoch : int, optional
        Exposures per epoch.

    seed : int, optional
        Random seed.

    overwrite : bool, optional
        Whether to replace existing files.

    progress : bool, optional
        Show a tqdm progress bar.

    style : {'survey', 'camera'}, optional
        ``'survey'`` writes the frames as a survey pipeline would (float
        pixels, ``MJD-AVG``, zero point ``ZP``, transparency ``TRANSP``,
        ``SKY``, ``REFGRID``). ``'camera'`` writes them as a camera's
        own software does: 32-bit integer pixels, ``DATE-OBS`` (the
        start) and ``EXPTIME`` the only times, no ``BUNIT``, no
        zero-point, transparency, sky, FWHM or reference-grid keywords
        (``SATURATE``, ``GAIN``, ``RDNOISE``, ``CAMERA`` and ``FILTER``
        stay). The truth tables are the same.

    Returns
    -------
    frames : `~astropy.table.QTable`
        The frame list written to ``frames.ecsv``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from astropy import units as u
    >>> from astropy.coordinates import SkyCoord
    >>> from satphotutils.simulation import (Camera, Detector, FrameSimulator,
    ...                                      Scene, simulate_field)
    >>> centre = SkyCoord(30.0, -10.0, unit='deg')
    >>> stars = centre.directional_offset_by([0, 90] * u.deg,
    ...                                      [2, 3] * u.arcmin)
    >>> scene = Scene(stars, [7.0, 11.0], [1.0, 1.0])
    >>> sim = FrameSimulator(camera=Camera(detector=Detector(shape=(80, 80))),
    ...                      pointing=centre)
    >>> out = Path(tempfile.mkdtemp())
    >>> _ = simulate_field(out, scene, [sim], n_epochs=2,
    ...                    exposures_per_epoch=2, seed=1)
    >>> len(list(out.glob('*.fits')))
    4
    """
    from tqdm.auto import tqdm

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not simulators:
        msg = 'simulators must name at least one FrameSimulator'
        raise SatphotutilsError(msg)
    if style not in ('survey', 'camera'):
        msg = f"style must be 'survey' or 'camera', got {style!r}"
        raise ValueError(msg)
    n_epochs = as_integer(n_epochs, 'n_epochs', minimum=1)
    exposures_per_epoch = as_integer(exposures_per_epoch,
                                     'exposures_per_epoch', minimum=1)
    rng = np.random.default_rng(seed)
    rows, truths = [], []
    mjd = float(start_mjd)
    bar = tqdm(total=n_epochs * exposures_per_epoch, unit='frame',
               disable=not progress)
    for epoch in range(n_epochs):
        mjd += rng.exponential(cadence)
        sim = simulators[rng.integers(len(simulators))]
        night = sim.draw_conditions(mjd, rng)
        for k in range(exposures_per_epoch):
            cond = dataclasses.replace(
                night, mjd=mjd + k * 110.0 / 86400.0,
                fwhm=float(night.fwhm * np.exp(rng.normal(0, 0.03))),
                transparency=float(night.transparency
                                   * 10 ** (0.4 * abs(rng.normal(0, 0.005)))),
                sky=float(night.sky * np.exp(rng.normal(0, 0.02))),
                dither=tuple(rng.uniform(-12, 12, 2)))
            frame, truth = sim(scene, conditions=cond, seed=rng)
            name = (f'{sim.camera.name}_{sim.camera.filter}_{epoch:05d}_'
                    f'{k}.fits')
            with atomic_output(directory / name, overwrite=overwrite) as tmp:
                if style == 'camera':
                    _as_camera_writes(frame).writeto(tmp)
                else:
                    frame.write(tmp)
            # Arrays, not scalars: astropy < 8 refuses scalars on an
            # empty table (a frame without stars).
            truth['file'] = np.full(len(truth), name)
            truth['epoch'] = np.full(len(truth), epoch)
            truth.meta.clear()
            truths.append(truth)
            rows.append({'file': name, 'epoch': epoch, 'exposure': k,
                         'mjd': cond.mjd, 'camera': sim.camera.name,
                         'filter': sim.camera.filter,
                         'damaged': cond.damaged, 'fwhm': cond.fwhm,
                         'transparency': cond.transparency})
            bar.update()
    bar.close()
    return _write_field_tables(directory, rows, truths, overwrite=overwrite)


def _write_field_tables(directory, rows, truths, *, overwrite=False):
    """Write a simulated field's ``frames.ecsv`` and ``truth.ecsv``."""
    frames = QTable(rows=rows)
    with atomic_output(directory / 'frames.ecsv', overwrite=overwrite) as t:
        frames.write(t, format='ascii.ecsv')
    with atomic_output(directory / 'truth.ecsv', overwrite=overwrite) as t:
        # Frames without stars add no rows (and astropy 6.1 cannot stack
        # their empty SkyCoord columns).
        vstack([tr for tr in truths if len(tr)] or truths[:1]).write(
            t, format='ascii.ecsv')
    return frames
