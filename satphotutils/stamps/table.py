# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The stamp table: the data interchange format of satphotutils.

A stamp table is a FITS file whose first extension (``STAMPS``) is a
binary table with one row per exposure of a target:

``stamp``
    ``ny x nx`` float32 postage stamp from the reduced frame (21 x 21 by
    default), the target's reference-frame position rounded to the
    nearest pixel at the centre ``[ny // 2, nx // 2]``. Both sizes are
    odd and ``ny >= nx``: a tall stamp's rows run along the read (bleed)
    direction of the detector, so that it holds a bleed trail.
``log_counts``
    The label, log10 counts (optional for prediction).
``star_id``
    Grouping key: all exposures of one star share it.
``zeropoint``, ``sky``
    The frame's zero point Z and sky level S (counts per pixel).
``camera``, ``filter``
    Optional camera code and filter.
``dx``, ``dy``
    Optional offset (pixels) of the target's position from the centre
    of the central pixel, within +-0.5; the network and the aperture
    baselines use it when present.
``epoch``
    Optional epoch index: exposures of a star with the same ``epoch``
    are combined by their median in light curves.

Any other column is carried through to outputs unchanged. The header
keyword ``STAMPVER`` gives the format version (currently 1), ``STAMPNY``
and ``STAMPNX`` the stamp shape, and ``STAMPSZ`` the size of square
stamps (the only keyword of tables written before tall stamps; it is
not written for tall ones). Any FITS
binary table with the required columns is read as a stamp table (the
first such table when there is no ``STAMPS`` extension; a missing
``STAMPVER`` is taken as version 1, with a warning), so a table written
by `astropy.table.Table.write` can be trained on. Tables are
written in chunks and read in chunks through a memory map, so their size
is not limited by memory.
"""

import os
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import QTable, Table
from astropy.utils.exceptions import AstropyUserWarning

from satphotutils.utils._parameters import as_integer, stamp_shape
from satphotutils.utils.exceptions import (
    SatphotutilsError,
    SatphotutilsUserWarning,
)
from satphotutils.utils.io import atomic_output

__all__ = ['REQUIRED_COLUMNS', 'STAMP_FORMAT_VERSION', 'StampTableWriter',
           'iter_stamp_table', 'read_stamp_table', 'stamp_shape',
           'stamp_table_columns', 'stamp_table_shape']

STAMP_FORMAT_VERSION = 1
REQUIRED_COLUMNS = ('stamp', 'star_id', 'zeropoint', 'sky')
_EXTNAME = 'STAMPS'
_BLOCK = 2880


# Header keywords of the stamp shape, carried into every chunk's meta.
_SHAPE_KEYS = ('STAMPVER', 'STAMPSZ', 'STAMPNY', 'STAMPNX')


# Narrowest text column: the first chunk fixes the layout of the file,
# and a later chunk's longer camera or file name must still fit.
_MIN_STRING_WIDTH = 32


def _fits_dtype(array, string_width):
    """
    Big-endian storage dtype of a column (bool as FITS 'T'/'F').

    Integers are stored as 64-bit whatever the first chunk holds, so that
    a later chunk's larger identifiers are not cut to the first's type.
    """
    kind = array.dtype.kind
    if kind == 'b':
        return np.dtype('S1')
    if kind in 'US':
        chars = array.dtype.itemsize // (4 if kind == 'U' else 1)
        return np.dtype(f'S{max(chars, string_width)}')
    if kind in 'iu':
        return np.dtype('>i8')
    return array.dtype.newbyteorder('>')


class StampTableWriter:
    """
    Write a stamp table chunk by chunk, atomically.

    The file appears at ``path`` only when the writer is closed without an
    error; until then it is written under a temporary name. The columns
    are fixed by the first chunk: integers are stored as 64-bit integers
    and text at least ``string_width`` characters wide, and a later chunk
    whose values do not fit (longer text, fractional values in an integer
    column) is refused, never truncated.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        Output FITS file.

    meta : dict, optional
        Header keywords (8 characters at most) recording provenance.

    overwrite : bool, optional
        Whether to replace an existing file.

    string_width : int, optional
        Width (characters) of the text columns (wider if the first chunk
        holds longer text).

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from satphotutils.stamps import StampTableWriter, read_stamp_table
    >>> path = pathlib.Path(tempfile.mkdtemp()) / 'stamps.fits'
    >>> chunk = {'stamp': np.zeros((2, 21, 21), np.float32),
    ...          'star_id': np.array([7, 7]), 'zeropoint': [25.5, 25.5],
    ...          'sky': [200.0, 210.0], 'log_counts': [5.0, 5.1]}
    >>> with StampTableWriter(path) as writer:
    ...     writer.write(chunk)
    ...     writer.write(chunk)
    >>> table = read_stamp_table(path)
    >>> len(table), table['stamp'].shape
    (4, (4, 21, 21))
    """

    def __init__(self, path, *, meta=None, overwrite=False,
                 string_width=_MIN_STRING_WIDTH):
        self.path = Path(path)
        self.meta = dict(meta or {})
        self.string_width = as_integer(string_width, 'string_width',
                                       minimum=1)
        self._atomic = atomic_output(self.path, overwrite=overwrite)
        self._file = None
        self._dtype = None
        self._names = None
        self._nrows = 0
        self._naxis2_offset = None

    def __enter__(self):
        tmp = self._atomic.__enter__()
        # Closed in __exit__; the writer is itself the context manager.
        self._file = open(tmp, 'wb')
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                if self._dtype is None:
                    msg = f'no rows were written to {self.path}'
                    raise SatphotutilsError(msg)
                self._finish()
        finally:
            self._file.close()
        return self._atomic.__exit__(exc_type, exc, tb)

    @property
    def nrows(self):
        """Rows written so far."""
        return self._nrows

    def _start(self, columns):
        for name in REQUIRED_COLUMNS:
            if name not in columns:
                msg = (f'a stamp table needs a {name!r} column; the columns '
                       f'given were {sorted(columns)}')
                raise SatphotutilsError(msg)
        stamp = columns['stamp']
        if stamp.ndim != 3:
            msg = ('stamp must have shape (n, ny, nx) with odd sizes, '
                   f'ny >= nx, got {stamp.shape}')
            raise SatphotutilsError(msg)
        try:
            ny, nx = stamp_shape(stamp.shape[1:], name='the stamp column')
        except ValueError as exc:
            msg = f'{self.path}: {exc}'
            raise SatphotutilsError(msg) from None
        self._names = list(columns)
        self._dtype = np.dtype([(name, _fits_dtype(columns[name],
                                             self.string_width),
                                 columns[name].shape[1:])
                                for name in self._names])
        # Let astropy write the header for a one-row table (of the stored
        # types); NAXIS2 is then patched in place when the writer closes.
        sample = Table({name: _stored(columns[name][:1], self._dtype[name])
                        for name in self._names})
        hdu = fits.BinTableHDU(sample, name=_EXTNAME)
        hdu.header['STAMPVER'] = (STAMP_FORMAT_VERSION,
                                  'satphotutils stamp-table format')
        if ny == nx:
            hdu.header['STAMPSZ'] = (nx, 'stamp size in pixels')
        hdu.header['STAMPNY'] = (ny, 'stamp rows (along the read direction)')
        hdu.header['STAMPNX'] = (nx, 'stamp columns')
        for key, value in self.meta.items():
            hdu.header[key] = value
        primary = fits.PrimaryHDU()
        primary.header['SATPHOT'] = ('STAMPS', 'satphotutils stamp table')
        self._file.write(primary.header.tostring().encode('ascii'))
        text = hdu.header.tostring()
        card = text.index('NAXIS2  =')
        self._naxis2_offset = self._file.tell() + card
        self._file.write(text.encode('ascii'))

    def write(self, columns):
        """
        Append rows.

        Parameters
        ----------
        columns : dict or `~astropy.table.Table`
            Column name to array, all with the same number of rows; the
            first call fixes the names, types and shapes.
        """
        columns = {name: np.asarray(columns[name])
                   for name in (columns.colnames if isinstance(columns, Table)
                                else columns)}
        if self._dtype is None:
            self._start(columns)
        elif list(columns) != self._names:
            msg = (f'chunk columns {list(columns)} differ from the first '
                   f'chunk {self._names}')
            raise SatphotutilsError(msg)
        n = len(columns['stamp'])
        rows = np.empty(n, dtype=self._dtype)
        for name in self._names:
            value = columns[name]
            if value.dtype.kind == 'b':
                value = np.where(value, b'T', b'F')
            else:
                value = self._fitting(name, value)
            rows[name] = value
        # The buffer itself: no copy of the chunk.
        self._file.write(rows.data)
        self._nrows += n

    def _fitting(self, name, value):
        """Return the chunk's column to store, or refuse it: never cut."""
        stored = self._dtype[name].base
        if value.dtype.kind == 'U':
            # A cast encodes ASCII (and refuses anything else) several
            # times faster than np.char.encode.
            value = value.astype('S')
        if stored.kind == 'S':
            if value.dtype.kind != 'S':
                value = np.asarray(value).astype(str).astype('S')
            # Only a type wider than the column needs its strings measured.
            longest = value.dtype.itemsize
            if longest > stored.itemsize:
                longest = int(np.char.str_len(value).max(initial=0))
            if longest > stored.itemsize:
                msg = (f'column {name!r} of a chunk written to {self.path} '
                       f'holds text of {longest} characters, wider than '
                       f'the {stored.itemsize} its first chunk fixed; give '
                       f'StampTableWriter(string_width={longest}) or more')
                raise SatphotutilsError(msg)
        elif stored.kind == 'i':
            if value.dtype.kind not in 'iub' and not (
                    value.dtype.kind == 'f' and np.all(
                        np.isfinite(value) & (value == np.round(value)))):
                msg = (f'column {name!r} of a chunk written to {self.path} '
                       f'holds {value.dtype} values that are not integers; '
                       'its first chunk made it an integer column')
                raise SatphotutilsError(msg)
            if value.dtype.kind == 'u' and value.size and \
                    value.max() > np.iinfo(np.int64).max:
                msg = (f'column {name!r} of a chunk written to {self.path} '
                       'holds integers beyond the 64-bit range')
                raise SatphotutilsError(msg)
        return value

    def _finish(self):
        size = self._nrows * self._dtype.itemsize
        self._file.write(b'\0' * (-size % _BLOCK))
        self._file.seek(self._naxis2_offset)
        card = fits.Card('NAXIS2', self._nrows, 'number of rows in table')
        self._file.write(card.image.encode('ascii'))
        self._file.flush()
        os.fsync(self._file.fileno())


def _stored(value, dtype):
    """Return a column's first row in its stored type, for the header."""
    base = dtype.base
    if base.kind == 'S' and value.dtype.kind == 'b':
        return value
    if base.kind == 'S':
        return value.astype(f'U{base.itemsize}')
    return value.astype(base.newbyteorder('='))


def _open(path):
    """
    Open a stamp table; return the HDU list and the table's HDU.

    The ``STAMPS`` extension when there is one; otherwise the first
    binary table with the required columns, so that a table written by
    `astropy.table.Table.write` is a stamp table too.
    """
    path = Path(path)
    if not path.exists():
        msg = f'stamp table {path} does not exist'
        raise SatphotutilsError(msg)
    hdul = None
    with warnings.catch_warnings():
        # A cut file (an interrupted copy) would otherwise fail later
        # deep in numpy ("buffer is too small"), naming no file.
        warnings.filterwarnings('error', 'File may have been truncated')
        try:
            hdul = fits.open(path, memmap=True)
            len(hdul)  # reads every header, where truncation shows
        except (OSError, AstropyUserWarning) as exc:
            if hdul is not None:
                hdul.close()
            why = ' '.join(str(exc).split())
            if 'truncated' in why:
                msg = (f'stamp table {path} is truncated ({why}); copy or '
                       'write it again')
            else:
                msg = f'{path} is not a readable FITS file ({why})'
            raise SatphotutilsError(msg) from None
    try:
        hdu = _stamp_hdu(path, hdul)
    except BaseException:
        hdul.close()
        raise
    return hdul, hdu


def _stamp_hdu(path, hdul):
    if _EXTNAME in hdul:
        hdu = hdul[_EXTNAME]
    else:
        tables = [h for h in hdul if isinstance(h, fits.BinTableHDU)]
        hdu = next((h for h in tables
                    if set(REQUIRED_COLUMNS) <= set(h.columns.names)), None)
        if hdu is None:
            found = (f'its binary tables have the columns '
                     f'{[h.columns.names for h in tables]}' if tables
                     else 'it has no binary table')
            msg = (f'{path} has no {_EXTNAME} extension and {found}; it '
                   'is not a stamp table (a binary table with the columns '
                   f'{list(REQUIRED_COLUMNS)})')
            raise SatphotutilsError(msg)
    version = hdu.header.get('STAMPVER')
    if version is None:
        warnings.warn(f'{path} has no STAMPVER keyword; reading it as '
                      f'stamp-table format version {STAMP_FORMAT_VERSION}',
                      SatphotutilsUserWarning, stacklevel=4)
    elif version != STAMP_FORMAT_VERSION:
        msg = (f'{path} is stamp-table format version {version}; this '
               f'satphotutils reads version {STAMP_FORMAT_VERSION}')
        raise SatphotutilsError(msg)
    missing = [c for c in REQUIRED_COLUMNS if c not in hdu.columns.names]
    if missing:
        msg = f'{path} lacks the required stamp-table columns {missing}'
        raise SatphotutilsError(msg)
    shape = _column_shape(hdu)
    said = (hdu.header.get('STAMPNY'), hdu.header.get('STAMPNX'))
    if said != (None, None) and said != shape:
        msg = (f'{path}: the header says the stamps are {said[0]} x '
               f'{said[1]} pixels (STAMPNY, STAMPNX), the stamp column '
               f'holds {shape}; the file was altered: write it again')
        raise SatphotutilsError(msg)
    return hdu


def _column_shape(hdu):
    """Return the ``(ny, nx)`` of the stamp column (TDIM), or `None`."""
    dim = hdu.columns['stamp'].dim
    if not dim:
        return None
    sizes = tuple(int(n) for n in dim.strip('() ').split(','))
    # FITS gives the fastest axis first.
    return sizes[::-1] if len(sizes) == 2 else None


def _to_table(rec, names):
    out = QTable()
    for name in names:
        value = np.asarray(rec[name])
        if value.dtype.kind == 'S':
            value = np.char.decode(value, 'ascii')
        elif value.dtype.byteorder not in ('=', '|'):
            value = value.astype(value.dtype.newbyteorder('='))
        out[name] = value
    return out


def iter_stamp_table(path, *, chunk_size=100000, columns=None):
    """
    Read a stamp table in chunks, never holding it all in memory.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        The stamp table.

    chunk_size : int, optional
        Rows per chunk.

    columns : list of str, optional
        Columns to read; all by default.

    Yields
    ------
    chunk : `~astropy.table.QTable`
        Consecutive rows, with the header keywords in ``meta``.

    Raises
    ------
    SatphotutilsError
        If the file is missing, not FITS, not a stamp table, or of another
        format version.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from satphotutils.stamps import StampTableWriter, iter_stamp_table
    >>> path = Path(tempfile.mkdtemp()) / 'stamps.fits'
    >>> with StampTableWriter(path) as writer:
    ...     writer.write({'stamp': np.zeros((5, 21, 21), np.float32),
    ...                   'star_id': np.arange(5),
    ...                   'zeropoint': np.full(5, 25.5),
    ...                   'sky': np.full(5, 200.0)})
    >>> [len(chunk) for chunk in iter_stamp_table(path, chunk_size=2)]
    [2, 2, 1]
    """
    hdul, hdu = _open(path)
    with hdul:
        names = columns or hdu.columns.names
        unknown = set(names) - set(hdu.columns.names)
        if unknown:
            msg = f'{path} has no columns {sorted(unknown)}'
            raise SatphotutilsError(msg)
        nrows = hdu.header['NAXIS2']
        data = hdu.data
        for start in range(0, nrows, chunk_size):
            chunk = _to_table(data[start:start + chunk_size], names)
            chunk.meta.update({k: v for k, v in hdu.header.items()
                               if k in _SHAPE_KEYS})
            yield chunk


def stamp_table_columns(path):
    """
    Return the column names of a stamp table without reading its rows.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        The stamp table.

    Returns
    -------
    names : list of str

    Raises
    ------
    SatphotutilsError
        As for `iter_stamp_table`.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from satphotutils.stamps import StampTableWriter, stamp_table_columns
    >>> path = Path(tempfile.mkdtemp()) / 'stamps.fits'
    >>> with StampTableWriter(path) as writer:
    ...     writer.write({'stamp': np.zeros((1, 21, 21), np.float32),
    ...                   'star_id': [1], 'zeropoint': [25.5], 'sky': [200.0]})
    >>> sorted(stamp_table_columns(path))
    ['sky', 'stamp', 'star_id', 'zeropoint']
    """
    hdul, hdu = _open(path)
    with hdul:
        return list(hdu.columns.names)


def stamp_table_shape(path):
    """
    Return the stamp shape ``(ny, nx)`` of a stamp table, from its header.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        The stamp table.

    Returns
    -------
    shape : tuple of int or `None`
        `None` if the stamp column is not a 2D array per row.

    Raises
    ------
    SatphotutilsError
        As for `iter_stamp_table`.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from satphotutils.stamps import StampTableWriter, stamp_table_shape
    >>> path = Path(tempfile.mkdtemp()) / 'tall.fits'
    >>> with StampTableWriter(path) as writer:
    ...     writer.write({'stamp': np.zeros((1, 81, 21), np.float32),
    ...                   'star_id': [1], 'zeropoint': [25.5], 'sky': [200.0]})
    >>> stamp_table_shape(path)
    (81, 21)
    """
    hdul, hdu = _open(path)
    with hdul:
        return _column_shape(hdu)


def read_stamp_table(path, *, columns=None):
    """
    Read a whole stamp table into memory.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        The stamp table.

    columns : list of str, optional
        Columns to read; all by default.

    Returns
    -------
    table : `~astropy.table.QTable`

    Raises
    ------
    SatphotutilsError
        As for `iter_stamp_table`.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from satphotutils.stamps import StampTableWriter, read_stamp_table
    >>> path = Path(tempfile.mkdtemp()) / 'stamps.fits'
    >>> with StampTableWriter(path) as writer:
    ...     writer.write({'stamp': np.zeros((2, 21, 21), np.float32),
    ...                   'star_id': [1, 2], 'zeropoint': [25.5, 25.5],
    ...                   'sky': [200.0, 200.0]})
    >>> table = read_stamp_table(path)
    >>> len(table), table['stamp'].shape
    (2, (2, 21, 21))
    """
    chunks = list(iter_stamp_table(path, chunk_size=2**62, columns=columns))
    if not chunks:
        hdul, hdu = _open(path)
        with hdul:
            names = columns or hdu.columns.names
        return QTable(names=names)
    return chunks[0]
