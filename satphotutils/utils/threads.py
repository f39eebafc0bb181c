# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
One bound on the threads of CPU-bound work (BLAS, OpenMP and torch).

numpy's BLAS, OpenMP code and torch each start a thread per core by
default, and nested in one another (or next to Dask's workers) they ask
for many more threads than there are cores: on a busy 2-core machine the
run time of one command varied from 5 to 40 s. `limit_threads` caps them
all, through threadpoolctl for the native pools and
`torch.set_num_threads` for torch's intra-op pool.
"""

import contextlib
import os
import sys

from satphotutils.utils._parameters import as_integer

__all__ = ['default_threads', 'limit_threads']

# Read by OpenMP, OpenBLAS and MKL when they start their pools.
_THREAD_VARIABLES = ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS',
                     'MKL_NUM_THREADS')


def default_threads():
    """
    Return the default number of threads: the cores this process may use.

    Returns
    -------
    n : int
        ``len(os.sched_getaffinity(0))`` where the platform has it (a
        container or ``taskset`` limits it), else ``os.cpu_count()``.

    Examples
    --------
    >>> from satphotutils.utils.threads import default_threads
    >>> default_threads() >= 1
    True
    """
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on macOS or Windows
        return max(os.cpu_count() or 1, 1)


@contextlib.contextmanager
def limit_threads(n=None):
    """
    Cap the threads of BLAS, OpenMP and torch within a ``with`` block.

    Parameters
    ----------
    n : int, optional
        Threads per pool; `default_threads` if `None`.

    Yields
    ------
    n : int
        The cap in force.

    Examples
    --------
    >>> from satphotutils.utils.threads import limit_threads
    >>> with limit_threads(1) as n:
    ...     n
    1
    """
    from threadpoolctl import threadpool_limits

    n = default_threads() if n is None else as_integer(n, 'threads',
                                                       minimum=1)
    # torch (1.8 s to import) is capped only when a command has loaded
    # it; one that has not (intercalibrate, simulate) must not pay for
    # it, and a library loaded inside the block reads the environment.
    torch = sys.modules.get('torch')
    torch_before = None
    saved = {key: os.environ.get(key) for key in _THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(_THREAD_VARIABLES, str(n)))
    try:
        with threadpool_limits(limits=n):
            if torch is not None:
                torch_before = torch.get_num_threads()
                torch.set_num_threads(n)
            try:
                yield n
            finally:
                if torch is not None:
                    torch.set_num_threads(torch_before)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
