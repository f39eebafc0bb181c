# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Outputs written atomically: no half-written file is ever left behind.

Frames are read by `satphotutils.frames`.
"""

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ['atomic_output', 'check_outputs']

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


def check_outputs(paths, *, overwrite=False):
    """
    Check every output of a run before any work or any write.

    A command that writes several files must not write the first and then
    fail on the second (every rerun would then fail on the first).

    Parameters
    ----------
    paths : iterable of path-like or None
        The outputs (`None` entries are skipped).

    overwrite : bool, optional
        Whether existing files may be replaced.

    Raises
    ------
    FileExistsError
        Naming every output that exists, if ``overwrite`` is false.

    FileNotFoundError
        If the directory of an output does not exist.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from satphotutils.utils.io import check_outputs
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / 'a.ecsv').write_text('x')
    >>> try:
    ...     check_outputs([d / 'a.ecsv', d / 'b.png'])
    ... except FileExistsError as exc:
    ...     print(str(exc).split('/')[-1][:22])
    a.ecsv already exists;
    >>> check_outputs([d / 'a.ecsv'], overwrite=True)
    """
    paths = [Path(p) for p in paths if p is not None]
    for path in paths:
        if not path.parent.is_dir():
            msg = (f'the directory of the output {path} does not exist; '
                   'create it first')
            raise FileNotFoundError(msg)
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        names = ', '.join(existing)
        verb = 'already exists' if len(existing) == 1 else 'already exist'
        them = 'it' if len(existing) == 1 else 'them'
        msg = (f'{names} {verb}; pass overwrite=True (--overwrite on the '
               f'command line) to replace {them}')
        raise FileExistsError(msg)
