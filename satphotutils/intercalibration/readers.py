# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Readers of ASAS-SN Sky Patrol light curves into one table layout.

Every reader returns a `~astropy.table.QTable` sorted by time with
``time`` (`~astropy.time.Time`), ``mag``, ``mag_err`` (mag), ``camera``,
``filter`` and ``quality`` (bool, the survey's good-quality mark, True
where the format has none); rows without a valid measurement (99.99
placeholders, ``>limit`` non-detections, zero or placeholder errors) are
left out and counted in ``meta['n_invalid']``. Camera codes are kept
case-sensitive: ``ba`` is a unit in V and ``bA`` the same unit in g.
"""

import re
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.table import QTable, Table
from astropy.time import Time
from astropy.utils.exceptions import AstropyWarning

from satphotutils.utils.exceptions import SatphotutilsError

__all__ = ['read_lightcurve']

_PLACEHOLDER = 99.0  # 99.99 / 99.999 mark failed measurements


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


def _csv(text):
    lines = [ln for ln in text.splitlines()
             if ln.strip() and not ln.lstrip().startswith('#')]
    with warnings.catch_warnings():
        # A damaged number beyond the float range ('2457655e883053') is
        # read as inf with a warning; _finish counts an infinite
        # magnitude as invalid and Time rejects an infinite time, so the
        # warning would only repeat what the result says.
        warnings.filterwarnings('ignore', message='OverflowError converting',
                                category=AstropyWarning)
        return Table.read('\n'.join(lines) + '\n', format='ascii.csv',
                          guess=False)


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


def _finish(time, mag, err, camera, filt, quality, fmt, source):
    valid = (np.isfinite(mag) & np.isfinite(err) & (mag < _PLACEHOLDER)
             & (err > 0) & (err < _PLACEHOLDER))
    order = np.argsort(time[valid], kind='stable')
    table = QTable()
    table['time'] = Time(time[valid][order], format='jd', scale='utc')
    table['mag'] = mag[valid][order] * u.mag
    table['mag_err'] = err[valid][order] * u.mag
    table['camera'] = camera[valid][order]
    table['filter'] = filt[valid][order]
    table['quality'] = quality[valid][order]
    table.meta.update({'format': fmt, 'source': str(source),
                       'n_rows': len(mag),
                       'n_invalid': int((~valid).sum())})
    return table


def read_lightcurve(source, *, format=None):
    r"""
    Read a Sky Patrol light curve (or any light-curve table).

    Parameters
    ----------
    source : path-like or `~astropy.table.Table`
        A Sky Patrol v1 CSV (``HJD,UT Date,Camera,...``; a missing
        ``Filter`` column means V), a Sky Patrol v2 web CSV (``#``
        header lines, ``JD,Flux,...,Quality,Camera``), a pyasassn table
        (``jd,...,cam``; g), or a table / ECSV with ``time``, ``mag``,
        ``mag_err``, ``camera`` and ``filter``.

    format : {'sp1', 'sp2web', 'sp2api', 'table'}, optional
        The format; detected from the header if `None`.

    Returns
    -------
    table : `~astropy.table.QTable`
        See the module docstring. SP1 times are HJD and SP2 times JD,
        both read as Julian dates in UTC (the difference, minutes, does
        not matter for intercalibration).

    Raises
    ------
    SatphotutilsError
        If the file cannot be read or its format is not recognised.

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
    if isinstance(source, Table):
        return _from_table(source, 'in-memory table')
    path = Path(source)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        msg = f'cannot read {path}: {exc}'
        raise SatphotutilsError(msg) from exc
    if not text.strip():
        msg = f'{path} is empty; give a Sky Patrol or light-curve table file'
        raise SatphotutilsError(msg)
    fmt = format or _detect(text)
    if fmt is None:
        try:
            return _from_table(QTable.read(path), path)
        except (OSError, ValueError) as exc:
            msg = (f'{path} is not a Sky Patrol v1/v2 or pyasassn CSV, nor a '
                   f'table with time, mag, mag_err, camera, filter: {exc}')
            raise SatphotutilsError(msg) from exc
    try:
        return _read_format(_csv(text), fmt, path)
    except (KeyError, ValueError) as exc:
        what = f'no {exc} column' if isinstance(exc, KeyError) else str(exc)
        msg = (f'{path} looks like a {_FORMAT_NAMES.get(fmt, fmt)} file but '
               f'cannot be read: {what}; check that it is complete and '
               'unedited, or pass format=')
        raise SatphotutilsError(msg) from exc


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
        quality = np.char.strip(np.asarray(table['Quality']).astype(str))
        return _finish(_times(table['JD']),
                       _numbers(table['Mag']), _numbers(table['Mag Error']),
                       _clean_camera(table['Camera']),
                       np.char.strip(np.asarray(table['Filter']).astype(str)),
                       quality == 'G', fmt, path)
    if fmt == 'sp2api':
        return _finish(_times(table['jd']),
                       _numbers(table['mag']), _numbers(table['mag_err']),
                       _clean_camera(table['cam']), np.full(n, 'g'),
                       np.ones(n, bool), fmt, path)
    msg = f'unknown light-curve format {fmt!r}'
    raise SatphotutilsError(msg)


def _from_table(table, source):
    needed = ('time', 'mag', 'mag_err', 'camera', 'filter')
    missing = [c for c in needed if c not in table.colnames]
    if missing:
        msg = f'the light-curve table lacks the columns {missing}'
        raise SatphotutilsError(msg)
    time = table['time']
    jd = time.jd if isinstance(time, Time) else np.asarray(time, float)
    n = len(table)
    quality = np.asarray(table['quality'], bool) if 'quality' in \
        table.colnames else np.ones(n, bool)
    return _finish(jd, np.asarray(getattr(table['mag'], 'value',
                                          table['mag']), float),
                   np.asarray(getattr(table['mag_err'], 'value',
                                      table['mag_err']), float),
                   np.asarray(table['camera']).astype(str),
                   np.asarray(table['filter']).astype(str), quality,
                   'table', source)
