import numpy as np
import pytest

from satphotutils.simulation import StampSimulator


@pytest.fixture(scope='session')
def small_stamps():
    """A small labelled stamp table with epochs, shared by the tests."""
    sim = StampSimulator(images_per_star=6, exposures_per_epoch=2,
                         exposures_per_chunk=24)
    return sim(250, seed=21)


@pytest.fixture(scope='session')
def tiny_model(small_stamps, tmp_path_factory):
    from satphotutils.network import Trainer, TrainingConfig

    out = tmp_path_factory.mktemp('model')
    config = TrainingConfig(epochs=4, seeds=2, batch_size=128)
    return Trainer(config)(small_stamps, out), out


def camera_codes(table):
    return np.char.add(np.char.add(np.asarray(table['camera'], str), '/'),
                       np.asarray(table['filter'], str))
