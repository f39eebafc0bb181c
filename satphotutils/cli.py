# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The ``satphot`` command-line interface.

Each subpackage owns its subcommands: it has a private ``_cli`` module
with a ``register(subparsers)`` function that adds them. This module only
collects them, parses the arguments and turns errors into one line on
stderr and a non-zero exit status. The ``_cli`` modules import nothing
heavy at module level, so that ``satphot --help`` stays fast; the work
is imported inside each handler.
"""

import argparse
import importlib
import sys

from satphotutils import __version__

__all__ = ['build_parser', 'main']

# The pipeline order, which is also the order of ``satphot --help``.
_SUBCOMMAND_MODULES = (
    'satphotutils.utils._cli',
    'satphotutils.simulation._cli',
    'satphotutils.stamps._cli',
    'satphotutils.network._cli',
    'satphotutils.photometry._cli',
    'satphotutils.lightcurves._cli',
    'satphotutils.intercalibration._cli',
)

# Exit statuses: 1 for a failure of the requested work, 2 for a usage
# error (argparse's own convention), 130 for an interrupt.
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """
    Say an option's default once, and only where there is one.

    argparse's ``ArgumentDefaultsHelpFormatter`` appends ``(default:
    None)`` to required options and to options whose help already names
    the default; this one appends the default only when it is a value
    (not `None`, `False` or an empty list, and the option takes an
    argument) and the help does not say it.
    """

    def _get_help_string(self, action):
        help_text = action.help or ''
        default = action.default
        # Identity, not equality: a default of 0 or 0.0 is a value
        # (``0.0 in (False,)`` is true); a flag (no argument) has none.
        if ('default' in help_text or action.required or action.nargs == 0
                or default is None or default is False
                or default is argparse.SUPPRESS
                or (isinstance(default, list) and not default)
                or action.option_strings == []):
            return help_text
        return f'{help_text} (default: %(default)s)'


def build_parser():
    """
    Build the ``satphot`` argument parser with every registered subcommand.

    Returns
    -------
    parser : `argparse.ArgumentParser`
        The parser. Each subcommand's namespace carries the handler in
        ``func``.

    Examples
    --------
    >>> from satphotutils.cli import build_parser
    >>> parser = build_parser()
    >>> args = parser.parse_args(['info'])
    >>> args.command
    'info'
    """
    parser = argparse.ArgumentParser(
        prog='satphot',
        description=('Photometry of saturated stars with a neural network, '
                     'and light curves from survey frames.'),
        epilog='Run "satphot COMMAND --help" for the options of a command.',
        formatter_class=_Formatter)
    parser.add_argument('--version', action='version',
                        version=f'satphot {__version__}')
    parser.add_argument('--debug', action='store_true',
                        help='show the full traceback when a command fails')
    parser.add_argument('--threads', type=_threads, default=None,
                        metavar='N',
                        help=('threads per pool of CPU-bound work (BLAS, '
                              'OpenMP, torch; default: the cores this '
                              'process may use); 1 on a shared machine '
                              'gives the steadiest run times'))
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND',
                                       title='commands')
    for name in _SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers, _Formatter)
    return parser


def main(argv=None):
    """
    Run the ``satphot`` command line.

    Parameters
    ----------
    argv : list of str, optional
        The arguments, without the program name. `None` means
        ``sys.argv[1:]``.

    Returns
    -------
    status : int
        The exit status: 0 on success, 1 when the command failed, 2 for a
        usage error, 130 when interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from satphotutils.utils.threads import limit_threads

    try:
        with limit_threads(args.threads):
            status = args.func(args)
    except KeyboardInterrupt:
        print(f'satphot {args.command}: interrupted', file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            raise
        print(_one_line(args.command, exc), file=sys.stderr)
        return EXIT_FAILURE
    return 0 if status is None else int(status)


def _threads(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f'must be a whole number >= 1, got {text!r}'
        raise argparse.ArgumentTypeError(msg)
    return value


def _one_line(command, exc):
    """Describe an exception in one line, without a traceback."""
    from astropy.units import UnitsError

    from satphotutils.utils.exceptions import SatphotutilsError

    message = ' '.join(str(exc).split()) or exc.__class__.__name__
    if isinstance(exc, (SatphotutilsError, ValueError, TypeError, OSError,
                        KeyError, UnitsError)):
        return f'satphot {command}: error: {message}'
    return (f'satphot {command}: unexpected error '
            f'({exc.__class__.__name__}: {message}); this is a bug in '
            'satphotutils: rerun with --debug and report the traceback')


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
