# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Subcommands of the photometry stage: ``photometry`` and ``demo``."""

from pathlib import Path

from satphotutils.frames._cli import add_header_key_option, header_keys_from
from satphotutils.utils._parameters import number_option


def register(subparsers, formatter_class):
    """Add the ``photometry`` and ``demo`` subcommands."""
    phot = subparsers.add_parser(
        'photometry', formatter_class=formatter_class,
        help='measure targets on a FITS image with the network',
        description=('Measure the targets of a table (ra, dec or x, y '
                     'columns) on a reduced FITS image with WCS, and write '
                     'a photutils-style table (ECSV).'))
    phot.add_argument('image', metavar='IMAGE.fits')
    phot.add_argument('--targets', required=True,
                      metavar='TARGETS.(ecsv|csv|fits)',
                      help='target table with ra, dec (deg) or x, y')
    phot.add_argument('--zeropoint', type=number_option(), default=None,
                      help=('zero point Z for the magnitudes (default: the '
                            "header's zero-point keyword; without one, no "
                            'magnitudes); it never changes the counts'))
    phot.add_argument('--model', default=None, metavar='MODEL_DIR',
                      help='model directory (default: the bundled model)')
    phot.add_argument('-o', '--output', required=True, metavar='OUT.ecsv')
    phot.add_argument('--overwrite', action='store_true',
                      help='replace an existing output file')
    add_header_key_option(phot)
    add_descriptor_options(phot)
    phot.set_defaults(func=_photometry)

    demo = subparsers.add_parser(
        'demo', formatter_class=formatter_class,
        help='run the package end to end on a simulated field',
        description=('Simulate a small field with saturated stars, measure '
                     'them with the bundled model, print the table and '
                     'write a PNG comparing measured with true magnitudes, '
                     'against 2-px aperture photometry.'))
    demo.add_argument('-o', '--output', default='satphot_demo.png',
                      metavar='OUT.png', help='the figure to write')
    demo.add_argument('--seed', default=1, help='random seed',
                      type=number_option(integer=True, minimum=0))
    demo.set_defaults(func=_demo)



def add_descriptor_options(parser):
    """Add ``--saturation-level`` and ``--fwhm`` (the frames' own values)."""
    parser.add_argument('--saturation-level',
                        type=number_option(above=0), default=None,
                        metavar='COUNTS',
                        help='counts (sky included) at which pixels stop '
                        "responding (default: the header's saturation "
                        "keyword, else the frame's plateau)")
    parser.add_argument('--fwhm', type=number_option(above=0),
                        default=None, metavar='PX',
                        help='PSF FWHM of every frame, for a camera-agnostic '
                        'model (default: measured on each frame)')


def descriptor_options(args):
    """Return the `SaturatedStarPhotometry` keywords of those options."""
    return {'saturation_level': args.saturation_level, 'fwhm': args.fwhm}

def _read_targets(path):
    from astropy.table import Table

    from satphotutils.utils.exceptions import SatphotutilsError

    path = Path(path)
    fmt = {'.csv': 'ascii.csv', '.ecsv': 'ascii.ecsv'}.get(path.suffix)
    try:
        return Table.read(path, format=fmt) if fmt else Table.read(path)
    except (OSError, ValueError) as exc:
        msg = f'cannot read the target table {path}: {exc}'
        raise SatphotutilsError(msg) from exc


def _photometry(args):
    from satphotutils.frames import read_frame
    from satphotutils.photometry import SaturatedStarPhotometry
    from satphotutils.utils.io import atomic_output

    keys = header_keys_from(args)
    targets = _read_targets(args.targets)
    frame, info = read_frame(args.image, header_keys=keys)
    phot = SaturatedStarPhotometry(model=args.model, header_keys=keys,
                                   **descriptor_options(args))
    table = phot(frame, init_params=targets, zeropoint=args.zeropoint,
                 frame_info=info)
    for name in targets.colnames:
        if name not in table.colnames:
            table[name] = targets[name]
    with atomic_output(args.output, overwrite=args.overwrite) as tmp:
        table.write(tmp, format='ascii.ecsv')
    print(f'measured {len(table)} targets; wrote {args.output}')
    # The frame-level check of model against camera, one line.
    print(table.meta['frame_check']['message'])
    if table.meta['ood_guard'].startswith('unavailable'):
        print('out-of-distribution guard ' + table.meta['ood_guard'])


