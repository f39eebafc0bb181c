# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Finding frames: directories, glob patterns and lists."""

import glob
import logging
from pathlib import Path

__all__ = ['FRAME_PATTERNS', 'list_frames']

log = logging.getLogger(__name__)

#: File-name patterns of FITS frames in a directory (plain, gzip- or
#: tile-compressed).
FRAME_PATTERNS = ('*.fits', '*.fit', '*.fts', '*.fits.fz', '*.fit.fz',
                  '*.fits.gz', '*.fit.gz', '*.fz')


def _in_directory(directory):
    found = set()
    for pattern in FRAME_PATTERNS:
        found.update(p for p in Path(directory).glob(pattern)
                     if not p.name.startswith('.'))
    return sorted(found)


def _has_header(path):
    from astropy.io import fits

    if not Path(path).is_file():
        return False
    try:
        with open(path, 'rb') as fh:
            fits.getheader(fh)
    except Exception:  # any failure: the run will report the file
        return False
    return True


def _matches(path, filters):
    from astropy.io import fits

    # A FIFO would block open() forever: kept, and the run reports it.
    if not Path(path).is_file():
        return True
    try:
        with open(path, 'rb') as fh, fits.open(fh) as hdul:
            header = next((h.header for h in hdul
                           if h.is_image and h.header.get('NAXIS') == 2),
                          hdul[0].header)
            return all(str(header.get(k)) == str(v)
                       for k, v in filters.items())
    except Exception:  # unreadable: kept, so that the run reports it
        return True


def list_frames(frames, **filters):
    """
    List FITS frames from directories, glob patterns or files.

    Parameters
    ----------
    frames : path-like, str or list of them
        Each item a directory (its ``*.fits``, ``*.fit``, ``*.fts`` and
        compressed ``.fz``/``.gz`` files), a glob pattern or a file.

    **filters
        Header keyword values a frame must have (e.g. ``FILTER='g'``),
        compared as strings, in the header of the image HDU (not the
        empty primary HDU of a tile-compressed file, which
        `ccdproc.ImageFileCollection` would read).

    Returns
    -------
    files : list of `~pathlib.Path`
        In the order given (each directory and pattern sorted). A file
        reached twice (listed twice, or through a link) is kept once, with
        a warning in the log. Files that cannot be read are kept,
        whatever the filters, so that a run reports them instead of
        silently leaving them out.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from astropy.io import fits
    >>> from satphotutils.frames import list_frames
    >>> directory = Path(tempfile.mkdtemp())
    >>> for name, band in (('a.fits', 'g'), ('b.fits', 'V')):
    ...     fits.PrimaryHDU(header=fits.Header({'FILTER': band})).writeto(
    ...         directory / name)
    >>> [p.name for p in list_frames(directory, FILTER='g')]
    ['a.fits']
    """
    items = [frames] if isinstance(frames, (str, Path)) else list(frames)
    files = []
    for item in items:
        text = str(item)
        if Path(item).is_dir():
            found = _in_directory(item)
        elif any(c in text for c in '*?[') and not Path(item).exists():
            found = [Path(f) for f in sorted(glob.glob(text))]
        else:
            found = [Path(item)]
        if filters:
            found = [f for f in found if _matches(f, filters)]
        files += found
    unique, seen = [], {}
    for f in files:
        try:
            identity = f.resolve()
        except OSError:
            identity = f
        if identity in seen:
            log.warning('%s is the same file as %s; measured once', f,
                        seen[identity])
            continue
        seen[identity] = f
        unique.append(f)
    return unique
