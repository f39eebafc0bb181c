import re
import shutil

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table

from satphotutils.calibration import GaiaArchive
from satphotutils.cli import build_parser, main
from satphotutils.simulation import (
    Camera,
    Detector,
    FrameSimulator,
    Scene,
    simulate_field,
)
from satphotutils.stamps import read_stamp_table

CENTRE = SkyCoord(200.0, -30.0, unit='deg')
EDGE = 15
SIZE = 300


@pytest.fixture(scope='module', name='field')
def fixture_field(tmp_path_factory):
    """Six simulated frames and their scene as a Gaia DR3 catalogue."""
    directory = tmp_path_factory.mktemp('stamps_cli')
    scene = Scene.random(CENTRE, radius=0.5 * u.deg, g_max=17.0, seed=3)
    camera = Camera(detector=Detector(shape=(SIZE, SIZE)))
    sim = FrameSimulator(camera=camera, pointing=CENTRE)
    simulate_field(directory / 'frames', scene, [sim], n_epochs=2,
                   exposures_per_epoch=3, seed=5)
    catalogue = Table({
        'source_id': np.arange(len(scene.G), dtype=np.int64) + 10**15,
        'ra': scene.coord.ra.deg, 'dec': scene.coord.dec.deg,
        'phot_g_mean_mag': scene.G, 'bp_rp': scene.bp_rp})
    return directory, catalogue


def _truth_inside(directory):
    """The simulator's truth rows at least EDGE pixels from the edge."""
    truth = Table.read(directory / 'frames' / 'truth.ecsv')
    x, y = np.asarray(truth['x']), np.asarray(truth['y'])
    inside = ((x >= EDGE) & (x <= SIZE - 1 - EDGE)
              & (y >= EDGE) & (y <= SIZE - 1 - EDGE))
    return truth[inside]


def _check_against_truth(table, directory):
    truth = _truth_inside(directory)
    rows = {(int(s) - 10**15, str(f)): k for k, (s, f) in
            enumerate(zip(table['star_id'], table['file'], strict=True))}
    # Every truth star exposure inside the edge has its stamp, labelled
    # as the simulator labelled it, at its true position.
    k = np.array([rows[(int(s), str(f))]
                  for s, f in zip(truth['star'], truth['file'], strict=True)])
    np.testing.assert_allclose(np.asarray(table['log_counts'])[k],
                               np.asarray(truth['log_counts']), atol=0.01)
    np.testing.assert_allclose(np.asarray(table['x'])[k], truth['x'],
                               atol=0.01)
    np.testing.assert_allclose(np.asarray(table['y'])[k], truth['y'],
                               atol=0.01)
    # No stamp of a star nearer the edge than EDGE.
    assert np.all((table['x'] >= EDGE) & (table['x'] <= SIZE - 1 - EDGE))
    assert np.all((table['y'] >= EDGE) & (table['y'] <= SIZE - 1 - EDGE))


@pytest.mark.parametrize('suffix', ['ecsv', 'fits', 'csv'])
def test_stamps_command_from_frames_and_a_catalogue(field, tmp_path, capsys,
                                                    suffix):
    directory, catalogue = field
    cat = tmp_path / f'gaia.{suffix}'
    catalogue.write(cat)
    out = tmp_path / 'stamps.fits'
    assert main(['stamps', str(directory / 'frames'), '--catalog', str(cat),
                 '-o', str(out), '--edge', str(EDGE), '--seed', '1']) == 0
    printed = capsys.readouterr()
    table = read_stamp_table(out)
    assert f'{len(table)} stamps from 6 of 6 frames (0 skipped' \
        in printed.out
    assert re.search(r'rejected exposures: [1-9]\d* near the edge, '
                     r'0 damaged cores, 0 unlabelled', printed.out)
    assert 'frames: 100%' in printed.err  # the progress bar
    assert set(table['file']) == {p.name for p in
                                  (directory / 'frames').glob('*.fits')}
    _check_against_truth(table, directory)


def test_stamps_command_output_trains(field, tmp_path):
    directory, catalogue = field
    cat = tmp_path / 'gaia.ecsv'
    catalogue.write(cat)
    out = tmp_path / 'stamps.fits'
    assert main(['stamps', str(directory / 'frames' / '*.fits'),
                 '--catalog', str(cat), '-o', str(out), '--edge', str(EDGE),
                 '--max-exposures', '2', '--seed', '1']) == 0
    table = read_stamp_table(out)
    assert np.bincount(np.unique(table['star_id'],
                                 return_inverse=True)[1]).max() == 2
    assert main(['train', str(out), '-o', str(tmp_path / 'model'),
                 '--epochs', '1', '--seeds', '1', '--seed', '0']) == 0
    assert any((tmp_path / 'model').iterdir())


