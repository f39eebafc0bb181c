# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Corrected or uncorrected frames: the SATCORR keyword and the pixels."""

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits

from satphotutils.frames import HeaderKeys, bleed_trails, frame_info
from satphotutils.frames.info import InvalidHeaderError
from satphotutils.simulation import (
    Camera,
    Detector,
    FrameSimulator,
    Scene,
    SurveyPipeline,
)


def test_the_corrected_keyword_is_read():
    assert frame_info(fits.Header({'SATCORR': True})).corrected is True
    assert frame_info(fits.Header({'SATCORR': False})).corrected is False
    assert frame_info(fits.Header({'SATCORR': 'F'})).corrected is False
    assert frame_info(fits.Header()).corrected is None
    keys = HeaderKeys.parse(['corrected=TRAILFIX'])
    assert frame_info(fits.Header({'TRAILFIX': 'T', 'SATCORR': False}),
                      header_keys=keys).corrected is True
    off = HeaderKeys.parse(['corrected='])
    assert frame_info(fits.Header({'SATCORR': False}),
                      header_keys=off).corrected is None
    with pytest.raises(InvalidHeaderError, match='SATCORR'):
        frame_info(fits.Header({'SATCORR': 'maybe'}))


@pytest.mark.parametrize('correction', [True, False])
def test_bleed_trails_tells_the_frames_apart(correction):
    centre = SkyCoord(150, -40, unit='deg')
    rng = np.random.default_rng(2)
    scene = Scene(centre.directional_offset_by(
        rng.uniform(0, 360, 6) * u.deg, rng.uniform(2, 20, 6) * u.arcmin),
        np.linspace(5.0, 8.0, 6), np.ones(6))
    camera = Camera(detector=Detector(shape=(400, 400), full_well=80000.0))
    frame, _ = FrameSimulator(
        camera=camera, pipeline=SurveyPipeline(correction=correction),
        pointing=centre)(scene, mjd=59000.0, seed=3)
    trails, details = bleed_trails(frame.data, frame.meta['SATURATE'])
    if correction:
        # The restored cores are round, or too small to have a shape.
        assert trails is not True
    else:
        assert trails is True
        assert details['n_regions'] >= 3
    # Read along the rows, the same trails are across: no trails.
    if not correction:
        assert bleed_trails(frame.data.T, frame.meta['SATURATE'],
                            read_axis=1)[1]['kind'] == 'trails'
        assert bleed_trails(frame.data, frame.meta['SATURATE'],
                            read_axis=1)[1]['kind'] != 'trails'


@pytest.mark.parametrize('correction', [True, False])
def test_a_camera_that_clips_before_its_full_well_is_uncorrected(
        correction):
    # A 12-bit ADC at 4,000 e- on a 30,000 e- well: round, flat saturated
    # cores and no trail on the uncorrected frame; the corrected one's
    # cores are the survey's re-inserted, peaked profiles. Before the
    # plateau test both read as corrected.
    centre = SkyCoord(150, -40, unit='deg')
    rng = np.random.default_rng(4)
    scene = Scene(centre.directional_offset_by(
        rng.uniform(0, 360, 8) * u.deg, rng.uniform(2, 12, 8) * u.arcmin),
        np.linspace(10.0, 11.5, 8), np.ones(8))
    detector = Detector(shape=(400, 400), gain=1.0, read_noise=5.0,
                        bias=100.0, full_well=30000.0, adc_max=4095)
    frame, _ = FrameSimulator(
        camera=Camera('cmos', detector=detector), zeropoint=24.5,
        pipeline=SurveyPipeline(correction=correction, misplace_rate=0.0,
                                lost_rate=0.0, damage_fraction=0.0),
        pointing=centre)(scene, mjd=59000.0, seed=3)
    trails, details = bleed_trails(frame.data, frame.meta['SATURATE'])
    assert details['n_regions'] >= 4
    assert details['elongation'] < 2
    if correction:
        assert trails is False
        assert details['kind'] == 'corrected'
        assert details['flat_tops'] < 0.5
    else:
        assert trails is True
        assert details['kind'] == 'clipped'
        assert details['flat_tops'] > 0.9


def test_bleed_trails_cannot_tell_without_saturated_stars():
    image = np.random.default_rng(1).normal(100.0, 5.0, (50, 50))
    trails, details = bleed_trails(image, 6e4)
    assert trails is None
    assert details['n_regions'] == 0
    image[10:12, 10:12] = 6e4  # too small a region to have a shape
    assert bleed_trails(image, 6e4)[0] is None
    image[20:23, 20:23] = 6e4 * np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    assert bleed_trails(image, 6e4)[0] is False  # a round, peaked core
    image[20:23, 20:23] = 6e4  # a round plateau at 16-bit storage's top:
    assert bleed_trails(image, 6e4)[0] is False  # perhaps a restored core
    image[20:23, 20:23] = 4000.0  # a 12-bit ADC's: clipped, uncorrected
    trails, details = bleed_trails(image, 4000.0)
    assert trails is True
    assert details['kind'] == 'clipped'
