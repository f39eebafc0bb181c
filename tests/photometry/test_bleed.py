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
    # Two unsaturated stars: no aperture correction to be measured, so
    # the margin is 3 FWHM, not 2, and at most the 2.3% of a Moffat
    # (beta 2.5) beyond it is missing, less for the brighter stars'
    # larger apertures.
    assert table.meta['aperture_correction']['n_stars'] < 5
    assert table.meta['margin'] == pytest.approx(3 * frame.meta['FWHM'])
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


def _moffat_field(seed=7, fwhm=2.0):
    from satphotutils.simulation import MoffatPSF, render_stars

    rng = np.random.default_rng(seed)
    n = 36
    gx, gy = np.meshgrid(np.arange(6), np.arange(6))
    x = 30.0 + 45.0 * gx.ravel() + rng.uniform(-0.5, 0.5, n)
    y = 30.0 + 45.0 * gy.ravel() + rng.uniform(-0.5, 0.5, n)
    flux = rng.uniform(2e4, 2e5, n)
    image = SKY + render_stars((290, 290), x, y, flux,
                               MoffatPSF(fwhm=fwhm, beta=2.5))
    return image, x, y, flux


def _moffat_enclosed(radius, fwhm=2.0, beta=2.5):
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    return 1 - (1 + (radius / alpha) ** 2) ** (1 - beta)


def test_unsaturated_targets_are_put_on_the_wide_aperture_scale():
    from photutils.aperture import CircularAperture, aperture_photometry

    image, x, y, _ = _moffat_field()
    n = len(x)
    phot = BleedTrailPhotometry(fwhm=2.0, saturation_level=1e9,
                                aperture_correction=0.0)
    table = phot(image, positions=np.column_stack([x, y]))
    assert table.meta['point_correction']['n_stars'] == n
    assert len(table.meta['point_correction']['phase_terms']) == 3
    assert table.meta['radius'] == pytest.approx(1.8)
    # The small apertures, corrected at each star's pixel phase, give
    # the wide (margin: 2 FWHM) sums: on average to 0.2%, and star by
    # star to 0.5% (the phase alone moves a 1.8-px aperture's share by
    # 2%).
    margin = phot.margin_fwhm * 2.0
    assert table.meta['margin'] == pytest.approx(4.0)
    wide = aperture_photometry(image, CircularAperture(
        np.column_stack([x, y]), r=margin))['aperture_sum'] \
        - SKY * np.pi * margin ** 2
    ratio = table['flux'].value / wide
    assert np.median(ratio) == pytest.approx(1.0, abs=2e-3)
    assert_allclose(ratio, 1.0, atol=5e-3)
    # (Not the closed form of a Moffat within the margin: within 2 FWHM
    # the rendering's pixels move the share by 0.4%; the total light is
    # checked against it at 4 FWHM below.)


def test_the_pixel_phase_correction_removes_the_phase_scatter():
    # Without it (one median ratio for every star) a 1.5-px aperture on
    # a FWHM-1.7 px Moffat scatters by its share's change across a pixel.
    from photutils.aperture import CircularAperture, aperture_photometry

    fwhm = 1.7
    image, x, y, _ = _moffat_field(seed=3, fwhm=fwhm)
    phot = BleedTrailPhotometry(fwhm=fwhm, saturation_level=1e9,
                                aperture_correction=0.0)
    table = phot(image, positions=np.column_stack([x, y]))
    pos = np.column_stack([x, y])
    small_r, wide_r = 0.9 * fwhm, phot.margin_fwhm * fwhm
    small = aperture_photometry(image, CircularAperture(
        pos, r=small_r))['aperture_sum'] - SKY * np.pi * small_r ** 2
    wide = aperture_photometry(image, CircularAperture(
        pos, r=wide_r))['aperture_sum'] - SKY * np.pi * wide_r ** 2
    constant = small * np.median(wide / small) / wide
    assert np.std(constant) > 0.004
    assert np.std(table['flux'].value / wide) < 0.35 * np.std(constant)


