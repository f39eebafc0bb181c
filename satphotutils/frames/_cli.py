# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The ``--header-key`` option of every subcommand that reads frames."""

__all__ = []


def add_header_key_option(parser):
    """Add ``--header-key NAME=KEYWORD`` (repeatable) to a parser."""
    from .keys import HeaderKeys

    parser.add_argument(
        '--header-key', action='append', default=[], metavar='NAME=KEYWORD',
        dest='header_key',
        help=('the header keyword of a quantity, e.g. zeropoint=MAGZP, '
              'camera=INSTRUME, mjd=MJD-MID, times_mark=mid, or NAME= to '
              'ignore a keyword; repeatable. Names: '
              f'{", ".join(HeaderKeys.names())}'))


def header_keys_from(args):
    """Return the `~satphotutils.frames.HeaderKeys` of parsed arguments."""
    from .keys import HeaderKeys

    return HeaderKeys.parse(getattr(args, 'header_key', None) or ())
