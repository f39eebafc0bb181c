from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.nddata import CCDData, NDData, StdDevUncertainty
from astropy.table import QTable, Table
from numpy.testing import assert_allclose

from satphotutils.cli import main
from satphotutils.photometry import (
    AperturePhotometryBaseline,
    PSFWingPhotometry,
    SaturatedStarPhotometry,
)
from satphotutils.simulation import Camera, Detector, FrameSimulator, Scene
from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.flags import SATPHOT_FLAGS, decode_flags

CENTRE = SkyCoord(60.0, -30.0, unit='deg')
# The previous bundled model (feature version 1, converted to 2 on
# reading): it does not read the frame's saturation level or FWHM.
V1_MODEL = Path(__file__).parents[1] / 'network' / 'data' / 'model_v1'


@pytest.fixture(scope='module', name='frame')
def fixture_frame():
    detector = Detector(shape=(1024, 400))
    rng = np.random.default_rng(3)
    x = np.linspace(40, 360, 12) + rng.uniform(-0.5, 0.5, 12)
    y = rng.uniform(450, 570, 12)
    coords = detector.wcs(CENTRE).pixel_to_world(x, y)
    scene = Scene.random(CENTRE, radius=1.0 * u.deg, g_max=15.0, seed=2)
    scene.add(coords, np.linspace(5.0, 13.5, 12), np.full(12, 1.0),
              name=[f't{i}' for i in range(12)])
    sim = FrameSimulator(camera=Camera(detector=detector), pointing=CENTRE)
    frame, truth = sim(scene, mjd=59500.0, seed=4)
    truth = truth[np.char.startswith(np.asarray(truth['name'], str), 't')]
    return frame, truth


@pytest.fixture(scope='module', name='phot')
def fixture_phot():
    return SaturatedStarPhotometry()


def test_measures_saturated_stars_against_truth(frame, phot):
    ccd, truth = frame
    table = phot(ccd, skycoord=truth['sky_coord'])
    assert isinstance(table, QTable)
    assert table.colnames[:9] == ['id', 'x_center', 'y_center',
                                  'sky_center', 'local_bkg', 'flux',
                                  'flux_err', 'flags', 'log_counts']
    assert {'mag', 'mag_err', 'n_saturated', 'n_unity',
            'method'} <= set(table.colnames)
    assert table['flux'].unit == u.adu
    assert table['mag'].unit == u.mag
    assert list(table['id']) == list(range(1, 13))
    assert_allclose(table['x_center'], truth['x'], atol=1e-6)
    ok = np.isin(truth['outcome'], ['ok', 'none'])
    diff = (table['mag'] - truth['mag']).value[ok]
    assert np.median(np.abs(diff)) < 0.03
    # The 2-px aperture is far worse on the saturated stars.
    ap = AperturePhotometryBaseline(radius=2.0)(ccd, skycoord=truth[
        'sky_coord'])
    sat = np.asarray(truth['saturated'])[ok]
    ap_diff = (ap['mag'] - truth['mag']).value[ok]
    assert np.median(np.abs(ap_diff[sat] - np.median(ap_diff))) > \
        3 * np.median(np.abs(diff[sat]))
    assert table.meta['version']['satphotutils']
    assert table.meta['config']['radius'] == 5.0


def test_positions_skycoord_and_init_params_agree(frame, phot):
    ccd, truth = frame
    by_sky = phot(ccd, skycoord=truth['sky_coord'])
    by_xy = phot(ccd, positions=np.column_stack([truth['x'], truth['y']]))
    by_init = phot(ccd, init_params=Table({'x_init': truth['x'],
                                           'y_init': truth['y']}))
    radec = Table({'ra': truth['sky_coord'].ra.deg,
                   'dec': truth['sky_coord'].dec.deg})
    by_radec = phot(ccd, init_params=radec)
    for other in (by_xy, by_init, by_radec):
        assert_allclose(other['log_counts'], by_sky['log_counts'],
                        atol=1e-6)
    assert 'sky_center' in by_xy.colnames


def test_plain_arrays_quantities_and_explicit_zeropoint(frame):
    ccd, truth = frame
    # A bare array has no header: the saturation level is given.
    phot = SaturatedStarPhotometry(saturation_level=ccd.meta['SATURATE'])
    pos = np.column_stack([truth['x'], truth['y']])
    plain = phot(np.asarray(ccd.data), positions=pos)
    assert 'mag' not in plain.colnames  # no header, no zero point
    assert 'sky_center' not in plain.colnames
    quantity = phot(ccd.data * u.adu, positions=pos,
                    zeropoint=ccd.meta['ZP'])
    assert quantity['flux'].unit == u.adu
    assert 'mag' in quantity.colnames


