# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Light curves of many targets from many frames.

The unit of work is a frame: it is read once, all targets on it are
measured in one batched call, and the result is written atomically to
``OUTDIR/frames/`` before the next. A rerun with ``resume`` skips frames
already done, so an interrupted run continues without duplicating rows.
Frames that cannot be read, have no WCS or lack a needed keyword are
skipped and listed in ``report.json``. Frames without a WCS are
registered to a reference frame by their stars (``reference``), and
their magnitudes can be differential, from an ensemble of comparison
stars (``differential``). Serially by default; with a Dask
scheduler (``'threads'``, ``'processes'``, a ``distributed.Client`` or
its address) through the same per-frame function.
"""

import contextlib
import dataclasses
import gc
import hashlib
import json
import logging
import os
import re
import socket
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import QTable, Table, vstack
from astropy.time import Time

from satphotutils.calibration.counts import counts_to_magnitude
from satphotutils.calibration.zeropoint import frame_zeropoint
from satphotutils.frames import list_frames, read_frame
from satphotutils.frames.registration import find_stars, register_stars
from satphotutils.photometry.core import _sky_from_columns
from satphotutils.utils._misc import get_meta
from satphotutils.utils._parameters import (
    as_non_negative,
    as_positive,
    as_whole_number,
)
from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.flags import SATPHOT_FLAGS, decode_flags
from satphotutils.utils.io import TEMPORARY_PREFIX, atomic_output
from satphotutils.utils.stats import dispersion
from satphotutils.utils.workers import process_pool

from .epochs import (
    REJECT_FLAGS,
    _statistics,
    _stats_row,
    _to_timeseries,
    combine_exposures,
)

__all__ = ['LightCurvePipeline', 'LightCurveRun', 'NothingMeasuredError']

log = logging.getLogger(__name__)


# Flags that keep a comparison star out of a frame's zero point. Not the
# model's opinion of the camera (unknown_camera) nor the method chosen
# (hybrid_classical): those say nothing about the star's counts.
_NOT_FOR_CALIBRATION = (REJECT_FLAGS | SATPHOT_FLAGS.NO_SIGNAL
                        | SATPHOT_FLAGS.PARTIAL_OVERLAP
                        | SATPHOT_FLAGS.MASKED_PIXELS
                        | SATPHOT_FLAGS.NEAR_EDGE
                        | SATPHOT_FLAGS.OUTSIDE_TRAINING_RANGE
                        | SATPHOT_FLAGS.FIT_PROBLEM)


def _coords(targets):
    if 'skycoord' in targets.colnames:
        coord = SkyCoord(targets['skycoord'])
    elif 'ra' in targets.colnames and 'dec' in targets.colnames:
        coord = _sky_from_columns(targets['ra'], targets['dec'])
    else:
        msg = 'the target table needs ra and dec (deg) or a skycoord column'
        raise ValueError(msg)
    return coord


def _target_table(targets):
    if isinstance(targets, Table):
        return targets
    try:
        return QTable.read(targets)
    except (OSError, ValueError) as exc:
        msg = f'cannot read the target table {targets}: {exc}'
        raise SatphotutilsError(msg) from exc


def _read_targets(targets):
    targets = _target_table(targets)
    coord = _coords(targets)
    names = _target_names(targets)
    _check_finite(names, coord.ra.deg, coord.dec.deg, 'ra/dec')
    return coord, names


def _target_names(targets):
    if 'name' in targets.colnames:
        names = [str(n) for n in targets['name']]
    elif 'source_id' in targets.colnames:
        # A Gaia catalogue: its identifiers name the light curves, so
        # that the files can be matched back to Gaia.
        names = [str(n) for n in np.asarray(targets['source_id'])]
    else:
        names = [f'target{i:05d}' for i in range(len(targets))]
    if len(set(names)) != len(names):
        column = 'name' if 'name' in targets.colnames else 'source_id'
        msg = f'target names must be unique (the {column} column)'
        raise ValueError(msg)
    if not len(names):
        msg = 'the target table has no rows: give at least one target'
        raise ValueError(msg)
    return names


def _check_finite(names, a, b, what):
    bad = ~(np.isfinite(a) & np.isfinite(b))
    if bad.all():
        msg = (f'no target has a finite position: every {what} is NaN or '
               'infinite; check the target table')
        raise ValueError(msg)
    if bad.any():
        which = [n for n, b in zip(names, bad, strict=True) if b]
        log.warning('%d target(s) without a finite position get no light '
                    'curve: %s', len(which), ', '.join(which[:10])
                    + (', ...' if len(which) > 10 else ''))


def _places_itself(wcs, nx, ny):
    """Whether the WCS takes the frame's centre to the sky and back."""
    centre = ((nx - 1) / 2, (ny - 1) / 2)
    with np.errstate(invalid='ignore', divide='ignore'):
        try:
            back = wcs.world_to_pixel(wcs.pixel_to_world(*centre))
        except (ValueError, ArithmeticError):
            return False
    return bool(np.allclose(back, centre, atol=1e-3))


@dataclasses.dataclass
class LightCurveRun:
    """
    The result of a `LightCurvePipeline` run.

    Examples
    --------
    What `LightCurvePipeline` returns; ``run.skipped`` lists the frames that
    could not be used, with the reason:

    >>> from satphotutils.lightcurves import LightCurveRun
    >>> run = LightCurveRun(lightcurves={}, statistics={},
    ...                     skipped={'bad.fits': 'no MJD-OBS keyword'},
    ...                     frames_measured=9, frames_resumed=0)
    >>> run.skipped['bad.fits']
    'no MJD-OBS keyword'
    """

    lightcurves: Mapping
    statistics: dict
    skipped: dict
    frames_measured: int
    frames_resumed: int
    output: object = None
    files: dict = dataclasses.field(default_factory=dict)
    #: Frame file to its transformation from the reference frame (the
    #: `~satphotutils.frames.SimilarityTransform` values), with
    #: ``reference``.
    registration: dict = dataclasses.field(default_factory=dict)
    #: The differential calibration: ``scale`` ('catalogue' or
    #: 'reference frame'), ``comparison`` (the ensemble's names),
    #: ``rejected`` (candidates clipped as variable), with
    #: ``differential``.
    calibration: dict = dataclasses.field(default_factory=dict)


