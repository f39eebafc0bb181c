# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Process pools whose workers end with the process that started them.

A run killed with SIGKILL cannot stop its pool: its workers wait for work
forever (each holding its share of the run's memory). Every pool of the
package comes from `process_pool`, whose workers watch their parent.
"""

import os
import sys
import threading
import time

__all__ = ['process_pool']


def _die_with_parent(parent, initializer, initargs):
    """
    End this pool worker when the process that started it ends.

    Polled, as ``prctl(PR_SET_PDEATHSIG)`` is Linux-only and fires when
    the parent's *thread* ends.
    """
    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name='satphot-parent-watch',
                     daemon=True).start()
    if initializer is not None:
        initializer(*initargs)


def process_pool(workers, *, context=None, initializer=None, initargs=()):
    """
    Return a `~concurrent.futures.ProcessPoolExecutor` for a run.

    Parameters
    ----------
    workers : int
        Worker processes.

    context : {'fork', 'spawn', 'forkserver'} or context, optional
        The multiprocessing start method. `None` is dask's (``'spawn'``
        unless configured), which is safe with torch and its threads;
        ``'fork'`` starts workers at no cost and suits work without
        torch on Linux (elsewhere it falls back to ``'spawn'``).

    initializer : callable, optional
        Called in each worker with ``initargs`` when it starts (with
        ``'fork'`` the arguments are inherited, not pickled).

    initargs : tuple, optional

    Returns
    -------
    pool : `~concurrent.futures.ProcessPoolExecutor`

    Examples
    --------
    >>> from satphotutils.utils.workers import process_pool
    >>> with process_pool(2, context='fork') as pool:
    ...     list(pool.map(abs, [-1, 2, -3]))
    [1, 2, 3]
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if context is None:
        from dask.multiprocessing import get_context

        context = get_context()
    elif isinstance(context, str):
        if context == 'fork' and not sys.platform.startswith('linux'):
            # fork without exec is unsafe with macOS system libraries.
            context = 'spawn'
        context = multiprocessing.get_context(context)
    return ProcessPoolExecutor(workers, mp_context=context,
                               initializer=_die_with_parent,
                               initargs=(os.getpid(), initializer, initargs))
