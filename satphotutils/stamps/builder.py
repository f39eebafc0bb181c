# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Stamp tables from real data: reduced frames with a WCS plus a target list.

Labels come from `satphotutils.calibration.training_labels` (Gaia
saturation corrections, the colour relation, Eq. 1 with each frame's zero
point and transparency, Eq. 2 crowding from Gaia neighbours). Stamps
closer than ``edge`` pixels to the detector edge or with more than
``max_unity`` pixels exactly equal to 1 are rejected, and at most
``max_exposures`` random exposures are kept per target. Unreadable frames
are skipped and reported, never fatal.
"""

import contextlib
import dataclasses
import logging
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

from satphotutils.frames import (
    HeaderKeys,
    frame_background,
    list_frames,
    read_frame_data,
    read_frame_info,
)
from satphotutils.frames.trails import _LEVEL_FRACTION as _TRAIL_FRACTION
from satphotutils.lightcurves.epochs import assign_epochs
from satphotutils.utils._parameters import as_positive, as_whole_number
from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.threads import default_threads

from .apertures import circle_mask
from .cutout import cut_stamps
from .table import _MIN_STRING_WIDTH, StampTableWriter, stamp_shape

__all__ = ['BuildReport', 'StampBuilder']

log = logging.getLogger(__name__)

_EPOCH_GAP = 0.02  # days between frames that starts a new epoch


@dataclasses.dataclass
class BuildReport:
    """
    What a `StampBuilder` run did.

    Attributes
    ----------
    rows : int
        Stamps written.

    frames_listed, frames_used : int
        Frames given, and frames that gave at least one stamp.

    frames_without_stamps : int
        Readable frames on which no target exposure passed the
        selections.

    skipped_files : dict
        File name to the reason it was skipped.

    rejected_edge, rejected_unity, rejected_no_label : int
        Target exposures rejected as too near the detector edge, for
        more than ``max_unity`` pixels exactly equal to 1, and for having
        no label (a colour outside the colour relation's range).

    dropped_over_limit : int
        Exposures left out by ``max_exposures``.

    zeropoints : dict
        File name to the `~satphotutils.calibration.FrameZeropoint`
        fitted to its catalogue stars, for the frames without a zero
        point in the header or the frame table.

    fwhm : dict
        File name to the PSF FWHM (pixels) measured on the frame.

    Examples
    --------
    >>> from satphotutils.stamps import BuildReport
    >>> report = BuildReport(rows=10, frames_listed=3, frames_used=2,
    ...                      skipped_files={'bad.fits': 'no WCS'})
    >>> print(report.summary())
    10 stamps from 2 of 3 frames (1 skipped, 0 without stamps)
      skipped bad.fits: no WCS
    rejected exposures: 0 near the edge, 0 damaged cores, 0 unlabelled
    left out over the exposure limit: 0
    """

    rows: int = 0
    frames_used: int = 0
    skipped_files: dict = dataclasses.field(default_factory=dict)
    rejected_edge: int = 0
    rejected_unity: int = 0
    rejected_no_label: int = 0
    dropped_over_limit: int = 0
    frames_listed: int = 0
    frames_without_stamps: int = 0
    zeropoints: dict = dataclasses.field(default_factory=dict)
    fwhm: dict = dataclasses.field(default_factory=dict)

    def summary(self):
        """
        Describe the run in a few lines, for people.

        Returns
        -------
        text : str
        """
        lines = [f'{self.rows} stamps from {self.frames_used} of '
                 f'{self.frames_listed} frames ({len(self.skipped_files)} '
                 f'skipped, {self.frames_without_stamps} without stamps)']
        lines += [f'  skipped {path}: {why}'
                  for path, why in self.skipped_files.items()]
        lines.append(f'rejected exposures: {self.rejected_edge} near the '
                     f'edge, {self.rejected_unity} damaged cores, '
                     f'{self.rejected_no_label} unlabelled')
        lines.append('left out over the exposure limit: '
                     f'{self.dropped_over_limit}')
        fits = [z for z in self.zeropoints.values() if z.valid]
        if fits:
            lines.append(
                f'zero points fitted to catalogue stars on {len(fits)} '
                'frames: median error '
                f'{np.median([z.error for z in fits]):.4f} mag from a '
                f'median of {np.median([z.n_used for z in fits]):.0f} '
                'stars')
            t = self.relative_transparency()
            if len(t) > 1:
                values = np.array(list(t.values()))
                lines.append('transparency relative to the clearest of '
                             f'them: {values.min():.3f} to '
                             f'{values.max():.3f} (median '
                             f'{np.median(values):.3f})')
        return '\n'.join(lines)

    def relative_transparency(self):
        """
        Return each fitted frame's transparency relative to the clearest.

        A frame without a zero point keyword is its own reference (t = 1
        in Eq. 1, ``N = 10**(-0.4 (m - Z)) / t``), so its fitted zero
        point is ``Z - 2.5 log10(t)``; on one camera ``Z`` is common, and
        the differences between the frames give their transparencies
        relative to the frame with the largest fitted zero point (the
        clearest, t = 1; a frame through twice the extinction has t = 2).
        Zero points fitted with a colour term are compared at one colour
        (the median of their reference colours).

        Returns
        -------
        transparency : dict
            File name to ``10 ** (0.4 (Z_max - Z_frame))`` (at least 1).

        Examples
        --------
        >>> from satphotutils.calibration import FrameZeropoint
        >>> from satphotutils.stamps import BuildReport
        >>> report = BuildReport(zeropoints={
        ...     'a.fits': FrameZeropoint(25.0, 0.001, 80, 2),
        ...     'b.fits': FrameZeropoint(24.5, 0.001, 75, 1)})
        >>> {k: round(v, 3) for k, v in report.relative_transparency(
        ...     ).items()}
        {'a.fits': 1.0, 'b.fits': 1.585}
        """
        fits = {name: z for name, z in self.zeropoints.items() if z.valid}
        # Zero points with a colour term are quoted at each frame's own
        # median colour: compare them all at one colour.
        refs = [z.colour_ref for z in fits.values()
                if np.isfinite(z.colour_term)]
        common = float(np.median(refs)) if refs else None
        fitted = {name: float(z.at(common) if np.isfinite(z.colour_term)
                              else z.zeropoint)
                  for name, z in fits.items()}
        if not fitted:
            return {}
        top = max(fitted.values())
        return {name: float(10 ** (0.4 * (top - z)))
                for name, z in fitted.items()}


class StampBuilder:
    """
    Build a labelled stamp table from reduced frames and a target list.

    Parameters
    ----------
    stamp_size : int or tuple of int, optional
        Stamp size (odd), or the shape ``(ny, nx)`` of tall stamps (odd,
        ``ny >= nx``) whose rows run along the frames' read (bleed)
        direction, for frames whose trails were left in place.

    edge : int, optional
        Smallest distance (pixels) of a target from the detector edge.

    max_unity : int, optional
        Stamps with more pixels exactly equal to 1 within 5 px of the
        centre are rejected (the survey pipeline damaged their core).

    max_exposures : int, optional
        Keep at most this many random exposures per target.

    band : {'g', 'V'}, optional
        The cameras' band, for the Gaia colour relation.

    header_keys : `~satphotutils.frames.HeaderKeys`, optional
        Header keywords of the time, the zero point Z of the reference
        image, the transparency t, the sky level, the camera and the
        filter (the defaults if `None`). A ``frame_table`` given to
        `__call__` takes precedence for Z and t. A frame without a
        transparency is its own reference (t = 1, recorded in the
        ``transparency`` column). A frame without a zero point has it
        fitted to aperture photometry of its catalogue stars
        (`~satphotutils.stamps.catalogue_zeropoint`; the
        ``zeropoint_err`` and ``zeropoint_n`` columns record the fit's
        error and the stars used, NaN and 0 for a zero point that was
        given); it is skipped when fewer than 5 stars are usable.

    radius : float, optional
        Radius (pixels) of the circle in which ``max_unity`` is counted
        (the paper's 5 px).

    seed : int, optional
        Random seed of the exposure selection.

    zeropoint_radius : float, optional
        Aperture radius (pixels) of the photometry a missing zero point
        is fitted to.

    colour_term : bool, optional
        Fit the zero points of frames without one with a colour term in
        Gaia BP - RP (`~satphotutils.calibration.frame_zeropoint`): each
        stamp's ``zeropoint`` is then its star's, at its colour, and the
        ``zeropoint_colour_term`` column holds the fitted slope (NaN
        without a fit).

    zeropoint_stars : int, optional
        Catalogue stars measured at most to fit a missing zero point,
        spread over their magnitudes (all if `None`; at least 20);
        `~satphotutils.stamps.catalogue_zeropoint`'s ``max_stars``. The
        zero point's statistical error from 300 is a few 0.1 mmag; the
        aperture correction's, from the 25 brightest, is usually
        larger.

    workers : int, optional
        Processes that read and measure frames at once (all the cores
        this process may use if `None`; 1 measures in this process). The
        output does not depend on it.

    saturation : float, optional
        The saturation level (counts, sky included) of every frame, for
        frames whose header has no saturation keyword (``SATURATE`` by
        default) and whose pixels show no plateau
        (`~satphotutils.frames.saturation_level`). A ``frame_table``
        ``saturation`` column takes precedence, then the header, then
        this, then the plateau; a frame with none of them is skipped.

    Notes
    -----
    Every row records its frame's saturation level (``saturation``) and
    PSF width (``fwhm``, `~satphotutils.frames.frame_fwhm` on the
    isolated unsaturated targets on the frame, or on the stars detected
    on it when fewer than 3 targets qualify), the per-frame
    descriptors a camera-agnostic network reads; a frame whose FWHM
    cannot be measured (fewer than 3 such stars) is skipped and
    reported.

    Examples
    --------
    >>> from satphotutils.stamps import StampBuilder
    >>> builder = StampBuilder(max_exposures=50, seed=1)
    >>> builder.stamp_size
    21

    The user guide's network page shows a full run on simulated frames.
    """

    def __init__(self, *, stamp_size=21, edge=50, max_unity=4,
                 max_exposures=None, band='g', header_keys=None, radius=5.0,
                 seed=None, zeropoint_radius=3.0, saturation=None,
                 colour_term=False, workers=None, zeropoint_stars=300):
        self.stamp_shape = stamp_shape(stamp_size, name='stamp_size')
        ny, nx = self.stamp_shape
        self.stamp_size = nx if ny == nx else self.stamp_shape
        self.edge = int(edge)
        self.max_unity = int(max_unity)
        self.max_exposures = max_exposures
        self.band = band
        self.header_keys = HeaderKeys() if header_keys is None else \
            header_keys
        self.radius = float(radius)
        self.seed = seed
        self.zeropoint_radius = float(zeropoint_radius)
        self.saturation = None if saturation is None else as_positive(
            saturation, 'saturation')
        self.colour_term = bool(colour_term)
        self.zeropoint_stars = None if zeropoint_stars is None else \
            as_whole_number(zeropoint_stars, 'zeropoint_stars', minimum=20)
        self.workers = default_threads() if workers is None else \
            as_whole_number(workers, 'workers', minimum=1)

    def __call__(self, frames, targets, output, *, frame_table=None,
                 neighbours=None, overwrite=False, progress=False):
        """
        Write the stamp table.

        Parameters
        ----------
        frames : path-like or list of path-like
            A directory of FITS frames (read through
            `ccdproc.ImageFileCollection`) or a list of files.

        targets : `~astropy.table.Table`
            ``ra``, ``dec`` (deg) and Gaia DR3 ``phot_g_mean_mag`` with
            ``phot_bp_mean_mag`` and ``phot_rp_mean_mag`` or ``bp_rp``;
            ``source_id`` becomes ``star_id`` when present.

        output : path-like
            The stamp table to write (atomically).

        frame_table : `~astropy.table.Table`, optional
            Per-frame ``file`` (name), ``zeropoint``, ``transparency``
            and optional ``good`` (bool) columns, instead of headers.

        neighbours : `~astropy.table.Table`, optional
            Gaia sources around the targets for the crowding terms.

        overwrite : bool, optional
            Replace an existing output.

        progress : bool, optional
            Show progress bars.

        Returns
        -------
        report : `BuildReport`
        """
        from tqdm.auto import tqdm

        from satphotutils.calibration.labels import training_labels

        files = list_frames(frames)
        if not files:
            msg = (f'no FITS frames found in {frames}; give a directory of '
                   '*.fits/*.fits.fz files, a glob pattern or a list of '
                   'files')
            raise SatphotutilsError(msg)
        report = BuildReport(frames_listed=len(files))
        labels = training_labels(targets, zeropoint=0.0, band=self.band,
                                 neighbours=neighbours, seed=self.seed)
        coords = SkyCoord(np.asarray(targets['ra'], float),
                          np.asarray(targets['dec'], float), unit='deg')
        star_id = (np.asarray(targets['source_id'])
                   if 'source_id' in targets.colnames
                   else np.arange(len(targets)))
        overrides = _frame_overrides(frame_table)
        valid = np.asarray(labels['valid'])

        context = _Context(self, overrides, labels, coords, star_id,
                           np.ma.filled(np.asarray(labels['mag'].value),
                                        np.nan))
        with _frame_pool(self.workers, context) as run:
            # Pass 1: headers only, to find which targets each frame holds.
            candidates, info = {}, {}
            for path, meta in tqdm(zip(files, run(_header_task, files),
                                       strict=True),
                                   total=len(files), desc='headers',
                                   disable=not progress):
                if isinstance(meta, str):
                    report.skipped_files[str(path)] = meta
                    log.warning('skipping %s: %s', path, meta)
                    continue
                if not meta['good']:
                    report.skipped_files[str(path)] = 'marked bad'
                    continue
                # The catalogue stars on the frame, placed by its WCS in
                # the task (a WCS sent between processes loses digits).
                index, x, y = meta.pop('on_frame')
                ny, nx = meta['shape']
                inside = ((x >= self.edge) & (x <= nx - 1 - self.edge)
                          & (y >= self.edge) & (y <= ny - 1 - self.edge))
                labelled = valid[index]
                report.rejected_edge += int(np.count_nonzero(~inside))
                ok = inside & labelled
                report.rejected_no_label += int(np.count_nonzero(
                    inside & ~labelled))
                # All the frame's labelled stars, before max_exposures
                # picks the stamps: they calibrate a frame without a zero
                # point.
                meta['stars'] = (index[labelled], x[labelled], y[labelled])
                info[path] = meta
                candidates[path] = (index[ok], x[ok], y[ok])
            candidates = self._limit(candidates, report)
            epochs = dict(zip(info, assign_epochs(
                [m['mjd'] for m in info.values()], window=_EPOCH_GAP),
                strict=True))

            # Pass 2: cut the stamps, frame by frame, written in the order
            # of the file names whatever the number of workers.
            by_frame = {path: c for path, c in candidates.items()
                        if len(c[0])}
            # Every frame is a chunk: the text columns are made wide
            # enough for the longest file, camera and filter name up front.
            longest = max([len(Path(p).name) for p in by_frame]
                          + [len(str(m.get(k) or '')) for m in info.values()
                             for k in ('camera', 'filter')], default=0)
            todo = sorted(by_frame)
            tasks = [(path, info[path], by_frame[path], epochs[path])
                     for path in todo]
            with StampTableWriter(output, overwrite=overwrite,
                                  meta={'ORIGIN': 'StampBuilder'},
                                  string_width=max(longest,
                                                   _MIN_STRING_WIDTH)
                                  ) as writer:
                for path, result in tqdm(zip(todo, run(_frame_task, tasks),
                                             strict=True),
                                         total=len(todo), desc='frames',
                                         disable=not progress):
                    if isinstance(result, str):
                        report.skipped_files[str(path)] = result
                        log.warning('skipping %s: %s', path, result)
                        continue
                    rows, counts = result
                    name = Path(path).name
                    report.rejected_edge += counts['rejected_edge']
                    report.rejected_unity += counts['rejected_unity']
                    if counts['fwhm'] is not None:
                        report.fwhm[name] = counts['fwhm']
                    if counts['zeropoint'] is not None:
                        report.zeropoints[name] = counts['zeropoint']
                    if rows is not None:
                        writer.write(rows)
                        report.rows += len(rows['stamp'])
                        report.frames_used += 1
                report.frames_without_stamps = (
                    report.frames_listed - report.frames_used
                    - len(report.skipped_files))
                if report.rows == 0:
                    msg = ('no stamps passed the selection: '
                           f'{report.summary()}')
                    raise SatphotutilsError(msg)
        return report

    def _frame_meta(self, path, overrides):
        info = read_frame_info(path, header_keys=self.header_keys)
        if info.wcs is None:
            msg = 'no celestial WCS in the header'
            raise SatphotutilsError(msg)
        row = overrides.get(Path(path).name, {})
        meta = {'wcs': info.wcs, 'shape': info.shape,
                'info': dataclasses.replace(info, wcs=None),
                'good': bool(row.get('good', True)),
                'mjd': np.nan if info.time is None else info.time.utc.mjd}
        zp = row.get('zeropoint', info.zeropoint)
        # None: fitted to the catalogue stars once the pixels are read.
        meta['zeropoint'] = None if zp is None else float(zp)
        level = row.get('saturation', info.saturation_level)
        meta['saturation'] = self.saturation if level is None \
            else float(level)
        t = row.get('transparency', info.transparency)
        meta['transparency'] = 1.0 if t is None else float(t)
        meta['sky'] = info.sky
        meta['camera'] = info.camera or ''
        meta['filter'] = info.filter or self.band
        return meta

    def _limit(self, candidates, report):
        """
        Keep at most ``max_exposures`` random exposures of each target.

        ``candidates`` maps each frame to its targets' ``(index, x, y)``
        arrays; the exposures of a target over the limit are drawn, in
        the order of the targets, from its exposures in the order of the
        frames.
        """
        if self.max_exposures is None:
            return candidates
        paths = list(candidates)
        target = np.concatenate([candidates[p][0] for p in paths]
                                + [np.empty(0, int)])
        keep = np.ones(len(target), dtype=bool)
        order = np.argsort(target, kind='stable')
        starts = np.flatnonzero(np.diff(target[order], prepend=-1) != 0)
        counts = np.diff(np.append(starts, len(order)))
        rng = np.random.default_rng(self.seed)
        for start, count in zip(starts, counts, strict=True):
            if count > self.max_exposures:
                pick = rng.choice(count, self.max_exposures, replace=False)
                drop = np.ones(count, dtype=bool)
                drop[pick] = False
                keep[order[start:start + count][drop]] = False
                report.dropped_over_limit += int(count - self.max_exposures)
        bounds = np.cumsum([0] + [len(candidates[p][0]) for p in paths])
        return {p: tuple(v[keep[a:b]] for v in candidates[p])
                for p, a, b in zip(paths, bounds[:-1], bounds[1:],
                                   strict=True)}

    def _frame_rows(self, path, meta, targets, labels, mag, star_id, coords,
                    epoch):
        """Return a frame's rows (or `None`) and what it rejected."""
        from satphotutils.calibration.counts import (
            crowded_log_counts,
            expected_log_counts,
        )

        # The header was read in the first pass: the pixels only, as
        # stored (a memory map of most files: only the stamps and the
        # samples the measurements take are read).
        data = read_frame_data(path, copy=False)
        background = frame_background(data)
        sky = meta['sky']
        if sky is None:
            sky = background[0]
        circle = circle_mask(self.stamp_shape, self.radius)
        idx, x, y = targets
        stamps, inside = cut_stamps(data, x, y, self.stamp_shape,
                                    dtype=np.float32)
        # A stamp the detector edge cuts is rejected as too near the edge
        # (an edge smaller than the stamp's half-size lets it through).
        whole = inside.all(axis=(1, 2))
        n_unity = np.count_nonzero((stamps == 1.0) & circle, axis=(1, 2))
        keep = whole & (n_unity <= self.max_unity)
        counts = {'rejected_edge': int(np.count_nonzero(~whole)),
                  'rejected_unity': int(np.count_nonzero(whole & ~keep)),
                  'fwhm': None, 'zeropoint': None}
        if not keep.any():
            return None, counts
        saturation, fwhm = self._descriptors(data, meta, background,
                                             labels, mag)
        counts['fwhm'] = fwhm
        idx, x, y = idx[keep], x[keep], y[keep]
        zp, t = meta['zeropoint'], meta['transparency']
        zp_err, zp_n, slope = np.nan, 0, np.nan
        n = len(idx)
        if zp is None:
            fit = self._fit_zeropoint(data, meta, labels, mag,
                                      sky_rms=background[1],
                                      saturation=saturation)
            counts['zeropoint'] = fit
            # The fit gives Z - 2.5 log10(t): a transparency from the
            # header keeps its meaning relative to the reference image.
            colour = np.asarray(labels['bp_rp'])[idx] if \
                self.colour_term else None
            zp = fit.at(colour) + 2.5 * np.log10(t)
            zp_err, zp_n, slope = fit.error, fit.n_used, fit.colour_term
        zp = np.broadcast_to(np.asarray(zp, dtype=float), (n,))
        # b_c was computed for Z = 0 and t = 1: scale to this frame.
        b_c = np.asarray(labels['b_c'])[idx] * 10 ** (0.4 * zp) / t
        log_counts = crowded_log_counts(
            expected_log_counts(mag[idx], zp, t),
            np.asarray(labels['f_c'])[idx], b_c)
        corrected = self._corrected(stamps[keep], meta, saturation)
        rows = {'stamp': stamps[keep],
                'log_counts': log_counts,
                'star_id': star_id[idx],
                'zeropoint': np.array(zp), 'sky': np.full(n, float(sky)),
                'zeropoint_err': np.full(n, zp_err),
                'zeropoint_n': np.full(n, zp_n),
                **({'zeropoint_colour_term': np.full(n, slope)}
                   if self.colour_term else {}),
                'camera': np.full(n, meta['camera']),
                'filter': np.full(n, meta['filter']),
                'dx': x - np.rint(x), 'dy': y - np.rint(y),
                'x': x, 'y': y,
                'ra': coords.ra.deg[idx], 'dec': coords.dec.deg[idx],
                'mag': mag[idx], 'f_c': np.asarray(labels['f_c'])[idx],
                'b_c': b_c, 'transparency': np.full(n, t),
                'mjd': np.full(n, meta['mjd']),
                'epoch': np.full(n, epoch),
                'n_unity': n_unity[keep],
                'saturation': np.full(n, saturation),
                'corrected': np.full(n, corrected, dtype=np.int8),
                'fwhm': np.full(n, fwhm),
                'file': np.full(n, Path(path).name)}
        return rows, counts

    def _corrected(self, stamps, meta, saturation):
        """
        Return 1 if the frame's bleed trails were corrected, 0 if not.

        The header (``SATCORR`` by default) when it says, else the
        saturated targets' stamps, side by side
        (`~satphotutils.frames.bleed_trails`: a trail runs out of a
        stamp, a corrected core is round; the whole frame would cost as
        much as the rest of its measurement); -1 when neither can tell
        (no saturated region big enough), which training leaves out.
        """
        from satphotutils.frames import bleed_trails

        corrected = meta['info'].corrected
        if corrected is None:
            # The level bleed_trails counts a pixel saturated from.
            hit = (stamps >= _TRAIL_FRACTION * saturation).any(axis=(1, 2))
            if hit.any():
                # A blank row between stamps keeps their regions apart.
                ny, nx = stamps.shape[1:]
                mosaic = np.full((hit.sum(), ny + 1, nx), np.nan,
                                 dtype=np.float32)
                mosaic[:, :ny] = stamps[hit]
                trails, _ = bleed_trails(mosaic.reshape(-1, nx), saturation)
                corrected = None if trails is None else not trails
        return -1 if corrected is None else int(corrected)

    def _descriptors(self, data, meta, background, labels, mag):
        """Return the frame's saturation level and FWHM, or say why not."""
        from satphotutils.frames import frame_fwhm, saturation_level

        from .calibrate import _isolated

        saturation = meta['saturation']
        if saturation is None:
            saturation = saturation_level(data)
        if saturation is None:
            key = self.header_keys.saturation
            msg = (f'no saturation level: the header has no {key} keyword '
                   '(name another with header_keys / --header-key '
                   'saturation=KEYWORD, give one with saturation= / '
                   '--saturation or a frame_table saturation column) and '
                   'the pixels show no plateau')
            raise SatphotutilsError(msg)
        # The PSF from the target list's isolated stars (no Gaia
        # neighbour within the blending radius nor a listed one adding 1%
        # within two fitting boxes): the same fit as on stars detected on
        # the frame, without a search of every pixel. A list of a few
        # bright targets leaves too few: then they are detected.
        idx, x, y = meta['stars']
        alone = (np.asarray(labels['f_c'])[idx] < 0.05) & _isolated(
            x, y, mag[idx], 14.0, limit=0.01)
        fwhm = frame_fwhm(data, saturation=saturation, background=background,
                          positions=np.column_stack([x[alone], y[alone]]))
        if not np.isfinite(fwhm):
            fwhm = frame_fwhm(data, saturation=saturation,
                              background=background)
        if not np.isfinite(fwhm):
            msg = ('the PSF FWHM could not be measured: fewer than 3 '
                   'isolated, unsaturated stars well above the noise')
            raise SatphotutilsError(msg)
        return saturation, fwhm

    def _fit_zeropoint(self, data, meta, labels, mag, *, sky_rms,
                       saturation):
        from .calibrate import catalogue_zeropoint

        idx, x, y = meta['stars']
        fit, _ = catalogue_zeropoint(
            data, x, y, mag[idx], max_stars=self.zeropoint_stars,
            # Gaia neighbours within the blending radius spoil any
            # aperture; catalogue_zeropoint checks the wider ones.
            usable=np.asarray(labels['f_c'])[idx] < 0.05,
            radius=self.zeropoint_radius,
            # The level the descriptors found (header, option, frame
            # table or plateau): the brightest stars, which give the
            # aperture correction, must not be saturated ones.
            saturation_level=saturation, sky_rms=sky_rms,
            colour=np.asarray(labels['bp_rp'])[idx] if self.colour_term
            else None)
        if not fit.valid:
            key = self.header_keys.zeropoint
            msg = (f'no zero point: the header has no {key} keyword (name '
                   'another with header_keys, or give a frame_table) and '
                   f'only {fit.n_used} isolated, unsaturated catalogue '
                   'stars could be measured to fit one (5 needed)')
            raise SatphotutilsError(msg)
        return fit


class _Context:
    """What every frame task needs: given to each worker once."""

    def __init__(self, builder, overrides, labels, coords, star_id, mag):
        self.builder = builder
        self.overrides = overrides
        self.labels = labels
        self.coords = coords
        self.star_id = star_id
        self.mag = mag


# The run's context in a worker process (or in this one, run serially).
_CONTEXT = None
# How frame workers start: 'fork' (becomes 'spawn' off Linux).
_START_METHOD = 'fork'


def _set_context(context):
    # One context per worker process, set when it starts.
    global _CONTEXT
    _CONTEXT = context


def _header_task(path):
    """
    Return a frame's header values and catalogue stars, or why not.

    ``on_frame`` holds the catalogue stars on the frame and their pixel
    positions; the WCS itself stays here.
    """
    ctx = _CONTEXT
    try:
        meta = ctx.builder._frame_meta(path, ctx.overrides)
        x, y = meta.pop('wcs').world_to_pixel(ctx.coords)
    except (OSError, ValueError, KeyError, SatphotutilsError) as exc:
        return str(exc)
    ny, nx = meta['shape']
    index = np.flatnonzero((x >= 0) & (x <= nx - 1) & (y >= 0)
                           & (y <= ny - 1))
    meta['on_frame'] = (index, x[index], y[index])
    return meta


def _frame_task(task):
    """Return a frame's rows and counts, or why it is skipped."""
    path, meta, targets, epoch = task
    ctx = _CONTEXT
    try:
        return ctx.builder._frame_rows(path, meta, targets, ctx.labels,
                                       ctx.mag, ctx.star_id, ctx.coords,
                                       epoch)
    except (OSError, ValueError, SatphotutilsError) as exc:
        return str(exc)


@contextlib.contextmanager
def _frame_pool(workers, context):
    """
    Yield ``run(task, items)``, which yields the results in order.

    Each call measures its first item here, then forks ``workers``
    processes for the rest: they inherit the context, the modules and
    the aperture tables the first item loaded (importing photutils alone
    takes seconds), instead of each loading them again.
    """
    ctx = context

    def run(task, items):
        items = list(items)
        if not items:
            return
        yield task(items[0])
        rest = items[1:]
        n = min(workers, len(rest))
        if n <= 1:
            yield from map(task, rest)
            return
        from satphotutils.utils.workers import process_pool

        # Forked workers inherit the context at no cost; spawned ones
        # (where fork is not safe) are sent it, once each.
        with process_pool(n, context=_START_METHOD, initializer=_set_context,
                          initargs=(ctx,)) as pool:
            # Chunks of a few frames: fewer round trips, and still
            # every worker busy to the end.
            yield from pool.map(task, rest, chunksize=max(
                1, min(4, len(rest) // (4 * n))))

    _set_context(context)
    try:
        yield run
    finally:
        _set_context(None)


def _frame_overrides(frame_table):
    if frame_table is None:
        return {}
    if not isinstance(frame_table, Table):
        frame_table = Table.read(frame_table)
    if 'file' not in frame_table.colnames:
        msg = 'frame_table needs a file column (frame file names)'
        raise ValueError(msg)
    keys = [c for c in ('zeropoint', 'transparency', 'saturation', 'good')
            if c in frame_table.colnames]
    return {Path(str(r['file'])).name: {k: r[k] for k in keys}
            for r in frame_table}
