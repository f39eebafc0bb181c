# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The registry of network architectures, keyed by ``architecture['type']``.

A model file names its architecture by a ``type`` string and the
options of `to_config`; reading it looks the class up here and calls its
``from_config``. An architecture is a `torch.nn.Module` subclass with:

``architecture_type`` (class attribute, str)
    The key it is registered under, written to ``model.json``.

``to_config(self) -> dict``
    The constructor options, JSON-serialisable, including ``'type'``.
    They must not include what the preprocessing determines (the number
    of features, the stamp geometry), which ``from_config`` is given.

``from_config(cls, config, *, features) -> module`` (classmethod)
    Rebuild the network from ``to_config`` output for the
    `~satphotutils.network.StampFeatures` it reads. ``config`` comes
    from a file: check every option (type and range) and raise
    `ValueError` naming it (``'architecture.width must be ...'``); an
    option-size bound keeps a hostile file from allocating memory.

``forward(self, x) -> (mean, log_sigma)``
    ``x`` is the standardised feature array, shape (N, n_features); the
    outputs have shape (N,): the predicted correction to ``log10 A`` and
    the log of its (uncalibrated) standard deviation.

``embed(self, x) -> h`` and ``heads(self, h) -> (mean, log_sigma)`` (optional)
    The last hidden activations, shape (N, width), and the heads that
    read them, with ``forward(x) == heads(embed(x))``. The
    out-of-distribution guard (``satphotutils.network.guard``) models
    the density of ``h``; an architecture without them can be used but
    not guarded.

This module does not import torch; the built-in architectures
(``'mlp'``, ``'cnn'``) are registered when ``satphotutils.network.model``
is imported, which `get_architecture` does on first use.
"""

import importlib
import numbers

__all__ = ['architecture_types', 'get_architecture',
           'register_architecture']

_ARCHITECTURES = {}
_BUILTIN = 'satphotutils.network.model'


def register_architecture(cls):
    """
    Register a network class under its ``architecture_type``.

    Use it as a class decorator. Registering another class under a type
    that is already taken is an error; registering the same class again
    (a module reload) replaces it.

    Parameters
    ----------
    cls : type
        A `torch.nn.Module` subclass with an ``architecture_type`` class
        attribute, ``to_config`` and ``from_config`` (see the module
        docstring).

    Returns
    -------
    cls : type
        The class, unchanged.

    Examples
    --------
    >>> from torch import nn
    >>> from satphotutils.network.registry import (
    ...     architecture_types, register_architecture)
    >>> @register_architecture
    ... class Linear(nn.Module):
    ...     architecture_type = 'doc-linear'
    ...     def __init__(self, n_features):
    ...         super().__init__()
    ...         self.layer = nn.Linear(n_features, 2)
    ...     def to_config(self):
    ...         return {'type': self.architecture_type}
    ...     @classmethod
    ...     def from_config(cls, config, *, features):
    ...         return cls(features.n_features)
    ...     def forward(self, x):
    ...         out = self.layer(x)
    ...         return out[:, 0], out[:, 1]
    >>> 'doc-linear' in architecture_types()
    True
    """
    name = getattr(cls, 'architecture_type', None)
    if not isinstance(name, str) or not name:
        msg = (f'{cls.__name__} needs a non-empty string class attribute '
               'architecture_type to be registered')
        raise TypeError(msg)
    for method in ('to_config', 'from_config', 'forward'):
        if not callable(getattr(cls, method, None)):
            msg = f'{cls.__name__} needs a {method} method to be registered'
            raise TypeError(msg)
    old = _ARCHITECTURES.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (
            cls.__module__, cls.__qualname__):
        msg = (f'architecture type {name!r} is already registered by '
               f'{old.__module__}.{old.__qualname__}')
        raise ValueError(msg)
    _ARCHITECTURES[name] = cls
    return cls


def _load_builtin():
    importlib.import_module(_BUILTIN)


def architecture_types():
    """
    Return the registered architecture types, sorted.

    Examples
    --------
    >>> from satphotutils.network.registry import architecture_types
    >>> {'mlp', 'cnn'} <= set(architecture_types())
    True
    """
    _load_builtin()
    return tuple(sorted(_ARCHITECTURES))


def get_architecture(name):
    """
    Return the class registered under ``name``.

    Raises
    ------
    KeyError
        If no class is registered under ``name``; the message lists the
        registered types.

    Examples
    --------
    >>> from satphotutils.network.registry import get_architecture
    >>> get_architecture('mlp').__name__
    'StampMLP'
    """
    _load_builtin()
    try:
        return _ARCHITECTURES[name]
    except (KeyError, TypeError):
        msg = (f'unknown architecture type {name!r}; registered types: '
               f'{", ".join(sorted(_ARCHITECTURES))}')
        raise KeyError(msg) from None


def build(config, *, features):
    """
    Build an untrained network from an ``architecture`` config.

    Parameters
    ----------
    config : dict
        ``{'type': ..., **options}``; a config without ``type`` is
        ``'mlp'`` (model files written before the registry).

    features : `~satphotutils.network.StampFeatures`
        The preprocessing the network reads.

    Raises
    ------
    KeyError
        For an unknown type.
    ValueError
        For an invalid option.
    """
    config = dict(config)
    cls = get_architecture(config.pop('type', 'mlp'))
    return cls.from_config(config, features=features)


def config_int(config, name, *, default, lo, hi):
    """
    Return the integer option ``name`` of ``config``, checked.

    For `from_config` implementations: the value must be an integer
    (not a bool or a float) within ``[lo, hi]``.

    Raises
    ------
    ValueError
        Naming ``architecture.<name>``, the bounds and the value.

    Examples
    --------
    >>> from satphotutils.network.registry import config_int
    >>> config_int({'width': 64}, 'width', default=256, lo=1, hi=4096)
    64
    >>> config_int({'width': 1e8}, 'width', default=256, lo=1, hi=4096)
    Traceback (most recent call last):
    ...
    ValueError: architecture.width must be an integer from 1 to 4096, ...
    """
    value = config.get(name, default)
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
            or not lo <= value <= hi):
        msg = (f'architecture.{name} must be an integer from {lo} to {hi}, '
               f'got {value!r}')
        raise ValueError(msg)
    return int(value)


def check_options(config, allowed):
    """Raise `ValueError` for options of ``config`` not in ``allowed``."""
    unknown = sorted(set(config) - set(allowed) - {'type'})
    if unknown:
        msg = (f'unknown architecture option(s) {", ".join(unknown)}; '
               f'this architecture takes {", ".join(sorted(allowed))}')
        raise ValueError(msg)
