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
                        help=('Sky Patrol v1/v2 CSV, pyasassn CSV, a light '
                              'curve of satphot lightcurve (ECSV/FITS), or '
                              'a table with time, mag, mag_err, camera, '
                              'filter'))
    parser.add_argument('--name', default=None,
                        help='the target to read from a file of several '
                             '(all.ecsv of satphot lightcurve)')
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
    parser.add_argument('--max-offset', type=float, default=1.0,
                        help='largest plausible difference (mag) between '
                             'the offset of a group and those of the other '
                             'groups of its filter; a group beyond it is '
                             'flagged and left out')
    parser.add_argument('--keep-flagged-groups', action='store_true',
                        help='keep the points of flagged groups (too '
                             'small, implausible offset, mostly clipped) '
                             'in the output, flagged')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace existing outputs')
    parser.set_defaults(func=_run)


def _run(args):
    import logging
    import sys
    from pathlib import Path

    import numpy as np

    from satphotutils.intercalibration import (
        DRWIntercalibrator,
        read_lightcurve,
    )
    from satphotutils.intercalibration.plotting import plot_intercalibration
    from satphotutils.utils.flags import SATPHOT_FLAGS
    from satphotutils.utils.io import atomic_output

    lc = read_lightcurve(args.lc_file, name=args.name)
    intercalibrator = DRWIntercalibrator(
        method=args.method, drop_faintest=args.drop_faintest,
        robust=args.robust, max_offset=args.max_offset,
        keep_flagged_groups=args.keep_flagged_groups)
    # The flagged groups are named on stderr below; without a logging
    # configuration Python would also print the library's warnings.
    logger = logging.getLogger('satphotutils.intercalibration')
    quiet = logging.NullHandler()
    if not logging.getLogger().hasHandlers():
        logger.addHandler(quiet)
    try:
        result = intercalibrator(lc)
    finally:
        logger.removeHandler(quiet)
    out = Path(args.output)
    with atomic_output(out, overwrite=args.overwrite) as tmp:
        result.lightcurve.write(tmp, format='ascii.ecsv')
    offsets = out.with_name(out.stem + '.offsets.ecsv')
    with atomic_output(offsets, overwrite=args.overwrite) as tmp:
        result.offsets.write(tmp, format='ascii.ecsv')
    if args.plot:
        plot_intercalibration(result, path=args.plot)
    flagged = result.flagged_groups
    not_fitted = SATPHOT_FLAGS.INTERCAL_FAINTEST \
        | SATPHOT_FLAGS.INTERCAL_CLIPPED | SATPHOT_FLAGS.BAD_QUALITY
    n_not_fitted = int(np.count_nonzero(
        np.asarray(result.lightcurve['flags']) & not_fitted))
    summary = f'{len(result.lightcurve)} points, {len(result.offsets)} groups'
    if flagged:
        summary += f' ({len(flagged)} flagged'
        if result.left_out is not None:
            summary += f', their {len(result.left_out)} points left out'
        summary += ')'
    print(f'{summary}; {n_not_fitted} points left out of the fit; wrote '
          f'{out} and {offsets}')
    for row in result.offsets:
        group = f"  {row['group']:>6}: "
        used = f"({row['n_used']}/{row['n']} points used)"
        value = row['offset'].value
        if row['flags'] and not args.keep_flagged_groups:
            print(f"{group}left out ({row['n']} points): {row['reason']}")
        elif not np.isfinite(value):
            print(f'{group}no offset {used}: {row["reason"]}')
        else:
            print(f"{group}{value:+.4f} +- {row['offset_err'].value:.4f} "
                  f'mag {used}'
                  + (f'; flagged: {row["reason"]}' if row['flags'] else ''))
    for group, reason in flagged.items():
        what = 'flagged' if args.keep_flagged_groups else \
            'left out of the light curve'
        print(f'satphot intercalibrate: warning: group {group} {what}: '
              f'{reason}', file=sys.stderr)