class LightCurvePipeline:
    """
    Measure targets on many frames and build their light curves.

    Parameters
    ----------
    photometry : satphotutils photometry object, optional
        `~satphotutils.photometry.SaturatedStarPhotometry` (the default,
        with the bundled model) or a baseline such as
        `~satphotutils.photometry.AperturePhotometryBaseline`. Its
        ``header_keys`` are the keywords read from every frame (time,
        zero point, camera, epoch...), so they are configured once.

    epoch_window : float, optional
        Exposures closer than this (days) form one epoch (unless
        ``header_keys.epoch`` names an epoch keyword). 0 combines
        nothing: one point per exposure, at its mid-exposure time, with
        the exposure's own ``file``, position (``x``, ``y``), zero point
        and registration columns.

    comparison : `~astropy.table.Table`, optional
        Comparison stars (``ra``, ``dec``, ``mag`` in the frames' band),
        unsaturated: each frame's zero point is then fitted to them
        (`~satphotutils.calibration.frame_zeropoint`, which needs at
        least ``min_comparison`` usable stars) instead of taken from
        the header; its error is added to every magnitude, and the
        zero point, its error and the stars used are in the rows'
        ``zeropoint``, ``zeropoint_err`` and ``n_comparison`` columns.

    min_comparison : int, optional
        Fewest comparison stars for an ensemble calibration.

    colour_term : bool, optional
        With ``comparison``: fit each frame's zero point with a colour
        term (`~satphotutils.calibration.frame_zeropoint`) in the
        ``bp_rp`` column (e.g. Gaia BP - RP) that the comparison table
        and the targets then need, and put each target at its own
        colour. The exposures' ``zeropoint`` is then the target's, the
        slope is in ``zeropoint_colour_term``, and the slope's error
        times the target's colour difference from the ensemble's is
        added to its errors. A frame whose comparison colours span less
        than 0.1 mag is calibrated without the term (logged).

    clip_sigma : float, optional
        Threshold of the light-curve outlier flags.

    reference : path-like, optional
        A frame to which every frame is registered by its stars
        (`~satphotutils.frames.register_stars`, a similarity transform),
        so that frames need no WCS: targets are then given as ``x``,
        ``y`` pixels on the reference frame, or as ``ra``, ``dec`` if the
        reference has a WCS (which the transforms carry to every frame).
        A frame that cannot be registered is skipped and reported; the
        transform of each frame and its residual are in the exposures'
        ``reg_*`` columns, ``run.registration`` and ``report.json``.

    differential : bool, optional
        Differential photometry: each frame's zero point is fitted
        (`~satphotutils.calibration.frame_zeropoint`) to an ensemble of
        comparison stars among the targets, those with a true
        ``comparison`` column or, without one, chosen automatically:
        isolated (no other star within half a stamp on the reference
        frame), never saturated, with a median error below 0.03 mag and,
        after iterative clipping, not variable. Their magnitudes are the
        targets' ``mag`` column (catalogue magnitudes) if there is one,
        else their magnitudes on the reference frame (its header zero
        point, or 0: instrumental), which ``reference`` must then give.
        The zero point, its error and the number of stars used are in
        the exposures' ``zeropoint``, ``zeropoint_err`` and
        ``n_comparison`` columns; its error is added to every magnitude.

    Examples
    --------
    A run over a directory of frames (see the light-curve tutorial in the
    documentation for a complete, simulated example):

    >>> from satphotutils.frames import HeaderKeys
    >>> from satphotutils.lightcurves import LightCurvePipeline
    >>> from satphotutils.photometry import SaturatedStarPhotometry
    >>> phot = SaturatedStarPhotometry(
    ...     header_keys=HeaderKeys(zeropoint='MAGZP'))
    >>> pipeline = LightCurvePipeline(phot, epoch_window=0.1)
    >>> pipeline.header_keys.zeropoint
    'MAGZP'
    """

    def __init__(self, photometry=None, *, epoch_window=0.1,
                 comparison=None, min_comparison=5, clip_sigma=5.0,
                 reference=None, differential=False, colour_term=False):
        from satphotutils.photometry.core import _Photometry

        if photometry is None:
            from satphotutils.photometry import SaturatedStarPhotometry

            photometry = SaturatedStarPhotometry()
        if not isinstance(photometry, _Photometry):
            msg = ('photometry must be a satphotutils photometry object '
                   '(SaturatedStarPhotometry, AperturePhotometryBaseline, '
                   f'PSFWingPhotometry, ...), got '
                   f'{type(photometry).__name__}')
            raise TypeError(msg)
        self.photometry = photometry
        self.epoch_window = as_non_negative(epoch_window, 'epoch_window')
        if comparison is not None:
            missing = [c for c in ('ra', 'dec', 'mag')
                       if c not in comparison.colnames]
            if missing:
                msg = (f'the comparison table lacks the column(s) '
                       f'{", ".join(missing)}; it needs ra, dec (deg) and mag '
                       "(in the frames' band)")
                raise SatphotutilsError(msg)
        self.colour_term = bool(colour_term)
        if self.colour_term:
            if comparison is None:
                msg = ('colour_term=True calibrates on a comparison '
                       'catalogue: give comparison= (--comparison) too')
                raise SatphotutilsError(msg)
            if _COLOUR not in comparison.colnames:
                msg = (f'colour_term=True needs a {_COLOUR} column (a '
                       'colour, e.g. Gaia BP - RP) in the comparison table')
                raise SatphotutilsError(msg)
        self.comparison = comparison
        self._comparison_coords = None if comparison is None else \
            _coords(comparison)
        # One star would give a zero point with a zero error.
        self.min_comparison = as_whole_number(min_comparison, 'min_comparison',
                                     minimum=2)
        self.clip_sigma = as_positive(clip_sigma, 'clip_sigma')
        self.differential = bool(differential)
        if self.differential and comparison is not None:
            msg = ('give either comparison= (a catalogue of comparison '
                   'stars) or differential=True (an ensemble among the '
                   'targets), not both')
            raise SatphotutilsError(msg)
        self.reference = None if reference is None else str(reference)
        self._reference = None
        if reference is not None:
            if comparison is not None:
                msg = ("comparison= places its stars with each frame's WCS; "
                       'with reference=, add them to the targets with a '
                       'comparison column (and their mag) and use '
                       'differential=True (--differential)')
                raise SatphotutilsError(msg)
            self._reference = self._read_reference(self.reference)

    @property
    def header_keys(self):
        """The header keywords read from the frames (the photometry's)."""
        return self.photometry.header_keys

    def _read_reference(self, path):
        """Read the reference frame: its stars, WCS and zero point."""
        frame, info = read_frame(path, header_keys=self.header_keys)
        data = np.asarray(frame.data, dtype=float)
        x, y, _ = find_stars(data, mask=frame.mask,
                             saturation=self._saturation(data, info))
        if len(x) < _MIN_MATCHES:
            msg = (f'the reference frame {path} has {len(x)} stars that '
                   f'can be centred, fewer than the {_MIN_MATCHES} needed '
                   'to register frames to it; choose a frame of better '
                   'seeing or transparency')
            raise SatphotutilsError(msg)
        # Every star, saturated ones too, for the isolation of the
        # comparison stars.
        all_x, all_y, _ = find_stars(data, mask=frame.mask,
                                     n_stars=_ISOLATION_STARS, snr=5.0)
        return {'stars': (x, y), 'all_stars': (all_x, all_y),
                'wcs': info.wcs, 'zeropoint': info.zeropoint,
                'shape': info.shape}

    def _saturation(self, data, info):
        from satphotutils.frames import saturation_level

        level = self.photometry.saturation_level
        if level is None:
            level = info.saturation_level
        if level is None:
            level = saturation_level(data)
        return level

    def _register(self, frame, info):
        """Return the transformation from the reference to the frame."""
        data = np.asarray(frame.data, dtype=float)
        x, y, _ = find_stars(data, mask=frame.mask,
                             saturation=self._saturation(data, info))
        return register_stars(x, y, *self._reference['stars'],
                              min_matches=_MIN_MATCHES)

    def _config(self):
        return {'epoch_window': self.epoch_window,
                'reference': self.reference,
                'differential': self.differential,
                'comparison_stars': None if self.comparison is None
                else len(self.comparison),
                'min_comparison': self.min_comparison,
                'colour_term': self.colour_term,
                'clip_sigma': self.clip_sigma,
                'photometry': type(self.photometry).__name__,
                'photometry_config': self.photometry._config()}

    # -- one frame ------------------------------------------------------------

    def measure_frame(self, path, coords):
        """
        Measure all targets on one frame.

        Parameters
        ----------
        path : path-like
            The FITS frame.

        coords : `~astropy.coordinates.SkyCoord` or `~numpy.ndarray`
            Target positions: on the sky or, with a ``reference``, an
            ``(n, 2)`` array of ``x, y`` pixels on the reference frame.

        Returns
        -------
        rows : `~astropy.table.QTable` or `None`
            One row per target on the frame: ``target`` (index),
            ``time`` (mid-exposure MJD, UTC), ``mag``, ``mag_err``,
            ``flux``, ``flux_err``, ``flags``, ``camera``, ``filter``,
            ``epoch`` (with an epoch keyword), ``file``, ``x``, ``y``
            (where measured), ``log_counts``, ``log_counts_err``,
            ``n_saturated`` (-1: unknown) and, with a ``reference``, the
            transform from it: ``reg_scale``, ``reg_rotation`` (deg),
            ``reg_x_shift``, ``reg_y_shift``, ``reg_residual`` (px) and
            ``reg_n_matched``. With ``differential`` the magnitudes are
            NaN until the run fits the zero points. `None` if no target
            is on the frame.

        Raises
        ------
        SatphotutilsError
            If the frame cannot be used (unreadable, no WCS and no
            reference, cannot be registered, no time, no calibration, a
            header value that cannot be used).
        """
        keys = self.header_keys
        frame, info = read_frame(path, header_keys=keys)
        if info.wcs is None and self._reference is None:
            msg = ('no celestial WCS; plate-solve the frame (e.g. '
                   'astrometry.net) or register the frames to one of them '
                   '(reference=, --reference FRAME) and give the targets '
                   'as x, y on it')
            raise SatphotutilsError(msg)
        time = info.require('time')
        epoch = info.require('epoch') if keys.epoch else None
        if self.comparison is None and not self.differential:
            info.require('zeropoint', fix='or give comparison stars '
                         '(comparison=, --comparison) or use differential '
                         'photometry (differential=True, --differential)')
        transform = None
        if self._reference is not None:
            transform = self._register(frame, info)
            x, y = transform(coords[:, 0], coords[:, 1])
        else:
            x, y = self._wcs_positions(info, coords)
        ny, nx = info.shape
        on = (x >= 0) & (x <= nx - 1) & (y >= 0) & (y <= ny - 1)
        index = np.flatnonzero(on)
        if not len(index):
            return None
        xs, ys = x[index], y[index]
        sky = None if transform is not None else coords[index]
        n_comp = 0
        if self.comparison is not None:
            cx, cy = info.wcs.world_to_pixel(self._comparison_coords)
            margin = max(self.photometry.stamp_shape) // 2 + 1
            comp = np.flatnonzero((cx >= margin) & (cx <= nx - 1 - margin)
                                  & (cy >= margin) & (cy <= ny - 1 - margin))
            xs, ys = np.r_[xs, cx[comp]], np.r_[ys, cy[comp]]
            more = self._comparison_coords[comp]
            sky = SkyCoord(np.r_[sky.ra.deg, more.ra.deg],
                           np.r_[sky.dec.deg, more.dec.deg], unit='deg')
            n_comp = len(comp)
        # Targets and comparison stars in one call, at the positions just
        # found: the frame's stamps, sky and hybrid surface are made once,
        # and nothing is converted back to the sky.
        result = self.photometry._measure_placed(frame, info, xs, ys, sky)
        n = len(index)
        log_counts = np.asarray(result['log_counts'])
        err = np.asarray(result['log_counts_err'])
        flags = np.asarray(result['flags'], dtype=np.int64)[:n]
        if self.differential:
            # Fitted by the run, from every frame's ensemble at once.
            mag = mag_err = np.full(n, np.nan)
        elif self.comparison is None:
            mag = np.asarray(result['mag'].value)[:n]
            mag_err = np.asarray(result['mag_err'].value)[:n]
        else:
            comp_flags = np.asarray(result['flags'], dtype=np.int64)[n:]
            fit = frame_zeropoint(
                log_counts[n:],
                np.asarray(self.comparison['mag'], dtype=float)[comp],
                usable=(comp_flags & _NOT_FOR_CALIBRATION) == 0,
                min_stars=self.min_comparison,
                colour=np.asarray(self.comparison[_COLOUR], dtype=float)[
                    comp] if self.colour_term else None)
            if fit.valid:
                mag, mag_err = counts_to_magnitude(
                    log_counts[:n], fit.zeropoint,
                    log_counts_err=err[:n])
                mag_err = np.hypot(mag_err, fit.error)
            else:
                log.info('%s: %d of %d comparison stars usable, fewer than '
                         '%d', path, fit.n_used, n_comp, self.min_comparison)
                flags |= SATPHOT_FLAGS.NO_CALIBRATION
                mag = mag_err = np.full(n, np.nan)
        rows = QTable()
        rows['target'] = index
        rows['time'] = np.full(n, float(time.utc.mjd))
        rows['mag'] = mag
        rows['mag_err'] = mag_err
        rows['flux'] = np.asarray(result['flux'].value)[:n]
        rows['flux_err'] = np.asarray(result['flux_err'].value)[:n]
        rows['flags'] = flags
        rows['camera'] = info.camera or ''
        rows['filter'] = info.filter or ''
        if epoch is not None:
            rows['epoch'] = np.full(n, epoch)
        rows['file'] = Path(path).name
        # Where the photometry measured: its centroids when it re-centred.
        column = 'x_centroid' if 'x_centroid' in result.colnames else \
            'x_center'
        rows['x'] = np.asarray(result[column], dtype=float)[:n]
        rows['y'] = np.asarray(result[column.replace('x', 'y', 1)],
                               dtype=float)[:n]
        rows['log_counts'] = log_counts[:n]
        rows['log_counts_err'] = err[:n]
        rows['n_saturated'] = np.ma.filled(
            np.ma.asarray(result['n_saturated'])[:n].astype(np.int64), -1)
        if self.comparison is not None:
            # The frame's calibration on the catalogue's stars, as the
            # differential ensemble records its own.
            rows['zeropoint'] = np.full(n, fit.zeropoint)
            rows['zeropoint_err'] = np.full(n, fit.error)
            rows['n_comparison'] = np.full(n, fit.n_used)
            if self.colour_term:
                # The frame's fit, at the ensemble's colour: the run puts
                # each target at its own (_at_target_colours).
                rows['zeropoint_colour_term'] = np.full(n, fit.colour_term)
                rows['zeropoint_colour_term_err'] = np.full(
                    n, fit.colour_term_error)
                rows['zeropoint_colour_ref'] = np.full(n, fit.colour_ref)
        if transform is not None:
            for name, value in transform.to_dict().items():
                rows[f'reg_{name}'] = np.full(n, value)
        return rows

    def _wcs_positions(self, info, coords):
        try:
            x, y = info.wcs.world_to_pixel(coords)
        except (ValueError, ArithmeticError) as exc:
            msg = f'the WCS cannot place the targets: {exc}'
            raise SatphotutilsError(msg) from exc
        ny, nx = info.shape
        if not (np.isfinite(x) & np.isfinite(y)).any() and \
                not _places_itself(info.wcs, nx, ny):
            # A singular CD matrix places nothing anywhere. (Targets on
            # the far side of the projection are NaN too, but there the
            # frame's own centre goes to the sky and back.)
            msg = ('the WCS places no target anywhere (all positions NaN); '
                   'is its CD/PC matrix singular?')
            raise SatphotutilsError(msg)
        return x, y

    # -- a run ----------------------------------------------------------------

    def __call__(self, frames, targets, output=None, *, resume=False,
                 scheduler=None, progress=False, plot=False, baseline=None,
                 long_table=True, output_format='ecsv', **filters):
        """
        Build the light curves of the targets.

        Parameters
        ----------
        frames : path-like, str or list
            Frames (see `~satphotutils.frames.list_frames`).

        targets : `~astropy.table.Table` or path-like
            ``ra``, ``dec`` (deg) or a ``skycoord`` column, or with a
            ``reference`` ``x``, ``y`` (its pixels), optional ``name``;
            with ``differential``, optional ``comparison`` (bool: the
            ensemble) and ``mag`` (catalogue magnitudes). Without
            ``name`` the light curves are named after a Gaia
            ``source_id`` column, or ``target00000``, ``target00001``...
            in the table's order.

        output : path-like, optional
            Output directory: ``frames/`` (per-frame results, the resume
            state, and ``state.json``, what they depend on), one ECSV
            light curve per target, ``all.ecsv`` (every target, with
            ``name`` and ``file`` columns), ``statistics.ecsv`` and
            ``report.json``; plots with ``plot``. A target's file is its
            name when that is a safe, free file name, else the name made
            safe plus a short hash of it (``run.files`` and
            ``report.json`` map names to files). The run holds
            ``.satphot.lock`` in it while it works. Nothing is written if
            `None` (no resume possible).

        resume : bool, optional
            Skip frames whose results are already in ``output``, if they
            were measured with the same targets, comparison stars and
            photometry (model and configuration included). Without it,
            the saved results are removed and every frame is measured.

        scheduler : str or `distributed.Client`, optional
            Run the frames on Dask: ``'threads'``, ``'processes'``, a
            ``distributed.Client`` or a scheduler address.

        progress : bool, optional
            Show a tqdm progress bar of the frames measured (on Dask it
            advances as each task's frames arrive).

        plot : bool, optional
            Write a PNG light curve per target.

        baseline : dict, optional
            Light curves of a baseline method by target name, drawn next
            to the network's in the plots.

        long_table : bool, optional
            Write ``all.ecsv`` (``all.fits``).

        output_format : {'ecsv', 'fits'}, optional
            Format of the per-target light curves and the long table
            (the statistics and the per-frame resume state are always
            ECSV). Both round-trip losslessly through
            `~astropy.timeseries.TimeSeries.read` (FITS with
            ``astropy_native=True``, which restores the time column).

        **filters
            Header keyword values the frames must have.

        Returns
        -------
        run : `LightCurveRun`

        Raises
        ------
        SatphotutilsError
            If no frames are found, if ``output`` is in use by another
            run, or if ``resume`` finds results of other inputs there.
            Frames that cannot be used are not errors: they are skipped
            and listed in ``run.skipped`` and ``report.json``.
        NothingMeasuredError
            If no frame gave a finite magnitude (after writing the
            outputs, ``report.json`` included).
        ValueError
            If the target table is empty, lacks positions, has no finite
            position or repeats a name.
        """
        if output_format not in _FORMATS:
            msg = (f'output_format must be one of {sorted(_FORMATS)}, got '
                   f'{output_format!r}')
            raise ValueError(msg)
        table = _target_table(targets)
        if self.colour_term:
            colours = np.asarray(table[_COLOUR], dtype=float) if _COLOUR in \
                table.colnames else None
            if colours is None or not np.isfinite(colours).all():
                msg = (f'colour_term=True needs a finite {_COLOUR} colour '
                       'for every target, to put it at its own colour; '
                       + ('the target table has no such column'
                          if colours is None else
                          f'{np.count_nonzero(~np.isfinite(colours))} '
                          'targets have none'))
                raise SatphotutilsError(msg)
        else:
            colours = None
        if self._reference is None:
            coords, names = _read_targets(table)
        else:
            coords, names = self._reference_positions(table)
        ensemble = self._ensemble(table, coords, names) \
            if self.differential else None
        files = list_frames(frames, **filters)
        if not files:
            where = f'in {frames}' if isinstance(frames, (str, Path)) \
                else 'in the list given'
            msg = (f'no FITS frames found {where}'
                   + (f' with {filters}' if filters else '')
                   + '; give a directory of *.fits/*.fits.fz files, a glob '
                   'pattern or a list of files')
            raise SatphotutilsError(msg)
        out = None if output is None else Path(output)
        files_of = _file_names(names, _FORMATS[output_format][0])
        if out is None:
            run, exposures = self._run(files, coords, names, files_of, None,
                                       scheduler=scheduler,
                                       progress=progress, ensemble=ensemble,
                                       colours=colours)
        else:
            run, exposures = self._run_in(out, files, coords, names,
                                          files_of, resume=resume,
                                          scheduler=scheduler,
                                          progress=progress, plot=plot,
                                          baseline=baseline,
                                          long_table=long_table,
                                          output_format=output_format,
                                          ensemble=ensemble, colours=colours)
        problem = _nothing_measured(run, exposures, len(files))
        if problem:
            raise NothingMeasuredError(problem, run)
        return run

    def _run_in(self, out, files, coords, names, files_of, *, resume,
                scheduler, progress, plot, baseline, long_table,
                output_format, ensemble, colours=None):
        """Run, writing to ``out``, which is held locked."""
        (out / 'frames').mkdir(parents=True, exist_ok=True)
        with _output_lock(out):
            # Temporaries of a killed run: atomic_output's, by their
            # prefix, and nothing else.
            for stale in (*out.glob(f'{TEMPORARY_PREFIX}*'),
                          *(out / 'frames').glob(f'{TEMPORARY_PREFIX}*')):
                stale.unlink(missing_ok=True)
            _remove_dead_lock_drafts(out)
            resume = self._check_state(out, coords, names, resume=resume)
            run, exposures = self._run(files, coords, names, files_of, out,
                                       resume=resume, scheduler=scheduler,
                                       progress=progress, ensemble=ensemble,
                                       colours=colours)
            self._write(run, out, plot=plot, baseline=baseline,
                        long_table=long_table, output_format=output_format)
        return run, exposures

    def _reference_positions(self, table):
        """Return the targets' pixels on the reference, and their names."""
        names = _target_names(table)
        if 'x' in table.colnames and 'y' in table.colnames:
            x = np.asarray(getattr(table['x'], 'value', table['x']), float)
            y = np.asarray(getattr(table['y'], 'value', table['y']), float)
        elif 'skycoord' in table.colnames or 'ra' in table.colnames:
            wcs = self._reference['wcs']
            if wcs is None:
                msg = (f'the targets are given by ra, dec but the reference '
                       f'frame {self.reference} has no WCS: give them as x, '
                       'y pixels on the reference frame')
                raise SatphotutilsError(msg)
            x, y = wcs.world_to_pixel(_coords(table))
            x, y = np.asarray(x, float), np.asarray(y, float)
        else:
            msg = ('the target table needs x and y (pixels on the reference '
                   'frame) or ra and dec (deg)')
            raise ValueError(msg)
        _check_finite(names, x, y, 'x/y')
        return np.column_stack([x, y]), names

    def _position_meta(self, coords, ids):
        """Return each light curve's position, for its metadata."""
        if isinstance(coords, SkyCoord):
            return {'ra': coords.ra.deg[ids], 'dec': coords.dec.deg[ids]}
        out = {'x_ref': coords[ids, 0], 'y_ref': coords[ids, 1]}
        wcs = self._reference['wcs']
        if wcs is not None:
            sky = wcs.pixel_to_world(coords[ids, 0], coords[ids, 1])
            out |= {'ra': sky.ra.deg, 'dec': sky.dec.deg}
        return out

    def _ensemble(self, table, coords, names):
        """
        Prepare the differential calibration: candidates and magnitudes.

        The magnitudes are the catalogue's (``mag``) or those measured on
        the reference frame, where the candidates must be usable.
        """
        n = len(names)
        given = None
        if 'comparison' in table.colnames:
            given = _as_bool(table['comparison'])
            if not given.any():
                msg = ('the comparison column of the targets marks no star; '
                       'mark at least min_comparison '
                       f'({self.min_comparison}) comparison stars, or drop '
                       'the column to choose them automatically')
                raise SatphotutilsError(msg)
        if 'mag' in table.colnames:
            mag = np.asarray(getattr(table['mag'], 'value', table['mag']),
                             dtype=float)
            scale = "catalogue (the targets' mag column)"
        elif self._reference is None:
            msg = ('differential photometry without catalogue magnitudes (a '
                   'mag column in the targets) is relative to a reference '
                   'frame: give reference= (--reference FRAME)')
            raise SatphotutilsError(msg)
        else:
            try:
                rows = self.measure_frame(self.reference, coords)
            except _FRAME_ERRORS as exc:
                msg = f'cannot measure the reference frame: {exc}'
                raise SatphotutilsError(msg) from exc
            zp = self._reference['zeropoint']
            mag = np.full(n, np.nan)
            if rows is not None:
                good = (np.asarray(rows['flags']) & _NOT_FOR_CALIBRATION) == 0
                mag[np.asarray(rows['target'])[good]] = (0.0 if zp is None
                    else zp) - 2.5 * np.asarray(rows['log_counts'])[good]
            scale = ('the reference frame, ' + ('instrumental (zero point 0)'
                     if zp is None else f'its zero point {zp:g}'))
        candidates = np.isfinite(mag)
        if given is not None:
            candidates &= given
        elif self._reference is not None:
            candidates &= self._isolated(coords)
        return {'mag': mag, 'candidates': candidates, 'given': given,
                'scale': scale}

    def _isolated(self, xy):
        """Targets with no other star within half a stamp (reference)."""
        from scipy.spatial import cKDTree

        radius = min(self.photometry.stamp_shape) / 2
        stars = np.column_stack(self._reference['all_stars'])
        ok = np.isfinite(xy).all(axis=1)
        out = np.zeros(len(xy), dtype=bool)
        tree = cKDTree(xy[ok])
        crowd = np.array([len(v) for v in tree.query_ball_point(
            xy[ok], r=radius)]) - 1
        if len(stars):
            near = cKDTree(stars).query_ball_point(xy[ok], r=radius)
            for k, (p, found) in enumerate(zip(xy[ok], near, strict=True)):
                # The target's own detection is not a neighbour.
                crowd[k] += sum(np.hypot(*(stars[j] - p)) > _SELF
                                for j in found)
        out[ok] = crowd == 0
        return out

    def _calibrate(self, exposures, frame_of, ensemble, names):
        """
        Fit each frame's differential zero point; set the magnitudes.

        Every frame's zero point comes from the ensemble's stars on it
        (`~satphotutils.calibration.frame_zeropoint`, sigma-clipped).
        Chosen automatically, the ensemble then drops its stars whose
        scatter about those zero points, over their errors, stands out
        (three robust standard deviations above the ensemble's median
        and half as much again): variables, and stars whose photometry
        is poor; the zero points are fitted again, until none drops.
        """
        n_frames, n = int(frame_of.max()) + 1, len(names)
        target = np.asarray(exposures['target'], dtype=np.int64)
        flags = np.asarray(exposures['flags'], dtype=np.int64)
        grid = np.full((n_frames, n), np.nan)
        error = np.full((n_frames, n), np.nan)
        n_sat = np.zeros((n_frames, n), dtype=np.int64)
        lc = np.asarray(exposures['log_counts'], dtype=float)
        lc_err = np.asarray(exposures['log_counts_err'], dtype=float)
        grid[frame_of, target] = lc
        error[frame_of, target] = 2.5 / np.log(10) * lc_err
        n_sat[frame_of, target] = np.asarray(exposures['n_saturated'])
        usable = np.zeros((n_frames, n), dtype=bool)
        usable[frame_of, target] = (flags & _NOT_FOR_CALIBRATION) == 0
        usable &= np.isfinite(grid)
        mag = ensemble['mag']
        active = ensemble['candidates'].copy()
        automatic = ensemble['given'] is None
        with warnings.catch_warnings():
            # Stars never measured have all-NaN columns.
            warnings.simplefilter('ignore', RuntimeWarning)
            noise = np.nanmedian(np.where(usable, error, np.nan), axis=0)
        if automatic:
            # Never saturated (-1: unknown level, not counted).
            never = ~(n_sat > 0).any(axis=0)
            precise = noise < _MAX_COMPARISON_ERROR
            if (active & never & precise).sum() < self.min_comparison:
                log.warning(
                    'differential: %d of %d targets qualify as comparison '
                    'stars (%d isolated with a reference magnitude, %d '
                    'never saturated, %d with a median error below %g '
                    'mag), fewer than min_comparison=%d; add fainter '
                    'unsaturated stars to the targets or mark the '
                    'ensemble with a comparison column',
                    (active & never & precise).sum(), n, active.sum(),
                    never.sum(), precise.sum(), _MAX_COMPARISON_ERROR,
                    self.min_comparison)
            active &= never & precise
        rejected = {}
        for _ in range(_CLIP_ITERATIONS):
            fits = [frame_zeropoint(grid[f, active], mag[active],
                                    usable=usable[f, active],
                                    min_stars=self.min_comparison)
                    for f in range(n_frames)]
            zp = np.array([fit.zeropoint for fit in fits])
            if not automatic or active.sum() <= self.min_comparison:
                break
            resid = np.where(usable, mag + 2.5 * grid - zp[:, None], np.nan)
            ratio = dispersion(resid, axis=0) / noise
            r = ratio[active]
            r = r[np.isfinite(r)]
            if len(r) < 3:
                break
            median = float(np.median(r))
            cut = max(median + 3 * _MAD_TO_SIGMA * float(
                np.median(np.abs(r - median))), 1.5 * median)
            drop = active & (~np.isfinite(ratio) | (ratio > cut))
            if not drop.any():
                break
            for i in np.flatnonzero(drop):
                rejected[names[i]] = (f'scatter {ratio[i]:.1f} times its '
                                      'errors (variable?)')
            active &= ~drop
        zp_err = np.array([fit.error for fit in fits])
        n_used = np.array([fit.n_used if fit.valid else 0 for fit in fits])
        valid = np.isfinite(zp)
        row_zp = zp[frame_of]
        exposures['mag'] = row_zp - 2.5 * lc
        exposures['mag_err'] = np.hypot(2.5 / np.log(10) * lc_err,
                                        zp_err[frame_of])
        flags[~valid[frame_of]] |= SATPHOT_FLAGS.NO_CALIBRATION
        exposures['flags'] = flags
        exposures['zeropoint'] = row_zp
        exposures['zeropoint_err'] = zp_err[frame_of]
        exposures['n_comparison'] = n_used[frame_of]
        files = np.asarray(exposures['file'], dtype=str)
        first = np.unique(frame_of, return_index=True)[1]
        return {'scale': ensemble['scale'],
                'comparison': [names[i] for i in np.flatnonzero(active)],
                'chosen': 'automatically' if automatic
                else 'the comparison column',
                'rejected': rejected,
                'frames_calibrated': int(valid.sum()),
                'frames_uncalibrated': sorted(
                    files[first][~valid].tolist())}

    def _fingerprint(self, coords, names):
        """Return what the saved frame results depend on, as JSON."""
        config = self.photometry._config()
        # How many stamps go through the network at once changes nothing.
        config.pop('batch_size', None)
        comparison = None
        if self.comparison is not None:
            comparison = _digest(
                self._comparison_coords.ra.deg,
                self._comparison_coords.dec.deg,
                np.asarray(self.comparison['mag'], dtype=float),
                *([np.asarray(self.comparison[_COLOUR], dtype=float)]
                  if self.colour_term else []))
        if isinstance(coords, SkyCoord):
            a, b = coords.ra.deg, coords.dec.deg
        else:
            a, b = coords[:, 0], coords[:, 1]
        return json.loads(json.dumps({
            'state_version': _STATE_VERSION,
            'targets': _digest('\0'.join(names), a, b),
            'reference': None if self.reference is None
            else _state_name(self.reference),
            'n_targets': len(names),
            'comparison': comparison,
            'differential': self.differential,
            'min_comparison': self.min_comparison,
            # Only when on: the states of runs without it stay valid.
            **({'colour_term': True} if self.colour_term else {}),
            'photometry': type(self.photometry).__name__,
            'photometry_config': config}, default=str, sort_keys=True))

    def _check_state(self, out, coords, names, *, resume):
        """
        Check that saved per-frame results belong to this run.

        The saved rows hold target indices and this photometry's numbers:
        with other targets or another configuration they would go to the
        wrong targets, so a resume is refused. A run that does not resume
        starts afresh. Returns whether to resume.
        """
        frames = out / 'frames'
        path = frames / _STATE_FILE
        now = self._fingerprint(coords, names)
        if resume and path.exists():
            try:
                saved = json.loads(path.read_text())
            except (OSError, ValueError, RecursionError) as exc:
                msg = (f'cannot read {path} ({exc}); run without --resume '
                       '(resume=False) to measure every frame again')
                raise SatphotutilsError(msg) from exc
            changed = _changes(saved, now)
            if changed:
                msg = (f'{out} holds the results of a run with other '
                       f'inputs: {"; ".join(changed)} changed. Resume only '
                       'with the same targets, model and configuration; '
                       'write to a new output directory, or run without '
                       '--resume (resume=False) to measure every frame '
                       'again')
                raise SatphotutilsError(msg)
            return True
        if resume:
            old = [p for p in frames.glob('*.ecsv')
                   if not _STATE_NAME.search(p.name)]
            if old:
                log.warning(
                    '%s: %d saved frame results of an earlier satphotutils '
                    'version (named by the frame file name alone, which '
                    'two frames may share) are not used; every frame is '
                    'measured again', frames, len(old))
            elif any(frames.glob('*.ecsv')):
                log.warning(
                    '%s: the saved frame results have no %s to say which '
                    'targets and configuration they were measured with; '
                    'every frame is measured again', frames, _STATE_FILE)
        for state in frames.glob('*.ecsv'):
            if _STATE_NAME.search(state.name):
                state.unlink()
        with atomic_output(path, overwrite=True) as tmp:
            Path(tmp).write_text(json.dumps(now, indent=1))
        return False

    def _run(self, files, coords, names, files_of, out, *, resume=False,
             scheduler=None, progress=False, ensemble=None, colours=None):
        """Measure the frames and combine the epochs; the run, exposures."""
        done, rows = {}, []
        skipped = {}
        todo, state_of = [], {}
        for f in files:
            state_of[str(f)] = None if out is None else \
                out / 'frames' / _state_name(f)
            state = state_of[str(f)]
            if resume and state is not None and state.exists():
                done[str(f)] = state
            else:
                todo.append(f)
        measured = 0
        for path, result in self._map(todo, coords, scheduler, progress):
            if isinstance(result, Exception):
                skipped[str(path)] = f'{type(result).__name__}: {result}'
                log.warning('skipping %s: %s', path, result)
                continue
            if result is None:
                result = QTable(names=['target'], dtype=[int])
            if out is not None:
                with atomic_output(state_of[str(path)],
                                   overwrite=True) as tmp:
                    result.write(tmp, format='ascii.ecsv')
            rows.append(result)
            measured += 1
        for state in done.values():
            rows.append(QTable.read(state, format='ascii.ecsv'))
        rows = [r for r in rows if len(r)]
        for r in rows:
            r.meta.clear()
        exposures = _stack(rows) if rows else None
        if exposures is not None and self.colour_term:
            _at_target_colours(exposures, colours)
        lightcurves, stats, registration, calibration = {}, {}, {}, {}
        if exposures is not None:
            # Each frame's rows are one block of the stack.
            frame_of = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
            if 'reg_residual' in exposures.colnames:
                registration = _registration(exposures, frame_of)
            if ensemble is not None:
                calibration = self._calibrate(exposures, frame_of, ensemble,
                                              names)
            exposures['time'] = Time(np.asarray(exposures['time'], float),
                                     format='mjd', scale='utc')
            # A point per exposure carries the exposure's own values.
            carry = _PER_EXPOSURE if self.epoch_window == 0 else ()
            # All targets' epochs in one vectorised pass, then contiguous
            # slices per target.
            epochs = combine_exposures(exposures, window=self.epoch_window,
                                       carry=carry)
            if 'file' in epochs.colnames:
                # all.ecsv's file column names each light curve's file.
                epochs.rename_column('file', 'frame')
            target = np.asarray(epochs['target'])
            ids, first = np.unique(target, return_index=True)
            bounds = np.append(first, len(target))
            # One TimeSeries sliced per target (slices are 10x cheaper
            # than building a TimeSeries for each), and the statistics
            # of all in one sigma-clipping call.
            everything = _to_timeseries(epochs)
            # Each light curve says how it was measured (its plot's
            # panel title), in memory as in its file's provenance.
            everything.meta['method'] = type(self.photometry).__name__
            flags = np.asarray(everything['flags'], dtype=np.int64)
            batch, outlier = _statistics(
                np.asarray(everything['mag'].value), flags, first,
                np.diff(bounds), sigma=self.clip_sigma)
            flags[outlier] |= SATPHOT_FLAGS.LIGHTCURVE_OUTLIER
            everything['flags'] = flags
            stats = {names[i]: _stats_row(batch, k)
                     for k, i in enumerate(ids)}
            lightcurves = _LightCurves(everything, [names[i] for i in ids],
                                       bounds, self._position_meta(coords,
                                                                   ids))
        run = LightCurveRun(lightcurves=lightcurves, statistics=stats,
                            skipped=skipped, frames_measured=measured,
                            frames_resumed=len(done), output=out,
                            files={n: files_of[n] for n in lightcurves},
                            registration=registration,
                            calibration=calibration)
        return run, exposures

    def _map(self, files, coords, scheduler, progress):
        """Yield (file, rows or exception) for each frame."""
        from tqdm.auto import tqdm

        if scheduler is None:
            results = ((f, _safe_measure(self, f, coords)) for f in files)
        else:
            results = _dask_map(self, files, coords, scheduler)
        # On Dask the frames arrive a task at a time, in any order.
        yield from tqdm(results, total=len(files), desc='frames',
                        unit='frame', disable=not progress)

    def _write(self, run, out, *, plot, baseline, long_table,
               output_format):
        from .plotting import plot_lightcurve

        suffix, fmt = _FORMATS[output_format]
        meta = get_meta(config=self._config())
        # FITS headers hold no nested values: the provenance goes in as
        # one JSON keyword (long strings continue over cards).
        file_meta = meta if output_format == 'ecsv' else \
            {'SATPMETA': json.dumps(meta, default=str)}
        for name, ts in run.lightcurves.items():
            ts.meta.update(file_meta)
            with atomic_output(out / run.files[name],
                               overwrite=True) as tmp:
                ts.write(tmp, format=fmt)
            if plot:
                base = None if baseline is None else baseline.get(name)
                png = Path(run.files[name]).with_suffix('.png')
                plot_lightcurve(ts, baseline=base, path=out / png)
        if long_table and run.lightcurves:
            table = _long_table(run.lightcurves)
            # Which file holds each target's light curve: names are
            # changed to make safe, unique file names.
            table['file'] = [run.files[n] for n in table['name']]
            table.meta.update(file_meta)
            with atomic_output(out / f'all{suffix}', overwrite=True) as tmp:
                table.write(tmp, format=fmt)
        if run.statistics:
            stats = QTable(rows=[{'name': n, **s, 'file': run.files[n]}
                                 for n, s in run.statistics.items()])
            stats.meta.update(meta)
            with atomic_output(out / 'statistics.ecsv',
                               overwrite=True) as tmp:
                stats.write(tmp, format='ascii.ecsv')
        report = {'frames_measured': run.frames_measured,
                  'frames_resumed': run.frames_resumed,
                  'skipped': run.skipped,
                  **({'reference': self.reference, 'registration':
                      run.registration} if self.reference else {}),
                  **({'calibration': run.calibration}
                     if run.calibration else {}),
                  'targets_with_data': len(run.lightcurves),
                  'files': run.files,
                  'provenance': meta}
        with atomic_output(out / 'report.json', overwrite=True) as tmp:
            Path(tmp).write_text(json.dumps(report, indent=1))


