# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""``satphot simulate frames|stamps``."""

import argparse

from satphotutils.utils._parameters import number_option, stamp_shape_option

_count = number_option(integer=True, minimum=1)
_seed = number_option(integer=True, minimum=0)
_fraction = number_option(minimum=0, maximum=1)


def _camera_spec(text):
    """Parse ``name:filter[:zp_offset[:colour_term]]``."""
    parts = text.split(':')
    if len(parts) < 2 or parts[1] not in ('g', 'V'):
        msg = (f'camera {text!r} must look like NAME:FILTER[:ZP_OFFSET'
               '[:COLOUR_TERM]] with FILTER g or V, e.g. bi:g or ba:V:0.3')
        raise argparse.ArgumentTypeError(msg)
    try:
        values = [float(v) for v in parts[2:4]]
    except ValueError:
        msg = f'camera {text!r}: ZP_OFFSET and COLOUR_TERM must be numbers'
        raise argparse.ArgumentTypeError(msg) from None
    return parts[0], parts[1], *values


def _family_spec(text):
    """Parse ``AXIS=NAME[,NAME...]`` for --exclude and --only."""
    from satphotutils.simulation.families import AXES, _names

    axis, sep, names = text.partition('=')
    if not sep or axis not in AXES or not names:
        msg = (f'{text!r} must look like AXIS=NAME[,NAME] with AXIS one of '
               f'{", ".join(AXES)}, e.g. psf=gaussian')
        raise argparse.ArgumentTypeError(msg)
    names = tuple(names.split(','))
    unknown = [n for n in names if n not in _names(axis)]
    if unknown:
        msg = (f'{text!r}: unknown {axis} famil'
               f'{"ies" if len(unknown) > 1 else "y"} {", ".join(unknown)}; '
               f'choose from {", ".join(_names(axis))}')
        raise argparse.ArgumentTypeError(msg)
    return axis, names


