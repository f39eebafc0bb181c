# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""``satphot info``: versions and environment, for bug reports."""


def register(subparsers, formatter_class):
    """Add the ``info`` subcommand."""
    parser = subparsers.add_parser(
        'info', formatter_class=formatter_class,
        help='show versions of satphotutils and its dependencies',
        description=('Print the versions of satphotutils, Python and the '
                     'main dependencies, and the compute device torch '
                     'will use. Paste this into bug reports.'))
    parser.set_defaults(func=_run)


def _run(args):
    from satphotutils.utils._misc import get_versions

    for name, value in get_versions().items():
        print(f'{name:>12s}: {value}')