def test_stamps_command_options(field, tmp_path, capsys):
    directory, catalogue = field
    cat = tmp_path / 'gaia.ecsv'
    catalogue.write(cat)
    frames = sorted((directory / 'frames').glob('*.fits'))
    args = ['stamps', *map(str, frames), '--catalog', str(cat),
            '--edge', str(EDGE), '--seed', '2']
    assert main([*args, '-o', str(tmp_path / 'a.fits'),
                 '--max-exposures', '1']) == 0
    a = read_stamp_table(tmp_path / 'a.fits')
    assert len(a) == len(set(a['star_id']))
    assert f'left out over the exposure limit: {5 * len(a)}' in \
        capsys.readouterr().out
    # The same seed picks the same exposures; --overwrite replaces.
    assert main([*args, '-o', str(tmp_path / 'a.fits'),
                 '--max-exposures', '1']) == 1
    assert 'exists' in capsys.readouterr().err
    assert main([*args, '-o', str(tmp_path / 'a.fits'),
                 '--max-exposures', '1', '--overwrite']) == 0
    again = read_stamp_table(tmp_path / 'a.fits')
    np.testing.assert_array_equal(again['file'], a['file'])
    # V band: the colour relation to V, not g, labels the same stamps.
    assert main([*args, '-o', str(tmp_path / 'g.fits')]) == 0
    assert main([*args, '-o', str(tmp_path / 'v.fits'),
                 '--band', 'V']) == 0
    g = read_stamp_table(tmp_path / 'g.fits')
    v = read_stamp_table(tmp_path / 'v.fits')
    np.testing.assert_array_equal(v['star_id'], g['star_id'])
    np.testing.assert_array_equal(v['file'], g['file'])
    assert np.all(np.isfinite(v['mag']))
    assert np.median(np.abs(v['mag'] - g['mag'])) > 0.05
    capsys.readouterr()
    # --max-unity -1 rejects every stamp: a one-line error, status 1.
    assert main([*args, '-o', str(tmp_path / 'u.fits'),
                 '--max-unity', '-1']) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith('satphot stamps: error: no stamps passed')
    assert 'damaged cores' in err
    assert not (tmp_path / 'u.fits').exists()


def test_stamps_command_header_keys(field, tmp_path, capsys):
    directory, catalogue = field
    cat = tmp_path / 'gaia.ecsv'
    catalogue.write(cat)
    frames = []
    for path in sorted((directory / 'frames').glob('*.fits'))[:2]:
        copy = tmp_path / path.name
        shutil.copy(path, copy)
        with fits.open(copy, mode='update') as hdul:
            header = hdul[0].header
            header['MAGZP'] = header['ZP'] + 0.5
            del header['ZP']
        frames.append(str(copy))
    args = ['stamps', *frames, '--catalog', str(cat), '--edge', str(EDGE)]
    # Without ZP the zero point is fitted to the catalogue stars: the
    # true 25.5 (less the frame's transparency), not MAGZP's 26.
    assert main([*args, '-o', str(tmp_path / 'a.fits')]) == 0
    assert 'zero points fitted to catalogue stars on 2 frames' in \
        capsys.readouterr().out
    fitted = read_stamp_table(tmp_path / 'a.fits')
    np.testing.assert_allclose(fitted['zeropoint'], 25.5, atol=0.05)
    assert np.all(fitted['zeropoint_n'] >= 20)
    # Named by --header-key, the keyword wins over the fit.
    assert main([*args, '-o', str(tmp_path / 'b.fits'),
                 '--header-key', 'zeropoint=MAGZP']) == 0
    table = read_stamp_table(tmp_path / 'b.fits')
    np.testing.assert_allclose(table['zeropoint'], 25.5 + 0.5)
    assert np.all(table['zeropoint_n'] == 0)
    assert np.all(np.isnan(table['zeropoint_err']))


def test_stamps_command_refuses_a_catalogue_without_gaia_columns(
        field, tmp_path, capsys):
    directory, catalogue = field
    cat = tmp_path / 'nocolour.ecsv'
    catalogue['ra', 'dec', 'phot_g_mean_mag'].write(cat)
    assert main(['stamps', str(directory / 'frames'), '--catalog', str(cat),
                 '-o', str(tmp_path / 'x.fits')]) == 1
    err = capsys.readouterr().err
    assert 'nocolour.ecsv lacks the column(s) bp_rp' in err
    with pytest.raises(SystemExit):
        build_parser().parse_args(['stamps', 'f.fits', '-o', 'x.fits'])


