import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from numpy.testing import assert_allclose, assert_array_equal

from satphotutils.frames import HeaderKeys
from satphotutils.photometry import SaturatedStarPhotometry, recentre
from satphotutils.simulation import Camera, Detector, FrameSimulator, Scene
from satphotutils.utils.flags import SATPHOT_FLAGS

CENTRE = SkyCoord(60.0, -30.0, unit='deg')
# The shift of the reference pixel (pixels).
SHIFT = (1.3, -1.25)


@pytest.fixture(scope='module', name='field')
def fixture_field():
    detector = Detector(shape=(1024, 400))
    rng = np.random.default_rng(3)
    n = 15
    x = np.linspace(30, 370, n) + rng.uniform(-0.5, 0.5, n)
    y = rng.uniform(450, 570, n)
    coords = detector.wcs(CENTRE).pixel_to_world(x, y)
    scene = Scene.random(CENTRE, radius=1.0 * u.deg, g_max=15.0, seed=2)
    scene.add(coords, np.linspace(5.0, 13.5, n), np.full(n, 1.0),
              name=[f't{i}' for i in range(n)])
    sim = FrameSimulator(camera=Camera(detector=detector), pointing=CENTRE)
    frame, truth = sim(scene, mjd=59500.0, seed=4)
    truth = truth[np.char.startswith(np.asarray(truth['name'], str), 't')]
    moved = frame.copy()
    moved.wcs = frame.wcs.deepcopy()
    moved.wcs.wcs.crpix = moved.wcs.wcs.crpix + SHIFT
    # Its WCS no longer places the stars exactly: it is no longer on the
    # reference grid.
    moved.meta = moved.meta.copy()
    del moved.meta['REFGRID']
    return frame, moved, truth


@pytest.fixture(scope='module', name='phot')
def fixture_phot():
    return SaturatedStarPhotometry()


def test_recentring_recovers_fluxes_when_the_wcs_is_off(field, phot):
    frame, moved, truth = field
    exact = phot(frame, skycoord=truth['sky_coord'])
    off = phot(moved, skycoord=truth['sky_coord'])
    assert off.meta['frame']['recentred']
    assert not exact.meta['frame']['recentred']
    # The targets are found where the stars are (simulated truth)...
    assert_allclose(off['x_centroid'], truth['x'], atol=0.2)
    assert_allclose(off['y_centroid'], truth['y'], atol=0.2)
    # ...the shift is the WCS error...
    assert_allclose(np.median(off['x_centroid'] - off['x_center']),
                    -SHIFT[0], atol=0.05)
    assert_allclose(np.median(off['y_centroid'] - off['y_center']),
                    -SHIFT[1], atol=0.05)
    # ...and every flux is the one measured with the exact WCS (the
    # issue: 11 of 15 lost 62-98% without re-centring).
    assert_allclose((off['flux'] / exact['flux']).value, 1.0, rtol=0.02)
    assert not (off['flags'] & SATPHOT_FLAGS.RECENTRE_REJECTED).any()
    # Forced on the exact frame, re-centring moves nothing by more than a
    # fifth of a pixel, and the magnitudes stay on the truth.
    exact = SaturatedStarPhotometry(recentre=True)(
        frame, skycoord=truth['sky_coord'])
    assert np.hypot(exact['x_centroid'] - exact['x_center'],
                    exact['y_centroid'] - exact['y_center']).max() < 0.2
    assert np.median(np.abs((exact['mag'] - truth['mag']).value)) < 0.02


def test_without_recentring_the_shift_costs_flux(field):
    # What the default guards against, measured.
    frame, moved, truth = field
    fixed = SaturatedStarPhotometry(recentre=False)
    exact = fixed(frame, skycoord=truth['sky_coord'])
    off = fixed(moved, skycoord=truth['sky_coord'])
    ratio = (off['flux'] / exact['flux']).value
    assert np.count_nonzero(ratio < 0.5) >= 5
    assert 'x_centroid' not in off.colnames


def test_a_shift_beyond_max_shift_is_flagged_not_applied(field):
    _, moved, truth = field
    phot = SaturatedStarPhotometry(max_shift=1.0)
    table = phot(moved, skycoord=truth['sky_coord'])
    x, y = moved.wcs.world_to_pixel(truth['sky_coord'])
    rejected = (table['flags'] & SATPHOT_FLAGS.RECENTRE_REJECTED) != 0
    assert rejected.all()
    # Measured where it was told.
    assert_allclose(table['x_centroid'], x)
    assert_allclose(table['y_centroid'], y)


def test_recentre_on_an_empty_patch_finds_nothing():
    image = np.full((50, 50), 100.0)
    image[10, 10] = np.nan
    x, _, dx, _, rejected = recentre(image, [25.0, np.nan], [25.0, 3.0],
                                      sky=100.0)
    # No star: nothing moves, and no_signal (not this) says so.
    assert rejected.tolist() == [False, False]
    assert np.isnan(dx).all()
    assert x[0] == 25.0


