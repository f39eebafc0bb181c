# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Subcommand of the stamp stage: ``stamps``."""

from satphotutils.frames._cli import add_header_key_option, header_keys_from
from satphotutils.utils._parameters import number_option, stamp_shape_option

# Columns a target catalogue needs, in Gaia DR3's names.
_POSITION = ('ra', 'dec', 'phot_g_mean_mag')
_COLOUR = (('bp_rp',), ('phot_bp_mean_mag', 'phot_rp_mean_mag'))
# Margin (deg) of the Gaia query around the frames: the crowding
# background is measured up to 1 arcmin from each target.
_GAIA_MARGIN = 2 / 60


def register(subparsers, formatter_class):
    """Add the ``stamps`` subcommand."""
    parser = subparsers.add_parser(
        'stamps', formatter_class=formatter_class,
        help='a labelled stamp table from your frames and a catalogue',
        description=(
            'Cut a postage stamp of every catalogue star on every frame '
            '(reduced FITS frames with a celestial WCS) and label it from '
            'Gaia: saturation corrections, the colour relation to the '
            "band, Eq. 1 with the frame's zero point and transparency "
            '(header keywords, see --header-key; a zero point missing '
            "from the header is fitted to the frame's isolated, "
            'unsaturated catalogue stars) and Eq. 2 crowding from the '
            'neighbours. Prints the frames used and skipped, with the '
            'reasons, and the stamps rejected by cause. Train on the '
            'output with "satphot train".'))
    parser.add_argument('frames', nargs='+', metavar='FRAMES',
                        help='FITS files, glob patterns or a directory')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        '--catalog', metavar='CAT',
        help=('the target stars (ECSV, FITS or CSV) with Gaia DR3 columns '
              'ra, dec (deg), phot_g_mean_mag and bp_rp or '
              'phot_bp_mean_mag and phot_rp_mean_mag; optional source_id'))
    source.add_argument(
        '--gaia', action='store_true',
        help=('query the Gaia DR3 archive for the stars on the frames '
              '(cached in --gaia-cache; --offline serves only the cache)'))
    parser.add_argument('-o', '--output', required=True,
                        metavar='STAMPS.fits', help='the stamp table')
    parser.add_argument('--neighbours', default=None, metavar='CAT',
                        help=('Gaia sources (ra, dec, phot_g_mean_mag and a '
                              'colour) for the crowding terms; default: '
                              'the catalogue itself'))
    parser.add_argument('--stamp-shape', type=stamp_shape_option,
                        default=(21, 21), metavar='NYxNX',
                        help='stamp shape, odd sizes, NY >= NX, the rows '
                             'along the read (bleed) direction: e.g. 81x21 '
                             'for frames whose bleed trails stay in place')
    parser.add_argument('--edge',
                        type=number_option(integer=True,
                        minimum=0), default=50,
                        help='smallest distance (pixels) of a star from '
                             'the detector edge')
    parser.add_argument('--max-exposures',
                        type=number_option(integer=True,
                        minimum=1), default=None,
                        help='keep at most this many random exposures per '
                             'star; all if not given')
    # No minimum: a negative limit rejects every stamp, as the library's.
    parser.add_argument('--max-unity', type=number_option(integer=True),
                        default=4,
                        help=('reject stamps with more pixels exactly '
                              'equal to 1 within 5 px of the centre (a '
                              'core damaged by the survey pipeline)'))
    parser.add_argument('--band', choices=('g', 'V'), default='g',
                        help="the camera's band, for the Gaia colour "
                             'relation')
    parser.add_argument('--g-max', type=number_option(), default=17.0,
                        help='faintest Gaia G of the --gaia query')
    parser.add_argument('--gaia-cache', default=None, metavar='DIR',
                        help='directory caching the --gaia queries')
    parser.add_argument('--offline', action='store_true',
                        help='with --gaia: use only the cache')
    parser.add_argument('--seed',
                        type=number_option(integer=True,
                        minimum=0), default=None,
                        help=('random seed (exposure selection, crowding '
                              'probes)'))
    parser.add_argument('--saturation', type=number_option(above=0),
                        default=None,
                        metavar='COUNTS',
                        help='saturation level (counts, sky included) of '
                        'frames whose header has no saturation keyword '
                        'and whose pixels show no plateau')
    parser.add_argument('--colour-term', action='store_true',
                        help=('fit the zero points of frames without one '
                              'with a colour term in Gaia BP - RP'))
    parser.add_argument('--zeropoint-stars', default=300,
                        type=number_option(integer=True, minimum=20),
                        metavar='N',
                        help=('catalogue stars measured at most for a '
                              'fitted zero point, spread over their '
                              'magnitudes (default 300; at least 20: a '
                              'few are always clipped)'))
    parser.add_argument('--workers', default=None,
                        type=number_option(integer=True, minimum=1),
                        help=('processes that measure frames at once '
                              '(default: all cores); the output does not '
                              'depend on it'))
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing output file')
    add_header_key_option(parser)
    parser.set_defaults(func=_run)