def _registration(exposures, frame_of):
    """Each frame's transform from the reference, from its rows."""
    first = np.unique(frame_of, return_index=True)[1]
    files = np.asarray(exposures['file'], dtype=str)[first]
    values = {name: np.asarray(exposures[f'reg_{name}'])[first]
              for name in ('scale', 'rotation', 'x_shift', 'y_shift',
                           'residual', 'n_matched')}
    return {f: {k: v[i].item() for k, v in values.items()}
            for i, f in enumerate(files)}


def _as_bool(column):
    """Return a column as booleans, also when written as text (CSV)."""
    values = np.asarray(column)
    if values.dtype.kind in 'US':
        return np.isin(np.char.lower(np.char.strip(values.astype(str))),
                       ['true', 't', '1', 'yes', 'y'])
    return values.astype(bool)


class _LightCurves(Mapping):
    """
    The light curves of a run by target name.

    All targets' epochs are held in one `~astropy.timeseries.TimeSeries`,
    sorted by target; a target's light curve is its slice, made when
    first asked for (slicing every target up front cost ~0.1 ms each,
    the largest part of a run's work after the frames).
    """

    def __init__(self, everything, names, bounds, positions):
        self._everything = everything
        self._names = list(names)
        self._index = {n: k for k, n in enumerate(self._names)}
        self._bounds = bounds
        self._positions = positions
        self._made = {}

    def __getitem__(self, name):
        if name not in self._made:
            k = self._index[name]
            ts = self._everything[self._bounds[k]:self._bounds[k + 1]]
            ts.meta['name'] = name
            for key, values in self._positions.items():
                ts.meta[key] = float(values[k])
            self._made[name] = ts
        return self._made[name]

    def __iter__(self):
        return iter(self._names)

    def __len__(self):
        return len(self._names)

    def __repr__(self):
        return f'<{len(self)} light curves: {self._names[:3]}...>' \
            if len(self) > 3 else f'<light curves: {self._names}>'


