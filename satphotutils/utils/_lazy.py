# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Lazy public namespaces for subpackages (PEP 562)."""

import importlib

__all__ = ['lazy_namespace']


def lazy_namespace(package, modules):
    """
    Build ``__getattr__``, ``__dir__`` and ``__all__`` for a subpackage.

    The subpackage's public names are imported from their modules only
    when first used, so that importing a subpackage (as the ``satphot``
    command line does to register its commands) stays cheap.

    Parameters
    ----------
    package : str
        The subpackage's ``__name__``.

    modules : dict
        Module name (relative, without the dot) to the list of public
        names it defines (its ``__all__``).

    Returns
    -------
    getattr_, dir_, all_ : callable, callable, list
    """
    owner = {name: module for module, names in modules.items()
             for name in names}
    all_ = sorted(owner)

    def getattr_(name):
        if name in owner:
            module = importlib.import_module(f'{package}.{owner[name]}')
            return getattr(module, name)
        msg = f'module {package!r} has no attribute {name!r}'
        raise AttributeError(msg)

    def dir_():
        return all_

    return getattr_, dir_, all_