def test_nddata_rules(frame, phot):
    ccd, truth = frame
    pos = np.column_stack([truth['x'], truth['y']])
    with pytest.raises(ValueError, match='must be None when data is an'):
        phot(ccd, positions=pos, mask=np.zeros(ccd.shape, bool))
    with pytest.raises(ValueError, match='exactly one of'):
        phot(ccd, positions=pos, skycoord=truth['sky_coord'])
    with pytest.raises(ValueError, match='no targets'):
        phot(ccd, positions=np.zeros((0, 2)))
    with pytest.raises(ValueError, match='2D image'):
        phot(np.zeros((3, 20, 20)), positions=pos)
    with pytest.raises(ValueError, match='needs a WCS'):
        phot(np.asarray(ccd.data), skycoord=truth['sky_coord'])
    mask = np.zeros(ccd.shape, bool)
    iy, ix = np.rint([truth['y'][3], truth['x'][3]]).astype(int)
    mask[iy, ix + 1] = True
    nd = NDData(ccd.data, mask=mask, wcs=ccd.wcs, meta=ccd.meta,
                uncertainty=StdDevUncertainty(np.ones(ccd.shape)),
                unit=u.adu)
    table = phot(nd, positions=pos)
    assert 'masked_pixels' in decode_flags(table['flags'][3])
    assert table['flags'][2] & 8 == 0


def test_edge_targets_are_flagged_not_lost(frame, phot):
    ccd, _ = frame
    table = phot(ccd, positions=[[3.0, 500.0], [200.0, 500.0],
                                 [-50.0, -50.0]])
    assert table['flags'][0] & 2
    assert table['flags'][0] & SATPHOT_FLAGS.NEAR_EDGE
    assert table['flags'][1] & 3 == 0
    assert table['flags'][2] & 1
    assert len(table) == 3


def test_stamp_geometry_comes_from_the_model():
    # The stamp size and the signal circle are the model's; options that
    # could only repeat them are gone.
    phot = SaturatedStarPhotometry()
    assert phot.stamp_size == phot.model.features.stamp_size
    assert phot.signal_radius == phot.model.features.radius
    for option in ({'stamp_size': 25}, {'radius': 4}):
        with pytest.raises(TypeError, match='unexpected keyword'):
            SaturatedStarPhotometry(**option)


def test_psf_wing_baseline_runs_on_the_same_api(frame):
    from photutils.psf import CircularGaussianPRF

    ccd, truth = frame
    wings = PSFWingPhotometry(CircularGaussianPRF(fwhm=ccd.meta['FWHM']),
                              saturation_level=40000, core_radius=1.5)
    table = wings(ccd, skycoord=truth['sky_coord'])
    assert table['method'][0] == 'psf_wings'
    faint = np.asarray(truth['mag']) > 12
    diff = (table['mag'] - truth['mag']).value[faint]
    assert np.all(np.isfinite(diff))


def test_photometry_command(frame, tmp_path, capsys):
    ccd, truth = frame
    image = tmp_path / 'frame.fits'
    ccd.write(image)
    targets = tmp_path / 'targets.ecsv'
    Table({'name': truth['name'], 'ra': truth['sky_coord'].ra.deg,
           'dec': truth['sky_coord'].dec.deg}).write(targets)
    out = tmp_path / 'out.ecsv'
    assert main(['photometry', str(image), '--targets', str(targets),
                 '-o', str(out)]) == 0
    table = QTable.read(out)
    assert list(table['name']) == list(truth['name'])
    assert 'mag' in table.colnames
    read = CCDData.read(image)
    direct = SaturatedStarPhotometry()(read, skycoord=truth['sky_coord'])
    assert_allclose(table['log_counts'], direct['log_counts'], atol=1e-6)


# -- honest options -----------------------------------------------------------

def test_error_is_propagated_into_the_uncertainty(frame):
    ccd, truth = frame
    phot = SaturatedStarPhotometry(saturation_level=ccd.meta['SATURATE'])
    coords = truth['sky_coord']
    plain = phot(ccd.data, wcs=ccd.wcs, skycoord=coords)
    zero = phot(ccd.data, wcs=ccd.wcs, skycoord=coords,
                error=np.zeros(ccd.shape))
    huge = phot(ccd.data, wcs=ccd.wcs, skycoord=coords,
                error=np.full(ccd.shape, 1e6))
    assert_allclose(zero['log_counts_err'], plain['log_counts_err'])
    assert_allclose(huge['log_counts'], plain['log_counts'])
    # 81 pixels of 1e6 counts: sqrt(81) 1e6 counts on top of the model's.
    expected = np.hypot(plain['log_counts_err'],
                        9e6 / plain['flux'].value / np.log(10))
    assert_allclose(huge['log_counts_err'], expected, rtol=1e-6)


