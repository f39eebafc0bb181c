# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The photometry methods by name, as the command line chooses them.

One table maps each ``--method`` name to its class, so that ``satphot
photometry`` and ``satphot lightcurve`` offer the same methods under the
same names and a new class is added in one place.
"""

import importlib
import inspect

__all__ = ['METHODS', 'photometry_method']

#: ``--method`` name to the photometry class (module, class name); the
#: classes are imported only when chosen.
METHODS = {
    'network': ('satphotutils.photometry.core', 'SaturatedStarPhotometry'),
    'aperture': ('satphotutils.photometry.core',
                 'AperturePhotometryBaseline'),
    'psf-wing': ('satphotutils.photometry.core', 'PSFWingPhotometry'),
    'bleed-trail': ('satphotutils.photometry.bleed', 'BleedTrailPhotometry'),
}


def photometry_method(name, **options):
    """
    Build the photometry object of a method name.

    Parameters
    ----------
    name : str
        A key of ``METHODS``.

    **options
        Keyword arguments for the class. Options the class does not take
        and whose value is `None` (a command-line option left unset) are
        dropped; a set option the method cannot use is an error.

    Returns
    -------
    photometry : satphotutils photometry object

    Raises
    ------
    ValueError
        For an unknown name, or an option set that the method does not
        take.

    Examples
    --------
    >>> from satphotutils.photometry.methods import photometry_method
    >>> phot = photometry_method('aperture', radius=3.0, model=None)
    >>> type(phot).__name__, phot.radius
    ('AperturePhotometryBaseline', 3.0)
    """
    if name not in METHODS:
        msg = (f'unknown photometry method {name!r}; choose one of '
               f'{", ".join(METHODS)}')
        raise ValueError(msg)
    module, cls_name = METHODS[name]
    cls = getattr(importlib.import_module(module), cls_name)
    accepted = _keywords(cls)
    unused = sorted(k for k, v in options.items()
                    if k not in accepted and v is not None)
    if unused:
        msg = (f"method {name!r} does not take {', '.join(unused)}; "
               'leave those options out for it')
        raise ValueError(msg)
    # None is an option not given: the method's own default.
    return cls(**{k: v for k, v in options.items()
                  if k in accepted and v is not None})


def _keywords(cls):
    # Walk the MRO: the classes pass **kwargs on to their base.
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        names |= {p.name for p in inspect.signature(init).parameters.values()
                  if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.name != 'self'}
    return names
