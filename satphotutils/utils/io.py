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
