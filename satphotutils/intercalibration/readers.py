# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Readers of light curves into one table layout.

Sky Patrol v1/v2 and pyasassn exports, and the package's own light-curve
files (``satphot lightcurve``), are read into a `~astropy.table.QTable`
sorted by time with ``time`` (`~astropy.time.Time`), ``mag``,
``mag_err`` (mag), ``camera``, ``filter``, ``quality`` (bool: False
where the survey marked the point bad or the photometry flagged it with a
rejecting flag, see `read_lightcurve`) and ``flags`` (the photometry
flags of the package's files, 0 for the survey's); rows without a valid
measurement (99.99 placeholders, ``>limit`` non-detections, zero or
placeholder errors, NaN magnitudes of unusable epochs) are left out and
counted in ``meta['n_invalid']``. Camera codes are kept case-sensitive:
``ba`` is a unit in V and ``bA`` the same unit in g.
"""

import csv
import re
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.table import QTable, Table
from astropy.time import Time
from astropy.utils.exceptions import AstropyWarning

from satphotutils.lightcurves.skypatrol import (
    BAD_QUALITY_FLAGS,
    SP2WEB_COLUMNS,
)
from satphotutils.utils.exceptions import SatphotutilsError

__all__ = ['read_lightcurve']

_PLACEHOLDER = 99.0  # 99.99 / 99.999 mark failed measurements

def _quality_from_flags(flags):
    """Good quality (True) where no bad-quality flag bit is set."""
    return (np.asarray(flags, dtype=np.int64) & BAD_QUALITY_FLAGS) == 0


def _detect(text):
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith('#'):
            continue
        header = stripped.lower()
        if header.startswith('hjd,'):
            return 'sp1'
        if header.startswith('jd,flux,flux error'):
            return 'sp2web'
        if header.startswith('jd,flux,flux_err'):
            return 'sp2api'
        break
    return None


def _csv(text, path):
    """
    Read the CSV body, leaving out rows with the wrong number of fields.

    A row with a field missing would otherwise be read with its values
    shifted into the wrong columns (a magnitude from the error column, a
    filter named ``0``). Such rows are invalid and counted; a file most
    of whose rows are (another delimiter, a damaged export) is refused.
    """
    lines = [ln for ln in text.splitlines()
             if ln.strip() and not ln.lstrip().startswith('#')]
    counts = np.array([len(row) for row in csv.reader(lines)])
    good = counts == counts[0]
    good[0] = True
    n_bad = int((~good).sum())
    if len(lines) > 1 and n_bad > 0.5 * (len(lines) - 1):
        first = int(np.flatnonzero(~good)[0])
        msg = (f'{path}: {n_bad} of {len(lines) - 1} rows do not have the '
               f"header's {counts[0]} comma-separated fields (the first: "
               f'{lines[first][:60]!r}); the file is damaged or uses '
               'another delimiter')
        raise SatphotutilsError(msg)
    body = [ln for ln, ok in zip(lines, good, strict=True) if ok]
    with warnings.catch_warnings():
        # A damaged number beyond the float range ('2457655e883053') is
        # read as inf with a warning; _finish counts an infinite
        # magnitude as invalid and Time rejects an infinite time, so the
        # warning would only repeat what the result says.
        warnings.filterwarnings('ignore', message='OverflowError converting',
                                category=AstropyWarning)
        table = Table.read('\n'.join(body) + '\n', format='ascii.csv',
                           guess=False)
    return table, n_bad


def _numbers(column):
    """Parse a column of numbers that may hold '>15.4' limits as NaN."""
    # Empty cells are masked; their underlying data (0) is not a value.
    missing = np.ma.getmaskarray(column)
    values = np.asarray(column).astype(str)
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if missing[i]:
            continue
        v = v.strip()
        if not v or v.startswith(('>', '<')) or v in ('--', 'nan'):
            continue
        try:
            out[i] = float(v)
        except ValueError:
            continue
    return out


def _times(column):
    """Parse a time column; every row needs one."""
    if np.ma.getmaskarray(column).any():
        msg = 'empty cells in the time column'
        raise ValueError(msg)
    return np.asarray(column, dtype=float)


def _clean_camera(values):
    # Malformed codes such as 'bF{}' seen in exports: keep the letters.
    return np.array([re.sub(r'[^A-Za-z0-9]', '', str(v)) for v in values])


def _finish(time, mag, err, camera, filt, quality, fmt, source, *,
            flags=None, scale='utc', meta=None):
    valid = (np.isfinite(mag) & np.isfinite(err) & (mag < _PLACEHOLDER)
             & (err > 0) & (err < _PLACEHOLDER))
    if flags is None:
        flags = np.zeros(len(mag), dtype=np.int64)
    order = np.argsort(time[valid], kind='stable')
    table = QTable()
    table['time'] = Time(time[valid][order], format='jd', scale=scale)
    table['mag'] = mag[valid][order] * u.mag
    table['mag_err'] = err[valid][order] * u.mag
    table['camera'] = camera[valid][order]
    table['filter'] = filt[valid][order]
    table['quality'] = quality[valid][order]
    table['flags'] = flags[valid][order]
    table.meta.update(meta or {})
    table.meta.update({'format': fmt, 'source': str(source),
                       'n_rows': len(mag),
                       'n_invalid': int((~valid).sum())})
    return table


def read_lightcurve(source, *, format=None, name=None):
    r"""
    Read a light curve: Sky Patrol, pyasassn or the package's own.

    Parameters
    ----------
    source : path-like or `~astropy.table.Table`
        A Sky Patrol v1 CSV (``HJD,UT Date,Camera,...``; a missing
        ``Filter`` column means V), a Sky Patrol v2 web CSV (``#``
        header lines, ``JD,Flux,...,Quality,Camera``), a pyasassn table
        (``jd,...,cam``; g), a light curve written by ``satphot
        lightcurve`` (one target's ECSV or FITS file, or the long
        ``all.ecsv``/``all.fits`` with a ``name`` column), or any table
        / ECSV / FITS with ``time``, ``mag``, ``mag_err``, ``camera``
        and ``filter`` (and optional ``quality`` and ``flags``).

    format : {'sp1', 'sp2web', 'sp2api', 'table'}, optional
        The format; detected from the file if `None`.

    name : str, optional
        The target to read from a table of several (a ``name`` column,
        as in ``all.ecsv``); required when it holds more than one.

    Returns
    -------
    table : `~astropy.table.QTable`
        See the module docstring. SP1 times are HJD and SP2 times JD,
        both read as Julian dates in UTC (the difference, minutes, does
        not matter for intercalibration); a table's `~astropy.time.Time`
        column keeps its scale, and a plain number column is read as JD.
        The photometry ``flags`` of the package's files are kept; a
        point with a rejecting one (``damaged_core``, ``no_overlap``,
        ``non_finite_data``, ``no_calibration``: an epoch carries them
        only when none of its exposures was clean; or ``bad_quality``)
        has ``quality`` False, as has a Sky Patrol v2 point of quality
        B. ``lightcurve_outlier`` does not: the light-curve stage clips
        before the cameras' offsets are known, so it marks whole cameras
        whose zero point is off.

    Raises
    ------
    SatphotutilsError
        If the file cannot be read, its format is not recognised, or it
        holds several targets and ``name`` does not choose one.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from satphotutils.intercalibration import read_lightcurve
    >>> path = Path(tempfile.mkdtemp()) / 'lc.csv'
    >>> _ = path.write_text(
    ...     'HJD,UT Date,Camera,FWHM,Limit,mag,mag_err,flux(mJy),flux_err\n'
    ...     '2458001.1,x,bb,1,15,10.02,0.01,1,1\n'
    ...     '2458000.1,x,bb,1,15,>15.2,99.99,0,1\n')
    >>> lc = read_lightcurve(path)
    >>> lc['mag'].value.tolist(), lc['filter'].tolist()
    ([10.02], ['V'])
    >>> lc.meta['n_invalid']
    1
    """
    if format not in (None, 'sp1', 'sp2web', 'sp2api', 'table'):
        msg = (f"format must be 'sp1', 'sp2web', 'sp2api', 'table' or "
               f'None, not {format!r}')
        raise ValueError(msg)
    if isinstance(source, Table):
        return _from_table(source, 'in-memory table', name)
    path = Path(source)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        msg = f'cannot read {path}: {exc}'
        raise SatphotutilsError(msg) from exc
    if raw.startswith(b'SIMPLE  ='):
        return _read_table(path, name, format='fits')
    try:
        # utf-8-sig: spreadsheets save CSV files with a byte-order mark.
        text = raw.decode('utf-8-sig')
    except UnicodeDecodeError as exc:
        msg = f'cannot read {path}: {exc}'
        raise SatphotutilsError(msg) from exc
    if not text.strip():
        msg = f'{path} is empty; give a Sky Patrol or light-curve table file'
        raise SatphotutilsError(msg)
    fmt = format or _detect(text)
    if fmt in (None, 'table'):
        return _read_table(path, name)
    try:
        table, n_bad = _csv(text, path)
        lc = _read_format(table, fmt, path)
    except (KeyError, ValueError) as exc:
        what = f'no {exc} column' if isinstance(exc, KeyError) else str(exc)
        msg = (f'{path} looks like a {_FORMAT_NAMES.get(fmt, fmt)} file but '
               f'cannot be read: {what}; check that it is complete and '
               'unedited, or pass format=')
        raise SatphotutilsError(msg) from exc
    lc.meta['n_rows'] += n_bad
    lc.meta['n_invalid'] += n_bad
    lc.meta['n_malformed'] = n_bad
    return lc


def _read_table(path, name, **kwargs):
    if kwargs.get('format') == 'fits':
        # Time columns of FITS tables come back as Time only with
        # astropy_native; other formats do not take the argument.
        kwargs['astropy_native'] = True
    try:
        table = QTable.read(path, **kwargs)
    except (OSError, ValueError) as exc:
        msg = (f'{path} is not a Sky Patrol v1/v2 or pyasassn CSV, nor a '
               f'table with time, mag, mag_err, camera, filter: {exc}')
        raise SatphotutilsError(msg) from exc
    return _from_table(table, path, name)


_FORMAT_NAMES = {'sp1': 'Sky Patrol v1 CSV', 'sp2web': 'Sky Patrol v2 web CSV',
                 'sp2api': 'pyasassn CSV'}


def _read_format(table, fmt, path):
    n = len(table)
    if fmt == 'sp1':
        filt = (np.char.strip(np.asarray(table['Filter']).astype(str))
                if 'Filter' in table.colnames else np.full(n, 'V'))
        return _finish(_times(table['HJD']),
                       _numbers(table['mag']), _numbers(table['mag_err']),
                       _clean_camera(table['Camera']), filt,
                       np.ones(n, bool), fmt, path)
    if fmt == 'sp2web':
        jd, _, _, mag, mag_err, _, _, filt, qual, cam = SP2WEB_COLUMNS
        quality = np.char.strip(np.asarray(table[qual]).astype(str))
        return _finish(_times(table[jd]),
                       _numbers(table[mag]), _numbers(table[mag_err]),
                       _clean_camera(table[cam]),
                       np.char.strip(np.asarray(table[filt]).astype(str)),
                       quality == 'G', fmt, path)
    if fmt == 'sp2api':
        return _finish(_times(table['jd']),
                       _numbers(table['mag']), _numbers(table['mag_err']),
                       _clean_camera(table['cam']), np.full(n, 'g'),
                       np.ones(n, bool), fmt, path)
    msg = f'unknown light-curve format {fmt!r}'
    raise SatphotutilsError(msg)


def _from_table(table, source, name=None):
    needed = ('time', 'mag', 'mag_err', 'camera', 'filter')
    missing = [c for c in needed if c not in table.colnames]
    if missing:
        msg = f'the light-curve table lacks the columns {missing}'
        raise SatphotutilsError(msg)
    table, meta = _one_target(table, source, name)
    time = table['time']
    if isinstance(time, Time):
        jd, scale = time.jd, time.scale
    else:
        jd, scale = np.asarray(time, float), 'utc'
    n = len(table)
    quality = np.asarray(table['quality'], bool) if 'quality' in \
        table.colnames else np.ones(n, bool)
    flags = None
    if 'flags' in table.colnames:
        flags = np.asarray(table['flags'], dtype=np.int64)
        quality = quality & _quality_from_flags(flags)
    return _finish(jd, np.asarray(getattr(table['mag'], 'value',
                                          table['mag']), float),
                   np.asarray(getattr(table['mag_err'], 'value',
                                      table['mag_err']), float),
                   np.asarray(table['camera']).astype(str),
                   np.asarray(table['filter']).astype(str), quality,
                   'table', source, flags=flags, scale=scale, meta=meta)


def _one_target(table, source, name):
    """Select one target of a table by ``name``; keep its identity."""
    # FITS headers give the keys in upper case.
    meta = {k.lower(): v for k, v in table.meta.items()
            if k.lower() in ('name', 'ra', 'dec')}
    known = meta.get('name')
    if 'name' in table.colnames:
        names = np.asarray(table['name']).astype(str)
        present = list(dict.fromkeys(names))
        if name is None and len(present) > 1:
            shown = ', '.join(present[:5]) + (', ...' if len(present) > 5
                                             else '')
            msg = (f'{source} holds the light curves of {len(present)} '
                   f'targets ({shown}), as all.ecsv of satphot lightcurve '
                   'does; choose one with name= (--name)')
            raise SatphotutilsError(msg)
        chosen = present[0] if name is None and present else name
        if chosen is not None and chosen not in present:
            msg = (f'{source} has no target named {chosen!r}; it has '
                   f'{", ".join(present[:10])}')
            raise SatphotutilsError(msg)
        if chosen is not None:
            table = table[names == chosen]
        known = chosen
    elif name is not None and name != known:
        msg = (f'{source} holds one light curve'
               + (f' (of {known!r})' if known is not None else '')
               + f' and no name column to choose {name!r} from')
        raise SatphotutilsError(msg)
    meta.pop('name', None)
    if known is not None:
        meta = {'name': str(known), **meta}
    return table, meta
