# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Outputs written atomically: no half-written file is ever left behind.

Frames are read by `satphotutils.frames`.
"""

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ['atomic_output']

# Every temporary file of atomic_output starts with this, so that a tool
# cleaning up after a killed run removes its own files and no one else's.
TEMPORARY_PREFIX = '.satphot-tmp-'


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
        The temporary path to write to, ``.satphot-tmp-NAME.XXXX`` plus
        the suffixes of ``path`` (so that writers that choose a format
        from the file name still work). The prefix marks it as
        satphotutils' own: a temporary left by a killed process is
        recognised by it and nothing else is ever removed.

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
    fd, tmp = tempfile.mkstemp(dir=path.parent,
                               prefix=f'{TEMPORARY_PREFIX}{path.name}.',
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
