# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Light curves of many targets from many frames.

The unit of work is a frame: it is read once, all targets on it are
measured in one batched call, and the result is written atomically to
``OUTDIR/frames/`` before the next. A rerun with ``resume`` skips frames
already done, so an interrupted run continues without duplicating rows.
Frames that cannot be read, have no WCS or lack a needed keyword are
skipped and listed in ``report.json``. Serially by default; with a Dask
scheduler (``'threads'``, ``'processes'``, a ``distributed.Client`` or
its address) through the same per-frame function.
"""

import contextlib
import dataclasses
import gc
import json
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.stats import sigma_clipped_stats
from astropy.table import QTable, Table, vstack
from astropy.time import Time

from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.flags import SATPHOT_FLAGS
from satphotutils.utils.io import atomic_output, read_frame

from .epochs import (
    _statistics,
    _stats_row,
    _to_timeseries,
    combine_exposures,
)

__all__ = ['LightCurvePipeline', 'LightCurveRun', 'list_frames']

log = logging.getLogger(__name__)


def list_frames(frames, **filters):
    """
    List FITS frames from a directory, a glob pattern or a list.

    Parameters
    ----------
    frames : path-like, str or list
        A directory (read with `ccdproc.ImageFileCollection`), a glob
        pattern, or a list of files.

    **filters
        Header keyword values a frame must have (e.g. ``FILTER='g'``),
        applied through `ccdproc.ImageFileCollection.files_filtered`.

    Returns
    -------
    files : list of `~pathlib.Path`
        Files that cannot be read are kept, whatever the filters, so
        that a run reports them instead of silently leaving them out.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from astropy.io import fits
    >>> from satphotutils.lightcurves import list_frames
    >>> directory = Path(tempfile.mkdtemp())
    >>> for name, band in (('a.fits', 'g'), ('b.fits', 'V')):
    ...     fits.PrimaryHDU(header=fits.Header({'FILTER': band})).writeto(
    ...         directory / name)
    >>> [p.name for p in list_frames(directory, FILTER='g')]
    ['a.fits']
    """
    from ccdproc import ImageFileCollection

    if isinstance(frames, (str, Path)) and Path(frames).is_dir():
        # Every FITS-named file, readable or not: a damaged one must reach
        # the run and its report, which ImageFileCollection would skip.
        everything = sorted(p for p in Path(frames).glob('*.fit*')
                            if not p.name.startswith('.'))
        if not filters or not everything:
            return everything
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            collection = ImageFileCollection(str(frames),
                                             glob_include='*.fit*')
            kept = set() if not len(collection.summary or []) else {
                Path(f).name for f in collection.files_filtered(**filters)}
            return [p for p in everything
                    if p.name in kept or not _has_header(p)]
    if isinstance(frames, (str, Path)):
        import glob

        files = [Path(f) for f in sorted(glob.glob(str(frames)))]
    else:
        files = [Path(f) for f in frames]
    if filters:
        keep = []
        for f in files:
            try:
                header = fits.getheader(f)
            except OSError:
                keep.append(f)  # reported as unreadable by the run
                continue
            if all(str(header.get(k)) == str(v) for k, v in filters.items()):
                keep.append(f)
        files = keep
    return files


def _has_header(path):
    try:
        with open(path, 'rb') as fh:
            fits.getheader(fh)
    except Exception:  # any failure: the run will report the file
        return False
    return True


def _read_targets(targets):
    if not isinstance(targets, Table):
        targets = QTable.read(targets)
    if 'skycoord' in targets.colnames:
        coord = SkyCoord(targets['skycoord'])
    elif 'ra' in targets.colnames and 'dec' in targets.colnames:
        ra, dec = targets['ra'], targets['dec']
        coord = SkyCoord(ra if hasattr(ra, 'unit') and ra.unit else
                         np.asarray(ra) * u.deg,
                         dec if hasattr(dec, 'unit') and dec.unit else
                         np.asarray(dec) * u.deg)
    else:
        msg = 'the target table needs ra and dec (deg) or a skycoord column'
        raise ValueError(msg)
    if 'name' in targets.colnames:
        names = [str(n) for n in targets['name']]
    else:
        names = [f'target{i:05d}' for i in range(len(targets))]
    if len(set(names)) != len(names):
        msg = 'target names must be unique'
        raise ValueError(msg)
    return coord, names


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


class LightCurvePipeline:
    """
    Measure targets on many frames and build their light curves.

    Parameters
    ----------
    photometry : callable, optional
        A satphotutils photometry object
        (`~satphotutils.photometry.SaturatedStarPhotometry` by default, or a
        baseline such as
        `~satphotutils.photometry.AperturePhotometryBaseline`).

    epoch_window : float, optional
        Exposures closer than this (days) form one epoch.

    epoch_key : str, optional
        Header keyword numbering epochs, used instead of the window.

    time_key : str, optional
        Header keyword of the mid-exposure time (MJD).

    time_scale : str, optional
        Time scale of ``time_key``.

    zeropoint_key, transparency_key, camera_key, filter_key : str, optional
        Header keywords.

    comparison : `~astropy.table.Table`, optional
        Comparison stars (``ra``, ``dec``, ``mag`` in the frames' band),
        unsaturated: each frame's zero point is then the sigma-clipped
        median of ``mag + 2.5 log10(counts)`` over them (needs at least
        ``min_comparison``), instead of the header keywords.

    min_comparison : int, optional
        Fewest comparison stars for an ensemble calibration.

    clip_sigma : float, optional
        Threshold of the light-curve outlier flags.

    Examples
    --------
    A run over a directory of frames (see the light-curve tutorial in the
    documentation for a complete, simulated example):

    >>> from satphotutils.lightcurves import LightCurvePipeline
    >>> pipeline = LightCurvePipeline(epoch_window=0.1, zeropoint_key='ZP')
    >>> pipeline.keys['time']
    'MJD-OBS'
    """

    def __init__(self, photometry=None, *, epoch_window=0.1, epoch_key=None,
                 time_key='MJD-OBS', time_scale='utc', zeropoint_key='ZP',
                 transparency_key='TRANSP', camera_key='CAMERA',
                 filter_key='FILTER', comparison=None, min_comparison=5,
                 clip_sigma=5.0):
        if photometry is None:
            from satphotutils.photometry import SaturatedStarPhotometry

            photometry = SaturatedStarPhotometry()
        self.photometry = photometry
        self.epoch_window = float(epoch_window)
        self.epoch_key = epoch_key
        self.keys = {'time': time_key, 'zeropoint': zeropoint_key,
                     'transparency': transparency_key,
                     'camera': camera_key, 'filter': filter_key}
        self.time_scale = time_scale
        self.comparison = comparison
        self.min_comparison = int(min_comparison)
        self.clip_sigma = float(clip_sigma)

    # -- one frame ------------------------------------------------------------

    def measure_frame(self, path, coords):
        """
        Measure all targets on one frame.

        Parameters
        ----------
        path : path-like
            The FITS frame.

        coords : `~astropy.coordinates.SkyCoord`
            Target positions.

        Returns
        -------
        rows : `~astropy.table.QTable`
            One row per target on the frame: ``target`` (index),
            ``time`` (MJD), ``mag``, ``mag_err``, ``flux``, ``flux_err``,
            ``flags``, ``camera``, ``filter``, ``epoch`` (from the header
            keyword, if configured) and ``file``.

        Raises
        ------
        SatphotutilsError
            If the frame cannot be used (no WCS, no time, no
            calibration).
        """
        frame = read_frame(path)
        if frame.wcs is None or not frame.wcs.has_celestial:
            msg = 'no celestial WCS'
            raise SatphotutilsError(msg)
        meta = frame.meta
        if self.keys['time'] not in meta:
            msg = f'no {self.keys["time"]} keyword'
            raise SatphotutilsError(msg)
        x, y = frame.wcs.world_to_pixel(coords)
        ny, nx = frame.shape
        on = (x >= 0) & (x <= nx - 1) & (y >= 0) & (y <= ny - 1)
        index = np.flatnonzero(on)
        if not len(index):
            return None
        zeropoint = None
        if self.comparison is None and self.keys['zeropoint'] not in meta:
            msg = (f'no {self.keys["zeropoint"]} keyword and no comparison '
                   'catalogue to calibrate with')
            raise SatphotutilsError(msg)
        result = self.photometry(frame, positions=np.column_stack(
            [x[index], y[index]]))
        log_counts = np.asarray(result['log_counts'])
        err = np.asarray(result['log_counts_err'])
        flags = np.asarray(result['flags'], dtype=np.int64)
        t = float(meta.get(self.keys['transparency'], 1.0))
        if self.comparison is not None:
            zeropoint = self._ensemble_zeropoint(frame)
            if zeropoint is None:
                flags |= SATPHOT_FLAGS.NO_CALIBRATION
                mag = np.full(len(index), np.nan)
            else:
                mag = zeropoint - 2.5 * log_counts
        else:
            mag = float(meta[self.keys['zeropoint']]) \
                - 2.5 * (log_counts + np.log10(t))
        flux = np.asarray(getattr(result['flux'], 'value', result['flux']))
        rows = QTable()
        rows['target'] = index
        rows['time'] = np.full(len(index), float(meta[self.keys['time']]))
        rows['mag'] = mag
        rows['mag_err'] = 2.5 * err
        rows['flux'] = flux
        rows['flux_err'] = np.asarray(getattr(result['flux_err'], 'value',
                                              result['flux_err']))
        rows['flags'] = flags
        rows['camera'] = str(meta.get(self.keys['camera'], ''))
        rows['filter'] = str(meta.get(self.keys['filter'], ''))
        if self.epoch_key is not None:
            rows['epoch'] = int(meta.get(self.epoch_key, -1))
        rows['file'] = Path(path).name
        return rows

    def _ensemble_zeropoint(self, frame):
        comp = self.comparison
        coords = SkyCoord(np.asarray(comp['ra']) * u.deg,
                          np.asarray(comp['dec']) * u.deg)
        x, y = frame.wcs.world_to_pixel(coords)
        ny, nx = frame.shape
        on = (x >= 12) & (x <= nx - 13) & (y >= 12) & (y <= ny - 13)
        if on.sum() < self.min_comparison:
            return None
        res = self.photometry(frame, positions=np.column_stack([x[on],
                                                                y[on]]))
        good = (np.asarray(res['flags']) == 0) & np.isfinite(
            res['log_counts'])
        if good.sum() < self.min_comparison:
            return None
        zp = np.asarray(comp['mag'], dtype=float)[on][good] \
            + 2.5 * np.asarray(res['log_counts'])[good]
        _, median, _ = sigma_clipped_stats(zp, sigma=3.0, stdfunc='mad_std')
        return float(median)

    # -- a run ----------------------------------------------------------------

    def __call__(self, frames, targets, output=None, *, resume=False,
                 scheduler=None, progress=False, plot=False, baseline=None,
                 long_table=True, output_format='ecsv', **filters):
        """
        Build the light curves of the targets.

        Parameters
        ----------
        frames : path-like, str or list
            Frames (see `list_frames`).

        targets : `~astropy.table.Table` or path-like
            ``ra``, ``dec`` (deg) or a ``skycoord`` column, optional
            ``name``.

        output : path-like, optional
            Output directory: ``frames/`` (per-frame results, the resume
            state), one ECSV light curve per target, ``all.ecsv`` (every
            target, with a ``name`` column), ``statistics.ecsv`` and
            ``report.json``; plots with ``plot``. Nothing is written if
            `None` (no resume possible).

        resume : bool, optional
            Skip frames whose results are already in ``output``.

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
            If no frames are found. Frames that cannot be used are not
            errors: they are skipped and listed in ``run.skipped`` and
            ``report.json``.
        ValueError
            If the target table lacks positions or repeats a name.
        """
        if output_format not in _FORMATS:
            msg = (f'output_format must be one of {sorted(_FORMATS)}, got '
                   f'{output_format!r}')
            raise ValueError(msg)
        coords, names = _read_targets(targets)
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
        done, rows = {}, []
        if out is not None:
            (out / 'frames').mkdir(parents=True, exist_ok=True)
            # Temporaries of a killed run (atomic_output's dot files).
            for stale in (*out.glob('.*.ecsv.*'),
                          *(out / 'frames').glob('.*.ecsv.*')):
                stale.unlink(missing_ok=True)
        skipped = {}
        todo = []
        for f in files:
            state = None if out is None else \
                out / 'frames' / f'{Path(f).name}.ecsv'
            if resume and state is not None and state.exists():
                done[str(f)] = state
            else:
                todo.append(f)
        for path, result in self._map(todo, coords, scheduler, progress):
            if isinstance(result, Exception):
                skipped[str(path)] = f'{type(result).__name__}: {result}'
                log.warning('skipping %s: %s', path, result)
                continue
            if result is None:
                result = QTable(names=['target'], dtype=[int])
            if out is not None:
                with atomic_output(out / 'frames' / f'{Path(path).name}.ecsv',
                                   overwrite=True) as tmp:
                    result.write(tmp, format='ascii.ecsv')
            rows.append(result)
        for state in done.values():
            rows.append(QTable.read(state, format='ascii.ecsv'))
        rows = [r for r in rows if len(r)]
        for r in rows:
            r.meta.clear()
        exposures = _stack(rows) if rows else None
        lightcurves, stats = {}, {}
        if exposures is not None:
            exposures['time'] = Time(np.asarray(exposures['time'], float),
                                     format='mjd', scale=self.time_scale)
            # All targets' epochs in one vectorised pass, then contiguous
            # slices per target.
            epochs = combine_exposures(exposures, window=self.epoch_window)
            target = np.asarray(epochs['target'])
            ids, first = np.unique(target, return_index=True)
            bounds = np.append(first, len(target))
            # One TimeSeries sliced per target (slices are 10x cheaper
            # than building a TimeSeries for each), and the statistics
            # of all in one sigma-clipping call.
            everything = _to_timeseries(epochs)
            flags = np.asarray(everything['flags'], dtype=np.int64)
            batch, outlier = _statistics(
                np.asarray(everything['mag'].value), flags, first,
                np.diff(bounds), sigma=self.clip_sigma)
            flags[outlier] |= SATPHOT_FLAGS.LIGHTCURVE_OUTLIER
            everything['flags'] = flags
            stats = {names[i]: _stats_row(batch, k)
                     for k, i in enumerate(ids)}
            lightcurves = _LightCurves(everything, [names[i] for i in ids],
                                       bounds, coords[ids])
        run = LightCurveRun(lightcurves=lightcurves, statistics=stats,
                            skipped=skipped, frames_measured=len(rows),
                            frames_resumed=len(done), output=out)
        if out is not None:
            self._write(run, out, plot=plot, baseline=baseline,
                        long_table=long_table, output_format=output_format)
        return run

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
        for name, ts in run.lightcurves.items():
            with atomic_output(out / f'{_safe(name)}{suffix}',
                               overwrite=True) as tmp:
                ts.write(tmp, format=fmt)
            if plot:
                base = None if baseline is None else baseline.get(name)
                plot_lightcurve(ts, baseline=base,
                                path=out / f'{_safe(name)}.png')
        if long_table and run.lightcurves:
            with atomic_output(out / f'all{suffix}', overwrite=True) as tmp:
                _long_table(run.lightcurves).write(tmp, format=fmt)
        if run.statistics:
            stats = QTable(rows=[{'name': n, **s} for n, s in
                                 run.statistics.items()])
            with atomic_output(out / 'statistics.ecsv',
                               overwrite=True) as tmp:
                stats.write(tmp, format='ascii.ecsv')
        report = {'frames_measured': run.frames_measured,
                  'frames_resumed': run.frames_resumed,
                  'skipped': run.skipped,
                  'targets_with_data': len(run.lightcurves)}
        with atomic_output(out / 'report.json', overwrite=True) as tmp:
            Path(tmp).write_text(json.dumps(report, indent=1))


class _LightCurves(Mapping):
    """
    The light curves of a run by target name.

    All targets' epochs are held in one `~astropy.timeseries.TimeSeries`,
    sorted by target; a target's light curve is its slice, made when
    first asked for (slicing every target up front cost ~0.1 ms each,
    the largest part of a run's work after the frames).
    """

    def __init__(self, everything, names, bounds, coords):
        self._everything = everything
        self._names = list(names)
        self._index = {n: k for k, n in enumerate(self._names)}
        self._bounds = bounds
        self._coords = coords
        self._made = {}

    def __getitem__(self, name):
        if name not in self._made:
            k = self._index[name]
            ts = self._everything[self._bounds[k]:self._bounds[k + 1]]
            ts.meta['name'] = name
            ts.meta['ra'] = float(self._coords[k].ra.deg)
            ts.meta['dec'] = float(self._coords[k].dec.deg)
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


def _safe(name):
    return ''.join(c if c.isalnum() or c in '-_.+' else '_' for c in name)


def _safe_measure(pipeline, path, coords):
    # Whatever goes wrong with one frame is reported with the frame, and
    # the run goes on: a long run never dies on a bad file.
    try:
        return pipeline.measure_frame(path, coords)
    except Exception as exc:
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
                from concurrent.futures import ProcessPoolExecutor

                from dask.multiprocessing import get_context

                options['pool'] = stack.enter_context(ProcessPoolExecutor(
                    workers, mp_context=get_context()))
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
