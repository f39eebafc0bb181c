# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The vectorised dispersion against numpy's own NaN-aware percentiles."""

import warnings

import numpy as np
import pytest
from astropy import units as u
from numpy.testing import assert_allclose

from satphotutils.utils.stats import dispersion


def _numpy(values, axis):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # all-NaN slices
        lo, hi = np.nanpercentile(values, [15, 85], axis=axis)
    return 0.5 * (hi - lo)


@pytest.mark.parametrize('shape', [(1000, 57), (3, 1), (4, 6, 9), (7,)])
def test_equals_numpy_nanpercentile_along_every_axis(shape):
    rng = np.random.default_rng(len(shape))
    values = rng.standard_t(3, size=shape)
    values[rng.random(shape) < 0.3] = np.nan
    if len(shape) > 1:
        values[0] = np.nan  # an all-NaN slice gives NaN
    for axis in [None, *range(len(shape))]:
        assert_allclose(dispersion(values, axis=axis),
                        _numpy(values, axis), rtol=0, atol=1e-12,
                        equal_nan=True)


def test_light_curve_layout_with_padding():
    # The layout the light-curve statistics use: curves of different
    # lengths padded with NaN; each row must equal its own curve's value.
    rng = np.random.default_rng(5)
    curves = [rng.normal(0, s, n) for s, n in ((0.01, 3), (0.1, 40),
                                               (1.0, 1), (0.5, 2))]
    grid = np.full((len(curves), 40), np.nan)
    for k, c in enumerate(curves):
        grid[k, :len(c)] = c
    assert_allclose(dispersion(grid, axis=1),
                    [_numpy(c, None) for c in curves], rtol=0, atol=1e-15)


def test_quantity_and_scalar():
    values = np.array([1.0, 2.0, 3.0, np.nan]) * u.mag
    result = dispersion(values)
    assert result.unit == u.mag
    assert_allclose(result.value, _numpy(values.value, None))
    assert np.isnan(dispersion([np.nan, np.nan]))
    assert np.ndim(dispersion([1.0, 5.0])) == 0