def _long_table(lightcurves):
    """All light curves of a `_LightCurves` in one table, with ``name``."""
    table = QTable(lightcurves._everything)
    table['name'] = np.repeat(np.asarray(lightcurves._names, dtype=str),
                              np.diff(lightcurves._bounds))
    table.meta.clear()
    return table


def _stack(tables):
    """
    Stack per-frame result tables.

    They come from one writer with the same columns, so the columns are
    concatenated directly: `~astropy.table.vstack` merges column metadata
    table by table, which costs more than the rest of a run's epoch
    combination.
    """
    names = tables[0].colnames
    if any(t.colnames != names for t in tables[1:]):
        return vstack(tables)
    return QTable({n: np.concatenate([np.asarray(t[n]) for t in tables])
                   for n in names})


# Output formats: file suffix and astropy format name.
_FORMATS = {'ecsv': ('.ecsv', 'ascii.ecsv'), 'fits': ('.fits', 'fits')}


# The saved state of a run: a frame's rows in FRAME.<identity>.ecsv, and
# what they depend on (targets, photometry) in state.json.
# 2: rows with x, y, log_counts, n_saturated and the registration.
_STATE_VERSION = 2
_STATE_FILE = 'state.json'
_STATE_NAME = re.compile(r'\.[0-9a-f]{12}\.ecsv$')

