# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Stamp sets for training and testing: many targets, a few exposures each.

The generator uses the same physics as the frame simulator (`observe`),
on a strip of detector columns around each target that is tall enough
for the target's bleed trail, with neighbours drawn from the luminosity
function along the whole strip. Exposures come from a pool of frames per
chunk, shared by many targets as on a real survey, and targets sample g
uniformly like the paper's training set (40,000 stars per magnitude).
With a `~satphotutils.simulation.CameraFamily` every chunk is observed
with a newly drawn camera and pipeline.
"""

import concurrent.futures
import dataclasses
import functools
import os

import numpy as np
from astropy import units as u

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
from satphotutils.stamps.table import StampTableWriter, stamp_shape
from satphotutils.utils._parameters import as_integer

from .detector import Camera
from .observation import _measured_fwhms, draw_conditions, observe_many
from .pipeline import SurveyPipeline
from .scene import _draw_arrays, _draw_colours, latitude_factor

__all__ = ['StampSimulator']

_BLEND_RADIUS = 8.0 * u.arcsec
_EDGE = 50  # stamps keep this far from the detector edges, as in the paper
# Faintest neighbour simulated along a bleed trail, away from the stamp.
_TRAIL_G_MAX = 15.0
# Margin (px) around a stamp within which neighbours go to the faint limit.
_NEAR = 10
# Pixels of one batch of windows (bounds the memory of a batch).
_BATCH_PIXELS = 300000
# Largest default chunk of targets.
_CHUNK = 3000
# The families of the single camera (family=None).
_SINGLE_CAMERA = {'psf': 'moffat', 'correction': 'asas', 'saturation': 'adc',
                  'storage': 'uint16', 'filter': None, 'bleed': 'symmetric'}


class StampSimulator:
    """
    Generate stamp tables of simulated targets.

    Parameters
    ----------
    camera : `~satphotutils.simulation.Camera`, optional
        The camera; the default ASAS-SN-like ``'bi'`` in g if `None`.

    pipeline : `~satphotutils.simulation.SurveyPipeline`, optional
        The survey reduction with its artefacts; defaults if `None`.

    zeropoint : float, optional
        Zero point of the camera's reference image (before the camera's
        ``zeropoint_offset``).

    stamp_size : int or tuple of int, optional
        Stamp size in pixels (odd), or the shape ``(ny, nx)`` of tall
        stamps (odd, ``ny >= nx``), their rows along the detector's read
        (bleed) direction: for a camera whose trails stay in the frame
        (``SurveyPipeline(correction=False)``), stamps that hold them.

    g_range : tuple of float, optional
        Targets are drawn uniformly in SDSS g within this range.

    images_per_star : int, optional
        Exposures of each target.

    exposures_per_chunk : int, optional
        Size of the pool of frames the targets of one chunk are observed
        in.

    exposures_per_epoch : int, optional
        Consecutive exposures per epoch (ASAS-SN takes three): they share
        the night's conditions to a few per cent, and a target observed
        in an epoch gets all of its exposures. It must divide
        ``images_per_star`` and ``exposures_per_chunk``.

    neighbour_g_max : float, optional
        Faintest neighbour simulated.

    latitude_range : tuple of float, optional
        Galactic latitudes (degrees) the targets are spread over; the
        neighbour density follows. The default covers plane to pole.

    signal_radius : float, optional
        Radius (pixels) of the signal circle about the central pixel,
        within which ``n_unity`` counts the pixels set to exactly 1: the
        paper's 5 px (81 pixels), that of the bundled model
        (`~satphotutils.network.StampFeatures` ``radius``).

    family : `~satphotutils.simulation.CameraFamily`, optional
        Draw a new camera, pipeline and range of conditions for every
        chunk of ``stars_per_camera`` targets; ``camera``, ``pipeline``
        and ``zeropoint`` are then unused. `None` simulates the one
        camera given.

    stars_per_camera : int, optional
        Targets per chunk (and so per drawn camera) with a ``family``:
        a million-stamp set of four exposures per target then holds
        thousands of cameras.

    latitude_weighting : {'area', 'stars'}, optional
        How targets are spread over ``latitude_range``: ``'area'``
        uniformly on the sky, or ``'stars'`` as the stars themselves are
        (area times the star density of `latitude_factor`), as a random
        draw from a catalogue of the survey's stars would be. With
        ``'stars'`` about half the targets lie within 10 degrees of the
        plane, against a sixth with ``'area'``.

    Examples
    --------
    >>> from satphotutils.simulation import StampSimulator
    >>> stamps = StampSimulator(images_per_star=2)(3, seed=1)
    >>> len(stamps), stamps['stamp'].shape[1:]
    (6, (21, 21))

    Tall stamps of a camera that leaves its trails in place:

    >>> from satphotutils.simulation import SurveyPipeline
    >>> raw = StampSimulator(stamp_size=(81, 21), images_per_star=1,
    ...                      pipeline=SurveyPipeline(correction=False))
    >>> raw(2, seed=1)['stamp'].shape[1:]
    (81, 21)
    """

    def __init__(self, *, camera=None, pipeline=None, zeropoint=25.5,
                 stamp_size=21, g_range=(3.0, 15.0), images_per_star=4,
                 exposures_per_chunk=24, exposures_per_epoch=1,
                 neighbour_g_max=19.0, latitude_range=(0.0, 90.0),
                 latitude_weighting='area', signal_radius=5.0, family=None,
                 stars_per_camera=100):
        self.stamp_shape = stamp_shape(stamp_size, name='stamp_size',
                                       minimum=5)
        if not g_range[0] < g_range[1]:
            msg = 'g_range must be (gmin, gmax) with gmin < gmax'
            raise ValueError(msg)
        if images_per_star < 1 or exposures_per_chunk < images_per_star:
            msg = ('images_per_star must be >= 1 and at most '
                   'exposures_per_chunk')
            raise ValueError(msg)
        if (exposures_per_epoch < 1
                or images_per_star % exposures_per_epoch
                or exposures_per_chunk % exposures_per_epoch):
            msg = ('exposures_per_epoch must divide images_per_star and '
                   'exposures_per_chunk')
            raise ValueError(msg)
        self.camera = Camera() if camera is None else camera
        self.pipeline = SurveyPipeline() if pipeline is None else pipeline
        self.zeropoint = float(zeropoint)
        ny, nx = self.stamp_shape
        self.stamp_size = nx if ny == nx else self.stamp_shape
        self.g_range = (float(g_range[0]), float(g_range[1]))
        self.images_per_star = int(images_per_star)
        self.exposures_per_chunk = int(exposures_per_chunk)
        self.exposures_per_epoch = int(exposures_per_epoch)
        self.neighbour_g_max = float(neighbour_g_max)
        if latitude_weighting not in ('area', 'stars'):
            msg = ("latitude_weighting must be 'area' or 'stars', not "
                   f'{latitude_weighting!r}')
            raise ValueError(msg)
        self.latitude_range = tuple(latitude_range)
        self.latitude_weighting = latitude_weighting
        self.signal_radius = float(signal_radius)
        self.family = family
        self.stars_per_camera = as_integer(stars_per_camera,
                                           'stars_per_camera', minimum=1)
        # Refused here, not in a worker.
        circle_mask(self.stamp_shape, self.signal_radius)

    def __repr__(self):
        source = self.camera if self.family is None else self.family
        return (f'<StampSimulator {source!r} g={self.g_range} '
                f'images_per_star={self.images_per_star}>')

    def __call__(self, n_stars, *, seed=None, first_star_id=0):
        """
        Simulate the stamps of ``n_stars`` targets in memory.

        Parameters
        ----------
        n_stars : int
            Number of targets.

        seed : int or `~numpy.random.SeedSequence`, optional
            Random seed.

        first_star_id : int, optional
            ``star_id`` of the first target.

        Returns
        -------
        stamps : `~astropy.table.QTable`
            A stamp table (see `satphotutils.stamps`) with the truth
            columns described in `write`. With a ``family`` the targets
            are split into chunks of ``stars_per_camera`` as `write`
            splits them, so both give the same stamps.
        """
        from astropy.table import QTable

        if not isinstance(seed, np.random.SeedSequence):
            seed = np.random.SeedSequence(seed)
        n_stars, first = int(n_stars), int(first_star_id)
        if self.family is None:
            return QTable(self._chunk(n_stars, seed, first))
        step = self.stars_per_camera
        starts = range(0, n_stars, step)
        parts = [self._chunk(min(step, n_stars - s), seq, first + s)
                 for s, seq in zip(starts, seed.spawn(len(starts)),
                                   strict=True)]
        return QTable({name: np.concatenate([p[name] for p in parts])
                       for name in parts[0]})

    def write(self, path, n_stars, *, seed=None, chunk_stars=None,
              n_workers=None, overwrite=False, progress=False):
        """
        Simulate stamps and stream them to a stamp table on disk.

        Memory stays bounded whatever ``n_stars`` is: chunks are written as
        they are made, at most two per worker in flight. The result does
        not depend on ``n_workers``.

        The truth columns added to the stamp-table columns are ``g``,
        ``saturated`` (a raw pixel within 2 px of the target hit the ADC
        maximum), ``damaged`` (the stamp has overflow pixels set to 1),
        ``n_unity`` (exactly-1 pixels within ``signal_radius``),
        ``outcome`` (of the
        saturation correction: ok, misplaced, lost, unmatched or none),
        ``received`` (given another star's misplaced flux), ``true_log_counts``
        (log10 of the target's own counts), ``G``, ``bp_rp``, ``f_c``,
        ``b_c``, ``transparency``, ``fwhm`` (what
        `~satphotutils.frames.frame_fwhm` would measure on the frame:
        `~satphotutils.simulation.measured_fwhm`), ``fwhm_true`` (the
        PSF's own FWHM at the detector centre), ``mjd``, ``exposure`` and
        ``epoch`` (indices of the frame and of its epoch in the pool of
        the target's chunk: group by ``star_id`` and ``epoch``),
        ``x_ref``, ``y_ref`` (reference-frame position), ``dx``,
        ``dy`` (its offset from the stamp's central pixel),
        ``saturation`` (the level, in the stamp's stored counts with the
        sky, at which a pixel stops responding at the target: what a
        ``SATURATE`` keyword says), ``family_psf``,
        ``family_correction``, ``family_saturation``, ``family_storage``
        and ``family_bleed`` (the camera's families; for the single camera
        ``moffat``, ``asas`` (``raw`` with a pipeline without the
        correction), ``adc``, ``uint16`` and ``symmetric``), ``bleed_up``,
        ``bleed_loss`` and ``bloom_fraction`` (the detector's bleeding,
        see `~satphotutils.simulation.Detector`). ``camera`` is the
        drawn camera's code with a ``family``, unique per camera.

        Parameters
        ----------
        path : str or `~pathlib.Path`
            Output FITS file, written atomically.

        n_stars : int
            Number of targets.

        seed : int, optional
            Random seed.

        chunk_stars : int, optional
            Targets per chunk of work; by default up to 3,000, in equal
            shares for the workers, and ``stars_per_camera`` with a
            ``family``. The result depends on it (each chunk has its own
            seed, pool of frames and drawn camera), not on
            ``n_workers``.

        n_workers : int, optional
            Worker processes; all available cores if `None`, 1 for none.

        overwrite : bool, optional
            Whether to replace an existing file.

        progress : bool, optional
            Show a tqdm progress bar.

        Returns
        -------
        n_rows : int
            Stamps written.
        """
        from tqdm.auto import tqdm

        n_stars = int(n_stars)
        if n_stars < 1:
            msg = 'n_stars must be at least 1'
            raise ValueError(msg)
        if n_workers is None:
            n_workers = len(os.sched_getaffinity(0))
        if chunk_stars is None and self.family is not None:
            chunk_stars = self.stars_per_camera
        if chunk_stars is None:
            # Whole rounds of equal chunks keep every worker busy; chunks
            # of up to 3,000 amortise each pool of frames over enough stamps.
            rounds = -(-n_stars // (_CHUNK * max(n_workers, 1)))
            chunk_stars = max(-(-n_stars // (rounds * max(n_workers, 1))),
                              min(n_stars, 250))
        starts = list(range(0, n_stars, chunk_stars))
        seeds = np.random.SeedSequence(seed).spawn(len(starts))
        jobs = [(min(chunk_stars, n_stars - s), seq, s)
                for s, seq in zip(starts, seeds, strict=True)]
        meta = {'SIMSEED': (-1 if seed is None else int(seed),
                            'simulation seed'),
                'IMGPSTAR': (self.images_per_star, 'images per star'),
                'CAMERA': self.camera.name, 'FILTER': self.camera.filter}
        if self.family is not None:
            meta['CAMERA'] = ('family', 'a drawn camera per chunk')
            del meta['FILTER']
        bar = tqdm(total=n_stars, unit='star', disable=not progress)
        with StampTableWriter(path, meta=meta, overwrite=overwrite) as out:
            if n_workers <= 1:
                for job in jobs:
                    out.write(self._chunk(*job))
                    bar.update(job[0])
            else:
                with concurrent.futures.ProcessPoolExecutor(n_workers) as ex:
                    pending = []
                    for job in jobs:
                        pending.append((job[0], ex.submit(self._chunk, *job)))
                        if len(pending) >= 2 * n_workers:
                            n, future = pending.pop(0)
                            out.write(future.result())
                            bar.update(n)
                    for n, future in pending:
                        out.write(future.result())
                        bar.update(n)
            n_rows = out.nrows
        bar.close()
        return n_rows

    # -- the work of one chunk ------------------------------------------

    def _chunk(self, n_stars, seed_sequence, first_star_id):
        rng = np.random.default_rng(seed_sequence)
        if self.family is None:
            camera, pipeline, draw = self.camera, self.pipeline, None
            # A pipeline without the correction leaves the trails: the
            # label a family's raw camera has.
            labels = _SINGLE_CAMERA | (
                {} if pipeline.correction else {'correction': 'raw'})
        else:
            draw = self.family(rng)
            camera, pipeline, labels = draw.camera, draw.pipeline, draw.labels
        detector = camera.detector
        size_y, size_x = self.stamp_shape
        half_y, half = size_y // 2, size_x // 2
        k = self.images_per_star
        per_epoch = self.exposures_per_epoch
        pool = []
        for _ in range(self.exposures_per_chunk // per_epoch):
            first = self._conditions(rng, 58000.0 + rng.uniform(0, 2000),
                                     draw)
            pool.append(first)
            for j in range(1, per_epoch):
                # Consecutive exposures of an epoch share the night's sky,
                # seeing and transparency to a few per cent; dither, noise
                # and damage are their own.
                other = self._conditions(rng, first.mjd + j * 110 / 86400,
                                         draw)
                pool.append(dataclasses.replace(
                    other, fwhm=float(first.fwhm * rng.normal(1, 0.03)),
                    transparency=float(first.transparency
                                       * 10 ** (0.4 * rng.normal(0, 0.01))),
                    sky=float(first.sky * rng.normal(1, 0.02)),
                    ellipticity=first.ellipticity, theta=first.theta))

        g = rng.uniform(*self.g_range, n_stars)
        bp_rp = _draw_colours(n_stars, rng)
        G = g + GAIA_RELATIONS['g'].g_minus_x(bp_rp)
        mag = g if camera.filter == 'g' else \
            G - GAIA_RELATIONS['V'].g_minus_x(bp_rp)
        density = latitude_factor(self._latitudes(rng, n_stars))
        margin = _EDGE + half + 13
        margin_y = _EDGE + half_y + 13
        ny, nx = detector.shape
        x_ref = rng.uniform(margin, nx - 1 - margin, n_stars)
        y_ref = rng.uniform(margin_y, ny - 1 - margin_y, n_stars)
        blend_px = (_BLEND_RADIUS / detector.pixel_scale).decompose().value
        if draw is not None:
            # A blend is what falls in one pixel, whatever its size.
            blend_px = 1.0
            density = density * draw.crowding
            # The brightest exposure of the pool, and the PSFs that
            # saturate narrowest and widest.
            brightest = max(10 ** (0.4 * c.zeropoint) / c.transparency
                            for c in pool)
            pool_psfs = [c.psf(detector) for c in
                         (min(pool, key=_fwhm), max(pool, key=_fwhm))]

        # First the stars, their neighbours and their exposures ...
        stars = []
        for i in range(n_stars):
            # The target's own counts for Z = 0, t = 1; the colour term is
            # part of the truth but not of the frame zero point.
            base = 10 ** (-0.4 * (mag[i] + camera.colour_term
                                  * (bp_rp[i] - 1.0)))
            # Strip sizes for the brightest exposure the pool can give.
            if draw is None:
                peak_flux = base * 10 ** (0.4 * (self.zeropoint + 1.0))
                trail_rows = _trail_rows(peak_flux, detector)
                radius = _saturated_radius(peak_flux, detector)
            else:
                peak_flux = base * brightest
                trail_rows = _trail_rows(peak_flux, detector, pool_psfs[0])
                radius = max(_saturated_radius(peak_flux, detector, psf)
                             for psf in pool_psfs)
            trail_cols = _col_class(radius, half)
            ix, iy = int(np.rint(x_ref[i])), int(np.rint(y_ref[i]))
            # Neighbours: to the faint limit around the stamp; along the
            # trail, only stars bright enough to add charge that matters or
            # to confuse the correction as catalogue stars on the trail,
            # and only in the columns that can reach the stamp: the
            # saturated ones and those next to them, which the correction
            # interpolates from.
            reach = int(np.ceil(radius)) + 3
            sy0 = max(iy - half_y - trail_rows - 16, 0)
            sy1 = min(iy + half_y + trail_rows + 16, ny)
            sx0, sx1 = ix - reach, ix + reach + 1
            near = (ix - half - _NEAR, ix + half + _NEAR,
                    iy - half_y - _NEAR, iy + half_y + _NEAR)
            nb_x, nb_y, nb_mag, nb_colour = self._neighbours(
                rng, near, (sx0, sx1, sy0, sy1), density[i], detector,
                camera.filter)
            nb_base = 10 ** (-0.4 * (nb_mag + camera.colour_term
                                     * (nb_colour - 1.0)))
            x_all = np.concatenate([[x_ref[i]], nb_x])
            y_all = np.concatenate([[y_ref[i]], nb_y])
            base_all = np.concatenate([[base], nb_base])
            f_c = blended_flux_ratio([[x_ref[i], y_ref[i]]], [base],
                                     np.column_stack([x_all, y_all]),
                                     base_all, radius=blend_px,
                                     target_index=[0])[0]
            b_c0 = stellar_background(
                np.column_stack([nb_x, nb_y]), nb_base, radius=blend_px,
                bounds=(near[0] + 2, near[1] - 2, near[2] + 2, near[3] - 2),
                n_samples=256, seed=rng)
            stars.append({
                'x': x_all, 'y': y_all, 'base': base_all,
                # The reference catalogue knows every star's mean magnitude.
                'cat': np.concatenate([[mag[i]], nb_mag]),
                'window': (iy - half_y, ix - half, size_y, size_x),
                'cols': trail_cols, 'f_c': f_c, 'b_c': b_c0,
                'exposures': (per_epoch * rng.choice(
                    len(pool) // per_epoch, k // per_epoch, replace=False
                )[:, None] + np.arange(per_epoch)).ravel()})

        # ... then every exposure observes its targets in batches of
        # windows of one size.
        batches = {}
        # A drawn camera's exposures hold a few targets each: coarser
        # classes make fewer, fuller batches (the single camera keeps its
        # classes, and so its random stream).
        for i, star in enumerate(stars):
            for j, e in enumerate(star['exposures']):
                cond = pool[e]
                scale = 10 ** (0.4 * cond.zeropoint) / cond.transparency
                psf = None if draw is None else cond.psf(detector)
                key = (e, _size_class(_trail_rows(star['base'][0] * scale,
                                                  detector, psf or cond), ny,
                                      coarse=draw is not None),
                       star['cols'])
                batches.setdefault(key, []).append((i, j))
        observations = {}
        # A drawn camera's faint sky draws exact Poisson noise pixel by
        # pixel (the single camera keeps its random stream).
        faint = draw is not None
        for (e, trail_rows, trail_cols), members in sorted(batches.items()):
            cond = pool[e]
            scale = 10 ** (0.4 * cond.zeropoint) / cond.transparency
            per_batch = max(1, _BATCH_PIXELS // (
                (2 * trail_rows + size_y + 8)
                * (2 * trail_cols + size_x + 8)))
            for start in range(0, len(members), per_batch):
                batch = members[start:start + per_batch]
                requests = [(stars[i]['x'], stars[i]['y'],
                             stars[i]['base'] * scale, stars[i]['cat'],
                             stars[i]['window']) for i, _ in batch]
                results = observe_many(
                    requests, camera=camera, conditions=cond,
                    pipeline=pipeline, rng=rng, trail_rows=trail_rows,
                    trail_cols=trail_cols, faint_pixels=faint)
                for (i, j), request, obs in zip(batch, requests, results,
                                                strict=True):
                    rows, cols = trail_rows, trail_cols
                    # A window too small for this exposure's trail: redo
                    # it alone in a larger one.
                    while obs.truncated and rows < ny:
                        rows = min(2 * rows, ny)
                        obs = observe_many(
                            [request], camera=camera, conditions=cond,
                            pipeline=pipeline, rng=rng,
                            trail_rows=rows, trail_cols=cols,
                            faint_pixels=faint)[0]
                    observations[i, j] = obs

        columns = {name: [] for name in (
            'stamp', 'log_counts', 'star_id', 'zeropoint', 'sky', 'camera',
            'filter', 'g', 'saturated', 'damaged', 'n_unity', 'outcome',
            'received', 'true_log_counts', 'G', 'bp_rp', 'f_c', 'b_c',
            'transparency', 'fwhm', 'fwhm_true', 'mjd', 'exposure', 'epoch',
            'x_ref', 'y_ref', 'dx', 'dy', 'saturation')}
        # What frame_fwhm would measure on each exposure's frame.
        seen = sorted({e for s in stars for e in s['exposures']})
        measured = dict(zip(seen, _measured_fwhms(
            [pool[e] for e in seen], detector, pipeline).tolist(),
            strict=True))
        circle = circle_mask(self.stamp_shape, self.signal_radius)
        label_mag = []
        for i, star in enumerate(stars):
            for j, e in enumerate(star['exposures']):
                cond = pool[e]
                obs = observations[i, j]
                scale = 10 ** (0.4 * cond.zeropoint) / cond.transparency
                stamp = obs.image
                unity = (stamp == 1.0) & circle
                columns['stamp'].append(stamp)
                label_mag.append(mag[i])
                columns['star_id'].append(first_star_id + i)
                columns['zeropoint'].append(cond.zeropoint)
                columns['sky'].append(cond.sky)
                columns['camera'].append(camera.name)
                columns['filter'].append(camera.filter)
                columns['g'].append(g[i])
                columns['saturated'].append(bool(obs.saturated[0]))
                columns['damaged'].append(bool(obs.bad.any()))
                columns['n_unity'].append(int(unity.sum()))
                columns['outcome'].append(obs.outcome[0])
                columns['received'].append(bool(obs.received[0]))
                columns['true_log_counts'].append(
                    np.log10(star['base'][0] * scale))
                columns['G'].append(G[i])
                columns['bp_rp'].append(bp_rp[i])
                columns['f_c'].append(star['f_c'])
                columns['b_c'].append(star['b_c'] * scale)
                columns['transparency'].append(cond.transparency)
                columns['fwhm'].append(measured[e])
                columns['fwhm_true'].append(cond.fwhm)
                columns['mjd'].append(cond.mjd)
                columns['exposure'].append(int(e))
                columns['epoch'].append(int(e) // per_epoch)
                columns['x_ref'].append(x_ref[i])
                columns['y_ref'].append(y_ref[i])
                columns['dx'].append(x_ref[i] - np.rint(x_ref[i]))
                columns['dy'].append(y_ref[i] - np.rint(y_ref[i]))
                columns['saturation'].append(_saturation_level(
                    detector, pipeline, y_ref[i] + cond.dither[0],
                    x_ref[i] + cond.dither[1]))
        # The labels: Eq. 1 (without the colour term) and Eq. 2, with a
        # floor of 1e-3 counts for targets lost in the background.
        columns['log_counts'] = np.fmax(crowded_log_counts(
            expected_log_counts(label_mag, columns['zeropoint'],
                                columns['transparency']),
            columns['f_c'], columns['b_c']), -3.0)
        out = {name: np.asarray(values) for name, values in columns.items()}
        out['stamp'] = out['stamp'].astype(np.float32)
        out['outcome'] = out['outcome'].astype('<U9')
        n = len(out['stamp'])
        if draw is not None:
            out['camera'] = np.full(n, camera.name, dtype='<U16')
        for axis in ('psf', 'correction', 'saturation', 'storage', 'bleed'):
            out[f'family_{axis}'] = np.full(n, labels[axis], dtype='<U11')
        for name in ('bleed_up', 'bleed_loss', 'bloom_fraction'):
            out[name] = np.full(n, getattr(detector, name))
        return out

    def _latitudes(self, rng, n):
        """Draw target latitudes (degrees) as ``latitude_weighting`` says."""
        lo, hi = np.sin(np.deg2rad(self.latitude_range))
        if self.latitude_weighting == 'area':
            return np.rad2deg(np.arcsin(rng.uniform(lo, hi, n)))
        # Rejection against the density, largest nearest the plane.
        b0, b1 = self.latitude_range
        peak = latitude_factor(0.0 if b0 * b1 <= 0
                               else min(abs(b0), abs(b1)))
        out = np.empty(0)
        while out.size < n:
            b = np.rad2deg(np.arcsin(rng.uniform(lo, hi, 2 * n)))
            keep = rng.uniform(0, peak, b.size) < latitude_factor(b)
            out = np.concatenate([out, b[keep]])
        return out[:n]

    def _conditions(self, rng, mjd, draw):
        if draw is not None:
            return draw.conditions(rng, mjd=mjd)
        return draw_conditions(
            rng, mjd=mjd, zeropoint=self.zeropoint
            + self.camera.zeropoint_offset,
            damage_fraction=self.pipeline.damage_fraction)

    def _neighbours(self, rng, near, strip, density, detector, filter_):
        """Neighbour positions, magnitudes in the camera's filter, colours."""
        pixel_area = (detector.pixel_scale**2).to_value(u.deg**2)

        def patch(box, g_max):
            x0, x1, y0, y1 = box
            area = max(y1 - y0, 0) * max(x1 - x0, 0) * pixel_area * u.deg**2
            g, G, bp_rp = _draw_arrays(area, 2.0, g_max, density, rng)
            mag = g if filter_ == 'g' else \
                G - GAIA_RELATIONS['V'].g_minus_x(bp_rp)
            return (rng.uniform(x0, x1, g.size), rng.uniform(y0, y1, g.size),
                    mag, bp_rp)

        near_stars = patch(near, self.neighbour_g_max)
        strip_stars = patch(strip, _TRAIL_G_MAX)
        # The bright stars of the strip that fall near the stamp are
        # already part of the near patch.
        x, y = strip_stars[:2]
        outside = ~((x >= near[0]) & (x < near[1]) & (y >= near[2])
                    & (y < near[3]))
        return tuple(np.concatenate([a, b[outside]])
                     for a, b in zip(near_stars, strip_stars, strict=True))


def _trail_rows(flux, detector, conditions=None):
    """
    Guess how many rows a star's trail may reach on each side.

    The trail holds the charge of the central column beyond the full
    well, spilled both ways (``detector.bleed_up`` of it up); the
    column's share of the flux comes from the exposure's PSF (the
    sharpest seeing if no ``conditions``; a PSF may be given instead of
    conditions). `observe_many` reports a
    truncated trail, and the window is then enlarged, so this only needs
    to be a good guess.
    """
    # The longer side of the trail takes this share of the excess.
    side = max(detector.bleed_up, 1 - detector.bleed_up)
    if hasattr(conditions, 'integrate'):
        share = _psf_column_share(conditions)
        return int(side * share * flux / detector.full_well_counts * 1.1) \
            + 8
    fwhm = 1.35 if conditions is None else conditions.fwhm
    share = _column_share(round(fwhm, 2))
    return int(side * share * flux / detector.full_well_counts * 1.1) + 8


@functools.lru_cache(maxsize=512)
def _column_share(fwhm):
    from .psf import MoffatPSF

    rows = np.arange(-60.0, 61.0)
    return float(MoffatPSF(fwhm=fwhm).integrate(np.zeros_like(rows),
                                                rows).sum())


@functools.lru_cache(maxsize=512)
def _psf_column_share(psf):
    rows = np.arange(-60.0, 61.0)
    return float(psf.integrate(np.zeros_like(rows), rows).sum())


def _fwhm(conditions):
    return conditions.fwhm


def _saturation_level(detector, pipeline, y, x):
    """Return the stored counts at which pixel ``(y, x)`` stops responding."""
    level = detector.plateau_counts / float(detector.flat(y, x))
    return min(level, pipeline.storage_max) if pipeline.clip_storage \
        else level


def _size_class(trail_rows, limit, coarse=False):
    """
    Round rows up in steps of 1.25x, so that windows batch together.

    ``coarse``: in steps of 2x up to 128 rows, where a batch costs more
    than its pixels.
    """
    if coarse and trail_rows <= 128:
        return int(min(2 ** np.ceil(np.log2(max(trail_rows, 8))), limit))
    steps = np.ceil(np.log(max(trail_rows, 8) / 8) / np.log(1.25))
    return int(min(np.ceil(8 * 1.25**steps), limit))


def _col_class(radius, half):
    """Extra columns so a saturated core of ``radius`` fits with margin."""
    need = int(np.ceil(radius)) + 3 - half
    return 0 if need <= 0 else 4 * int(np.ceil(need / 4))


def _saturated_radius(flux, detector, psf=None):
    """Radius (px) within which a star of ``flux`` saturates, roughly."""
    from .psf import MoffatPSF

    if psf is None:
        psf = MoffatPSF(fwhm=1.4)  # the sharpest seeing saturates widest
    return float(psf.half_width(flux, floor=0.5 * detector.plateau_counts))
