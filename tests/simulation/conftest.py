import pytest

from satphotutils.simulation import Camera, Detector, SurveyPipeline


@pytest.fixture(name='camera')
def fixture_camera():
    return Camera()


@pytest.fixture(name='clean_pipeline')
def fixture_clean_pipeline():
    """A pipeline whose correction never fails and never damages."""
    return SurveyPipeline(misplace_rate=0.0, lost_rate=0.0,
                          damage_fraction=0.0)


@pytest.fixture(name='small_camera')
def fixture_small_camera():
    return Camera(detector=Detector(shape=(256, 256)))