# The run's own files in the output directory, which no target's light
# curve may take, and the names Windows reserves.
_RESERVED = {'all', 'statistics', 'report', 'con', 'prn', 'aux', 'nul',
             *(f'{d}{i}' for d in ('com', 'lpt') for i in range(10))}

# Registration: fewest matched stars, stars detected on the reference
# for the comparison stars' isolation, and the distance (px) within which
# a detection is the target itself.
_MIN_MATCHES = 6
_ISOLATION_STARS = 5000
_SELF = 1.5

# Differential calibration: largest median error (mag) of an automatic
# comparison star, and rounds of its variability clipping.
_MAX_COMPARISON_ERROR = 0.03
_CLIP_ITERATIONS = 5
_MAD_TO_SIGMA = 1.482602218505602

# Per-exposure columns of the rows that a light curve of one point per
# exposure (epoch_window=0) keeps; 'file' becomes 'frame'.
# The colour column of a colour-term calibration (Gaia's name).
_COLOUR = 'bp_rp'


def _at_target_colours(exposures, colours):
    """
    Put each exposure's magnitude at its target's colour, in place.

    The frames' zero points were fitted with a colour term and quoted at
    the ensemble's colour; a frame calibrated without one (too narrow a
    span of colours) has a NaN slope and stays as it is.
    """
    slope = np.asarray(exposures['zeropoint_colour_term'], dtype=float)
    slope_err = np.asarray(exposures['zeropoint_colour_term_err'],
                           dtype=float)
    delta = colours[np.asarray(exposures['target'])] - np.asarray(
        exposures['zeropoint_colour_ref'], dtype=float)
    fitted = np.isfinite(slope)
    term = np.where(fitted, slope * delta, 0.0)
    term_err = np.where(fitted & np.isfinite(slope_err), slope_err * delta,
                        0.0)
    for name in ('mag', 'zeropoint'):
        exposures[name] = np.asarray(exposures[name], dtype=float) + term
    for name in ('mag_err', 'zeropoint_err'):
        exposures[name] = np.hypot(np.asarray(exposures[name], dtype=float),
                                   term_err)


