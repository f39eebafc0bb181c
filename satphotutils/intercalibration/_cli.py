# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Subcommand of the intercalibration stage: ``intercalibrate``."""


def register(subparsers, formatter_class):
    """Add the ``intercalibrate`` subcommand."""
    parser = subparsers.add_parser(
        'intercalibrate', formatter_class=formatter_class,
        help='put a multi-camera/filter light curve on one scale',
        description=('Fit a damped-random-walk Gaussian process with one '
                     "offset per camera/filter group (or the paper's "
                     'median-of-means procedure) and write the '
                     'intercalibrated light curve (ECSV), with the offsets '
                     'next to it (OUT.offsets.ecsv).'))
    parser.add_argument('lc_file', metavar='LC_FILE',
                        help=('Sky Patrol v1/v2 CSV, pyasassn CSV, or a '
                              'table with time, mag, mag_err, camera, '
                              'filter'))
    parser.add_argument('-o', '--output', required=True, metavar='OUT.ecsv')
    parser.add_argument('--plot', metavar='P.png', default=None,
                        help='before/after plot coloured by group')
    parser.add_argument('--drop-faintest', type=float, default=0.0,
                        help='fraction of the faintest points of each '
                             'group left out of the fit (the paper: 0.1)')
    parser.add_argument('--robust', action='store_true',
                        help='reject outliers iteratively (flagged)')
    parser.add_argument('--method', choices=['gp', 'paper'], default='gp',
                        help="'paper': median of the group means")
    parser.add_argument('--overwrite', action='store_true',
                        help='replace existing outputs')
    parser.set_defaults(func=_run)


def _run(args):
    from pathlib import Path

    from satphotutils.intercalibration import (
        DRWIntercalibrator,
        read_lightcurve,
    )
    from satphotutils.intercalibration.plotting import plot_intercalibration
    from satphotutils.utils.io import atomic_output

    lc = read_lightcurve(args.lc_file)
    result = DRWIntercalibrator(method=args.method,
                                drop_faintest=args.drop_faintest,
                                robust=args.robust)(lc)
    out = Path(args.output)
    with atomic_output(out, overwrite=args.overwrite) as tmp:
        result.lightcurve.write(tmp, format='ascii.ecsv')
    offsets = out.with_name(out.stem + '.offsets.ecsv')
    with atomic_output(offsets, overwrite=args.overwrite) as tmp:
        result.offsets.write(tmp, format='ascii.ecsv')
    if args.plot:
        plot_intercalibration(result, path=args.plot)
    print(f'{len(result.lightcurve)} points, {len(result.offsets)} groups; '
          f'{int((result.lightcurve["flags"] != 0).sum())} flagged; wrote '
          f'{out} and {offsets}')
    for row in result.offsets:
        print(f"  {row['group']:>6}: {row['offset'].value:+.4f} +- "
              f"{row['offset_err'].value:.4f} mag ({row['n_used']}/"
              f"{row['n']} points used)")
