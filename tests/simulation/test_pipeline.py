import numpy as np
import pytest
from numpy.testing import assert_allclose

from satphotutils.simulation import (
    ExposureConditions,
    SurveyPipeline,
    draw_conditions,
    observe,
)


def _observe_star(g, camera, pipeline, rng, *, window=81, damaged=False,
                  fwhm=1.7, x=1000.4, y=1000.7, extra=None):
    cond = ExposureConditions(mjd=59000.0, zeropoint=25.5, fwhm=fwhm,
                              sky=250.0, damaged=damaged)
    xs, ys, mags = [x], [y], [g]
    if extra is not None:
        xs += list(extra[0])
        ys += list(extra[1])
        mags += list(extra[2])
    flux = cond.counts(np.array(mags))
    half = window // 2
    rows = int(0.25 * flux[0] / camera.detector.full_well_counts) + 30
    obs = observe(np.array(xs), np.array(ys), flux,
                  window=(int(y) - half, int(x) - half, window, window),
                  camera=camera, conditions=cond, pipeline=pipeline, rng=rng,
                  trail_rows=rows, trail_cols=15)
    return obs, cond, flux


def test_saturation_onset_near_g_11_5(camera, clean_pipeline, rng):
    fraction = {}
    for g in (11.0, 11.5, 12.0):
        n_sat = 0
        for _ in range(60):
            cond = draw_conditions(rng, mjd=59000.0, damage_fraction=0.0)
            x, y = 1000 + rng.random(2)
            obs = observe(np.array([x]), np.array([y]),
                          np.atleast_1d(cond.counts(g)),
                          window=(990, 990, 21, 21), camera=camera,
                          conditions=cond, pipeline=clean_pipeline, rng=rng)
            n_sat += obs.saturated[0]
        fraction[g] = n_sat / 60
    assert fraction[11.0] > 0.8
    assert 0.25 < fraction[11.5] < 0.75
    assert fraction[12.0] < 0.1


@pytest.mark.parametrize('g', [6.0, 8.0, 10.0])
def test_correction_recovers_the_flux_of_isolated_stars(g, camera,
                                                        clean_pipeline, rng):
    # The ASAS-style correction "frequently works surprisingly well".
    obs, cond, flux = _observe_star(g, camera, clean_pipeline, rng)
    assert obs.saturated[0]
    assert obs.outcome[0] == 'ok'
    total = np.nansum(obs.image - cond.sky)
    assert_allclose(total, flux[0], rtol=0.05)


def test_correction_adds_back_exactly_the_estimated_flux(camera, rng):
    from satphotutils.simulation import MoffatPSF, render_stars
    from satphotutils.simulation.exposure import bleed_columns, read_out

    detector = camera.detector
    pipeline = SurveyPipeline(misplace_rate=0, lost_rate=0)
    image = render_stars((600, 61), [30.3], [300.2], [5e7],
                         MoffatPSF(fwhm=1.7)) + 250.0
    electrons = image * detector.gain
    bleed_columns(electrons, detector.full_well)
    raw = read_out(electrons, detector, rng)
    flat = np.ones(raw.shape)
    counts, saturated = pipeline.calibrate(raw, flat, detector)
    # The same correction without putting anything back, for comparison.
    no_putback = counts.copy()
    SurveyPipeline(lost_rate=1.0).correct_saturation(
        no_putback, saturated, detector=detector, fwhm=1.7,
        catalog_x=np.array([30.3]), catalog_y=np.array([300.2]),
        catalog_mag=np.array([6.0]), rng=rng)
    regions = pipeline.correct_saturation(
        counts, saturated, detector=detector, fwhm=1.7,
        catalog_x=np.array([30.3]), catalog_y=np.array([300.2]),
        catalog_mag=np.array([6.0]), rng=rng)
    assert list(regions['outcome']) == ['ok']
    # Interpolation replaced every saturated pixel ...
    assert np.all(no_putback[saturated] < detector.saturation_counts)
    # ... and the difference is exactly the Gaussian with the estimate.
    assert_allclose((counts - no_putback).sum(), regions['flux'][0],
                    rtol=1e-9)
    # The estimate covers the saturated pixels; the unsaturated wings stay
    # in the image, and together they hold the star's flux.
    assert regions['flux'][0] < 5e7
    assert_allclose((counts - 250.0).sum(), 5e7, rtol=0.03)
    peak = np.unravel_index(np.argmax(counts - no_putback), counts.shape)
    assert peak == (300, 30)


