# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Registering frames by their stars: synthetic star lists (issue #27)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from satphotutils.frames import (
    RegistrationError,
    SimilarityTransform,
    find_stars,
    register_stars,
)


def test_register_stars_with_missing_and_extra_stars_and_a_flip():
    # A meridian flip turns the field by 180 degrees; a third of the
    # stars are lost (off the frame, saturated) and as many unrelated
    # ones appear (a satellite, cosmic rays, the new part of the field).
    rng = np.random.default_rng(2)
    x_ref, y_ref = rng.uniform(0, 1000, (2, 60))
    flux = rng.lognormal(8, 1, 60)
    order = np.argsort(-flux)
    x_ref, y_ref, flux = x_ref[order], y_ref[order], flux[order]
    true = SimilarityTransform(rotation=180.4, x_shift=1130.0,
                               y_shift=970.0)
    kept = np.sort(rng.choice(60, 40, replace=False))
    x, y = true(x_ref[kept], y_ref[kept])
    x = np.r_[x + rng.normal(0, 0.05, 40), rng.uniform(0, 1000, 20)]
    y = np.r_[y + rng.normal(0, 0.05, 40), rng.uniform(0, 1000, 20)]
    # Brightest first, the order a little changed by the noise.
    seen = np.r_[flux[kept], rng.lognormal(8, 1, 20)] * rng.lognormal(
        0, 0.1, 60)
    order = np.argsort(-seen)
    fit = register_stars(x[order], y[order], x_ref, y_ref)
    assert fit.n_matched == 40
    assert fit.rotation % 360 == pytest.approx(180.4, abs=0.01)
    assert_allclose(fit(x_ref, y_ref), true(x_ref, y_ref), atol=0.05)
    assert_allclose(fit.inverse(*fit(x_ref, y_ref)), (x_ref, y_ref),
                    atol=1e-9)


def test_register_stars_refuses_an_unrelated_field():
    rng = np.random.default_rng(3)
    x_ref, y_ref = rng.uniform(0, 500, (2, 40))
    x, y = rng.uniform(0, 500, (2, 40))
    with pytest.raises(RegistrationError, match='no star pattern'):
        register_stars(x, y, x_ref, y_ref)
    with pytest.raises(RegistrationError, match='fewer than'):
        register_stars(x[:3], y[:3], x_ref, y_ref)


def test_find_stars_leaves_out_saturated_peaks():
    # A clipped core moves the centroid along its bleed column; it must
    # not vote in the registration.
    yy, xx = np.mgrid[:120, :120]

    def star(x, y, peak):
        return peak * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 4.5)

    image = 100.0 + star(30.2, 40.7, 3000.0) + star(80.6, 70.1, 9000.0)
    image = np.minimum(image, 4095.0)
    image[60:80, 80] = 4095.0  # its trail
    x, y, _ = find_stars(image, saturation=4095.0)
    assert_allclose([x[0], y[0]], [30.2, 40.7], atol=0.05)
    assert len(x) == 1
    # Without the level the plateau and its trail are peaks too.
    x, y, _ = find_stars(image)
    assert (np.abs(x - 80.0) < 1).sum() > 1