class _FakeGaia:
    """Runs the archive backend's cone ADQL on a table."""

    def __init__(self, table):
        self.table = table
        self.queries = []

    def launch_job_async(self, query):
        self.queries.append(query)
        t = self.table
        keep = np.ones(len(t), bool)
        for name, op, value in re.findall(
                r'(ra|dec|phot_g_mean_mag) (>=|<=|<) (-?[\d.]+)', query):
            col, value = np.asarray(t[name]), float(value)
            keep &= {'>=': col >= value, '<=': col <= value,
                     '<': col < value}[op]
        ra0, dec0, r = map(float, re.search(
            r"CIRCLE\('ICRS', ([-\d.]+), ([-\d.]+), ([-\d.]+)\)",
            query).groups())
        sep = SkyCoord(t['ra'], t['dec'], unit='deg').separation(
            SkyCoord(ra0, dec0, unit='deg')).deg
        result = t[keep & (sep <= r)]

        class Job:
            def get_results(self):
                return result

        return Job()


def test_stamps_command_queries_gaia_through_the_cache(field, tmp_path,
                                                       monkeypatch):
    directory, catalogue = field
    fake = _FakeGaia(catalogue)
    monkeypatch.setattr(GaiaArchive, 'service', property(lambda self: fake))
    args = ['stamps', str(directory / 'frames'), '--gaia', '--gaia-cache',
            str(tmp_path / 'cache'), '--edge', str(EDGE), '--seed', '1']
    assert main([*args, '-o', str(tmp_path / 'a.fits')]) == 0
    assert fake.queries
    _check_against_truth(read_stamp_table(tmp_path / 'a.fits'), directory)
    # Offline, the cached queries are enough.
    n = len(fake.queries)
    assert main([*args, '--offline', '-o', str(tmp_path / 'b.fits')]) == 0
    assert len(fake.queries) == n
    assert len(read_stamp_table(tmp_path / 'b.fits')) == \
        len(read_stamp_table(tmp_path / 'a.fits'))


def test_stamps_command_takes_a_separate_neighbour_catalogue(field, tmp_path,
                                                             capsys):
    # Targets: the 30 brightest stars; crowding from the full catalogue.
    directory, catalogue = field
    bright = catalogue[np.argsort(catalogue['phot_g_mean_mag'])[:30]]
    bright.write(tmp_path / 'bright.ecsv')
    catalogue.write(tmp_path / 'all.fits')
    args = ['stamps', str(directory / 'frames'), '--catalog',
            str(tmp_path / 'bright.ecsv'), '--edge', str(EDGE), '--seed', '1']
    assert main([*args, '-o', str(tmp_path / 'a.fits'), '--neighbours',
                 str(tmp_path / 'all.fits')]) == 0
    table = read_stamp_table(tmp_path / 'a.fits')
    assert set(table['star_id']) <= set(bright['source_id'])
    truth = _truth_inside(directory)
    key = {(int(s), str(f)): k for k, (s, f) in
           enumerate(zip(truth['star'], truth['file'], strict=True))}
    k = np.array([key[(int(s) - 10**15, str(f))] for s, f in
                  zip(table['star_id'], table['file'], strict=True)])
    np.testing.assert_allclose(table['log_counts'],
                               np.asarray(truth['log_counts'])[k], atol=0.01)
    catalogue['ra', 'dec'].write(tmp_path / 'bad.ecsv')
    assert main([*args, '-o', str(tmp_path / 'b.fits'), '--neighbours',
                 str(tmp_path / 'bad.ecsv')]) == 1
    assert 'neighbour catalogue' in capsys.readouterr().err


