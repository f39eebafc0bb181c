# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
File helpers: frames read one way, outputs written atomically.

No half-written output is ever left behind.
"""

import contextlib
import os
import tempfile
import warnings
from pathlib import Path

from .exceptions import SatphotutilsError

__all__ = ['atomic_output', 'read_frame']


@contextlib.contextmanager
def atomic_output(path, *, overwrite=False):
    """
    Write a file atomically.

    The caller writes to a temporary path in the same directory, which is
    renamed over ``path`` only on success. A reader therefore sees either
    the old file or the complete new one, never a partial file, even if
    the writing process is killed.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        The final output path. Its directory must exist.

    overwrite : bool, optional
        Whether an existing file at ``path`` may be replaced.

    Yields
    ------
    tmp_path : `~pathlib.Path`
        The temporary path to write to. It keeps the suffix of ``path`` so
        that writers that choose a format from the file name still work.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is false.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from satphotutils.utils import atomic_output
    >>> out = pathlib.Path(tempfile.mkdtemp()) / 'table.txt'
    >>> with atomic_output(out) as tmp:
    ...     _ = tmp.write_text('done')
    >>> out.read_text()
    'done'
    """
    path = Path(path)
    if path.exists() and not overwrite:
        msg = (f'{path} already exists; pass overwrite=True (--overwrite on '
               'the command line) to replace it')
        raise FileExistsError(msg)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.',
                               suffix=''.join(path.suffixes))
    os.close(fd)
    tmp = Path(tmp)
    # Writers such as astropy's refuse to write over an existing file.
    tmp.unlink()
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_frame(path, *, unit='adu'):
    """
    Read a reduced survey frame as `~astropy.nddata.CCDData`.

    The image is the first HDU with a 2-D image, so tile-compressed
    ``.fits.fz`` files (an empty primary HDU, then a ``CompImageHDU``)
    read like plain ones. The unit is ``BUNIT`` when the header has it;
    mask and uncertainty extensions are read as `~astropy.nddata.CCDData`
    reads them. Header repairs that astropy makes silently elsewhere
    (``FITSFixedWarning``, e.g. a non-standard date) are not reported.

    Parameters
    ----------
    path : path-like
        The FITS file.

    unit : str or `~astropy.units.Unit`, optional
        The unit when the header has no ``BUNIT``.

    Returns
    -------
    frame : `~astropy.nddata.CCDData`

    Raises
    ------
    SatphotutilsError
        If the file is missing, not FITS, truncated or has no 2-D image;
        the message names the file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> from satphotutils.utils import read_frame
    >>> path = pathlib.Path(tempfile.mkdtemp()) / 'frame.fits.fz'
    >>> hdus = fits.HDUList([fits.PrimaryHDU(),
    ...                      fits.CompImageHDU(np.ones((20, 30), 'i4'))])
    >>> hdus.writeto(path)
    >>> frame = read_frame(path)
    >>> frame.shape, str(frame.unit)
    ((20, 30), 'adu')
    """
    from astropy.io import fits
    from astropy.nddata import CCDData
    from astropy.wcs import FITSFixedWarning

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FITSFixedWarning)
            # A truncated file would otherwise be read zero-filled.
            warnings.filterwarnings('error', 'File may have been truncated')
            # Our own file object: closed even when astropy fails on it.
            with open(path, 'rb') as fh, fits.open(fh) as hdul:
                index = next((i for i, hdu in enumerate(hdul)
                              if hdu.is_image
                              and hdu.header.get('NAXIS') == 2), None)
                if index is None:
                    msg = (f'{path} has no 2-D image HDU; give a reduced '
                           'frame (a 2-D image with a WCS)')
                    raise SatphotutilsError(msg)
                bunit = hdul[index].header.get('BUNIT')
            # The unit only when the file has none: astropy reports
            # (and some versions log) an override of BUNIT.
            frame = CCDData.read(path, hdu=index,
                                 **({} if bunit else {'unit': unit}))
    except SatphotutilsError:
        raise
    except Exception as exc:
        # Damaged files fail deep inside astropy and cfitsio with many
        # exception types (cfitsio's own among them); all mean the same
        # to the caller: this file cannot be read.
        msg = f'cannot read the frame {path}: {exc}'
        raise SatphotutilsError(msg) from exc
    return frame
