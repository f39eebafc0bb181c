# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""SaturatedStarPhotometry on corrected and uncorrected frames (#23)."""

import logging

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from numpy.testing import assert_array_equal

from satphotutils.photometry import (
    BleedTrailPhotometry,
    SaturatedStarPhotometry,
)
from satphotutils.simulation import (
    Camera,
    Detector,
    FrameSimulator,
    Scene,
    SurveyPipeline,
)


def _frame(correction, header):
    centre = SkyCoord(150, -40, unit='deg')
    rng = np.random.default_rng(1)
    g = np.r_[np.linspace(7.0, 11.5, 10), np.linspace(12.0, 14.0, 10)]
    scene = Scene(centre.directional_offset_by(
        rng.uniform(0, 360, 20) * u.deg, rng.uniform(1, 25, 20) * u.arcmin),
        g, np.ones(20))
    # The full well below the ADC maximum: a trail pixel reads its charge.
    camera = Camera(detector=Detector(shape=(400, 400), full_well=80000.0,
                                      corner_throughput=1.0))
    pipeline = SurveyPipeline(correction=correction, misplace_rate=0.0,
                              lost_rate=0.0)
    frame, truth = FrameSimulator(camera=camera, pipeline=pipeline,
                                  pointing=centre)(scene, mjd=59000.0,
                                                   seed=4)
    if not header:
        del frame.meta['SATCORR']
    return frame, truth, scene


@pytest.mark.parametrize('header', [True, False])
def test_saturated_targets_of_a_raw_frame_are_measured_by_their_trails(
        header):
    frame, truth, scene = _frame(False, header)
    table = SaturatedStarPhotometry(fwhm=2.0)(frame, skycoord=scene.coord)
    kind = table.meta['frame_kind']
    assert kind['corrected'] is False
    assert kind['source'].startswith('header' if header else 'measured')
    assert kind['model_frames'] == 'corrected'
    assert kind['saturated_targets'] == 'bleed-trail'
    saturated = np.asarray(table['n_saturated']) > 0
    assert saturated.sum() >= 8
    assert kind['n_bleed_trail'] == saturated.sum()
    assert_array_equal(table['method'],
                       np.where(saturated, 'bleed_trail', 'network'))
    # Those rows are BleedTrailPhotometry's, measured alone ...
    alone = BleedTrailPhotometry(fwhm=2.0)(frame, skycoord=scene.coord)
    assert_array_equal(table['log_counts'][saturated],
                       alone['log_counts'][saturated])
    assert np.all(np.isnan(table['ood_score'][saturated]))
    # ... and right, where the network trained on corrected frames is
    # off by most of a magnitude.
    error = (table['mag'] - truth['mag']).value
    assert np.max(np.abs(error[saturated])) < 0.06
    network = SaturatedStarPhotometry(fwhm=2.0, trails='network')(
        frame, skycoord=scene.coord)
    assert np.median(np.abs((network['mag'] - truth['mag']).value[
        saturated])) > 0.5
    assert_array_equal(network['log_counts'][~saturated],
                       table['log_counts'][~saturated])


@pytest.mark.parametrize('header', [True, False])
def test_a_corrected_frame_is_measured_by_the_network(header):
    frame, _, scene = _frame(True, header)
    table = SaturatedStarPhotometry(fwhm=2.0)(frame, skycoord=scene.coord)
    kind = table.meta['frame_kind']
    # The pixels may not tell (no restored core large enough to have a
    # shape); then too the network measures.
    if header:
        assert kind['corrected'] is True
    else:
        assert kind['corrected'] is not False
    assert kind['saturated_targets'] == 'network'
    assert kind['n_bleed_trail'] == 0
    assert set(table['method']) <= {'network', 'ap2'}
    forced = SaturatedStarPhotometry(fwhm=2.0, trails='network')(
        frame, skycoord=scene.coord)
    assert_array_equal(table['log_counts'], forced['log_counts'])
    # A corrected frame's trails are gone: the trail path is never used,
    # even when asked for.
    asked = SaturatedStarPhotometry(fwhm=2.0, trails='bleed-trail')(
        frame, skycoord=scene.coord)
    assert_array_equal(asked['log_counts'], table['log_counts'])


def test_the_network_on_a_raw_frame_is_never_silent(caplog):
    frame, _, scene = _frame(False, True)
    with caplog.at_level(logging.WARNING, 'satphotutils.photometry.core'):
        table = SaturatedStarPhotometry(fwhm=2.0, trails='network')(
            frame, skycoord=scene.coord)
    assert 'trained on corrected frames' in caplog.text
    assert table.meta['frame_kind']['warning'] == \
        'model trained on the other kind of frame'
    assert table.meta['config']['trails'] == 'network'


def test_trails_option_is_checked():
    with pytest.raises(ValueError, match='trails must be one of'):
        SaturatedStarPhotometry(trails='bleed')


def test_the_bundled_model_was_trained_on_corrected_frames():
    from satphotutils.network import SaturatedStarModel

    model = SaturatedStarModel.default()
    assert 'training_frames' not in model.metadata
    assert model.training_frames == 'corrected'


def test_photometry_command_routes_and_takes_trails(tmp_path):
    from astropy.table import QTable, Table

    from satphotutils.cli import main

    frame, _, scene = _frame(False, False)
    image = tmp_path / 'raw.fits'
    frame.write(image)
    targets = tmp_path / 'targets.ecsv'
    Table({'ra': scene.coord.ra.deg, 'dec': scene.coord.dec.deg}).write(
        targets)
    runs = {}
    for trails in (None, 'network'):
        out = tmp_path / f'{trails}.ecsv'
        args = ['photometry', str(image), '--targets', str(targets),
                '--fwhm', '2.0', '-o', str(out)]
        assert main(args + ([] if trails is None else
                            ['--trails', trails])) == 0
        runs[trails] = QTable.read(out)
    assert 'bleed_trail' in set(runs[None]['method'])
    assert set(runs['network']['method']) <= {'network', 'ap2'}
    assert runs['network'].meta['config']['trails'] == 'network'
    assert main(['photometry', str(image), '--targets', str(targets),
                 '--method', 'aperture', '--trails', 'network',
                 '-o', str(tmp_path / 'x.ecsv')]) != 0
