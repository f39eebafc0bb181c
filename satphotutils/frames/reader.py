# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Reading frames: the image as ``CCDData`` and its `FrameInfo`."""

import contextlib
import dataclasses
import warnings
from pathlib import Path

from satphotutils.utils.exceptions import SatphotutilsError

from .info import InvalidHeaderError, frame_info

__all__ = ['read_frame', 'read_frame_data', 'read_frame_info']

#: The largest image (bytes of pixel data, as the header gives them)
#: ``read_frame`` reads unless told otherwise. A gzip-compressed frame
#: cannot be memory-mapped: a 1.6 GB one took 3.2 GB of memory to read.
MAX_FRAME_BYTES = 2**30


def _check_file(path):
    if not path.exists():
        msg = f'cannot read the frame {path}: no such file'
        raise SatphotutilsError(msg)
    # A FIFO or device would block open() forever or read garbage.
    if not path.is_file():
        msg = f'cannot read the frame {path}: not a regular file'
        raise SatphotutilsError(msg)


@contextlib.contextmanager
def _open(path):
    """Open a FITS file for reading; every failure names the file."""
    from astropy.io import fits
    from astropy.wcs import FITSFixedWarning

    _check_file(path)
    with warnings.catch_warnings():
        # Header repairs (e.g. a non-standard DATE-OBS) are not news.
        warnings.simplefilter('ignore', FITSFixedWarning)
        # A truncated file would otherwise be read zero-filled.
        warnings.filterwarnings('error', 'File may have been truncated')
        try:
            # Our own file object: closed even when astropy fails on it.
            with open(path, 'rb') as fh, fits.open(fh) as hdul:
                yield hdul
        except (SatphotutilsError, InvalidHeaderError):
            raise
        except Exception as exc:
            # Damaged files fail deep inside astropy and cfitsio with many
            # exception types (cfitsio's own among them); all mean the
            # same to the caller: this file cannot be read.
            msg = f'cannot read the frame {path}: {exc}'
            raise SatphotutilsError(msg) from exc


def _image_index(hdul, path, hdu):
    if hdu is not None:
        try:
            image = hdul[hdu]
        except (IndexError, KeyError):
            msg = f'{path} has no HDU {hdu!r}'
            raise SatphotutilsError(msg) from None
        if not (image.is_image and image.header.get('NAXIS') == 2):
            msg = f'HDU {hdu!r} of {path} is not a 2-D image'
            raise SatphotutilsError(msg)
        return hdul.index_of(hdu) if not isinstance(hdu, int) else hdu
    index = next((i for i, h in enumerate(hdul)
                  if h.is_image and h.header.get('NAXIS') == 2), None)
    if index is None:
        msg = (f'{path} has no 2-D image HDU; give a reduced frame (a 2-D '
               'image)')
        raise SatphotutilsError(msg)
    return index


def _check_size(header, path, max_bytes):
    """Refuse an image larger than ``max_bytes`` before reading it."""
    limit = MAX_FRAME_BYTES if max_bytes is None else max_bytes
    try:
        size = abs(int(header['BITPIX'])) // 8 * int(header['NAXIS1']) \
            * int(header['NAXIS2'])
    except (KeyError, TypeError, ValueError):
        return  # astropy's reading says what is wrong
    if size > limit:
        msg = (f'the frame {path} holds a {header["NAXIS1"]} x '
               f'{header["NAXIS2"]} image of {size / 1e9:.2g} GB, more than '
               f'the {limit / 1e9:.2g} GB read at most (max_bytes); cut it '
               'into smaller frames, or raise max_bytes (satphotutils.'
               'frames.reader.MAX_FRAME_BYTES) if the memory is there')
        raise SatphotutilsError(msg)


def _wcs(header):
    from astropy.wcs import WCS

    wcs = WCS(header)
    return wcs if wcs.has_celestial else None


def read_frame_info(path, *, header_keys=None, hdu=None):
    """
    Read a frame's header values without reading its pixels.

    Parameters
    ----------
    path : path-like
        The FITS file.

    header_keys : `~satphotutils.frames.HeaderKeys`, optional
        The keywords to read.

    hdu : int or str, optional
        The image HDU; the first 2-D image HDU if `None`.

    Returns
    -------
    info : `~satphotutils.frames.FrameInfo`
        With the shape and the celestial WCS (`None` without one).

    Raises
    ------
    SatphotutilsError
        If the file is missing, not FITS, has no 2-D image, or has a
        header value that cannot be used; the message names the file.
    """
    path = Path(path)
    with _open(path) as hdul:
        index = _image_index(hdul, path, hdu)
        header = hdul[index].header
        shape = (int(header['NAXIS2']), int(header['NAXIS1']))
        info = frame_info(header, header_keys=header_keys, path=path)
        wcs = _wcs(header)
    return dataclasses.replace(info, shape=shape, wcs=wcs)