def test_the_measured_aperture_correction_gives_the_total_light():
    image, x, y, flux = _moffat_field()
    table = BleedTrailPhotometry(fwhm=2.0, saturation_level=1e9)(
        image, positions=np.column_stack([x, y]))
    meta = table.meta['aperture_correction']
    assert meta['n_stars'] >= 5
    assert meta['radius'] == pytest.approx(8.0)
    # What lies between the margin (2 FWHM) and 4 FWHM: photutils'
    # exact apertures on the same image (the closed form of a Moffat of
    # index 2.5 differs by the rendering's pixels within 2 FWHM,
    # 0.4%), and the stars then hold all but the wings beyond 4 FWHM
    # (closed form).
    from photutils.aperture import CircularAperture, aperture_photometry

    assert table.meta['margin'] == pytest.approx(4.0)
    pos = np.column_stack([x, y])
    inner, outer = (aperture_photometry(image, CircularAperture(
        pos, r=r))['aperture_sum'] - SKY * np.pi * r ** 2 for r in (4, 8))
    assert meta['value'] == pytest.approx(
        2.5 * np.log10(np.median(outer / inner)), abs=1e-3)
    assert np.median(table['flux'].value / flux) == pytest.approx(
        _moffat_enclosed(8.0), abs=2.5e-3)
    # Given as a number, it is that number.
    fixed = BleedTrailPhotometry(fwhm=2.0, saturation_level=1e9,
                                 aperture_correction=0.1)(
        image, positions=np.column_stack([x, y]))
    assert fixed.meta['aperture_correction']['value'] == 0.1
    assert fixed.meta['aperture_correction']['source'] == 'argument'


def test_too_few_isolated_stars_leave_the_total_light_unmeasured():
    image, x, y, _ = _moffat_field()
    # Four stars: none of the corrections can be measured, and the meta
    # says so.
    table = BleedTrailPhotometry(fwhm=2.0, saturation_level=1e9)(
        image, positions=np.column_stack([x[:4], y[:4]]))
    meta = table.meta['aperture_correction']
    assert meta['value'] == 0.0
    assert meta['n_stars'] < 5
    assert 'not measured' in meta['source']


@pytest.mark.parametrize('value', ['auto', 'total', None])
def test_aperture_correction_is_measured_or_a_number(value):
    with pytest.raises((ValueError, TypeError), match='aperture_correction'):
        BleedTrailPhotometry(aperture_correction=value)


def _trail_field(pixels, g, seed=3, *, alter=None, unlisted=0, **options):
    """
    A raw 600 x 400 frame: the given stars and 20 isolated g 12-13.

    ``alter(frame)`` may change the frame before it is measured; the
    last ``unlisted`` of the given stars are not targets (the table and
    errors are those of the others and the g 12-13 stars); ``options``
    go to `BleedTrailPhotometry`.
    """
    from satphotutils.simulation import (
        Camera,
        Detector,
        FrameSimulator,
        Scene,
        SurveyPipeline,
    )

    centre = SkyCoord(150, -40, unit='deg')
    camera = Camera(detector=Detector(shape=(600, 400), full_well=80000.0,
                                      corner_throughput=1.0))
    simulate = FrameSimulator(camera=camera, pointing=centre,
                              pipeline=SurveyPipeline(correction=False))
    wcs = simulate(Scene(centre, [15.0], [1.0]), mjd=59000.0,
                   seed=1)[0].wcs
    rng = np.random.default_rng(seed)
    calib = np.column_stack([rng.uniform(40, 160, 20),
                             rng.uniform(40, 560, 20)])
    pixels = np.vstack([pixels, calib])
    g = np.r_[g, rng.uniform(12.0, 13.0, 20)]
    coords = wcs.pixel_to_world(pixels[:, 0], pixels[:, 1])
    frame, truth = simulate(Scene(coords, g, np.ones(len(g))),
                            mjd=59000.0, seed=2)
    if alter is not None:
        alter(frame)
    listed = np.ones(len(g), dtype=bool)
    listed[len(pixels) - 20 - unlisted:len(pixels) - 20] = False
    table = BleedTrailPhotometry(fwhm=frame.meta['FWHM'], **options)(
        frame, skycoord=coords[listed])
    return table, (table['mag'] - truth['mag'][listed]).value