def _read_catalog(path, what):
    """Read a catalogue file, checking its Gaia columns."""
    from astropy.table import Table

    from satphotutils.utils.exceptions import SatphotutilsError

    try:
        table = Table.read(path)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        # astropy's readers fail on a damaged or foreign file with these
        # (an unknown format is a ValueError, a missing file an OSError).
        msg = (f'cannot read the {what} {path} ({exc}); give an ECSV, FITS '
               'or CSV table')
        raise SatphotutilsError(msg) from None
    _check_columns(table, f'the {what} {path}')
    return table


def _check_columns(table, what):
    from satphotutils.utils.exceptions import SatphotutilsError

    names = set(table.colnames)
    missing = [c for c in _POSITION if c not in names]
    if not any(set(colour) <= names for colour in _COLOUR):
        missing.append('bp_rp (or phot_bp_mean_mag and phot_rp_mean_mag)')
    if missing:
        msg = (f'{what} lacks the column(s) {", ".join(missing)}; it needs '
               "Gaia DR3's ra, dec (deg), phot_g_mean_mag and bp_rp or "
               'phot_bp_mean_mag and phot_rp_mean_mag (it has '
               f'{", ".join(table.colnames)})')
        raise SatphotutilsError(msg)


def _query_gaia(frames, keys, args):
    """Gaia DR3 stars in one cone around the footprints of the frames."""
    import numpy as np
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    from satphotutils.calibration import GaiaArchive
    from satphotutils.frames import read_frame_info
    from satphotutils.utils.exceptions import SatphotutilsError

    corners = []
    for path in frames:
        try:
            info = read_frame_info(path, header_keys=keys)
        except (OSError, ValueError, KeyError, SatphotutilsError):
            continue  # the builder reports it
        if info.wcs is None or info.shape is None:
            continue
        ny, nx = info.shape
        corner = info.wcs.pixel_to_world([0, nx - 1, 0, nx - 1],
                                         [0, 0, ny - 1, ny - 1])
        corners.append(corner.icrs.cartesian.xyz.value)
    if not corners:
        msg = ('--gaia: no frame has a readable celestial WCS, so the sky '
               'area to query is unknown')
        raise SatphotutilsError(msg)
    xyz = np.concatenate(corners, axis=1)
    points = SkyCoord(*xyz, representation_type='cartesian', frame='icrs')
    mean = xyz.mean(axis=1)
    centre = SkyCoord(*mean, representation_type='cartesian', frame='icrs')
    centre = SkyCoord(centre.spherical.lon, centre.spherical.lat,
                      frame='icrs')
    radius = centre.separation(points).max() + _GAIA_MARGIN * u.deg
    archive = GaiaArchive(cache_dir=args.gaia_cache, offline=args.offline)
    table = archive.cone(centre, radius, g_max=args.g_max)
    if len(table) == 0:
        msg = (f'--gaia: the archive has no star brighter than G = '
               f'{args.g_max} within {radius.to(u.deg):.3f} of {centre}')
        raise SatphotutilsError(msg)
    _check_columns(table, 'the Gaia query result')
    return table


def _run(args):
    from satphotutils.frames import list_frames
    from satphotutils.stamps import StampBuilder

    keys = header_keys_from(args)
    frames = list_frames(args.frames)
    if args.gaia:
        targets = _query_gaia(frames, keys, args)
    else:
        targets = _read_catalog(args.catalog, 'catalogue')
    neighbours = targets if args.neighbours is None else \
        _read_catalog(args.neighbours, 'neighbour catalogue')
    builder = StampBuilder(stamp_size=args.stamp_shape, edge=args.edge,
                           max_unity=args.max_unity,
                           max_exposures=args.max_exposures,
                           band=args.band, header_keys=keys, seed=args.seed,
                           saturation=args.saturation,
                           colour_term=args.colour_term,
                           zeropoint_stars=args.zeropoint_stars,
                           workers=args.workers)
    report = builder(frames or args.frames, targets, args.output,
                     neighbours=neighbours, overwrite=args.overwrite,
                     progress=True)
    print(report.summary())
    print(f'wrote {args.output}')
