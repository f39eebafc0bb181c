import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.nddata import CCDData
from astropy.table import QTable
from numpy.testing import assert_allclose

from satphotutils.simulation import (
    Camera,
    Detector,
    FrameSimulator,
    PulsatingStar,
    Scene,
    SurveyPipeline,
    simulate_field,
)

CENTRE = SkyCoord(150.0, -40.0, unit='deg')


@pytest.fixture(name='scene')
def fixture_scene():
    scene = Scene.random(CENTRE, radius=0.6 * u.deg, g_max=17.0, seed=4)
    # A bright, a saturated and a faint target near the centre.
    coord = CENTRE.directional_offset_by([0, 120, 240] * u.deg,
                                         [4, 6, 8] * u.arcmin)
    scene.add(coord, [6.0, 10.0, 13.0], [1.0, 1.0, 1.0],
              name=['bright', 'saturated', 'faint'])
    return scene


@pytest.fixture(name='simulator')
def fixture_simulator():
    camera = Camera(detector=Detector(shape=(256, 256)))
    return FrameSimulator(camera=camera, pointing=CENTRE)


def test_frame_is_a_ccddata_with_wcs_and_keywords(scene, simulator):
    frame, truth = simulator(scene, mjd=59000.0, seed=1)
    assert isinstance(frame, CCDData)
    assert frame.shape == (256, 256)
    assert frame.unit == u.adu
    for key in ('MJD-OBS', 'DATE-OBS', 'ZP', 'TRANSP', 'CAMERA', 'FILTER',
                'SKY', 'FWHM', 'EXPTIME'):
        assert key in frame.meta
    assert frame.meta['CAMERA'] == 'bi'
    assert isinstance(truth, QTable)
    assert {'bright', 'saturated', 'faint'} <= set(truth['name'])


def test_truth_positions_round_trip_through_the_wcs(scene, simulator,
                                                    tmp_path):
    frame, truth = simulator(scene, mjd=59000.0, seed=1)
    frame.write(tmp_path / 'frame.fits')
    read = CCDData.read(tmp_path / 'frame.fits')
    x, y = read.wcs.world_to_pixel(truth['sky_coord'])
    assert np.max(np.hypot(x - truth['x'], y - truth['y'])) < 0.01


def test_truth_flags_and_labels(scene, simulator):
    frame, truth = simulator(scene, mjd=59000.0, seed=1)
    rows = {name: truth[truth['name'] == name][0]
            for name in ('bright', 'saturated', 'faint')}
    assert rows['bright']['saturated']
    assert rows['saturated']['saturated']
    assert not rows['faint']['saturated']
    zp, t = frame.meta['ZP'], frame.meta['TRANSP']
    for row in rows.values():
        expected = 10 ** (-0.4 * (row['mag'].value - zp)) / t
        assert_allclose(row['true_counts'].value, expected, rtol=1e-9)
        label = expected * (1 + row['f_c']) - row['b_c'].value
        assert_allclose(row['log_counts'], np.log10(label), rtol=1e-9)


def test_the_frame_holds_the_flux_of_an_unsaturated_star(simulator):
    # A sparse field (the polar density, no bright stars) so that the
    # target is isolated.
    scene = Scene.random(CENTRE, radius=0.6 * u.deg, g_min=14.0,
                         g_max=17.0, density_factor=0.2, seed=4)
    scene.add(CENTRE, [13.0], [1.0], name=['faint'])
    frame, truth = simulator(scene, mjd=59000.0, seed=1)
    row = truth[truth['name'] == 'faint'][0]
    ix, iy = round(row['x']), round(row['y'])
    box = frame.data[iy - 8:iy + 9, ix - 8:ix + 9]
    annulus = frame.data[iy - 20:iy + 21, ix - 20:ix + 21]
    sky = np.nanmedian(annulus)
    measured = np.sum(box - sky)
    expected = row['true_counts'].value * (1 + row['f_c'])
    # Poisson noise of ~289 pixels of sky is ~300 counts.
    assert abs(measured - expected) < 0.05 * expected + 1000


def test_frames_are_deterministic_with_a_seed(scene, simulator):
    a, ta = simulator(scene, mjd=59000.0, seed=7)
    b, tb = simulator(scene, mjd=59000.0, seed=7)
    c, _ = simulator(scene, mjd=59000.0, seed=8)
    assert np.array_equal(a.data, b.data, equal_nan=True)
    assert np.array_equal(ta['log_counts'], tb['log_counts'])
    assert not np.array_equal(a.data, c.data, equal_nan=True)


def test_variability_reaches_the_frames(simulator):
    scene = Scene(CENTRE, [9.0], [1.0],
                  variability=[PulsatingStar(period=10.0, amplitude=2.0,
                                             t0=59000.0)], name=['var'])
    _, bright = simulator(scene, mjd=59000.0, seed=1)
    _, faint = simulator(scene, mjd=59007.0, seed=1)
    delta = faint['mag'][0] - bright['mag'][0]
    model = scene.variability[0]
    assert delta.value > 1.0
    assert_allclose(delta.value, model(59007.0) - model(59000.0),
                    atol=1e-9)


