# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Subcommands of the photometry stage: ``photometry`` and ``demo``."""

from pathlib import Path

from satphotutils.frames._cli import add_header_key_option, header_keys_from
from satphotutils.photometry.methods import METHODS
from satphotutils.utils._parameters import number_option


def register(subparsers, formatter_class):
    """Add the ``photometry`` and ``demo`` subcommands."""
    phot = subparsers.add_parser(
        'photometry', formatter_class=formatter_class,
        help='measure targets on a FITS image (network by default)',
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
    phot.add_argument('--method', default='network',
                      choices=tuple(METHODS),
                      help=('photometry method: the network, or a '
                            'classical one; bleed-trail sums the bleed '
                            'trails of frames that keep them (not '
                            "ASAS-SN's, whose pipeline replaces them)"))
    phot.add_argument('--model', default=None, metavar='MODEL_DIR',
                      help=('model directory of the network method '
                            '(default: the bundled model)'))
    phot.add_argument('--trails', default=None,
                      choices=('auto', 'network', 'bleed-trail'),
                      help=('network method: who measures the saturated '
                            'targets of a frame that kept its bleed trails '
                            "(header corrected=F, else measured); 'auto' "
                            '(default): bleed-trail unless the model was '
                            'trained on such frames'))
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
    from satphotutils.photometry.methods import photometry_method
    from satphotutils.utils.exceptions import SatphotutilsError
    from satphotutils.utils.io import atomic_output

    keys = header_keys_from(args)
    targets = _read_targets(args.targets)
    frame, info = read_frame(args.image, header_keys=keys)
    try:
        phot = photometry_method(args.method, model=args.model,
                                 header_keys=keys,
                                 **({} if args.trails is None
                                    else {'trails': args.trails}),
                                 **descriptor_options(args))
    except ValueError as exc:
        msg = f'--method {args.method}: {exc}'
        raise SatphotutilsError(msg) from None
    table = phot(frame, init_params=targets, zeropoint=args.zeropoint,
                 frame_info=info)
    for name in targets.colnames:
        if name not in table.colnames:
            table[name] = targets[name]
    with atomic_output(args.output, overwrite=args.overwrite) as tmp:
        table.write(tmp, format='ascii.ecsv')
    print(f'measured {len(table)} targets with {args.method}; wrote '
          f'{args.output}')
    if 'frame_check' in table.meta:
        # The frame-level check of model against camera, one line.
        print(table.meta['frame_check']['message'])
    if table.meta.get('ood_guard', '').startswith('unavailable'):
        print('out-of-distribution guard ' + table.meta['ood_guard'])


def _demo(args):
    import time

    import numpy as np

    from satphotutils.photometry.demo import (
        PIPELINE_OUTCOMES,
        plot_demo,
        run_demo,
    )
    from satphotutils.utils.flags import decode_flags

    start = time.perf_counter()
    frame, table = run_demo(seed=args.seed)
    show = table['id', 'x_center', 'y_center', 'true_mag', 'mag', 'mag_err',
                 'mag_ap2', 'flags', 'n_saturated', 'method', 'pipeline']
    for name in ('x_center', 'y_center'):
        show[name].info.format = '.1f'
    for name in ('true_mag', 'mag', 'mag_err', 'mag_ap2'):
        show[name].info.format = '.3f'
    show.pprint(max_lines=-1, max_width=-1)
    print('columns: mag = network, mag_ap2 = 2-px aperture, n_saturated = '
          'saturated pixels within 5 px, flags = bits (decoded below)')
    print('pipeline = what the simulated survey pipeline did to the trail:')
    for name in sorted(set(np.asarray(table['pipeline'], str))):
        print(f'  {name:>9s}: {PIPELINE_OUTCOMES.get(name, name)}')
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
    plot_demo(frame, table, path=args.output)
    print(f'wrote {args.output} in {time.perf_counter() - start:.1f} s')
