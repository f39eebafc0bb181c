"""Shared inputs of the bad-input inventory: a small frame with one star."""

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

CENTRE = SkyCoord(60.0, -30.0, unit='deg')
STAR = (100.3, 150.2)  # pixel position of the g = 7 target


@pytest.fixture(scope='package')
def frame():
    """A simulated 300x200 CCDData frame with a saturated g = 7 star."""
    from satphotutils.simulation import Camera, Detector, FrameSimulator, Scene

    detector = Detector(shape=(300, 200))
    scene = Scene.random(CENTRE, radius=1.0 * u.deg, g_max=13.0, seed=2)
    coords = detector.wcs(CENTRE).pixel_to_world([STAR[0]], [STAR[1]])
    scene.add(coords, [7.0], [1.0], name=['t'])
    ccd, _ = FrameSimulator(camera=Camera(detector=detector),
                            pointing=CENTRE)(scene, mjd=59500.0, seed=4)
    ccd.data = np.nan_to_num(ccd.data)  # edges: clean pixels for the cases
    ccd.mask = None
    return ccd


@pytest.fixture(scope='package')
def phot():
    from satphotutils.photometry import SaturatedStarPhotometry

    return SaturatedStarPhotometry()
