import numpy as np
import pytest


@pytest.fixture(name='rng')
def fixture_rng():
    return np.random.default_rng(12345)
