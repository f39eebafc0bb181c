# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Warning and exception classes used throughout satphotutils."""

from astropy.utils.exceptions import (
    AstropyDeprecationWarning,
    AstropyUserWarning,
)

__all__ = [
    'SatphotutilsDeprecationWarning',
    'SatphotutilsError',
    'SatphotutilsUserWarning',
]


class SatphotutilsError(Exception):
    """
    An error caused by the user's input that the user can fix.

    The command-line interface prints the message of these errors as one
    line, without a traceback, so the message must name the offending
    argument or file and say what to do about it.
    """


class SatphotutilsUserWarning(AstropyUserWarning):
    """A recoverable problem with the input data."""


class SatphotutilsDeprecationWarning(AstropyDeprecationWarning):
    """A feature that will be removed in a future version."""