def _demo(args):
    import time

    import numpy as np
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    from satphotutils.photometry import (
        AperturePhotometryBaseline,
        SaturatedStarPhotometry,
    )
    from satphotutils.simulation import Camera, Detector, FrameSimulator, Scene
    from satphotutils.utils.flags import decode_flags

    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    centre = SkyCoord(120.0, -50.0, unit='deg')
    scene = Scene.random(centre, radius=3.3 * u.deg, g_max=15.0,
                         seed=args.seed)
    n = 24
    # A full-size detector: the trail of a g = 4 star is ~1,700 rows long.
    detector = Detector()
    # Targets in separate columns, so that their bleed trails do not run
    # through each other (crossing trails are flagged in real data).
    x = np.linspace(200, 1850, n) + rng.uniform(-0.5, 0.5, n)
    y = rng.uniform(900, 1150, n)
    coords = detector.wcs(centre).pixel_to_world(x, y)
    g = np.linspace(4.0, 14.0, n)
    scene.add(coords, g, rng.uniform(0.5, 1.6, n),
              name=[f'target{i}' for i in range(n)])
    camera = Camera(detector=detector)
    sim = FrameSimulator(camera=camera, pointing=centre)
    frame, truth = sim(scene, mjd=60000.0, seed=args.seed)
    truth = truth[np.char.startswith(np.asarray(truth['name'], str),
                                     'target')]
    phot = SaturatedStarPhotometry()
    table = phot(frame, skycoord=truth['sky_coord'])
    aperture = AperturePhotometryBaseline(radius=2.0)(
        frame, skycoord=truth['sky_coord'])
    table['true_mag'] = truth['mag']
    table['saturated_true'] = truth['saturated']
    table['mag_ap2'] = aperture['mag']
    table['pipeline'] = truth['outcome']
    show = table['id', 'x_center', 'y_center', 'true_mag', 'mag', 'mag_err',
                 'mag_ap2', 'flags', 'n_unity', 'method', 'pipeline']
    for name in ('x_center', 'y_center'):
        show[name].info.format = '.1f'
    for name in ('true_mag', 'mag', 'mag_ap2'):
        show[name].info.format = '.3f'
    show['mag_err'].info.format = '.3f'
    show.pprint(max_lines=-1, max_width=-1)
    diff = (table['mag'] - table['true_mag']).value
    ap_diff = (table['mag_ap2'] - table['true_mag']).value
    # Exposures whose trail flux the pipeline lost or misplaced cannot be
    # recovered by anyone; they are left out of the summary.
    ok = (table['flags'] == 0) & np.isin(table['pipeline'], ['ok', 'none'])
    ap_68 = np.nanpercentile(np.abs(ap_diff - np.nanmedian(ap_diff)), 68)
    print(f'network minus truth: median {np.nanmedian(diff[ok]):+.3f} mag, '
          f'68% within {np.nanpercentile(np.abs(diff[ok]), 68):.3f} mag; '
          f'2-px aperture: 68% within {ap_68:.3f} mag')
    flagged = [f"{i}: {', '.join(decode_flags(f))}"
               for i, f in zip(table['id'], table['flags'], strict=True)
               if f]
    if flagged:
        print('flagged: ' + '; '.join(flagged))
    _demo_figure(frame, table, diff, ap_diff, args.output)
    print(f'wrote {args.output} in {time.perf_counter() - start:.1f} s')


def _demo_figure(frame, table, diff, ap_diff, path):
    import numpy as np
    from astropy.visualization import simple_norm
    from matplotlib.figure import Figure

    from satphotutils.utils.io import atomic_output

    fig = Figure(figsize=(11, 5), layout='constrained')
    ax0, ax1 = fig.subplots(1, 2)
    data = frame.data
    finite = data[np.isfinite(data)]
    sky = np.median(finite)
    noise = np.subtract(*np.percentile(finite, [84, 16])) / 2
    norm = simple_norm(data, stretch='asinh', vmin=sky - 2 * noise,
                       vmax=sky + 200 * noise)
    ax0.imshow(data, origin='lower', cmap='gray_r', norm=norm,
               interpolation='antialiased')
    bad = table['flags'] != 0
    ax0.scatter(table['x_center'][~bad], table['y_center'][~bad], s=80,
                facecolor='none', edgecolor='tab:blue', label='target')
    ax0.scatter(table['x_center'][bad], table['y_center'][bad], s=80,
                facecolor='none', edgecolor='tab:red', label='flagged')
    ax0.legend(loc='upper right')
    ax0.set_title('simulated frame')
    true = table['true_mag'].value
    ax1.axhline(0, color='k', lw=0.5)
    ax1.axvline(11.5, color='k', lw=0.5, ls=':')
    ax1.plot(true, ap_diff - np.nanmedian(ap_diff), 's', color='0.5',
             label='2-px aperture (offset removed)')
    ax1.plot(true, diff, 'o', color='tab:red', label='satphotutils network')
    ax1.set_xlabel('true g [mag]')
    ax1.set_ylabel('measured - true [mag]')
    ax1.set_ylim(-0.6, 0.6)
    ax1.legend()
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=100)
