# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Subcommand of the intercalibration stage: ``intercalibrate``."""


def register(subparsers, formatter_class):
    """Add the ``intercalibrate`` subcommand."""
    parser = subparsers.add_parser(
        'intercalibrate', formatter_class=formatter_class,
        help='put a multi-camera/filter light curve on one scale',
        description=('Fit a damped-random-walk Gaussian process with one '
                     'offset per camera/filter group, optionally a '
                     'per-band amplitude ratio, per-group error scales '
                     "and a trend (or use the paper's median-of-means "
                     'procedure), and write the intercalibrated light '
                     'curve (ECSV), with the offsets and per-group noise '
                     'terms next to it (OUT.offsets.ecsv).'))
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
    parser.add_argument('--amplitude-ratio', action='store_true',
                        help='fit the variability amplitude of each band '
                             'relative to the band with the most points '
                             '(and put the others on its scale)')
    parser.add_argument('--offsets-at', choices=['signal_mean',
                                                 'process_mean'],
                        default='signal_mean',
                        help='with --amplitude-ratio, define the offsets '
                             'between bands at the mean of the fitted '
                             'signal over the light curve (default) or at '
                             'the mean of the DRW process (see the user '
                             'guide)')
    parser.add_argument('--error-scale', action='store_true',
                        help='fit a factor per group on the stated errors')
    parser.add_argument('--no-jitter', dest='jitter', action='store_false',
                        help='no extra white noise per group')
    parser.add_argument('--trend', type=int, default=0, metavar='DEGREE',
                        help='polynomial trend in time per band (0-3)')
    parser.add_argument('--select', action='store_true',
                        help='choose among the model with and without '
                             'the optional terms by the Bayesian '
                             'information criterion')
    parser.add_argument('--min-points', type=int, default=5,
                        help='fewest usable points for a group offset')
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
    from satphotutils.utils.io import atomic_output, check_outputs

    out = Path(args.output)
    offsets = out.with_name(out.stem + '.offsets.ecsv')
    # Every output checked before the fit and before any is written.
    check_outputs([out, offsets, args.plot], overwrite=args.overwrite)
    lc = read_lightcurve(args.lc_file, name=args.name)
    intercalibrator = DRWIntercalibrator(
        method=args.method, drop_faintest=args.drop_faintest,
        robust=args.robust, jitter=args.jitter,
        error_scale=args.error_scale,
        amplitude_ratio=args.amplitude_ratio, trend=args.trend,
        select=args.select, min_points=args.min_points,
        max_offset=args.max_offset,
        keep_flagged_groups=args.keep_flagged_groups,
        offsets_at=args.offsets_at)
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
    with atomic_output(out, overwrite=args.overwrite) as tmp:
        result.lightcurve.write(tmp, format='ascii.ecsv')
    with atomic_output(offsets, overwrite=args.overwrite) as tmp:
        result.offsets.write(tmp, format='ascii.ecsv')
    if args.plot:
        with atomic_output(args.plot, overwrite=args.overwrite) as tmp:
            plot_intercalibration(result, path=tmp)
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
    if args.method == 'gp':
        print(_describe(result.drw))
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
    for band, bound in result.drw.get('ratio_at_bound', {}).items():
        print(f'satphot intercalibrate: warning: the amplitude ratio of '
              f"band {band} to {result.drw['reference_band']} is at the "
              f'bound of the fit ({bound:g}): the data do not constrain '
              f'it; its offsets rest on that bound (fit without '
              f'--amplitude-ratio, or with bands that overlap in time)',
              file=sys.stderr)
    for group, reason in flagged.items():
        what = 'flagged' if args.keep_flagged_groups else \
            'left out of the light curve'
        print(f'satphot intercalibrate: warning: group {group} {what}: '
              f'{reason}', file=sys.stderr)


def _describe(drw):
    """One line on the fitted model: DRW, amplitude ratios, criterion."""
    terms = [name.replace('_', ' ') for name in
             ('jitter', 'error_scale', 'amplitude_ratio')
             if drw['model'][name]]
    if drw['model']['trend']:
        terms.append(f"trend of degree {drw['model']['trend']}")
    text = (f"  DRW sigma {drw['sigma']:.4f}{_pm(drw['sigma_err'], 4)} mag,"
            f" tau {drw['tau']:.1f}{_pm(drw['tau_err'], 1)} d; "
            f"{', '.join(terms) or 'no noise terms'}; BIC {drw['bic']:.1f}")
    ratios = {band: value for band, value in drw['amplitude_ratio'].items()
              if band != drw['reference_band'] and drw['model'][
                  'amplitude_ratio']}
    for band, value in ratios.items():
        text += (f"; amplitude {band}/{drw['reference_band']} {value:.3f}"
                 + _pm(drw['amplitude_ratio_err'][band], 3))
    if 'selection' in drw:
        text += ' (chosen by BIC among ' + '; '.join(
            _label(row) + f" {row['bic']:.1f}" for row in drw['selection']
        ) + ')'
    return text


def _pm(error, digits):
    """'+- error', or why there is none (a parameter at its bound)."""
    import numpy as np

    if np.isfinite(error):
        return f' +- {error:.{digits}f}'
    return ' (at the bound of the fit, no error)'


def _label(options):
    names = [n for n in ('jitter', 'error_scale', 'amplitude_ratio')
             if options[n]]
    if options['trend']:
        names.append(f"trend {options['trend']}")
    return '+'.join(names) or 'offsets only'