def test_stamps_command_output_does_not_depend_on_the_workers(field,
                                                               tmp_path,
                                                               capsys):
    # Frames measured in two worker processes give the same file, byte
    # for byte, as in one; a damaged frame measured in a worker is
    # skipped and reported, the others kept.
    directory, catalogue = field
    cat = tmp_path / 'gaia.ecsv'
    catalogue.write(cat)
    frames = sorted((directory / 'frames').glob('*.fits'))
    broken = tmp_path / 'zz_broken.fits'
    data = frames[0].read_bytes()
    broken.write_bytes(data[:len(data) // 2])
    args = ['stamps', *map(str, frames), str(broken), '--catalog',
            str(cat), '--edge', str(EDGE), '--seed', '2']
    assert main([*args, '-o', str(tmp_path / 'one.fits'),
                 '--workers', '1']) == 0
    capsys.readouterr()
    assert main([*args, '-o', str(tmp_path / 'two.fits'),
                 '--workers', '2']) == 0
    assert f'skipped {broken}: cannot read the frame' in \
        capsys.readouterr().out
    assert (tmp_path / 'one.fits').read_bytes() == \
        (tmp_path / 'two.fits').read_bytes()
    table = read_stamp_table(tmp_path / 'two.fits')
    assert set(table['file']) == {f.name for f in frames}


def _camera_frames(tmp_path, *, scene_seed, seed, colour_term=0.0):
    """
    Two camera-written frames (no zero-point keywords) and a Gaia-named
    catalogue of their scene; return the ``satphot stamps`` arguments.
    """
    scene = Scene.random(CENTRE, radius=0.5 * u.deg, g_max=16.0,
                         seed=scene_seed)
    camera = Camera(colour_term=colour_term,
                    detector=Detector(shape=(SIZE, SIZE)))
    sim = FrameSimulator(camera=camera, pointing=CENTRE)
    simulate_field(tmp_path / 'frames', scene, [sim], n_epochs=1,
                   exposures_per_epoch=2, seed=seed, style='camera')
    cat = tmp_path / 'gaia.ecsv'
    Table({'source_id': np.arange(len(scene.G), dtype=np.int64),
           'ra': scene.coord.ra.deg, 'dec': scene.coord.dec.deg,
           'phot_g_mean_mag': scene.G, 'bp_rp': scene.bp_rp}).write(cat)
    return ['stamps', str(tmp_path / 'frames'), '--catalog', str(cat),
            '--edge', str(EDGE), '--workers', '1']


def test_stamps_command_fits_a_colour_term(tmp_path, capsys):
    # A camera whose counts depend on colour (colour term 0.2 per mag of
    # BP - RP): with --colour-term the fitted slope is the camera's and
    # each stamp's label follows its star's true counts; without it the
    # labels are off by the colour-dependent part.
    args = _camera_frames(tmp_path, scene_seed=8, seed=3,
                          colour_term=0.2)
    assert main([*args, '-o', str(tmp_path / 'c.fits'),
                 '--colour-term']) == 0
    assert main([*args, '-o', str(tmp_path / 'n.fits')]) == 0
    truth = Table.read(tmp_path / 'frames' / 'truth.ecsv')
    true = {(int(s), str(f)): np.log10(c) for s, f, c in
            zip(truth['star'], truth['file'], truth['true_counts'],
                strict=True)}
    errors = {}
    for name in ('c', 'n'):
        table = read_stamp_table(tmp_path / f'{name}.fits')
        faint = (table['mag'] > 12.5) & (table['f_c'] < 0.01)
        expected = np.array([true[(int(s), str(f))] for s, f in
                             zip(table['star_id'][faint],
                                 table['file'][faint], strict=True)])
        errors[name] = np.asarray(table['log_counts'][faint]) - expected
        if name == 'c':
            # mag + 2.5 log10 N = Z - 0.2 (BP - RP - 1): slope -0.2.
            assert np.asarray(table['zeropoint_colour_term']) == \
                pytest.approx(-0.2, abs=0.01)
    # In magnitudes: the colour term's labels within 0.01 mag for the
    # median star and the colour-dependent scatter gone.
    assert np.median(np.abs(errors['c'])) * 2.5 < 0.01
    assert np.std(errors['c']) < 0.5 * np.std(errors['n'])


def test_stamps_command_caps_the_zero_point_stars(tmp_path, capsys):
    # Frames without a zero point keyword: --zeropoint-stars caps the
    # catalogue stars each fitted zero point is measured on, and the
    # zero points stay within their errors of the uncapped fit's.
    args = _camera_frames(tmp_path, scene_seed=9, seed=4)
    assert main([*args, '-o', str(tmp_path / 'all.fits'),
                 '--zeropoint-stars', '100000']) == 0
    assert main([*args, '-o', str(tmp_path / 'few.fits'),
                 '--zeropoint-stars', '20']) == 0
    full = read_stamp_table(tmp_path / 'all.fits')
    few = read_stamp_table(tmp_path / 'few.fits')
    assert np.all(full['zeropoint_n'] > 24)
    assert np.all((few['zeropoint_n'] >= 15) & (few['zeropoint_n'] <= 20))
    np.testing.assert_array_equal(few['star_id'], full['star_id'])
    diff = np.asarray(few['zeropoint'] - full['zeropoint'])
    assert np.all(np.abs(diff) < 4 * np.hypot(few['zeropoint_err'],
                                              full['zeropoint_err']))
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main([*args, '-o', str(tmp_path / 'bad.fits'),
              '--zeropoint-stars', '19'])
    assert info.value.code == 2
    assert '--zeropoint-stars' in capsys.readouterr().err


def _dslr_frame(path, catalogue, zeropoint, rng):
    """A 12-bit camera's frame: tile-compressed int16, a SIP WCS."""
    from astropy.table import QTable
    from astropy.wcs import WCS
    from photutils.datasets import make_model_image
    from photutils.psf import CircularGaussianPRF

    header = fits.Header()
    header.update({
        'CTYPE1': 'RA---TAN-SIP', 'CTYPE2': 'DEC--TAN-SIP',
        'CRVAL1': 200.0, 'CRVAL2': -30.0, 'CRPIX1': 200.5,
        'CRPIX2': 150.5, 'CD1_1': -0.004, 'CD1_2': 0.0003,
        'CD2_1': 0.0003, 'CD2_2': 0.004, 'A_ORDER': 2, 'B_ORDER': 2,
        # A barrel-like distortion of up to ~3 px at the corners.
        'A_2_0': 2e-5, 'A_0_2': 2e-5, 'B_2_0': -1.5e-5, 'B_1_1': 2e-5})
    wcs = WCS(header)
    x, y = wcs.world_to_pixel(SkyCoord(catalogue['ra'], catalogue['dec'],
                                       unit='deg'))
    counts = 10 ** (-0.4 * (catalogue['g_true'] - zeropoint))
    stars = QTable({'x_0': x, 'y_0': y, 'flux': counts,
                    'fwhm': np.full(len(x), 2.6)})
    image = make_model_image((300, 400), CircularGaussianPRF(), stars,
                             model_shape=(25, 25)) + 150.0
    image = np.minimum(rng.poisson(image), 4095).astype(np.int16)
    header['DATE-OBS'] = '2025-05-01T21:30:00'
    header['EXPTIME'] = 30.0
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(
        image, header, compression_type='RICE_1')]).writeto(path)
    return x, y


