# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Provenance metadata attached to every table satphotutils writes."""

import functools
import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

__all__ = ['get_meta', 'get_versions']

_PACKAGES = ('satphotutils', 'numpy', 'scipy', 'astropy', 'photutils',
             'torch', 'celerite2', 'matplotlib', 'dask')


def get_versions():
    """
    Return the versions of Python and of the packages satphotutils uses.

    Returns
    -------
    versions : dict
        Package name to version string; `None` for a package that is not
        installed.

    Examples
    --------
    >>> from satphotutils.utils._misc import get_versions
    >>> sorted(get_versions())[:3]
    ['Python', 'astropy', 'celerite2']
    """
    return dict(_versions())


@functools.lru_cache(maxsize=1)
def _versions():
    # Reading package metadata costs ~20 ms; photometry tables and model
    # files ask for it on every call.
    versions = {'Python': platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return tuple(versions.items())


def get_meta(*, config=None, flags='all', **extra):
    """
    Return the metadata of an output table, in the photutils layout.

    Every table satphotutils writes takes its provenance from here: the
    date, a ``version`` dict (Python and the packages used), the meanings
    of the flag bits and the configuration that produced it.

    Parameters
    ----------
    config : dict, optional
        The configuration that produced the table, stored under
        ``'config'``.

    flags : 'all', str, iterable of str or `None`, optional
        The flag bits whose meanings are stored under ``'flags'`` (see
        `~satphotutils.utils.flags.SATPHOT_FLAGS`): ``'all'`` for every
        bit of the registry, a name or names for those bits, `None` for
        none (a table without a ``flags`` column).

    **extra
        Further items to store, such as the model's provenance or the
        fitted model.

    Returns
    -------
    meta : dict
        ``date``, ``version``, then ``flags`` and ``config`` when given,
        then ``extra``.

    Raises
    ------
    KeyError
        If ``flags`` names a flag that is not in the registry.

    Examples
    --------
    >>> from satphotutils.utils._misc import get_meta
    >>> meta = get_meta(config={'robust': True}, flags=['bad_quality'])
    >>> list(meta)
    ['date', 'version', 'flags', 'config']
    >>> meta['flags']['bad_quality']['bit']
    268435456
    """
    from satphotutils.utils.flags import SATPHOT_FLAGS

    date = datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S %Z')
    meta = {'date': date, 'version': get_versions()}
    if flags is not None:
        if isinstance(flags, str):
            flags = None if flags == 'all' else [flags]
        meta['flags'] = SATPHOT_FLAGS.to_meta(flags)
    if config is not None:
        meta['config'] = dict(config)
    return {**meta, **extra}
