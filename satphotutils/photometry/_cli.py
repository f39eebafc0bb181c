# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Subcommands of the photometry stage: ``demo``."""

_DEMO_PLAN = """\
satphot demo will, once SaturatedStarPhotometry and the bundled model land:
  1. simulate a small field with saturated stars (satphotutils.simulation);
  2. measure them with SaturatedStarPhotometry and the bundled model;
  3. print the result table and write a PNG comparing measured with true
     magnitudes against the aperture-photometry baseline.
It needs no network and runs in under a minute on two cores."""


def register(subparsers, formatter_class):
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        'demo', formatter_class=formatter_class,
        help='run the package end to end on a simulated field',
        description=('Simulate a small field with saturated stars, measure '
                     'them with the bundled model and compare with the '
                     'truth and with aperture photometry.'))
    parser.set_defaults(func=_run)


def _run(args):
    print(_DEMO_PLAN)
