"""BleedTrailPhotometry: photometry from the bleed trails of raw frames."""

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import QTable, Table
from numpy.testing import assert_allclose

from satphotutils.cli import main
from satphotutils.photometry import BleedTrailPhotometry
from satphotutils.photometry.methods import photometry_method
from satphotutils.simulation import (
    Camera,
    Detector,
    FrameSimulator,
    Scene,
    SurveyPipeline,
)
from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.flags import SATPHOT_FLAGS

SKY = 100.0
LEVEL = 1000.0


def _trail_image(shape=(500, 120), *, col=60, rows=(100, 400), core=240):
    """A saturated trail with a core and wings, all above a flat sky."""
    image = np.full(shape, SKY)
    image[rows[0]:rows[1], col] = LEVEL
    image[core - 3:core + 4, col - 2:col + 3] = LEVEL
    # Unsaturated wings next to the core.
    image[core - 3:core + 4, col - 3] += 300.0
    image[core - 3:core + 4, col + 3] += 250.0
    return image


def _phot(**kwargs):
    kwargs = {'margin': 3.0, 'saturation_level': LEVEL,
              'background_width': 6, 'background_gap': 2} | kwargs
    return BleedTrailPhotometry(**kwargs)


def test_the_trail_holds_the_flux_whatever_its_length():
    image = _trail_image()
    table = _phot()(image, positions=[[60.2, 240.3]])
    # Everything above the sky is within 3 px of the saturated region.
    assert_allclose(table['flux'][0], (image - SKY).sum())
    assert_allclose(table['local_bkg'][0], SKY)
    assert table['flags'][0] == 0
    assert table['method'][0] == 'bleed_trail'


def test_a_trail_off_the_edge_is_flagged_and_what_remains_is_summed():
    image = _trail_image(rows=(0, 300))
    table = _phot()(image, positions=[[60.0, 240.0]])
    assert table['flags'][0] & SATPHOT_FLAGS.TRAIL_EDGE
    assert_allclose(table['flux'][0], (image - SKY).sum())


def test_unsaturated_target_is_photutils_exact_aperture():
    from photutils.aperture import CircularAperture, aperture_photometry
    from photutils.psf import CircularGaussianPRF

    yy, xx = np.mgrid[:80, :80]
    star = CircularGaussianPRF(flux=5e4, x_0=40.3, y_0=39.6, fwhm=2.5)
    image = SKY + star(xx, yy)
    table = _phot(margin=4.0, radius=4.0, saturation_level=1e6)(
        image, positions=[[40.3, 39.6]])
    aperture = CircularAperture((40.3, 39.6), r=4.0)
    expected = aperture_photometry(image, aperture)['aperture_sum'][0] \
        - SKY * aperture.area
    assert_allclose(table['flux'][0], expected, rtol=1e-10)
    assert table['n_saturated'][0] == 0


def test_merged_trails_are_divided_and_flagged():
    image = np.full((400, 60), SKY)
    # Two stars in one column whose trails meet: saturated cores 5 px
    # wide, trails of 50 rows above the upper and 29 below the lower.
    image[145:156, 28:33] = LEVEL
    image[225:236, 28:33] = LEVEL
    image[100:260, 30] = LEVEL
    table = _phot()(image, positions=[[30, 150], [30, 230]])
    assert np.all(table['flags'] & SATPHOT_FLAGS.TRAIL_MERGED)
    # Charge is divided, not counted twice: the two add up to the total.
    assert_allclose(table['flux'].sum(), (image - SKY).sum())
    # Each trail symmetric about its star: the boundary halfway between
    # row 200 (the upper's end) and 201 (the lower's start). The upper
    # star has rows 100-200 of the trail and its core's other 44 pixels.
    assert_allclose(table['flux'][0], (LEVEL - SKY) * (101 + 44))


def test_a_star_on_another_stars_trail_leaves_it_whole():
    image = _trail_image()
    image[330, 59:62] = LEVEL  # a faint star's saturated pixels
    total = (image - SKY).sum()
    table = _phot()(image, positions=[[60, 240], [60, 330]])
    # The trail is the bright star's, the faint one is flagged.
    assert_allclose(table['flux'][0], total)
    assert table['flags'][1] & SATPHOT_FLAGS.TRAIL_MERGED