def test_fainter_stars_on_a_bright_trail_leave_it_to_its_star():
    # Review of the benchmark's crowded frames: three g = 10.5-11.2
    # stars within 2.6 px of a g = 5.5 star's column, on its trail. The
    # nearest-core division gave two of them half the trail each (4 mag
    # too bright) and left the bright star 1.7 mag faint; the trail is
    # the bright star's, and the others are measured by their wings
    # beside it and taken off its sum.
    table, error = _trail_field(
        [[200.0, 300.0], [202.3, 360.2], [198.2, 224.6], [202.6, 269.7]],
        [5.5, 10.8, 11.2, 10.5])
    flags = np.asarray(table['flags'])
    assert np.all(flags[:4] & SATPHOT_FLAGS.TRAIL_MERGED)
    assert np.all(flags[1:4] & SATPHOT_FLAGS.TRAIL_WINGS)
    assert not flags[0] & SATPHOT_FLAGS.TRAIL_WINGS
    assert abs(error[0]) < 0.02
    # Their wings beside a 5-column trail hold a few per cent of their
    # light: measured to a few tenths of a magnitude, not to 4 mag.
    assert np.all(np.abs(error[1:4]) < 0.5)
    assert np.all(np.isfinite(table['flux_err'][:4]))


def test_a_star_beside_a_bright_trail_keeps_its_own_full_well_core():
    # The benchmark's crowded frames: a g = 9 star 6 px beside a bright
    # star's trail, 50 rows from its core. Their regions touch only
    # through the wings followed down to a quarter of the level; the
    # region was divided by the distance to each star, and the g = 9
    # star took the trail's rows nearer to it than to the bright star
    # (2 mag too bright here, 4.9 mag on the benchmark's frame; the
    # bright star 0.5 mag faint). Each keeps its own full-well pixels
    # now; the fainter star still loses its wings on the trail's side,
    # which are nearer the trail (5-7% of its light).
    for y in (330.5, 350.5):
        table, error = _trail_field([[200.0, 300.0], [206.3, y]],
                                    [6.0, 9.0])
        flags = np.asarray(table['flags'])
        assert np.all(flags[:2] & SATPHOT_FLAGS.TRAIL_MERGED)
        assert not np.any(flags[:2] & SATPHOT_FLAGS.TRAIL_WINGS)
        assert abs(error[0]) < 0.01, error[:2]
        assert abs(error[1]) < 0.1, error[:2]


def _dip(frame, fraction=0.85):
    # One row of the bright trail between the stars reads below 0.9 of
    # the level (noise, a resampling): the full-well trail breaks.
    level = frame.meta['SATURATE']
    row = frame.data[325, 190:215]
    row[row > 0.9 * level] = fraction * level


def _masked(frame):
    # A bad row across the trail between the stars.
    mask = np.zeros(frame.data.shape, dtype=bool)
    mask[325, 195:205] = True
    frame.mask = mask


@pytest.mark.parametrize(('extra', 'alter'), [
    # A faint star on the bright trail, within 3 px of the other star's
    # column: grouping pieces by the columns of their stars chained the
    # two trails into one part again.
    ([[203.0, 250.3]], None),
    ([[202.6, 250.3]], None),
    ([], _dip),
    ([], _masked)])
def test_a_broken_trail_stays_with_its_star(extra, alter):
    # Review: a trail whose full-well pixels break between the two stars
    # (a dip, a masked row) or a third star on it gave the fainter star
    # the trail's far part by the distance to its core again (2 mag too
    # bright, the bright star 0.45 mag faint).
    _, error = _trail_field([[200.0, 300.0], [205.9, 350.5], *extra],
                           [6.0, 9.0, 12.5][:2 + len(extra)],
                           alter=alter)
    assert abs(error[0]) < 0.01, error[:3]
    assert abs(error[1]) < 0.1, error[:3]


@pytest.mark.parametrize(('dx', 'g'), [(5.3, 7.0), (5.3, 8.0), (6.0, 7.5),
                                       (7.5, 7.0)])