_PER_EXPOSURE = ('file', 'x', 'y', 'zeropoint', 'zeropoint_err',
                 'n_comparison', 'zeropoint_colour_term', 'reg_scale',
                 'reg_rotation', 'reg_x_shift', 'reg_y_shift',
                 'reg_residual', 'reg_n_matched')

# Longest file-name stem made from a name: far from the 255 bytes most
# file systems allow, with room for a hash and a suffix.
_MAX_STEM = 100


def _safe(name):
    """ASCII letters, digits and ``-_.+``; the rest become ``_``."""
    safe = ''.join(c if (c.isascii() and c.isalnum()) or c in '-_.+'
                   else '_' for c in name)
    # No hidden files, no '.' or '..'.
    return '_' + safe[1:] if safe.startswith('.') else safe


def _short_hash(text):
    return hashlib.sha256(text.encode('utf-8', 'surrogateescape')
                          ).hexdigest()


def _file_names(names, suffix):
    """
    Return unique, safe, bounded file names for the targets' names.

    A name that is already a safe, free file name is used as it is;
    otherwise (changed, truncated, empty, one of the run's own file names
    or taken by another target, compared without case as on macOS and
    Windows) it gets a short hash of the name, which keeps the mapping
    stable from run to run.
    """
    stems = [_safe(n)[:_MAX_STEM] for n in names]
    clean = [stem == name != '' and stem.casefold() not in _RESERVED
             for name, stem in zip(names, stems, strict=True)]
    count = {}
    for stem, ok in zip(stems, clean, strict=True):
        if ok:
            count[stem.casefold()] = count.get(stem.casefold(), 0) + 1
    out, taken = {}, set()
    for name, stem, ok in zip(names, stems, clean, strict=True):
        if not ok or count[stem.casefold()] > 1:
            stem = f'{stem or "target"}-{_short_hash(name)[:8]}'
        base, k = stem, 0
        while stem.casefold() in taken:  # a hash collision, in theory
            k += 1
            stem = f'{base}-{k}'
        taken.add(stem.casefold())
        out[name] = f'{stem}{suffix}'
    return out


