"""
Raw (uncorrected) cameras: sideways blooming, anti-blooming, the serial
register's full well and the saturation correction switched off.

Every figure is checked against closed-form charge bookkeeping.
"""

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from numpy.testing import assert_allclose

from satphotutils.simulation import (
    AXES,
    OPT_IN,
    Camera,
    CameraFamily,
    Detector,
    ExposureConditions,
    FrameSimulator,
    Scene,
    SurveyPipeline,
    bleed_columns,
    expose_and_read,
    read_out,
)


def _spike(shape, row, col, charge, *, background=10.0):
    image = np.full(shape, background)
    image[row, col] = charge
    return image


def test_sideways_blooming_conserves_charge_and_reaches_neighbours():
    image = _spike((200, 7), 100, 3, 5000.0)
    total = image.sum()
    lost = bleed_columns(image, 100.0, bloom_fraction=0.4)
    assert lost == 0
    assert_allclose(image.sum(), total, rtol=1e-12)
    # Each neighbour got 0.2 of the 4900 excess (less the 90 it had room
    # for in its own pixel, which then bleeds along that column).
    excess = 0.2 * (5000.0 - 100.0)
    for col in (2, 4):
        assert_allclose(image[:, col].sum(), 200 * 10.0 + excess)
        assert (image[:, col] >= 100.0).sum() > 5  # a trail of its own
    assert_allclose(image[:, 3].sum(), 199 * 10.0 + 5000.0 - 2 * excess)
    assert np.all(image[:, [0, 1, 5, 6]] == 10.0)


def test_sideways_blooming_off_the_first_column_is_lost():
    image = _spike((200, 5), 100, 0, 5000.0)
    total = image.sum()
    lost = bleed_columns(image, 100.0, bloom_fraction=0.5)
    # Half the spilled quarter goes off the side.
    assert_allclose(lost, 0.25 * (5000.0 - 100.0))
    assert_allclose(image.sum() + lost, total, rtol=1e-12)


def test_without_bloom_fraction_the_neighbours_are_untouched():
    image = _spike((200, 5), 100, 2, 5000.0)
    bleed_columns(image, 100.0)
    assert np.all(image[:, [0, 1, 3, 4]] == 10.0)


def test_antiblooming_drains_the_charge_above_its_level():
    image = _spike((50, 3), 25, 1, 5000.0)
    image[24, 1] = 95.0
    lost = bleed_columns(image, 100.0, antiblooming=90.0,
                         bloom_fraction=0.5)
    assert_allclose(lost, (5000.0 - 90.0) + (95.0 - 90.0))
    assert image.max() == 90.0
    # Nothing bled: only the two drained pixels changed.
    assert (image != 10.0).sum() == 2


def test_trail_longer_than_the_column_loses_what_crosses_the_ends():
    column = np.zeros((300, 1))
    column[150] = 1000.0 * 300 + 12345.0
    lost = bleed_columns(column, 1000.0)
    assert_allclose(lost, 12345.0)
    assert np.all(column == 1000.0)


def test_register_full_well_clips_before_the_adc(rng):
    detector = Detector(shape=(20, 20), gain=2.0, read_noise=0.0,
                        bias=500.0, full_well=100000.0, adc_max=65535,
                        register_full_well=60000.0)
    adu = read_out(np.full((20, 20), 90000.0, dtype=np.float32), detector,
                   rng)
    # 60000 e- / 2 e-/ADU + 500 bias: the register, not the ADC (65535)
    # nor the full well (50500 ADU above... 100000 e-).
    assert np.all(adu == 30500)
    assert detector.plateau_adu == 30500.0


def test_the_three_ceilings_are_distinct_plateaus():
    base = {'shape': (20, 20), 'gain': 2.0, 'bias': 500.0,
            'full_well': 100000.0, 'adc_max': 40000}
    assert Detector(**base).plateau_adu == 40000.0  # the ADC first
    assert Detector(**(base | {'adc_max': 65535})).plateau_adu == 50500.0
    assert Detector(**(base | {'adc_max': 65535,
                               'antiblooming': 80000.0})).plateau_adu \
        == 40500.0


