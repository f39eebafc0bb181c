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