def _state_name(path):
    """
    Return the file of a frame's saved rows: name and identity hash.

    The identity is the resolved path, size and modification time: two
    frames of one name in two directories have two states, and a frame
    rewritten since is measured again.
    """
    path = Path(path)
    try:
        resolved = path.resolve()
        stat = resolved.stat()
        identity = f'{resolved}\0{stat.st_size}\0{stat.st_mtime_ns}'
    except OSError:  # reported when the frame is read
        identity = str(path.absolute())
    stem = _safe(path.name)[:_MAX_STEM]
    return f'{stem}.{_short_hash(identity)[:12]}.ecsv'


def _digest(*values):
    """Hash strings and arrays, to compare inputs between runs."""
    h = hashlib.sha256()
    for value in values:
        if isinstance(value, str):
            h.update(value.encode('utf-8', 'surrogateescape'))
        else:
            h.update(np.ascontiguousarray(value, dtype='<f8').tobytes())
        h.update(b'\0')
    return h.hexdigest()


def _changes(saved, now):
    """Say what differs between two run fingerprints."""
    if saved.get('state_version') != now['state_version']:
        return ['the format of the saved state (an earlier satphotutils)']
    words = []
    if saved.get('targets') != now['targets']:
        words.append(f'the target table (names, positions or order; '
                     f'{saved.get("n_targets")} targets then, '
                     f'{now["n_targets"]} now)')
    if saved.get('reference') != now['reference']:
        words.append('the reference frame')
    if saved.get('comparison') != now['comparison']:
        words.append('the comparison stars')
    if saved.get('differential') != now['differential']:
        words.append('differential')
    if saved.get('colour_term', False) != now.get('colour_term', False):
        words.append('the colour term')
    if saved.get('min_comparison') != now['min_comparison']:
        words.append(f'min_comparison ({saved.get("min_comparison")} then, '
                     f'{now["min_comparison"]} now)')
    if saved.get('photometry') != now['photometry']:
        words.append(f'the photometry ({saved.get("photometry")} then, '
                     f'{now["photometry"]} now)')
    else:
        then = saved.get('photometry_config') or {}
        config = now['photometry_config']
        keys = sorted(k for k in set(then) | set(config)
                      if then.get(k) != config.get(k))
        if keys:
            words.append('the photometry configuration ('
                         + ', '.join(keys) + ')')
    return words


# Held by the run writing to an output directory.
_LOCK_FILE = '.satphot.lock'


def _lock_holder(lock):
    """Return the (pid, host) of a lock file, `None` if unreadable."""
    try:
        pid, host = lock.read_text().split(maxsplit=1)
        return int(pid), host.strip()
    except (OSError, ValueError):
        return None


def _pid_alive(pid):
    if sys.platform == 'win32':  # os.kill would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, someone else's
        return True
    return True


