import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table

from satphotutils.lightcurves import LightCurvePipeline
from satphotutils.simulation import (
    Camera,
    Detector,
    FrameSimulator,
    Scene,
    simulate_field,
)

CENTRE = SkyCoord(120.0, -20.0, unit='deg')


@pytest.fixture(scope='module', name='field')
def fixture_field(tmp_path_factory):
    directory = tmp_path_factory.mktemp('names_field')
    detector = Detector(shape=(200, 200))
    coords = detector.wcs(CENTRE).pixel_to_world([60.0, 140.0],
                                                 [80.0, 120.0])
    scene = Scene.random(CENTRE, radius=0.3 * u.deg, g_max=13.0, seed=4)
    scene.add(coords, [8.0, 10.0], [1.0, 0.9], name=['a', 'b'])
    sim = FrameSimulator(camera=Camera(detector=detector), pointing=CENTRE)
    simulate_field(directory, scene, [sim], n_epochs=1,
                   exposures_per_epoch=2, seed=3)
    return sorted(directory.glob('*.fits')), coords


def test_catalogue_targets_are_named_after_their_gaia_source_id(field,
                                                                tmp_path):
    # A Gaia catalogue has source_id but no name column: the light-curve
    # files carry the Gaia identifiers, not row numbers.
    frames, coords = field
    gaia = Table({'source_id': np.array([5853498713190525696,
                                         5853498713190525697]),
                  'ra': coords.ra.deg, 'dec': coords.dec.deg})
    run = LightCurvePipeline()(frames, gaia, tmp_path / 'gaia')
    expected = ['5853498713190525696', '5853498713190525697']
    assert sorted(run.lightcurves) == expected
    for name in expected:
        assert (tmp_path / 'gaia' / f'{name}.ecsv').is_file()
    everything = Table.read(tmp_path / 'gaia' / 'all.ecsv')
    assert sorted(set(everything['name'])) == expected


def test_targets_without_name_or_source_id_are_numbered(field):
    frames, coords = field
    targets = Table({'ra': coords.ra.deg, 'dec': coords.dec.deg})
    run = LightCurvePipeline()(frames, targets)
    assert sorted(run.lightcurves) == ['target00000', 'target00001']


def test_duplicate_source_ids_are_refused(field):
    frames, coords = field
    gaia = Table({'source_id': [7, 7], 'ra': coords.ra.deg,
                  'dec': coords.dec.deg})
    with pytest.raises(ValueError, match=r'unique.*source_id'):
        LightCurvePipeline()(frames, gaia)