def test_a_neighbour_beside_the_trail_is_split_off():
    image = _trail_image()
    # A fainter star 3 px beside the trail, 60 rows from the core.
    image[299:302, 62:64] += 100.0
    total = (image - SKY).sum()
    both = _phot()(image, positions=[[60, 240], [63, 300]])
    alone = _phot()(image, positions=[[60, 240]])
    catalogued = _phot(catalog=[[63, 300]])(image, positions=[[60, 240]])
    assert_allclose(alone['flux'][0].value, total)
    # The neighbour's pixels are its own, given as a target or a
    # catalogue star.
    # Its pixels are nearer to it than to the trail: the trail's target
    # keeps all but them.
    assert_allclose(both['flux'][0], total - 600.0)
    assert not both['flags'][0] & SATPHOT_FLAGS.TRAIL_MERGED
    assert_allclose(catalogued['flux'][0], both['flux'][0])


def test_masked_pixels_on_the_trail_are_flagged():
    image = _trail_image()
    mask = np.zeros(image.shape, dtype=bool)
    mask[350:360, 60] = True
    table = _phot()(image, positions=[[60, 240]], mask=mask)
    assert table['flags'][0] & SATPHOT_FLAGS.TRAIL_MASKED
    assert_allclose(table['flux'][0], (image - SKY)[~mask].sum())


def test_read_axis_one_is_the_transpose():
    image = _trail_image()
    down = _phot()(image, positions=[[60.2, 240.3]])
    across = _phot(read_axis=1)(image.T.copy(), positions=[[240.3, 60.2]])
    assert_allclose(across['flux'][0], down['flux'][0])


def test_a_frame_without_saturation_level_is_refused():
    image = np.random.default_rng(1).normal(SKY, 5.0, (60, 60))
    with pytest.raises(SatphotutilsError, match='saturation level'):
        BleedTrailPhotometry(margin=3.0)(image, positions=[[30, 30]])


@pytest.mark.parametrize(('kwargs', 'match'), [
    ({'read_axis': 2}, 'read_axis'),
    ({'trail_fraction': 0.95}, 'trail_fraction'),
    ({'background_width': 0}, 'background_width'),
    ({'catalog': [1.0, 2.0, 3.0]}, 'catalog'),
])
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BleedTrailPhotometry(**kwargs)


@pytest.fixture(scope='module', name='raw_frame')
def fixture_raw_frame():
    centre = SkyCoord(60.0, -30.0, unit='deg')
    # Full well before the ADC, no vignetting (see the class's Notes).
    detector = Detector(shape=(1024, 400), full_well=80000.0,
                        corner_throughput=1.0)
    x = np.linspace(30, 370, 10)
    y = np.full(10, 512.0) + np.random.default_rng(2).uniform(-20, 20, 10)
    coords = detector.wcs(centre).pixel_to_world(x, y)
    g = np.linspace(5.5, 12.5, 10)
    scene = Scene(coords, g, np.ones(10), name=[f't{i}' for i in range(10)])
    sim = FrameSimulator(camera=Camera(detector=detector), pointing=centre,
                         pipeline=SurveyPipeline(correction=False))
    return sim(scene, mjd=59500.0, seed=4)


def test_raw_frame_stars_are_measured_from_their_trails(raw_frame):
    frame, truth = raw_frame
    table = BleedTrailPhotometry(fwhm=frame.meta['FWHM'])(
        frame, skycoord=truth['sky_coord'])
    diff = (table['mag'] - truth['mag']).value
    # The bright ones' trails run far beyond an 81-row stamp.
    x = np.rint(truth['x'][0]).astype(int)
    assert (frame.data[:, x] > 0.9 * frame.meta['SATURATE']).sum() > 200
    # At most the 2.3% of a Moffat (beta 2.5) beyond the 3-FWHM margin
    # is missing, less for the brighter stars' larger apertures.
    assert np.all(diff > -0.005), diff
    assert np.all(diff < 0.027), diff
    assert np.all(diff[truth['mag'].value < 9] < 0.01), diff
    assert np.all(table['flags'] == 0)