def register(subparsers, formatter_class):
    """Add ``simulate`` with its ``frames`` and ``stamps`` subcommands."""
    parser = subparsers.add_parser(
        'simulate', formatter_class=formatter_class,
        help='simulate saturated survey frames or stamp tables',
        description=('Simulate reduced survey data with saturated stars, '
                     "bleed trails, the survey pipeline's saturation "
                     'correction and its failures, and overflow damage.'))
    sub = parser.add_subparsers(dest='what', metavar='WHAT', required=True)

    frames = sub.add_parser(
        'frames', formatter_class=formatter_class,
        help='a directory of multi-epoch FITS frames with truth tables',
        description=('Write a multi-epoch, multi-camera field: FITS frames '
                     '(CCDData with WCS and header keywords DATE-OBS, '
                     'MJD-OBS, DATE-AVG, MJD-AVG, EXPTIME, ZP, TRANSP, '
                     'CAMERA, FILTER, SKY), truth.ecsv and '
                     'frames.ecsv.'))
    frames.add_argument('outdir', help='output directory')
    frames.add_argument('--n-epochs', type=_count, default=20,
                        help='number of epochs')
    frames.add_argument('--exposures-per-epoch', type=_count, default=3,
                        help='dithered exposures per epoch')
    frames.add_argument('--camera', dest='cameras', action='append',
                        type=_camera_spec, metavar='NAME:FILTER[:ZP[:CT]]',
                        help='a camera (repeat for several); default bi:g')
    frames.add_argument('--size',
                        type=number_option(integer=True,
                        minimum=8), default=2048,
                        help='detector size in pixels (square)')
    frames.add_argument('--ra',
                        type=number_option(minimum=0,
                        maximum=360), default=150.0,
                        help='field centre right ascension (deg)')
    frames.add_argument('--dec',
                        type=number_option(minimum=-90,
                        maximum=90), default=-40.0,
                        help='field centre declination (deg)')
    frames.add_argument('--g-max', type=number_option(), default=19.0,
                        help='faintest field star')
    frames.add_argument('--variables', action='store_true',
                        help='add a Mira, a Cepheid, an eclipsing binary, '
                             'a damped random walk and constant stars '
                             'from g=4 to 14 near the centre')
    frames.add_argument('--seed', type=_seed, default=None, help='random seed')
    frames.add_argument('--overwrite', action='store_true',
                        help='replace existing files')
    frames.set_defaults(func=_frames)

    stamps = sub.add_parser(
        'stamps', formatter_class=formatter_class,
        help='a stamp table for training or testing the network',
        description=('Write a stamp table (FITS) of targets drawn uniformly '
                     'in g, each observed in several exposures, with truth '
                     'columns g, saturated, damaged and more.'))
    stamps.add_argument('out', metavar='OUT.fits', help='output stamp table')
    stamps.add_argument('--n-stars', type=_count, required=True,
                        help='number of targets')
    stamps.add_argument('--images-per-star', type=_count, default=4,
                        help='exposures of each target')
    stamps.add_argument('--exposures-per-epoch', type=_count, default=1,
                        help=('consecutive exposures per epoch (3 for '
                              'ASAS-SN light curves); must divide '
                              '--images-per-star'))
    stamps.add_argument('--seed', type=_seed, default=None, help='random seed')
    stamps.add_argument('--gmin', type=number_option(), default=3.0,
                        help='brightest target (SDSS g)')
    stamps.add_argument('--gmax', type=number_option(), default=15.0,
                        help='faintest target (SDSS g)')
    stamps.add_argument('--camera', type=_camera_spec, default=None,
                        metavar='NAME:FILTER[:ZP[:CT]]',
                        help='the camera; default bi:g')
    stamps.add_argument('--stamp-shape', type=stamp_shape_option,
                        default=(21, 21), metavar='NYxNX',
                        help='stamp shape, odd sizes, NY >= NX, the rows '
                        'along the read (bleed) direction: e.g. 81x21 '
                        'with --no-correction, to hold the trails')
    stamps.add_argument('--no-correction', action='store_true',
                        help='the pipeline leaves the bleed trails in the '
                        'frame (no saturation correction), as most '
                        'cameras other than ASAS-SN do')
    stamps.add_argument('--damage-fraction',
                        type=_fraction, default=0.2,
                        help='fraction of exposures with overflow damage')
    stamps.add_argument('--misplace-rate', type=_fraction, default=0.05,
                        help='rate of trail flux put on a wrong star')
    stamps.add_argument('--lost-rate', type=_fraction, default=0.03,
                        help='rate of trail flux never put back')
    stamps.add_argument('--latitude-weighting', choices=('area', 'stars'),
                        default='area',
                        help='targets uniform on the sky (area) or spread '
                        'over Galactic latitude as the stars are (stars)')
    stamps.add_argument('--family', action='store_true',
                        help='draw a new camera and pipeline for every '
                        'chunk of --stars-per-camera targets from the '
                        'randomised camera families (--camera, '
                        '--damage-fraction, --misplace-rate and '
                        '--lost-rate are then drawn too)')
    stamps.add_argument('--exclude', action='append', type=_family_spec,
                        default=[], metavar='AXIS=NAME[,NAME]',
                        help='with --family: never draw these families '
                        '(repeatable), e.g. psf=gaussian')
    stamps.add_argument('--only', action='append', type=_family_spec,
                        default=[], metavar='AXIS=NAME[,NAME]',
                        help='with --family: draw only these families '
                        '(repeatable), e.g. storage=float')
    stamps.add_argument('--stars-per-camera', type=_count, default=100,
                        help='with --family: targets per drawn camera')
    stamps.add_argument('--workers', type=_count, default=None,
                        help='worker processes (default: all cores)')
    stamps.add_argument('--overwrite', action='store_true',
                        help='replace an existing file')
    stamps.set_defaults(func=_stamps)


def _make_camera(spec, detector=None):
    from satphotutils.simulation import Camera

    name, filter_, *rest = spec
    zp, ct = [*rest, 0.0, 0.0][:2]
    return Camera(name, filter=filter_, zeropoint_offset=zp,
                  colour_term=ct, detector=detector)


def _restrictions(pairs):
    out = {}
    for axis, names in pairs:
        out.setdefault(axis, set()).update(names)
    return out or None


