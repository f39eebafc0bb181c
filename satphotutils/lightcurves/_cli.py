# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Subcommand of the light-curve stage: ``lightcurve``."""

from satphotutils.frames._cli import add_header_key_option, header_keys_from
from satphotutils.photometry._cli import (
    add_descriptor_options,
    descriptor_options,
)
from satphotutils.photometry.methods import (
    METHODS,
    _keywords,
    photometry_method,
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
                        help=('targets: ra, dec (deg), or x, y (pixels of '
                              'the --reference frame); optional name, and '
                              'for --differential comparison (true: in the '
                              'ensemble) and mag (catalogue magnitudes)'))
    parser.add_argument('--method', default='network', choices=list(METHODS),
                        help=('photometry method (default: network); '
                              "psf-wing fits a Gaussian of each frame's "
                              'FWHM to the unsaturated wings'))
    parser.add_argument('--aperture-radius', type=number_option(above=0),
                        default=None, metavar='PX',
                        help='aperture radius of --method aperture '
                             "(default: 2 px, the survey's)")
    parser.add_argument('--reference', default=None, metavar='FRAME',
                        help=('register every frame to this one by its '
                              'stars (frames without a WCS); targets as x, y '
                              'on it, or ra, dec if it has a WCS'))
    parser.add_argument('--differential', action='store_true',
                        help=('per-frame zero points from an ensemble of '
                              'comparison stars among the targets (the '
                              'comparison column, else chosen '
                              'automatically); relative to the reference '
                              'frame without a mag column'))
    parser.add_argument('-o', '--output', required=True, metavar='OUTDIR')
    parser.add_argument('--model', default=None, metavar='MODEL_DIR',
                        help='model directory (default: the bundled model)')
    add_descriptor_options(parser)
    parser.add_argument('--epoch-window', type=number_option(minimum=0,
                        unit='days'),
                        default=0.1,
                        help='exposures closer than this (days) are one '
                             'epoch; 0: one point per exposure')
    parser.add_argument('--comparison', default=None, metavar='CAT.ecsv',
                        help=('unsaturated comparison stars (ra, dec, mag) '
                              'for a per-frame ensemble zero point'))
    parser.add_argument('--colour-term', action='store_true',
                        help=('with --comparison: fit each zero point with '
                              'a colour term in the bp_rp column (e.g. Gaia '
                              'BP - RP) of the comparison stars and the '
                              'targets, each target at its own colour'))
    parser.add_argument('--format', default='ecsv', choices=['ecsv', 'fits'],
                        dest='output_format',
                        help='format of the light-curve files')
    parser.add_argument('--plot', action='store_true',
                        help='write a PNG light curve per target')
    parser.add_argument('--compare', default=None, choices=list(METHODS),
                        metavar='METHOD',
                        help=('also measure with this method (into '
                              'OUTDIR/METHOD/, with the options it takes) '
                              'and draw its light curve beside the main '
                              "one's in the --plot figures"))
    parser.add_argument('--resume', action='store_true',
                        help='skip frames already measured in OUTDIR')
    parser.add_argument('--scheduler', default=None, metavar='ADDRESS',
                        help=("run on Dask: 'threads', 'processes' or a "
                              'distributed scheduler address'))
    add_header_key_option(parser)
    parser.set_defaults(func=_run)


# The photometry keywords the command line sets, by option.
_OPTIONS = {'model': '--model', 'radius': '--aperture-radius',
            'fwhm': '--fwhm', 'saturation_level': '--saturation-level'}


def _method_class(name):
    import importlib

    module, cls = METHODS[name]
    return getattr(importlib.import_module(module), cls)


def _run(args):
    from astropy.table import Table

    from satphotutils.frames import list_frames
    from satphotutils.lightcurves import LightCurvePipeline
    from satphotutils.utils.exceptions import SatphotutilsError

    keys = header_keys_from(args)
    frames = list_frames(args.frames)
    comparison = Table.read(args.comparison) if args.comparison else None
    options = {'model': args.model, 'radius': args.aperture_radius,
               'header_keys': keys, **descriptor_options(args)}
    if args.compare:
        # An option is for the method that takes it.
        taken = _keywords(_method_class(args.method)) | _keywords(
            _method_class(args.compare))
        unused = sorted(_OPTIONS.get(k, k) for k, v in options.items()
                        if v is not None and k not in taken)
        if unused:
            msg = (f'neither --method {args.method} nor --compare '
                   f'{args.compare} takes {", ".join(unused)}')
            raise SatphotutilsError(msg)
    methods = [args.method] + ([args.compare] if args.compare else [])
    pipelines = {}
    for name in methods:
        mine = options if name == args.method and not args.compare else {
            k: v for k, v in options.items()
            if k in _keywords(_method_class(name))}
        try:
            photometry = photometry_method(name, **mine)
        except ValueError as exc:
            words = ', '.join(f'{k} is {v}' for k, v in _OPTIONS.items())
            msg = f'--method {name}: {exc} ({words})'
            raise SatphotutilsError(msg) from None
        pipelines[name] = LightCurvePipeline(
            photometry, epoch_window=args.epoch_window,
            comparison=comparison, reference=args.reference,
            differential=args.differential, colour_term=args.colour_term)
    baseline = None
    if args.compare:
        from pathlib import Path

        other = pipelines[args.compare](
            frames, args.targets, Path(args.output) / args.compare,
            resume=args.resume, scheduler=args.scheduler, progress=True,
            output_format=args.output_format)
        baseline = dict(other.lightcurves)
        print(f'{len(other.lightcurves)} light curves by {args.compare} in '
              f'{Path(args.output) / args.compare}')
    run = pipelines[args.method](
        frames, args.targets, args.output, resume=args.resume,
        scheduler=args.scheduler, progress=True, plot=args.plot,
        baseline=baseline, output_format=args.output_format)
    print(f'{len(run.lightcurves)} light curves in {args.output}: '
          f'{run.frames_measured} frames measured, {run.frames_resumed} '
          f'resumed, {len(run.skipped)} skipped')
    for path, why in run.skipped.items():
        print(f'  skipped {path}: {why}')
    if run.registration:
        import numpy as np

        residual = np.median([r['residual']
                              for r in run.registration.values()])
        print(f'{len(run.registration)} frames registered to '
              f'{args.reference}: median residual {residual:.2f} px')
    if run.calibration:
        print(f"differential: {len(run.calibration['comparison'])} "
              f"comparison stars ({run.calibration['chosen']}), magnitudes "
              f"on the scale of {run.calibration['scale']}")