def test_photometry_command_with_the_bleed_trail_method(raw_frame, tmp_path,
                                                        capsys):
    frame, truth = raw_frame
    image = tmp_path / 'raw.fits'
    frame.write(image)
    targets = tmp_path / 'targets.ecsv'
    Table({'name': truth['name'], 'ra': truth['sky_coord'].ra.deg,
           'dec': truth['sky_coord'].dec.deg}).write(targets)
    out = tmp_path / 'out.ecsv'
    assert main(['photometry', str(image), '--targets', str(targets),
                 '--method', 'bleed-trail', '--fwhm', '1.8',
                 '-o', str(out)]) == 0
    assert 'with bleed-trail' in capsys.readouterr().out
    table = QTable.read(out)
    assert set(table['method']) == {'bleed_trail'}
    direct = BleedTrailPhotometry(fwhm=1.8)(frame,
                                            skycoord=truth['sky_coord'])
    assert_allclose(table['log_counts'], direct['log_counts'])
    assert main(['photometry', str(image), '--targets', str(targets),
                 '--method', 'bleed-trail', '--model', str(tmp_path),
                 '-o', str(tmp_path / 'x.ecsv')]) != 0
    assert 'does not take model' in capsys.readouterr().err


def test_bleed_trail_is_a_photometry_method():
    phot = photometry_method('bleed-trail', margin=4.0, model=None)
    assert isinstance(phot, BleedTrailPhotometry)
    assert phot.margin == 4.0


def test_sky_catalogue_needs_a_wcs():
    phot = BleedTrailPhotometry(
        margin=3.0, saturation_level=LEVEL,
        catalog=SkyCoord([10.0] * u.deg, [20.0] * u.deg))
    with pytest.raises(ValueError, match='no WCS'):
        phot(_trail_image(), positions=[[60, 240]])


def test_unsaturated_targets_are_put_on_the_wide_aperture_scale():
    from photutils.aperture import CircularAperture, aperture_photometry

    from satphotutils.simulation import MoffatPSF, render_stars

    rng = np.random.default_rng(7)
    n = 36
    gx, gy = np.meshgrid(np.arange(6), np.arange(6))
    x = 30.0 + 45.0 * gx.ravel() + rng.uniform(-0.5, 0.5, n)
    y = 30.0 + 45.0 * gy.ravel() + rng.uniform(-0.5, 0.5, n)
    flux = rng.uniform(2e4, 2e5, n)
    image = SKY + render_stars((290, 290), x, y, flux,
                               MoffatPSF(fwhm=2.0, beta=2.5))
    phot = BleedTrailPhotometry(fwhm=2.0, saturation_level=1e9)
    table = phot(image, positions=np.column_stack([x, y]))
    assert table.meta['point_correction']['n_stars'] == n
    assert table.meta['radius'] == pytest.approx(1.8)
    # The small apertures, corrected, give the wide (3 FWHM) sums: on
    # average exactly; star by star to the small aperture's dependence
    # on where in its pixel the star falls.
    wide = aperture_photometry(image, CircularAperture(
        np.column_stack([x, y]), r=6.0))['aperture_sum'] \
        - SKY * np.pi * 36.0
    ratio = table['flux'].value / wide
    assert np.median(ratio) == pytest.approx(1.0, abs=2e-3)
    # (up to 2% for a 1.8-px radius about a 2-px FWHM star).
    assert_allclose(ratio, 1.0, atol=0.02)
    # Which hold all but the Moffat wings beyond 6 px (closed form).
    alpha = 2.0 / (2 * np.sqrt(2 ** (1 / 2.5) - 1))
    enclosed = 1 - (1 + (6.0 / alpha) ** 2) ** (1 - 2.5)
    assert np.median(table['flux'].value / flux) == pytest.approx(
        enclosed, abs=2.5e-3)
