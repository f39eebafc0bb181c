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


def get_meta(**extra):
    """
    Return table metadata in the photutils layout.

    The metadata holds the date and a ``version`` dict, followed by
    ``extra``.

    Parameters
    ----------
    **extra
        Further items to store, such as the configuration that produced
        the table.

    Returns
    -------
    meta : dict
        The metadata.
    """
    date = datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S %Z')
    return {'date': date, 'version': get_versions(), **extra}
