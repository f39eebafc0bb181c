# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""cut_stamps against astropy's Cutout2D."""

import numpy as np
import pytest
from astropy.nddata import Cutout2D
from numpy.testing import assert_array_equal

from satphotutils.stamps.cutout import cut_stamps


@pytest.mark.parametrize('shape', [(21, 21), (31, 11), (1, 5)])
def test_stamps_equal_cutout2d(shape):
    rng = np.random.default_rng(1)
    image = rng.normal(100, 10, (60, 80)).astype(np.float32)
    n = 400
    # Interior, edge and corner targets, and some half off the image.
    x = rng.uniform(-12, 92, n)
    y = rng.uniform(-18, 78, n)
    stamps, inside = cut_stamps(image, x, y, shape, fill_value=np.nan)
    assert stamps.dtype == np.float32
    assert stamps.shape == inside.shape == (n, *shape)
    ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
    checked = 0
    for k in range(n):
        try:
            cut = Cutout2D(image, (ix[k], iy[k]), shape, mode='partial',
                           fill_value=np.nan)
        except ValueError:  # NoOverlapError: the stamp misses the image
            assert not inside[k].any()
            assert np.isnan(stamps[k]).all()
            continue
        assert_array_equal(stamps[k], cut.data)
        on = np.zeros(shape, dtype=bool)
        on[cut.slices_cutout] = True
        assert_array_equal(inside[k], on)
        checked += 1
    assert checked > n // 3
    assert (~inside.all(axis=(1, 2))).sum() > 100


def test_positions_round_to_the_nearest_pixel_and_nan_is_off_the_image():
    image = np.arange(100.0).reshape(10, 10)
    stamps, inside = cut_stamps(image, [4.49, 4.5, 5.5, np.nan],
                                [2.0, 2.0, 2.51, 5.0], 3, dtype=np.int16)
    assert stamps.dtype == np.int16
    # numpy's rint: half to even.
    assert stamps[:3, 1, 1].tolist() == [24, 24, 36]
    assert not inside[3].any()


def test_edge_cells_hold_the_nearest_edge_pixel_without_fill_value():
    image = np.arange(20.0).reshape(4, 5)
    stamps, inside = cut_stamps(image, [0], [0], (3, 3))
    assert stamps[0].tolist() == [[0, 0, 1], [0, 0, 1], [5, 5, 6]]
    assert inside[0].tolist() == [[False] * 3, [False, True, True],
                                  [False, True, True]]
    masks, _ = cut_stamps(image > 5, [1], [1], 3)
    assert masks.dtype == bool


def test_bad_arguments_are_refused():
    image = np.zeros((10, 10))
    with pytest.raises(ValueError, match='odd sizes'):
        cut_stamps(image, [1], [1], (4, 3))
    with pytest.raises(ValueError, match='2D image'):
        cut_stamps(image[0], [1], [1], 3)
    with pytest.raises(ValueError, match='same length'):
        cut_stamps(image, [1, 2], [1], 3)