def test_a_saturated_star_no_list_names_is_flagged(dx, g):
    # Review: a saturated star beside a listed one, in neither the
    # targets nor the catalogue, whose full-well pixels join the listed
    # star's region (apart at the full well, or side by side and joined
    # in a few rows): its charge is in the listed star's sum, 0.1-0.75
    # mag too bright, and nothing said so.
    table, error = _trail_field([[200.0, 300.0], [200.0 + dx, 340.5]],
                                [7.0, g], unlisted=1)
    assert error[0] < -0.05
    assert table['flags'][0] & SATPHOT_FLAGS.TRAIL_MERGED


@pytest.mark.parametrize('rows', [25.0, 60.0])
def test_a_star_alone_on_an_unnamed_star_s_trail_is_flagged(rows):
    # Review: a target on the trail of a saturated star no list names is
    # the region's only star, and its sum is the whole trail (a g = 13
    # star 5.7 mag too bright, no flag).
    table, error = _trail_field([[200.8, 300.0 + rows], [200.0, 300.0]],
                                [13.0, 6.0], unlisted=1)
    assert error[0] < -1
    assert table['flags'][0] & SATPHOT_FLAGS.TRAIL_MERGED


def test_a_circle_reaching_a_trail_is_flagged():
    # Review: an unsaturated star whose small circle clips the edge
    # column of a bright star's trail (it lies beside the trail, not on
    # it) held that column's charge, 0.3-1.5 mag too bright, flagged
    # only recentre_rejected (a 3-px circle, as a 0.9 FWHM radius is in
    # 3.3 px seeing).
    table, error = _trail_field([[200.0, 300.0], [204.6, 340.4]],
                                [6.0, 12.5], radius=3.0)
    assert error[1] < -0.1
    assert table['flags'][1] & SATPHOT_FLAGS.TRAIL_MERGED
    # The frame's isolated g 12-13 stars are not.
    assert not np.any(np.asarray(table['flags'])[2:]
                      & SATPHOT_FLAGS.TRAIL_MERGED)


def _low_column(frame):
    # The trail's central column saturates at 86% of the level (full
    # wells differ from column to column): below the 90% the trail is
    # followed at, so the full-well trail has a gap all along.
    level = frame.meta['SATURATE']
    column = frame.data[:, 200]
    column[column > 0.9 * level] = 0.86 * level


@pytest.mark.parametrize('alter', [None, _dip, _masked, _low_column])
def test_one_star_s_trail_is_not_taken_for_two(alter):
    # The flag of the test above on none of one star's trails, broken or
    # not (with the full-well pixels alone, a column saturating lower
    # made two trails of one).
    table, error = _trail_field([[200.0, 300.0]], [6.0], alter=alter)
    if alter is not _low_column:  # (whose cap removes charge)
        assert abs(error[0]) < 0.01
    assert not table['flags'][0] & SATPHOT_FLAGS.TRAIL_MERGED


def test_stars_near_a_core_and_comparable_pairs_keep_their_rules():
    # Review findings: a g = 11 star 6 px from a g = 5.5 core was
    # measured by "wings" that are the bright star's own and took 12% of
    # it; its light now stays with the bright star, and it is not
    # measured (no_signal, trail_wings) ...
    table, error = _trail_field([[200.0, 300.0], [201.0, 306.0]],
                                [5.5, 11.0])
    assert abs(error[0]) < 0.02
    assert np.isnan(table['flux'][1])
    assert table['flags'][1] & SATPHOT_FLAGS.TRAIL_WINGS
    assert table['flags'][1] & SATPHOT_FLAGS.NO_SIGNAL
    # ... and two saturated stars 80 rows apart whose trails meet are
    # still divided as two trails (measured by wings, the fainter was
    # 0.26 mag off).
    table, error = _trail_field([[200.0, 260.0], [201.6, 340.0]],
                                [7.0, 9.5])
    assert not np.any(np.asarray(table['flags'])[:2]
                      & SATPHOT_FLAGS.TRAIL_WINGS)
    assert np.all(np.abs(error[:2]) < 0.03)