def test_stamps_command_reads_a_12_bit_camera_with_a_sip_wcs(tmp_path):
    # A DSLR-like survey camera (12-bit, tile-compressed .fits.fz, SIP
    # distortion, DATE-OBS only): the stamps sit where the SIP WCS puts
    # the stars, and the zero point fitted to the catalogue is the
    # frame's.
    from satphotutils.calibration import gaia_to_sdss_g

    rng = np.random.default_rng(11)
    n = 150
    centre = SkyCoord(200.0, -30.0, unit='deg')
    stars = centre.directional_offset_by(
        rng.uniform(0, 360, n) * u.deg, np.sqrt(rng.uniform(0, 1, n))
        * 0.55 * u.deg)
    G = rng.uniform(8.0, 14.5, n)
    bp_rp = rng.uniform(0.5, 2.0, n)
    catalogue = Table({'source_id': np.arange(n, dtype=np.int64),
                       'ra': stars.ra.deg, 'dec': stars.dec.deg,
                       'phot_g_mean_mag': G, 'bp_rp': bp_rp})
    catalogue['g_true'] = np.ma.filled(gaia_to_sdss_g(G, bp_rp)[0], np.nan)
    frames = tmp_path / 'frames'
    frames.mkdir()
    x, y = _dslr_frame(frames / 'dslr_0001.fits.fz', catalogue, 21.3, rng)
    catalogue.remove_column('g_true')
    catalogue.write(tmp_path / 'gaia.ecsv')
    assert main(['stamps', str(frames), '--catalog',
                 str(tmp_path / 'gaia.ecsv'), '-o', str(tmp_path / 's.fits'),
                 '--edge', '12', '--workers', '1']) == 0
    table = read_stamp_table(tmp_path / 's.fits')
    assert len(table) > 50
    k = np.asarray(table['star_id'])
    np.testing.assert_allclose(table['x'], x[k], atol=1e-6)
    np.testing.assert_allclose(table['y'], y[k], atol=1e-6)
    # The star is in the central pixel of its stamp (the SIP terms move
    # the corners' stars by pixels).
    centre_pixel = np.asarray(table['stamp'])[:, 10, 10]
    assert np.median(centre_pixel) > 2 * 150.0
    # Aperture photometry to 9 px of a Gaussian PSF: within 0.02 mag.
    assert table['zeropoint'][0] == pytest.approx(21.3, abs=0.02)