def _remove_dead_lock_drafts(out):
    """Remove the lock drafts (``.satphot.lock.PID``) of dead processes."""
    for draft in out.glob(f'{_LOCK_FILE}.*'):
        pid = draft.name.rpartition('.')[2]
        if pid.isdigit() and int(pid) != os.getpid() and \
                not _pid_alive(int(pid)):
            draft.unlink(missing_ok=True)


@contextlib.contextmanager
def _output_lock(out):
    """
    Hold ``out/.satphot.lock`` (pid and host) while a run writes there.

    Two runs into one directory would overwrite each other's results,
    the last writer winning. A lock of a process that no longer exists
    (a killed run) is taken over.
    """
    lock = out / _LOCK_FILE
    host = socket.gethostname()
    # Written in full, then linked into place: a lock file is never seen
    # half-written, and os.link fails if another run holds the lock.
    mine = out / f'{_LOCK_FILE}.{os.getpid()}'
    mine.write_text(f'{os.getpid()} {host}\n')
    try:
        for _ in range(3):
            try:
                os.link(mine, lock)
                break
            except FileExistsError:
                pass
            holder = _lock_holder(lock)
            if holder is None:
                continue  # just released, or being replaced
            pid, where = holder
            # Our own pid in a lock we do not hold yet: a dead run's.
            if where != host or (pid != os.getpid() and _pid_alive(pid)):
                on = '' if where == host else f' on {where}'
                msg = (f'another satphotutils run (pid {pid}{on}) is '
                       f'writing to {out}; wait for it to end or choose '
                       'another output directory (if no such run exists, '
                       f'remove {lock})')
                raise SatphotutilsError(msg)
            log.warning('%s: taking over the lock of pid %d, which no '
                        'longer runs (a killed run?)', out, pid)
            lock.unlink(missing_ok=True)
        else:
            msg = f'cannot take the lock {lock}; remove it if no run uses it'
            raise SatphotutilsError(msg)
    finally:
        mine.unlink(missing_ok=True)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


class NothingMeasuredError(SatphotutilsError):
    """
    A light-curve run that measured nothing usable.

    Its outputs (``report.json`` with every skipped frame) are written
    first; the run is in ``run``.
    """

    def __init__(self, message, run):
        super().__init__(message)
        self.run = run


def _nothing_measured(run, exposures, n_files):
    """Why a run gave nothing usable, or `None` if it gave something."""
    if exposures is not None and np.isfinite(
            np.asarray(exposures['mag'], dtype=float)).any():
        return None
    if exposures is None:
        what = f'no frame of {n_files} gave a measurement'
    else:
        what = (f'{len(exposures)} exposures were measured, none with a '
                'finite magnitude')
        flags = np.bitwise_or.reduce(np.asarray(exposures['flags'],
                                                dtype=np.int64))
        names = decode_flags(flags)
        if names:
            what += f' (flags seen: {", ".join(names)})'
    reasons = {}
    for path, why in run.skipped.items():
        # The same reason on many frames is said once.
        why = why.replace(str(path), 'the frame')
        reasons[why] = reasons.get(why, 0) + 1
    if reasons:
        common = sorted(reasons.items(), key=lambda kv: -kv[1])[:3]
        what += '; frames skipped: ' + '; '.join(
            f'{n} x {why}' for why, n in common)
    elif exposures is None:
        what += '; no target lies on any frame'
    return what


# A frame that cannot be used raises one of these; it is skipped and
# reported. Anything else is a bug and stops the run.
_FRAME_ERRORS = (SatphotutilsError, OSError, u.UnitsError)


def _safe_measure(pipeline, path, coords):
    # A long run never dies on a bad file: each is reported with its
    # frame, and the run goes on.
    try:
        return pipeline.measure_frame(path, coords)
    except _FRAME_ERRORS as exc:
        return exc


def _measure_batch(pipeline, paths, coords):
    # Long-lived Dask workers hold many objects (the model, their own
    # state); moving them out of the collector's reach saves ~30% per
    # frame, which the collector otherwise spends rescanning them.
    gc.freeze()
    return [_safe_measure(pipeline, p, coords) for p in paths]


# The most frames one Dask task measures: a long run then reports
# progress and saves each frame's state every ~32 frames per worker.
_MAX_FRAMES_PER_TASK = 32


def _batches(files, n_workers):
    # Each task measures several frames, as equal in number as they can
    # be (7 + 7 + ... + 1 frames had left one of two workers busy 18%
    # longer than the other). A task costs the scheduler and the driver
    # a few ms: 50 frames on 2 workers ran in 0.61-0.65 s as 2 or 4
    # tasks and in 0.67-0.69 s as 16. So two tasks per worker, which
    # still lets a free worker take a slow one's second task, and more
    # only when a task would exceed _MAX_FRAMES_PER_TASK frames.
    workers = max(n_workers, 1)
    n = max(2 * workers, -(-len(files) // _MAX_FRAMES_PER_TASK))
    n = min(len(files), n)
    size, extra = divmod(len(files), max(n, 1))
    out, start = [], 0
    for k in range(n):
        stop = start + size + (k < extra)
        out.append(files[start:stop])
        start = stop
    return out


# Clients whose workers' memory settings were already checked.
_CHECKED_CLIENTS = set()


def _malloc_trim_threshold():
    import os

    return os.environ.get('MALLOC_TRIM_THRESHOLD_')


def _check_worker_memory(client):
    """Warn, once per client, if its workers trim memory after each frame."""
    if client.id in _CHECKED_CLIENTS:
        return
    _CHECKED_CLIENTS.add(client.id)
    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 by default: each
    # frame's arrays are handed back to the OS and faulted in again for
    # the next. Nothing is wrong, only slow, so a warning in the log.
    try:
        found = client.run(_malloc_trim_threshold)
    except Exception as exc:  # only advice: never stop a run for it
        log.debug("could not read the workers' environment: %s", exc)
        return
    values = {v for v in found.values() if v is not None}
    if values:
        log.warning(
            'the Dask workers run with MALLOC_TRIM_THRESHOLD_=%s (the '
            "nanny's default), which made frames 1.2-1.6 times slower to "
            'measure in the lightcurve_throughput benchmark; start the '
            'cluster after dask.config.set({"distributed.nanny.'
            'pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}) to unset '
            'it (light-curve user guide, "Scale")',
            ', '.join(sorted(values)))


def _dask_map(pipeline, files, coords, scheduler):
    import dask

    if isinstance(scheduler, str) and scheduler in ('threads', 'processes',
                                                    'sync'):
        import os

        workers = os.cpu_count() or 1
        batches = _batches(files, workers)
        with contextlib.ExitStack() as stack:
            options = {}
            if scheduler == 'processes':
                # One pool for the run: without one, dask starts a new
                # pool (each process importing torch, ~3.6 s) per compute.
                options['pool'] = stack.enter_context(process_pool(workers))
            # One compute per round of tasks, not one for the whole run,
            # so that a long run's frames are saved as it goes.
            for start in range(0, len(batches), workers):
                todo = batches[start:start + workers]
                results = dask.compute(
                    *[dask.delayed(_measure_batch)(pipeline, b, coords)
                      for b in todo], scheduler=scheduler, **options)
                for batch, result in zip(todo, results, strict=True):
                    yield from zip(batch, result, strict=True)
        return
    from distributed import Client, as_completed

    client = scheduler if isinstance(scheduler, Client) else \
        Client(scheduler)
    try:
        _check_worker_memory(client)
        # Scatter the pipeline and targets once (the model weights), not
        # per task. Unhashed keys: with content-hashed keys a second run
        # on the same client reuses the first run's keys, which the
        # scheduler may be releasing, and the run hangs.
        remote, remote_coords = client.scatter([pipeline, coords],
                                               broadcast=True, hash=False)
        batches = _batches(files, len(client.scheduler_info()['workers']))
        futures = client.map(_measure_batch, [remote] * len(batches),
                             batches, [remote_coords] * len(batches),
                             pure=False)
        where = {f.key: batch for f, batch in zip(futures, batches,
                                                  strict=True)}
        for future in as_completed(futures):
            yield from zip(where[future.key], future.result(), strict=True)
    finally:
        if not isinstance(scheduler, Client):
            client.close()
