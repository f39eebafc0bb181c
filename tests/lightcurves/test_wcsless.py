# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Light curves of a night without a WCS (issue #27).

A simulated 12-bit camera drifts by tens of pixels and rotates by two
degrees over the night; nothing is plate-solved. The frames are
registered to the first one by their stars, the targets are given as its
pixels, and the magnitudes are differential. Everything is checked
against the simulator's truth: its transforms, positions, transparencies
and the variable star's light curve.
"""

import json

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import QTable, Table
from numpy.testing import assert_allclose

from satphotutils.cli import main
from satphotutils.frames import (
    SimilarityTransform,
    find_stars,
    read_frame,
    register_stars,
)
from satphotutils.lightcurves import LightCurvePipeline, assign_epochs
from satphotutils.photometry import (
    AperturePhotometryBaseline,
    PSFWingPhotometry,
)
from satphotutils.simulation import (
    Camera,
    Detector,
    FrameSimulator,
    PulsatingStar,
    Scene,
    SurveyPipeline,
    simulate_night,
)
from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.flags import SATPHOT_FLAGS

CENTRE = SkyCoord(280.0, 20.0, unit='deg')
SIZE = 256
N_FRAMES = 12
# Half an hour: the variable's period, a visible change within the night.
VARIABLE = PulsatingStar(period=0.02, amplitude=0.6, t0=60000.1)
# A Gaussian PSF: a 5 px aperture holds all of its light, so that the
# zero points follow the clouds alone, not the seeing too.
CONDITIONS = {'fwhm': 3.0, 'sky': 120.0, 'psf_family': 'gaussian'}


@pytest.fixture(scope='module', name='night')
def fixture_night(tmp_path_factory):
    directory = tmp_path_factory.mktemp('night')
    detector = Detector(shape=(SIZE, SIZE), pixel_scale=1.8 * u.arcsec,
                        gain=1.0, read_noise=5.0, bias=100.0,
                        full_well=30000.0, adc_max=4095,
                        corner_throughput=0.9)
    sim = FrameSimulator(
        camera=Camera('cmos', detector=detector), pointing=CENTRE,
        zeropoint=24.5, pipeline=SurveyPipeline(
            misplace_rate=0.0, lost_rate=0.0, damage_fraction=0.0))
    scene = Scene.random(CENTRE, radius=0.15 * u.deg, g_min=8.0,
                         g_max=17.0, density_factor=8.0, seed=4)
    where = sim.wcs.pixel_to_world(128.0, 120.0)
    scene.add(where, [14.0], [1.0], variability=[VARIABLE], name=['var'])
    frames = simulate_night(directory, scene, sim, n_frames=N_FRAMES,
                            drift=(60.0, -25.0), rotation=2.0,
                            conditions=CONDITIONS, clouds=0.15, seed=5)
    truth = QTable.read(directory / 'truth.ecsv')
    first = truth[truth['file'] == frames['file'][0]]
    last = truth[truth['file'] == frames['file'][-1]]

    def inside(t):
        return ((t['x'] > 15) & (t['y'] > 15) & (t['x'] < SIZE - 16)
                & (t['y'] < SIZE - 16))

    # Stars on the frames all night, the 40 brightest and the variable.
    keep = inside(first) & np.isin(first['star'], last['star'][inside(last)])
    chosen = first[keep][np.argsort(first['mag'][keep])][:40]
    if 'var' not in chosen['name']:
        chosen = QTable(np.hstack([chosen.as_array(), first[
            first['name'] == 'var'].as_array()]))
    targets = Table({'name': [n if n == 'var' else f's{s}' for n, s in
                              zip(chosen['name'], chosen['star'],
                                  strict=True)],
                     'x': chosen['x'], 'y': chosen['y']})
    # A frame of cloud: sky and noise, no star to register.
    blank = directory / 'cloud.fits'
    header = fits.getheader(directory / frames['file'][3])
    rng = np.random.default_rng(9)
    fits.writeto(blank, rng.normal(220.0, 11.0, (SIZE, SIZE)).astype(
        np.float32), header)
    files = [directory / f for f in frames['file']]
    return {'dir': directory, 'frames': frames, 'truth': truth,
            'targets': targets, 'files': files, 'blank': blank,
            'chosen': chosen}


def _aperture():
    return AperturePhotometryBaseline(radius=5.0)


def test_register_stars_recovers_the_simulated_transform(night):
    reference, info = read_frame(night['files'][0])
    x_ref, y_ref, _ = find_stars(reference.data,
                                 saturation=info.saturation_level)
    truth = night['truth']
    for row, path in zip(night['frames'][1:], night['files'][1:],
                         strict=True):
        frame, info = read_frame(path)
        x, y, _ = find_stars(frame.data, saturation=info.saturation_level)
        fit = register_stars(x, y, x_ref, y_ref)
        assert fit.rotation == pytest.approx(row['rotation'], abs=0.03)
        assert fit.scale == pytest.approx(1.0, abs=1e-3)
        # Where the true transform puts the stars, to a tenth of a pixel.
        stars = truth[truth['file'] == row['file']]
        px, py = fit(stars['x_ref'], stars['y_ref'])
        error = np.hypot(px - stars['x'], py - stars['y'])
        assert np.median(error) < 0.1
        assert error.max() < 0.3
        assert fit.residual < 0.3
        assert fit.n_matched >= 20


def test_epoch_window_zero_keeps_every_exposure():
    # Two exposures of one time (two cameras' clocks, a burst) were one
    # epoch with window=0.
    assert assign_epochs([5.0, 5.0, 5.0001], window=0).tolist() == [0, 1, 2]


@pytest.fixture(scope='module', name='run')
def fixture_run(night, tmp_path_factory):
    out = tmp_path_factory.mktemp('wcsless_out')
    pipeline = LightCurvePipeline(_aperture(), epoch_window=0,
                                  reference=night['files'][0],
                                  differential=True)
    run = pipeline([*night['files'], night['blank']], night['targets'], out)
    return run, out


def test_reference_run_registers_and_reports_every_frame(night, run):
    run, out = run
    frames = night['frames']
    # The cloud frame cannot be registered: skipped and said why.
    assert list(run.skipped) == [str(night['blank'])]
    assert 'RegistrationError' in run.skipped[str(night['blank'])]
    report = json.loads((out / 'report.json').read_text())
    assert report['skipped'] == run.skipped
    assert sorted(report['registration']) == sorted(frames['file'])
    centre = (SIZE - 1) / 2
    for row in frames:
        fit = report['registration'][row['file']]
        assert fit['rotation'] == pytest.approx(row['rotation'], abs=0.03)
        true = SimilarityTransform(rotation=row['rotation'],
                                   x_shift=row['x_shift'],
                                   y_shift=row['y_shift'])
        assert_allclose(SimilarityTransform(**fit)(centre, centre),
                        true(centre, centre), atol=0.15)
        assert fit['residual'] < 0.3


def test_reference_run_one_point_per_exposure_at_mid_exposure(night, run):
    run, _ = run
    frames = night['frames']
    truth = night['truth']
    assert len(run.lightcurves) == len(night['targets'])
    for name in run.lightcurves:
        lc = run.lightcurves[name]
        assert len(lc) == N_FRAMES
        assert (lc['n_exposures'] == 1).all()
        # The header has DATE-OBS (the start) and EXPTIME only.
        assert_allclose(lc['time'].mjd, frames['mjd'], rtol=0, atol=2e-8)
        assert list(lc['frame']) == list(frames['file'])
    # Measured where the star is on each frame.
    var = run.lightcurves['var']
    star = truth[truth['name'] == 'var']
    assert_allclose(var['x'], star['x'], atol=0.3)
    assert_allclose(var['y'], star['y'], atol=0.3)


def test_differential_zero_points_follow_the_clouds(night, run):
    # Without catalogue magnitudes the scale is the reference frame's:
    # the zero point of frame f is 2.5 log10 of the light it lost to the
    # clouds relative to the reference, 2.5 log10(t_ref / t_f).
    run, _ = run
    frames = night['frames']
    lc = run.lightcurves[next(iter(run.lightcurves))]
    transparency = np.asarray(frames['transparency'])
    true = 2.5 * np.log10(transparency[0] / transparency)
    assert np.ptp(true) > 0.15  # the clouds are there
    zp = np.asarray(lc['zeropoint'])
    zp_err = np.asarray(lc['zeropoint_err'])
    assert_allclose(zp, true, atol=0.015)
    assert (np.abs(zp - true)[1:] < 4 * zp_err[1:] + 0.003).all()
    assert (np.asarray(lc['n_comparison']) >= 5).all()
    assert run.calibration['chosen'] == 'automatically'
    assert 'reference frame' in run.calibration['scale']


def test_differential_ensemble_excludes_the_variable(night, run):
    run, _ = run
    cal = run.calibration
    assert 'var' not in cal['comparison']
    # Never saturated: the saturated stars of the targets are left out.
    chosen = night['chosen']
    sat = {n for n, flag in zip(night['targets']['name'],
                                chosen['saturated'], strict=True) if flag}
    assert sat, 'the field should have saturated targets'
    assert not sat & set(cal['comparison'])
    # The variable's differential light curve is its true one, relative
    # to the reference frame.
    lc = run.lightcurves['var']
    mjd = night['frames']['mjd']
    true = np.array([VARIABLE(t) for t in mjd])
    measured = lc['mag'].value - lc['mag'].value[0]
    assert np.ptp(true) > 0.3
    assert_allclose(measured, true - true[0], atol=0.06)
    assert np.std(measured - (true - true[0])) < 0.025


def test_differential_scatter_of_constant_unsaturated_stars(night, run):
    # The measure: half the 15-85% range of each light curve.
    run, _ = run
    chosen = night['chosen']
    scatter = [run.statistics[n]['dispersion']
               for n, sat, mag in zip(night['targets']['name'],
                                      chosen['saturated'],
                                      chosen['mag'].value, strict=True)
               if not sat and mag < 14.0 and n != 'var']
    assert len(scatter) >= 10
    assert np.median(scatter) < 0.02


def test_given_comparison_stars_are_the_ensemble(night, tmp_path):
    targets = night['targets'].copy()
    targets['comparison'] = ['true' if k % 3 == 0 and n != 'var' else
                             'false' for k, n in enumerate(targets['name'])]
    pipeline = LightCurvePipeline(_aperture(), epoch_window=0,
                                  reference=night['files'][0],
                                  differential=True, min_comparison=3)
    run = pipeline(night['files'][:4], targets)
    given = [n for n, c in zip(targets['name'], targets['comparison'],
                               strict=True) if c == 'true']
    assert run.calibration['chosen'] == 'the comparison column'
    assert run.calibration['comparison'] == given


def test_catalogue_magnitudes_set_the_differential_scale(night):
    # With a mag column the zero points put the stars on its scale.
    chosen = night['chosen']
    targets = night['targets'].copy()
    targets['mag'] = chosen['mag'].value
    pipeline = LightCurvePipeline(_aperture(), epoch_window=0,
                                  reference=night['files'][0],
                                  differential=True)
    run = pipeline(night['files'][:3], targets)
    assert 'catalogue' in run.calibration['scale']
    # The simulator's zero point: a star of magnitude m gives
    # 10**(-0.4 (m - 24.5)) / t counts. Blends the isolation test cannot
    # see (closer than a detection box) make the fitted one a little
    # larger.
    lc = run.lightcurves[next(iter(run.lightcurves))]
    transparency = np.asarray(night['frames']['transparency'][:3])
    true = 24.5 - 2.5 * np.log10(transparency)
    assert_allclose(lc['zeropoint'], true, atol=0.05)


def test_targets_on_the_sky_need_a_reference_with_a_wcs(night):
    pipeline = LightCurvePipeline(_aperture(), reference=night['files'][0])
    with pytest.raises(SatphotutilsError, match='has no WCS: give them as x'):
        pipeline(night['files'][:2], Table({'ra': [280.0], 'dec': [20.0]}))


def test_frames_without_wcs_are_skipped_with_the_fix(night):
    pipeline = LightCurvePipeline(_aperture(), epoch_window=0)
    targets = Table({'ra': [280.0], 'dec': [20.0]})
    with pytest.raises(SatphotutilsError) as info:
        pipeline(night['files'][:2], targets)
    assert 'no celestial WCS' in str(info.value)
    assert 'reference' in str(info.value)


def test_differential_without_magnitudes_needs_a_reference():
    with pytest.raises(SatphotutilsError, match='give reference='):
        LightCurvePipeline(_aperture(), differential=True)(
            'nowhere', Table({'ra': [1.0], 'dec': [2.0]}))


def test_uncalibrated_frames_without_differential_are_skipped(night):
    pipeline = LightCurvePipeline(_aperture(), reference=night['files'][0])
    with pytest.raises(SatphotutilsError, match='differential'):
        pipeline(night['files'][:2], night['targets'])


def test_psf_wing_fits_each_frame_with_its_own_gaussian(night):
    # No PSF model: a Gaussian of the frame's measured FWHM.
    phot = PSFWingPhotometry()
    pipeline = LightCurvePipeline(phot, epoch_window=0,
                                  reference=night['files'][0],
                                  differential=True)
    run = pipeline(night['files'][:4], night['targets'])
    assert not run.skipped
    chosen = night['chosen']
    faint = [n for n, sat, mag in zip(
        night['targets']['name'], chosen['saturated'], chosen['mag'].value,
        strict=True) if not sat and mag < 14.0 and n != 'var']
    scatter = [run.statistics[n]['dispersion'] for n in faint]
    assert np.median(scatter) < 0.03


def test_cli_lightcurve_of_a_wcsless_night(night, tmp_path, capsys):
    targets = tmp_path / 'targets.ecsv'
    night['targets'].write(targets)
    out = tmp_path / 'out'
    status = main(['lightcurve', *map(str, night['files'][:5]),
                   str(night['blank']), '--targets', str(targets), '-o',
                   str(out), '--reference', str(night['files'][0]),
                   '--differential', '--epoch-window', '0', '--method',
                   'aperture', '--aperture-radius', '5'])
    assert status in (0, None)
    printed = capsys.readouterr().out
    assert f'skipped {night["blank"]}' in printed
    assert '5 frames registered' in printed
    report = json.loads((out / 'report.json').read_text())
    assert len(report['registration']) == 5
    assert report['calibration']['comparison']
    lc = QTable.read(out / 'var.ecsv')
    assert len(lc) == 5
    assert {'frame', 'x', 'y', 'zeropoint', 'zeropoint_err', 'n_comparison',
            'reg_residual'} <= set(lc.colnames)
    assert lc.meta['x_ref'] == pytest.approx(
        float(night['targets']['x'][night['targets']['name'] == 'var'][0]))


def test_cli_method_options_are_checked(night, tmp_path, capsys):
    targets = tmp_path / 'targets.ecsv'
    night['targets'].write(targets)
    status = main(['lightcurve', str(night['files'][0]), '--targets',
                   str(targets), '-o', str(tmp_path / 'out'), '--method',
                   'network', '--aperture-radius', '5', '--reference',
                   str(night['files'][0])])
    assert status not in (0, None)
    assert '--aperture-radius' in capsys.readouterr().err


def test_frames_whose_ensemble_is_too_small_are_flagged(night):
    # Two comparison stars, fewer than min_comparison on every frame: no
    # frame is calibrated, every row is flagged and has no magnitude.
    from satphotutils.lightcurves import NothingMeasuredError

    targets = night['targets'].copy()
    targets['comparison'] = [k < 2 for k in range(len(targets))]
    pipeline = LightCurvePipeline(_aperture(), epoch_window=0,
                                  reference=night['files'][0],
                                  differential=True)
    with pytest.raises(NothingMeasuredError, match='no_calibration') as info:
        pipeline(night['files'][:2], targets)
    run = info.value.run
    assert run.calibration['frames_calibrated'] == 0
    for name in run.lightcurves:
        lc = run.lightcurves[name]
        assert (lc['flags'] & SATPHOT_FLAGS.NO_CALIBRATION).all()
        assert np.isnan(lc['mag'].value).all()



def test_cli_compare_draws_a_second_method_beside(night, tmp_path, capsys):
    targets = tmp_path / 'targets.ecsv'
    # Ten unsaturated stars, all comparison stars: ten plots.
    chosen = night['targets'][10:20]
    chosen['comparison'] = True
    chosen.write(targets)
    out = tmp_path / 'out'
    status = main(['lightcurve', *map(str, night['files'][:3]),
                   '--targets', str(targets), '-o', str(out),
                   '--reference', str(night['files'][0]), '--differential',
                   '--epoch-window', '0', '--method', 'aperture',
                   '--aperture-radius', '5', '--compare', 'psf-wing',
                   '--plot'])
    assert status in (0, None)
    assert 'light curves by psf-wing' in capsys.readouterr().out
    other = QTable.read(out / 'psf-wing' / f'{chosen["name"][0]}.ecsv')
    assert other.meta['method'] == 'PSFWingPhotometry'
    assert len(other) == 3
    assert len(list(out.glob('*.png'))) == 10


def test_differential_on_frames_with_a_wcs(tmp_path):
    # Survey frames with a WCS and catalogue magnitudes: no reference
    # needed, and the fitted zero points are the headers' (Z and the
    # transparency t: m = Z - 2.5 log10(N t)).
    from satphotutils.simulation import simulate_field

    centre = SkyCoord(120.0, -50.0, unit='deg')
    detector = Detector(shape=(300, 300))
    scene = Scene.random(centre, radius=1.2 * u.deg, g_max=14.5, seed=3)
    sim = FrameSimulator(camera=Camera(detector=detector), pointing=centre,
                         pipeline=SurveyPipeline(damage_fraction=0.0))
    frames = simulate_field(tmp_path, scene, [sim], n_epochs=3,
                            exposures_per_epoch=2, seed=4)
    truth = QTable.read(tmp_path / 'truth.ecsv')
    first = truth[truth['file'] == frames['file'][0]]
    first = first[np.argsort(first['mag'])][:40]
    targets = Table({'ra': first['sky_coord'].ra.deg,
                     'dec': first['sky_coord'].dec.deg,
                     'mag': first['mag'].value})
    run = LightCurvePipeline(epoch_window=0, differential=True)(
        tmp_path, targets)
    assert not run.skipped
    assert 'catalogue' in run.calibration['scale']
    lc = run.lightcurves[next(iter(run.lightcurves))]
    expected = {}
    for path in tmp_path.glob('*.fits'):
        header = fits.getheader(path)
        expected[path.name] = header['ZP'] - 2.5 * np.log10(header['TRANSP'])
    assert_allclose(lc['zeropoint'], [expected[f] for f in lc['frame']],
                    atol=0.03)


def test_automatic_ensemble_of_saturated_stars_says_why(night, caplog):
    # Only saturated targets: none qualifies, and the log says which
    # criterion left them out.
    from satphotutils.lightcurves import NothingMeasuredError

    saturated = np.asarray(night['chosen']['saturated'])
    targets = night['targets'][saturated]
    pipeline = LightCurvePipeline(_aperture(), epoch_window=0,
                                  reference=night['files'][0],
                                  differential=True)
    with pytest.raises(NothingMeasuredError, match='no_calibration'):
        pipeline(night['files'][:2], targets)
    assert f'0 of {len(targets)} targets qualify' in caplog.text
    assert '0 never saturated' in caplog.text