@pytest.mark.parametrize(('kwargs', 'match'), [
    ({'bloom_fraction': 1.5}, 'bloom_fraction'),
    ({'antiblooming': 2e5}, 'antiblooming'),
    ({'register_full_well': 0.0}, 'register_full_well'),
])
def test_invalid_raw_detector(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Detector(**kwargs)


def test_fused_exposure_blooms_sideways_and_conserves_charge(rng):
    detector = Detector(shape=(400, 31), read_noise=0.0, full_well=80000.0,
                        bloom_fraction=0.3)
    lam = np.full((1, 400, 31), 200.0)
    lam[0, 200, 15] = 80000.0 * 60
    raw, lost, _ = expose_and_read(lam, detector, rng)
    assert lost[0] == 0
    electrons = (raw[0].astype(float) - detector.bias) * detector.gain
    # Every electron is in the frame (to the ADU rounding and Poisson).
    total = lam.sum()
    assert abs(electrons.sum() - total) < 5 * np.sqrt(total) + 400 * 31
    full = electrons >= 0.99 * 80000.0
    assert full[:, 14].sum() > 5
    assert full[:, 16].sum() > 5
    assert full[:, 15].sum() > full[:, 14].sum()


@pytest.fixture
def raw_simulator():
    # No vignetting: flat-fielding a trail that runs across a varying
    # flat divides charge that arrived at the star by the flat of the
    # pixels it bled into.
    camera = Camera(detector=Detector(shape=(512, 128), full_well=80000.0,
                                      read_noise=5.0, corner_throughput=1.0))
    centre = SkyCoord(150.0, -40.0, unit='deg')
    pipeline = SurveyPipeline(correction=False, damage_fraction=1.0)
    return FrameSimulator(camera=camera, pointing=centre,
                          pipeline=pipeline), centre


def test_without_correction_the_trail_stays_and_holds_the_flux(
        raw_simulator):
    sim, centre = raw_simulator
    scene = Scene(centre, [6.5], [1.0])
    cond = ExposureConditions(mjd=59000.0, zeropoint=25.5, sky=200.0,
                              fwhm=1.8, dither=(0.0, 0.0), damaged=True,
                              fwhm_gradient=0.0)
    frame, truth = sim(scene, conditions=cond, seed=3)
    assert frame.meta['SATCORR'] is False
    assert truth['outcome'][0] == 'none'
    data = frame.data
    x = round(truth['x'][0])
    saturated = data[:, x] >= frame.meta['SATURATE'] * 0.99
    assert saturated.sum() > 100  # a trail far longer than a stamp
    # Flux conserved: the sum over the trail's columns, less the sky.
    box = data[:, x - 12:x + 13]
    flux = np.nansum(box - cond.sky, dtype=float)
    assert_allclose(flux, truth['true_counts'][0].value, rtol=0.005)
    # No corrected pixels, so no overflow damage though damaged=True.
    assert not np.any(data == 1.0)


def test_with_correction_the_trail_is_replaced(raw_simulator):
    sim, centre = raw_simulator
    sim.pipeline = SurveyPipeline(misplace_rate=0.0, lost_rate=0.0)
    scene = Scene(centre, [6.5], [1.0])
    frame, truth = sim(scene, mjd=59000.0, seed=3)
    x, y = round(truth['x'][0]), round(truth['y'][0])
    assert frame.meta['SATCORR'] is True
    # The flux is back as a Gaussian at the star; no trail beyond it.
    far = np.abs(np.arange(frame.shape[0]) - y) > 15
    assert not np.any(frame.data[far, x] >= frame.meta['SATURATE'] * 0.99)


def test_raw_cameras_are_opt_in():
    assert 'raw' not in AXES['correction']
    assert 'raw' in OPT_IN['correction']
    rng = np.random.default_rng(4)
    default = CameraFamily()
    assert all(default(rng).pipeline.correction for _ in range(30))
    raw = CameraFamily(only={'correction': 'raw'})
    draws = [raw(rng) for _ in range(10)]
    assert all(not d.pipeline.correction for d in draws)
    assert all(d.labels['correction'] == 'raw' for d in draws)
    assert all(d.conditions.damage_fraction == 0 for d in draws)
    mixed = CameraFamily(only={'correction': AXES['correction'] + ('raw',)})
    assert {mixed(rng).labels['correction'] for _ in range(60)} == {
        'asas', 'asas_misset', 'raw'}
    with pytest.raises(ValueError, match='raw'):
        CameraFamily(only={'correction': 'rawest'})


def test_default_family_draws_are_unchanged_by_the_opt_in_family():
    # The first default draws of seed 0, recorded before 'raw' existed.
    rng = np.random.default_rng(0)
    draws = [CameraFamily()(rng) for _ in range(3)]
    assert [d.code for d in draws] == ['c043b27b61342', 'cb8b375b99433',
                                       'c9490a9ca9f88']
    assert [d.labels['correction'] for d in draws] == [
        'asas_misset', 'asas_misset', 'asas']
    assert_allclose([d.conditions.zeropoint for d in draws],
                    [26.839, 22.9448, 24.7987], atol=1e-4)
