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
    print(f'{"torch device":>12s}: {_device()}')
    from satphotutils.utils.threads import default_threads

    print(f'{"threads":>12s}: {default_threads()} (satphot --threads N)')


def _device():
    """Return the device a model runs on unless told otherwise."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return 'none (torch is not installed)'
    others = []
    if torch.cuda.is_available():
        others.append(f'cuda ({torch.cuda.get_device_name(0)})')
    if getattr(torch.backends, 'mps', None) and \
            torch.backends.mps.is_available():
        others.append('mps')
    # Models read from a file stay on the CPU unless moved (device=).
    return 'cpu' + (f'; also available: {", ".join(others)}' if others
                    else '; no GPU available')