def read_frame(path, *, header_keys=None, unit='adu', hdu=None,
               max_bytes=None):
    """
    Read a survey frame: its image and its header values.

    The image is the first HDU with a 2-D image (or ``hdu``), so
    tile-compressed ``.fits.fz`` files (an empty primary HDU, then a
    ``CompImageHDU``) and multi-extension files read like plain ones;
    integer images with ``BZERO``/``BSCALE`` are scaled as FITS says, and
    SIP distortion is kept in the WCS. The unit is ``BUNIT`` when the
    header has it, ``unit`` otherwise. Mask and uncertainty extensions
    are read as `~astropy.nddata.CCDData` reads them.

    Parameters
    ----------
    path : path-like
        The FITS file.

    header_keys : `~satphotutils.frames.HeaderKeys`, optional
        The keywords of the time, zero point, sky, camera... (the
        defaults if `None`).

    unit : str or `~astropy.units.Unit`, optional
        The unit when the header has no ``BUNIT``.

    hdu : int or str, optional
        The image HDU; the first 2-D image HDU if `None`.

    max_bytes : int, optional
        The largest image read (bytes of pixel data); ``MAX_FRAME_BYTES``
        (1 GiB) if `None`. Checked from the header, before any pixel is
        read or decompressed.

    Returns
    -------
    frame : `~astropy.nddata.CCDData`
        The image, with the header as ``meta`` and the WCS.

    info : `~satphotutils.frames.FrameInfo`
        The header values, validated; each `None` when unknown.

    Raises
    ------
    SatphotutilsError
        If the file is missing, not a regular file, not FITS, truncated,
        has no 2-D image or one larger than ``max_bytes``, or a header
        value cannot be used; the message names the file (and the
        keyword).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> from satphotutils.frames import read_frame
    >>> path = pathlib.Path(tempfile.mkdtemp()) / 'frame.fits.fz'
    >>> image = fits.CompImageHDU(np.ones((20, 30), 'i4'))
    >>> image.header['DATE-OBS'] = '2024-03-01T02:00:00'
    >>> image.header['EXPTIME'] = 60.0
    >>> fits.HDUList([fits.PrimaryHDU(), image]).writeto(path)
    >>> frame, info = read_frame(path)
    >>> frame.shape, str(frame.unit), info.time.isot, info.zeropoint
    ((20, 30), 'adu', '2024-03-01T02:00:30.000', None)
    """
    from astropy.nddata import CCDData

    path = Path(path)
    with _open(path) as hdul:
        index = _image_index(hdul, path, hdu)
        # The header as written: CCDData.read moves the keywords WCSLIB
        # knows (DATE-AVG, MJD-AVG among them) out of its meta.
        header = hdul[index].header.copy()
        _check_size(header, path, max_bytes)
        bunit = header.get('BUNIT')
        # The unit only when the file has none: astropy reports (and
        # some versions log) an override of BUNIT.
        try:
            frame = CCDData.read(path, hdu=index,
                                 **({} if bunit else {'unit': unit}))
        except ValueError as exc:
            msg = f'cannot read the frame {path}: {exc}'
            raise SatphotutilsError(msg) from exc
        info = frame_info(header, header_keys=header_keys, path=path)
    wcs = frame.wcs if frame.wcs is not None and frame.wcs.has_celestial \
        else None
    return frame, dataclasses.replace(info, shape=frame.shape, wcs=wcs)


def read_frame_data(path, *, hdu=None, max_bytes=None, dtype=None,
                    copy=True):
    """
    Read a frame's pixels only, as `read_frame` reads them.

    For a run that has the header values already (from
    `read_frame_info`): the same image HDU, size check and FITS scaling
    (``BZERO``/``BSCALE``, tile compression), without building a
    `~astropy.nddata.CCDData`, its WCS and a second parse of the header.

    Parameters
    ----------
    path : path-like
        The FITS file.

    hdu : int or str, optional
        The image HDU; the first 2-D image HDU if `None`.

    max_bytes : int, optional
        As for `read_frame`.

    dtype : data-type, optional
        Convert the pixels to this type (e.g. ``np.float32``).

    copy : bool, optional
        With ``False`` (and no ``dtype``), the pixels as astropy gives them:
        a read-only memory map of the file for an uncompressed, unscaled
        image (it outlives the closed file; nothing is read until used),
        the decoded array otherwise. For a caller that looks at a small
        part of a large frame (cutting stamps), this saves reading and
        converting the whole image.

    Returns
    -------
    data : `~numpy.ndarray`, 2-D

    Raises
    ------
    SatphotutilsError
        As for `read_frame`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> from satphotutils.frames import read_frame_data
    >>> path = pathlib.Path(tempfile.mkdtemp()) / 'frame.fits'
    >>> fits.PrimaryHDU(np.arange(6, dtype='i4').reshape(2, 3)).writeto(path)
    >>> read_frame_data(path, dtype=np.float32)
    array([[0., 1., 2.],
           [3., 4., 5.]], dtype=float32)
    """
    import numpy as np

    path = Path(path)
    with _open(path) as hdul:
        index = _image_index(hdul, path, hdu)
        _check_size(hdul[index].header, path, max_bytes)
        data = np.asarray(hdul[index].data).view(np.ndarray)
        if not copy and dtype is None:
            data.flags.writeable = False
            return data
        # One conversion of the mapped pixels, not a copy and then a cast.
        return data.astype(dtype if dtype is not None else data.dtype,
                           copy=True)
