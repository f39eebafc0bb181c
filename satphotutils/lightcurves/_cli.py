# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Subcommand of the light-curve stage: ``lightcurve``."""

from satphotutils.frames._cli import add_header_key_option, header_keys_from
from satphotutils.photometry._cli import (
    add_descriptor_options,
    descriptor_options,
)
from satphotutils.utils._parameters import number_option


def register(subparsers, formatter_class):
    """Add the ``lightcurve`` subcommand."""
    parser = subparsers.add_parser(
        'lightcurve', formatter_class=formatter_class,
        help='light curves of targets from many frames',
        description=('Measure the targets on every frame (each read once), '
                     'combine the exposures of each epoch by their median '
                     'and write one light curve per target (ECSV or FITS), '
                     'all.ecsv, '
                     'statistics.ecsv and report.json (skipped frames). '
                     'Rerun with --resume to continue an interrupted run.'))
    parser.add_argument('frames', nargs='+', metavar='FRAMES',
                        help='FITS files, glob patterns or a directory')
    parser.add_argument('--targets', required=True, metavar='T.ecsv',
                        help='targets: ra, dec (deg), optional name')
    parser.add_argument('-o', '--output', required=True, metavar='OUTDIR')
    parser.add_argument('--model', default=None, metavar='MODEL_DIR',
                        help='model directory (default: the bundled model)')
    add_descriptor_options(parser)
    parser.add_argument('--epoch-window', type=number_option(minimum=0,
                        unit='days'),
                        default=0.1,
                        help='exposures closer than this (days) are one '
                             'epoch')
    parser.add_argument('--comparison', default=None, metavar='CAT.ecsv',
                        help=('unsaturated comparison stars (ra, dec, mag) '
                              'for a per-frame ensemble zero point'))
    parser.add_argument('--format', default='ecsv', choices=['ecsv', 'fits'],
                        dest='output_format',
                        help='format of the light-curve files')
    parser.add_argument('--plot', action='store_true',
                        help='write a PNG light curve per target')
    parser.add_argument('--resume', action='store_true',
                        help='skip frames already measured in OUTDIR')
    parser.add_argument('--scheduler', default=None, metavar='ADDRESS',
                        help=("run on Dask: 'threads', 'processes' or a "
                              'distributed scheduler address'))
    add_header_key_option(parser)
    parser.set_defaults(func=_run)


def _run(args):
    from astropy.table import Table

    from satphotutils.frames import list_frames
    from satphotutils.lightcurves import LightCurvePipeline
    from satphotutils.photometry import SaturatedStarPhotometry

    keys = header_keys_from(args)
    frames = list_frames(args.frames)
    comparison = Table.read(args.comparison) if args.comparison else None
    pipeline = LightCurvePipeline(
        SaturatedStarPhotometry(model=args.model, header_keys=keys,
                                **descriptor_options(args)),
        epoch_window=args.epoch_window, comparison=comparison)
    run = pipeline(frames, args.targets, args.output, resume=args.resume,
                   scheduler=args.scheduler, progress=True, plot=args.plot,
                   output_format=args.output_format)
    print(f'{len(run.lightcurves)} light curves in {args.output}: '
          f'{run.frames_measured} frames measured, {run.frames_resumed} '
          f'resumed, {len(run.skipped)} skipped')
    for path, why in run.skipped.items():
        print(f'  skipped {path}: {why}')