def test_failure_modes_occur_at_the_configured_rates(camera, rng):
    pipeline = SurveyPipeline(misplace_rate=0.3, lost_rate=0.2,
                              damage_fraction=0.0)
    outcomes, received = [], []
    # A fainter catalogue star sits on the trail, 40 px down the column.
    for _ in range(150):
        obs, _, _ = _observe_star(6.0, camera, pipeline, rng, window=101,
                                  extra=([1000.6], [960.2], [13.0]))
        outcomes.append(obs.outcome[0])
        received.append(obs.received[1])
    outcomes = np.array(outcomes)
    n = len(outcomes)
    lost = np.mean(outcomes == 'lost')
    misplaced = np.mean(outcomes == 'misplaced')
    # Binomial 3-sigma bounds; misplacement is tried only when not lost.
    assert abs(lost - 0.2) < 3 * np.sqrt(0.2 * 0.8 / n)
    expected = 0.8 * 0.3
    assert abs(misplaced - expected) < 3 * np.sqrt(expected
                                                   * (1 - expected) / n)
    # The misplaced flux went to the interloper, and only then.
    assert np.array_equal(np.array(received), outcomes == 'misplaced')


def test_misplacement_needs_a_star_on_the_trail(camera, rng):
    pipeline = SurveyPipeline(misplace_rate=1.0, lost_rate=0.0)
    obs, _, _ = _observe_star(6.0, camera, pipeline, rng)
    assert obs.outcome[0] == 'ok'


def test_damage_fraction_of_exposures(rng):
    damaged = [draw_conditions(rng, mjd=0.0, damage_fraction=0.25).damaged
               for _ in range(2000)]
    assert abs(np.mean(damaged) - 0.25) < 3 * np.sqrt(0.25 * 0.75 / 2000)


def test_damaged_pixels_are_exactly_one_and_only_in_corrected_cores(
        camera, clean_pipeline, rng):
    obs, cond, _ = _observe_star(5.0, camera, clean_pipeline, rng,
                                 damaged=True, extra=([1020.2], [1010.3],
                                                      [7.5]))
    assert obs.bad.sum() > 4
    assert np.all(obs.image[obs.bad] == 1.0)
    assert np.count_nonzero(obs.image == 1.0) == obs.bad.sum()
    # Every damaged pixel is within a few pixels of a put-back position
    # (reference grid = window offset by the dither, here none).
    y0 = x0 = 1000 - 40
    yy, xx = np.nonzero(obs.bad)
    putback = np.column_stack([obs.regions['x'], obs.regions['y']])
    putback = putback[np.isfinite(putback).all(axis=1)]
    # Region positions are in the simulated detector window's pixels.
    offset = np.array([x0 - 3 - 15, y0 - 3 - int(
        0.25 * cond.counts(5.0) / camera.detector.full_well_counts) - 30])
    dist = np.hypot(xx[:, None] + x0 - (putback[None, :, 0] + offset[0]),
                    yy[:, None] + y0 - (putback[None, :, 1] + offset[1]))
    assert np.all(dist.min(axis=1) < 5)
    # The same star in an undamaged exposure has no pixel set to 1.
    obs, _, _ = _observe_star(5.0, camera, clean_pipeline, rng)
    assert not obs.bad.any()
    assert not np.any(obs.image == 1.0)


def test_resampling_keeps_stars_at_fixed_reference_positions(
        camera, clean_pipeline, rng):
    centroids = []
    for dither in [(0.0, 0.0), (5.3, -7.6), (-11.2, 3.45)]:
        cond = ExposureConditions(mjd=0.0, zeropoint=25.5, fwhm=1.8,
                                  sky=200.0, dither=dither)
        obs = observe(np.array([500.3]), np.array([480.6]),
                      np.array([cond.counts(13.0)]),
                      window=(470, 490, 21, 21), camera=camera,
                      conditions=cond, pipeline=clean_pipeline, rng=rng)
        img = obs.image - 200.0
        yy, xx = np.mgrid[470:491, 490:511]
        core = (np.hypot(xx - 500.3, yy - 480.6) < 4)
        w = img * core
        centroids.append(((w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()))
    centroids = np.array(centroids)
    assert_allclose(centroids[:, 0], 500.3, atol=0.1)
    assert_allclose(centroids[:, 1], 480.6, atol=0.1)


@pytest.mark.parametrize(('kwargs', 'match'), [
    ({'misplace_rate': 1.5}, 'misplace_rate must be in'),
    ({'lost_rate': -0.1}, 'lost_rate must be in'),
    ({'resample_order': 7}, 'resample_order'),
])
def test_invalid_pipeline(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SurveyPipeline(**kwargs)