def _stamps(args):
    from satphotutils.simulation import (
        CameraFamily,
        StampSimulator,
        SurveyPipeline,
    )
    from satphotutils.utils.exceptions import SatphotutilsError

    family = None
    if args.family:
        if args.camera:
            msg = ('--camera and --family exclude each other: the family '
                   'draws the cameras')
            raise SatphotutilsError(msg)
        family = CameraFamily(exclude=_restrictions(args.exclude),
                              only=_restrictions(args.only))
    elif args.exclude or args.only:
        msg = '--exclude and --only need --family'
        raise SatphotutilsError(msg)
    camera = _make_camera(args.camera) if args.camera else None
    pipeline = SurveyPipeline(damage_fraction=args.damage_fraction,
                              misplace_rate=args.misplace_rate,
                              lost_rate=args.lost_rate,
                              correction=not args.no_correction)
    per_epoch = args.exposures_per_epoch
    # A frame pool large enough that targets share few frames.
    pool = per_epoch * -(-max(24, 2 * args.images_per_star) // per_epoch)
    sim = StampSimulator(camera=camera, pipeline=pipeline,
                         stamp_size=args.stamp_shape,
                         g_range=(args.gmin, args.gmax),
                         images_per_star=args.images_per_star,
                         exposures_per_epoch=per_epoch,
                         exposures_per_chunk=pool,
                         latitude_weighting=args.latitude_weighting,
                         family=family,
                         stars_per_camera=args.stars_per_camera)
    n = sim.write(args.out, args.n_stars, seed=args.seed,
                  n_workers=args.workers, overwrite=args.overwrite,
                  progress=True)
    print(f'wrote {n} stamps of {args.n_stars} stars to {args.out}')


def _frames(args):
    import numpy as np
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    from satphotutils.simulation import (
        Detector,
        FrameSimulator,
        Scene,
        simulate_field,
    )

    rng = np.random.default_rng(args.seed)
    centre = SkyCoord(args.ra, args.dec, unit='deg')
    detector = Detector(shape=(args.size, args.size))
    specs = args.cameras or [('bi', 'g')]
    # Each camera points slightly differently, as separate units do.
    half = (args.size * detector.pixel_scale).to(u.deg) / 2
    offset = 0.05 * half
    sims = []
    for spec in specs:
        pointing = centre.directional_offset_by(
            rng.uniform(0, 360) * u.deg, rng.uniform(0, 1) * offset)
        sims.append(FrameSimulator(camera=_make_camera(spec, detector),
                                   pointing=pointing,
                                   rotation=rng.normal(0, 0.5) * u.deg))
    radius = half * np.sqrt(2) * 1.1
    scene = Scene.random(centre, radius=radius, g_max=args.g_max,
                         seed=rng)
    if args.variables:
        _add_variables(scene, centre, half, rng)
    frames = simulate_field(args.outdir, scene, sims, n_epochs=args.n_epochs,
                            exposures_per_epoch=args.exposures_per_epoch,
                            seed=rng, overwrite=args.overwrite,
                            progress=True)
    print(f'wrote {len(frames)} frames, frames.ecsv and truth.ecsv to '
          f'{args.outdir}')


def _add_variables(scene, centre, half, rng):
    import numpy as np
    from astropy import units as u

    from satphotutils.simulation import (
        DampedRandomWalk,
        EclipsingBinary,
        PulsatingStar,
    )

    stars = [
        ('mira', 7.0, 1.6, PulsatingStar.mira(period=310.0, amplitude=5.0)),
        ('cepheid', 6.0, 0.9, PulsatingStar.cepheid(period=5.37,
                                                    amplitude=0.8)),
        ('eclipsing', 9.0, 0.5, EclipsingBinary(period=1.7158,
                                                primary_depth=0.6,
                                                secondary_depth=0.2)),
        ('drw', 10.0, 1.0, DampedRandomWalk(sigma=0.2, tau=100.0, seed=1)),
    ] + [(f'constant_g{g:.0f}', g, 0.8, None) for g in range(4, 15)]
    n = len(stars)
    pa = np.linspace(0, 360, n, endpoint=False) * u.deg
    sep = rng.uniform(0.2, 0.6, n) * half
    coord = centre.directional_offset_by(pa, sep)
    scene.add(coord, [s[1] for s in stars], [s[2] for s in stars],
              variability=[s[3] for s in stars], name=[s[0] for s in stars])