def test_field_writes_frames_and_truth(scene, tmp_path):
    sims = [FrameSimulator(camera=Camera(name, filter=f, zeropoint_offset=zp,
                                         detector=Detector(shape=(128, 128))),
                           pointing=CENTRE)
            for name, f, zp in (('bi', 'g', 0.0), ('ba', 'V', 0.3))]
    frames = simulate_field(tmp_path, scene, sims, n_epochs=4, seed=3)
    assert len(frames) == 12
    assert set(frames['filter']) <= {'g', 'V'}
    truth = QTable.read(tmp_path / 'truth.ecsv')
    assert set(truth['file']) == set(frames['file'])
    # Exposures of an epoch are minutes apart, epochs days apart.
    by_epoch = frames.group_by('epoch')
    for group in by_epoch.groups:
        assert np.ptp(group['mjd']) < 0.01
    for name in frames['file']:
        frame = CCDData.read(tmp_path / name)
        assert frame.meta['CAMERA'] in ('bi', 'ba')
    with pytest.raises(FileExistsError, match='overwrite'):
        simulate_field(tmp_path, scene, sims, n_epochs=1, seed=3)


def _unity_within(image, x, y, radius):
    """Pixels exactly 1 whose centres are within radius of (x, y)'s pixel."""
    yy, xx = np.mgrid[:image.shape[0], :image.shape[1]]
    return np.array([np.count_nonzero(
        (image == 1.0) & (np.hypot(xx - np.rint(xi), yy - np.rint(yi))
                          <= radius)) for xi, yi in zip(x, y, strict=True)])


@pytest.mark.parametrize('radius', [5.0, 3.0])
def test_n_unity_counts_the_signal_circle(radius):
    # Damaged cores of saturated stars, also against the image edges,
    # where the circle is cut (not a square box of 11 x 11).
    detector = Detector(shape=(128, 128))
    wcs = detector.wcs(CENTRE)
    coord = wcs.pixel_to_world([1.0, 3.0, 4.2, 124.0, 64.0, 30.0],
                               [60.0, 90.0, 30.0, 64.0, 125.0, 30.0])
    scene = Scene(coord, np.full(6, 5.0), np.ones(6))
    sim = FrameSimulator(camera=Camera(detector=detector), pointing=CENTRE,
                         pipeline=SurveyPipeline(damage_fraction=1.0),
                         signal_radius=radius)
    frame, truth = sim(scene, mjd=59000.0, seed=3)
    expected = _unity_within(frame.data, truth['x'], truth['y'], radius)
    assert (expected > 0).sum() >= 4
    assert truth['n_unity'].tolist() == expected.tolist()
    assert truth['damaged'].tolist() == (expected > 0).tolist()


def test_signal_radius_is_validated():
    with pytest.raises(ValueError, match='radius must be'):
        FrameSimulator(pointing=CENTRE, signal_radius=-1.0)


def test_simulate_field_writes_frames_as_a_camera_does(tmp_path):
    # style='camera': the same frames as a survey pipeline's, stored as
    # 32-bit integers with a camera's header (no calibration keywords,
    # no BUNIT); read_frame dates them from DATE-OBS + EXPTIME / 2.
    from astropy.io import fits

    from satphotutils.frames import read_frame
    from satphotutils.simulation import simulate_field

    centre = SkyCoord(30.0, -10.0, unit='deg')
    scene = Scene.random(centre, radius=0.3 * u.deg, g_max=14.0, seed=1)
    sim = FrameSimulator(camera=Camera(detector=Detector(shape=(90, 80))),
                         pointing=centre)
    for style in ('survey', 'camera'):
        simulate_field(tmp_path / style, scene, [sim], n_epochs=2,
                       exposures_per_epoch=1, seed=4, style=style)
    frames = QTable.read(tmp_path / 'camera' / 'frames.ecsv')
    for row in frames:
        camera = tmp_path / 'camera' / row['file']
        header = fits.getheader(camera)
        assert header['BITPIX'] == 32
        for key in ('ZP', 'TRANSP', 'MJD-OBS', 'MJD-AVG', 'BUNIT',
                    'REFGRID', 'SKY'):
            assert key not in header
        survey, _ = read_frame(tmp_path / 'survey' / row['file'])
        image, info = read_frame(camera)
        expected = np.rint(np.nan_to_num(np.asarray(survey.data), nan=0.0))
        np.testing.assert_array_equal(image.data, expected)
        assert info.zeropoint is None
        assert info.time.utc.mjd == pytest.approx(row['mjd'], abs=1e-8)
        assert info.wcs is not None
    with pytest.raises(ValueError, match="style must be 'survey' or"):
        simulate_field(tmp_path / 'x', scene, [sim], n_epochs=1,
                       style='pipeline')