def test_zeropoint_never_changes_the_counts(frame, phot):
    ccd, truth = frame
    results = []
    for zp in (20.0, 25.5, 28.0):
        other = ccd.copy()
        other.meta['ZP'] = zp
        results.append(phot(other, skycoord=truth['sky_coord']))
        # Nor does a zero point given as an argument.
        given = phot(ccd, skycoord=truth['sky_coord'], zeropoint=zp)
        assert_allclose(given['log_counts'], results[-1]['log_counts'],
                        rtol=0, atol=0)
    for table in results[1:]:
        assert_allclose(table['log_counts'], results[0]['log_counts'],
                        rtol=0, atol=0)
        assert_allclose(table['flux'], results[0]['flux'], rtol=0, atol=0)
    # Only the magnitudes move, by the difference of the zero points.
    assert_allclose((results[2]['mag'] - results[0]['mag']).value, 8.0)


def test_saturation_level_from_the_header_or_masked(frame, phot):
    ccd, truth = frame
    # Simulated frames say their level, as real ones mostly do.
    assert 'SATURATE' in ccd.meta
    blind = ccd.copy()
    del blind.meta['SATURATE']
    # The camera-agnostic default reads the level: without one (and no
    # plateau, the pipeline replaced the saturated pixels) it refuses.
    with pytest.raises(SatphotutilsError, match='saturation level'):
        phot(blind, skycoord=truth['sky_coord'])
    # A model that does not read it measures, with n_saturated masked.
    unknown = SaturatedStarPhotometry(model=V1_MODEL)(
        blind, skycoord=truth['sky_coord'])
    assert np.ma.getmaskarray(unknown['n_saturated']).all()
    assert unknown.meta['frame']['saturation_level_source'] is None
    other = ccd.copy()
    other.meta['SATURATE'] = 30000.0
    table = phot(other, skycoord=truth['sky_coord'])
    assert table.meta['frame']['saturation_level_source'] == 'header'
    yy, xx = np.mgrid[-10:11, -10:11]
    circle = xx**2 + yy**2 <= 25
    for row, x, y in zip(table, truth['x'], truth['y'], strict=True):
        ix, iy = int(np.rint(x)), int(np.rint(y))
        cut = ccd.data[iy - 10:iy + 11, ix - 10:ix + 11]
        assert row['n_saturated'] == np.count_nonzero((cut >= 30000)
                                                      & circle)
    assert table['n_saturated'].max() > 0
    # An argument wins over the header.
    assert phot.__class__(saturation_level=1e9)(
        other, skycoord=truth['sky_coord'])['n_saturated'].max() == 0


def test_photometry_meta_records_each_value_and_its_source(frame, phot):
    ccd, truth = frame
    table = phot(ccd, skycoord=truth['sky_coord'][:2])
    meta = table.meta['frame']
    assert meta['zeropoint'] == ccd.meta['ZP']
    assert meta['zeropoint_source'] == 'header'
    assert meta['sky_source'] == 'header'
    assert meta['camera'] == ccd.meta['CAMERA']
    bare = SaturatedStarPhotometry(saturation_level=ccd.meta['SATURATE'])(
        ccd.data, wcs=ccd.wcs, skycoord=truth['sky_coord'][:2])
    assert bare.meta['frame_saturation']['source'] == 'argument'
    assert table.meta['frame_saturation'] == {
        'value': ccd.meta['SATURATE'], 'source': 'header'}
    assert table.meta['frame_fwhm']['source'].startswith('measured')
    assert bare.meta['frame']['zeropoint'] is None
    assert 'mag' not in bare.colnames
    assert bare.meta['frame']['sky_source'].startswith('measured')


@pytest.mark.parametrize(('option', 'error'), [
    ({'batch_size': 0}, ValueError), ({'batch_size': '21'}, TypeError),
    ({'hybrid_tolerance': float('nan')}, ValueError),
    ({'saturation_level': -1.0}, ValueError),
    ({'header_keys': {'zeropoint': 'MAGZP'}}, TypeError)])
def test_invalid_options(option, error):
    with pytest.raises(error):
        SaturatedStarPhotometry(**option)


def test_aperture_baseline_without_signal_is_no_signal_not_non_finite():
    # A background-subtracted sum <= 0 used to set bit 16
    # (non_finite_data) although every pixel was finite.
    image = np.full((60, 60), 100.0)
    image[26:35, 26:35] = 50.0  # a hole: the aperture is below the ring
    table = AperturePhotometryBaseline(radius=2.0)(image,
                                                   positions=[[30, 30]])
    assert decode_flags(table['flags'][0]) == ['no_signal']
    assert np.isnan(table['flux'][0])


def test_network_does_not_import_photometry():
    # The network stage (evaluation included) sits below photometry: no
    # import of it anywhere in satphotutils.network, at module level or
    # inside a function (the evaluation used to import the photometry
    # baselines, and the photometry the network: a hidden cycle).
    import ast
    from pathlib import Path

    import satphotutils.network

    root = Path(satphotutils.network.__file__).parent
    for path in root.glob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or '']
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith('satphotutils.photometry'), \
                    f'{path.name} imports {name}'
