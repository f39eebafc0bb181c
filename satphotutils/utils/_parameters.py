# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Validation of numeric options at the public boundary, in one place.

Each function returns the value as a plain Python number or raises with a
message naming the option (photutils' ``utils/_parameters.py`` plays the
same part there).
"""

import math

import numpy as np

__all__ = []


def as_finite(value, what):
    """Return ``value`` as a finite float, or raise naming ``what``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        msg = f'{what} must be a number, got {value!r}'
        raise ValueError(msg) from None
    if not math.isfinite(number):
        msg = f'{what} must be finite, got {value!r}'
        raise ValueError(msg)
    return number


def as_non_negative(value, what):
    """Return ``value`` as a finite float >= 0, or raise naming ``what``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        msg = f'{what} must be a number, got {value!r}'
        raise ValueError(msg) from None
    if not number >= 0 or not math.isfinite(number):
        msg = f'{what} must be a finite number >= 0, got {value!r}'
        raise ValueError(msg)
    return number


def as_positive(value, what):
    """Return ``value`` as a finite float > 0, or raise naming ``what``."""
    number = as_non_negative(value, what)
    if number == 0:
        msg = f'{what} must be > 0, got {value!r}'
        raise ValueError(msg)
    return number


def as_integer(value, what, *, minimum=None):
    """Return an int; bools, strings and floats are a TypeError."""
    # bool is an int to Python, and '21' or 21.5 are not stamp sizes.
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, np.integer)):
        msg = f'{what} must be an integer, got {value!r}'
        raise TypeError(msg)
    if minimum is not None and value < minimum:
        msg = f'{what} must be at least {minimum}, got {value}'
        raise ValueError(msg)
    return int(value)


def as_whole_number(value, what, *, minimum):
    """Return an int from an int or a whole float (5.0 stars is 5)."""
    # 2.5 stars, True or '5' are mistakes, not numbers.
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, np.integer, float, np.floating)) or \
            not np.isfinite(value) or int(value) != value:
        msg = f'{what} must be a whole number >= {minimum}, got {value!r}'
        raise ValueError(msg)
    if value < minimum:
        msg = f'{what} must be >= {minimum}, got {value!r}'
        raise ValueError(msg)
    return int(value)


def number_option(*, integer=False, minimum=None, maximum=None,
                  above=None, unit=''):
    """
    Return an argparse ``type=`` that parses and range-checks a number.

    Every numeric option of every ``satphot`` command is read through
    this, so that ``nan``, ``inf``, ``0`` or a negative number never
    reaches the work and an out-of-range value is a usage error
    (exit status 2) naming the option.

    Parameters
    ----------
    integer : bool, optional
        An integer option (``'2.5'`` is refused), else a finite float.

    minimum, maximum : float, optional
        Inclusive bounds.

    above : float, optional
        Exclusive lower bound (``above=0``: a positive number).

    unit : str, optional
        Said after the range in the message, e.g. ``'days'``.

    Returns
    -------
    parse : callable
        From the option's text to an int or a float; raises
        `argparse.ArgumentTypeError`.

    Examples
    --------
    >>> from satphotutils.utils._parameters import number_option
    >>> number_option(above=0)('0.5')
    0.5
    >>> number_option(integer=True, minimum=1)('0')
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be an integer >= 1, got '0'
    """
    import argparse

    what = 'an integer' if integer else 'a finite number'
    limits = [f'>= {minimum:g}' if minimum is not None else '',
              f'> {above:g}' if above is not None else '',
              f'<= {maximum:g}' if maximum is not None else '']
    wanted = ' and '.join(x for x in limits if x)
    wanted = f'{what} {wanted}'.strip() + (f' ({unit})' if unit else '')

    def parse(text):
        try:
            value = int(text) if integer else as_finite(text, 'the value')
        except ValueError:
            msg = f'must be {wanted}, got {text!r}'
            raise argparse.ArgumentTypeError(msg) from None
        if (minimum is not None and value < minimum) or \
                (above is not None and value <= above) or \
                (maximum is not None and value > maximum):
            msg = f'must be {wanted}, got {text!r}'
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


def stamp_shape(size, *, name='stamp_size', minimum=1):
    """
    Return a stamp shape ``(ny, nx)`` from a size or a pair, checked.

    The one rule for stamp geometry: both sizes odd (the target sits on
    the central pixel) and ``ny >= nx``, the rows along the read (bleed)
    direction, so that a tall stamp holds a bleed trail. Both flips of
    such a stamp are symmetries of the detector; a transpose is not.

    Parameters
    ----------
    size : int or tuple of int
        One odd size for a square stamp, or ``(ny, nx)``.

    name : str, optional
        The argument's name, for the message.

    minimum : int, optional
        Smallest size allowed.

    Returns
    -------
    shape : tuple of int
        ``(ny, nx)``.

    Raises
    ------
    ValueError
        For an even size, a size below ``minimum``, ``ny < nx`` or
        anything but one or two integers; the message names ``name``.

    Examples
    --------
    >>> from satphotutils.stamps import stamp_shape
    >>> stamp_shape(21), stamp_shape((81, 21))
    ((21, 21), (81, 21))
    >>> stamp_shape((21, 81))
    Traceback (most recent call last):
    ...
    ValueError: stamp_size (21, 81) has ny < nx: ...
    """
    values = size if isinstance(size, (tuple, list, np.ndarray)) else \
        (size,)
    ok = 1 <= len(values) <= 2 and all(
        isinstance(v, (int, np.integer))
        and not isinstance(v, (bool, np.bool_)) for v in values)
    if not ok:
        msg = (f'{name} must be an odd size or a pair (ny, nx) of odd '
               f'sizes, got {size!r}')
        raise ValueError(msg)
    shape = tuple(int(v) for v in values) * (3 - len(values))
    if any(n % 2 == 0 or n < minimum for n in shape):
        msg = (f'{name} must be an odd size or a pair (ny, nx) of odd '
               f'sizes, each at least {minimum}, got {size!r}: a stamp is '
               'centred on the pixel nearest its target')
        raise ValueError(msg)
    if shape[0] < shape[1]:
        msg = (f'{name} {tuple(shape)} has ny < nx: the rows of a tall '
               'stamp run along the read (bleed) direction, so give '
               f'({shape[1]}, {shape[0]}) and cut the stamps along the '
               'bleed trails (transpose a frame read along its rows)')
        raise ValueError(msg)
    return shape


def stamp_shape_option(text):
    """
    Parse ``--stamp-shape NYxNX`` (or ``N`` for a square) for argparse.

    Examples
    --------
    >>> from satphotutils.utils._parameters import stamp_shape_option
    >>> stamp_shape_option('81x21'), stamp_shape_option('21')
    ((81, 21), (21, 21))
    """
    import argparse

    try:
        sizes = tuple(int(p) for p in text.lower().split('x'))
    except ValueError:
        msg = (f'--stamp-shape must look like NYxNX or N, e.g. 81x21, got '
               f'{text!r}')
        raise argparse.ArgumentTypeError(msg) from None
    try:
        return stamp_shape(sizes, name='--stamp-shape', minimum=5)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