def test_recentre_moves_one_star_to_its_own_centroid():
    from photutils.psf import CircularGaussianPRF

    yy, xx = np.mgrid[:80, :80]
    stars = [(20.3, 30.6), (60.8, 50.2)]
    image = 100.0 + sum(CircularGaussianPRF(flux=5e4, x_0=sx, y_0=sy,
                                            fwhm=2.5)(xx, yy)
                        for sx, sy in stars)
    # Each given position is off differently (a moving star, say).
    x, y, _, _, rejected = recentre(image, [21.5, 60.0], [30.0, 51.0],
                                    sky=100.0, common=False)
    assert_allclose(x, [20.3, 60.8], atol=0.05)
    assert_allclose(y, [30.6, 50.2], atol=0.05)
    assert not rejected.any()


def test_auto_leaves_a_frame_on_its_reference_grid_alone(field, phot):
    # The simulator's frame declares its exact WCS (REFGRID = T): the
    # default measures it exactly as without re-centring, where the
    # stars are (simulated truth).
    frame, _, truth = field
    assert frame.meta['REFGRID'] is True
    auto = phot(frame, skycoord=truth['sky_coord'])
    fixed = SaturatedStarPhotometry(recentre=False)(
        frame, skycoord=truth['sky_coord'])
    assert_array_equal(auto['flux'], fixed['flux'])
    assert_array_equal(auto['flags'], fixed['flags'])
    assert 'x_centroid' not in auto.colnames
    assert 'REFGRID keyword says' in auto.meta['frame']['recentre_source']
    # The same frame without the keyword is re-centred.
    plain = frame.copy()
    plain.meta = plain.meta.copy()
    plain.meta['REFGRID'] = False
    table = phot(plain, skycoord=truth['sky_coord'])
    assert table.meta['frame']['recentred']
    assert_allclose(table['x_centroid'], truth['x'], atol=0.2)


def test_reference_grid_keyword_is_configurable(field):
    frame, _, truth = field
    keys = HeaderKeys(reference_grid='ONGRID')
    renamed = frame.copy()
    renamed.meta = renamed.meta.copy()
    renamed.meta['ONGRID'] = renamed.meta.pop('REFGRID')
    table = SaturatedStarPhotometry(header_keys=keys)(
        renamed, skycoord=truth['sky_coord'])
    assert not table.meta['frame']['recentred']
    assert 'ONGRID keyword says' in table.meta['frame']['recentre_source']


@pytest.mark.parametrize('value', ['yes', 1, 'on'])
def test_recentre_must_be_auto_or_a_bool(value):
    with pytest.raises(TypeError, match="recentre must be 'auto', True or"):
        SaturatedStarPhotometry(recentre=value)


def test_n_saturated_against_truth_from_header_or_plateau(field, phot):
    frame, _, truth = field
    table = phot(frame, skycoord=truth['sky_coord'])
    assert table.meta['frame']['saturation_level_source'] == 'header'
    n_sat = np.asarray(table['n_saturated'])
    g = np.asarray(truth['g'])
    saturated = np.asarray(truth['saturated'])
    # The simulation's truth: saturated stars have saturated pixels
    # (those well above the onset; the faintest saturate in one pixel,
    # which the pipeline may have rewritten), unsaturated stars none.
    assert (n_sat[saturated & (g < 10.5)] > 0).all()
    assert (n_sat[~saturated] == 0).all()
    # The same frame as stored by a camera that stops at that level,
    # without the keyword: the plateau is found, the counts are the same.
    level = frame.meta['SATURATE']
    plateau = frame.copy()
    plateau.data = np.minimum(plateau.data, level)
    del plateau.meta['SATURATE']
    blind = phot(plateau, skycoord=truth['sky_coord'])
    assert blind.meta['frame']['saturation_level_source'] == 'plateau'
    assert blind.meta['frame']['saturation_level'] == level
    assert blind.meta['frame_saturation']['value'] == level
    assert_allclose(np.asarray(blind['n_saturated']), n_sat)


def test_n_saturated_from_the_satlevel_fallback(field, phot):
    # A pipeline that writes SATLEVEL instead of SATURATE: the same level,
    # from the header, the same counts of saturated pixels.
    frame, _, truth = field
    table = phot(frame, skycoord=truth['sky_coord'])
    other = frame.copy()
    other.meta = other.meta.copy()
    other.meta['SATLEVEL'] = other.meta.pop('SATURATE')
    fallback = phot(other, skycoord=truth['sky_coord'])
    assert fallback.meta['frame']['saturation_level_source'] == 'header'
    assert fallback.meta['frame']['saturation_level'] == \
        frame.meta['SATURATE']
    assert_array_equal(np.asarray(fallback['n_saturated']),
                       np.asarray(table['n_saturated']))
