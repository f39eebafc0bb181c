# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The guard in the photometry: ood_score, the hybrid's fallback, the
frame-level check."""

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from satphotutils.network import SaturatedStarModel
from satphotutils.network.guard import fit_guard
from satphotutils.photometry import SaturatedStarPhotometry
from satphotutils.photometry.hybrid import frame_hybrid
from satphotutils.simulation import (
    Camera,
    Detector,
    FrameSimulator,
    Scene,
    StampSimulator,
)
from satphotutils.utils.flags import SATPHOT_FLAGS

# The previous bundled model (feature version 1, read as version 2).
V1_MODEL = Path(__file__).parents[1] / 'network' / 'data' / 'model_v1'


def test_hybrid_falls_back_to_the_aperture_where_out_of_distribution():
    rng = np.random.default_rng(3)
    n = 60
    truth = rng.uniform(3.0, 4.5, n)
    area = np.full(n, np.pi * 4)
    bkg = np.full(n, 100.0)
    # An aperture that holds 80% of the light: the offset is log10(1.25).
    sums = 0.8 * 10**truth + bkg * area
    net = truth + rng.normal(0, 0.002, n)
    ood = np.zeros(n, dtype=bool)
    ood[:5] = True
    net[:5] += 0.5  # the network is badly off where out of distribution
    use, values, _, offset = frame_hybrid(
        net, np.full(n, 0.01), sums, area, bkg, np.ones(n, bool),
        np.zeros(n), np.zeros(n), out_of_distribution=ood)
    assert use[:5].all()
    np.testing.assert_allclose(offset, np.log10(1.25), atol=0.003)
    np.testing.assert_allclose(values[:5], truth[:5], atol=0.003)


@pytest.fixture(scope='module')
def guarded():
    model = SaturatedStarModel.default()
    sim = StampSimulator(images_per_star=2)
    fit_guard(model, sim(600, seed=21), valid=sim(300, seed=22))
    return model


class _Sim(FrameSimulator):
    def __init__(self, *, fwhm=None, beta=None, **kwargs):
        super().__init__(**kwargs)
        self._change = {k: v for k, v in (('fwhm', fwhm), ('beta', beta))
                        if v is not None}

    def draw_conditions(self, mjd, rng):
        return dataclasses.replace(super().draw_conditions(mjd, rng),
                                   **self._change)


def _frame(**kwargs):
    centre = SkyCoord(150, -40, unit='deg')
    rng = np.random.default_rng(1)
    n = 100
    off = rng.uniform(-18, 18, (n, 2))
    coord = SkyCoord(150 + off[:, 0] / 60 / np.cos(np.deg2rad(40)),
                     -40 + off[:, 1] / 60, unit='deg')
    scene = Scene(coord, rng.uniform(7, 14, n), np.ones(n))
    camera = Camera(detector=Detector(shape=(300, 300)))
    frame, _ = _Sim(camera=camera, pointing=centre, **kwargs)(
        scene, mjd=59000.0, seed=0)
    return frame, scene


def test_frame_check_quiet_on_the_matching_camera(guarded, caplog):
    frame, scene = _frame()
    with caplog.at_level(logging.WARNING):
        table = SaturatedStarPhotometry(guarded)(frame,
                                                 skycoord=scene.coord)
    check = table.meta['frame_check']
    assert check['status'] == 'ok'
    assert check['n_stars'] >= 5
    assert not [r for r in caplog.records if 'disagree' in r.getMessage()]
    assert table.meta['ood_guard'].startswith('available')
    assert np.isfinite(table['ood_score']).all()
    flagged = (table['flags'] & SATPHOT_FLAGS.OUT_OF_DISTRIBUTION) != 0
    assert np.array_equal(flagged, table['ood_score'] > 1)


def test_frame_check_warns_on_a_mismatched_camera(caplog):
    # The previous bundled model knew one camera (FWHM ~1.7 px, beta
    # 2.5); on a softer one it is off, and the check says so. The
    # camera-agnostic default is not.
    frame, scene = _frame(fwhm=3.0, beta=4.0)
    with caplog.at_level(logging.WARNING):
        table = SaturatedStarPhotometry(V1_MODEL)(frame,
                                                  skycoord=scene.coord)
    check = table.meta['frame_check']
    assert check['status'] == 'mismatch'
    assert abs(check['offset']) > check['offset_tolerance']
    assert [r for r in caplog.records if 'disagree' in r.getMessage()]
    table = SaturatedStarPhotometry()(frame, skycoord=scene.coord)
    assert table.meta['frame_check']['status'] == 'ok'


def test_unguarded_model_says_so_in_the_table():
    centre = SkyCoord(150, -40, unit='deg')
    scene = Scene(centre.directional_offset_by([0, 90] * u.deg,
                                               [1, 3] * u.arcmin),
                  [7.0, 10.0], [1.0, 1.0])
    camera = Camera(detector=Detector(shape=(200, 200)))
    frame, _ = FrameSimulator(camera=camera, pointing=centre)(
        scene, mjd=59000.0, seed=2)
    model = SaturatedStarModel.default()
    model.guard = None
    # Two stars: too few to measure the FWHM on, so it is given.
    table = SaturatedStarPhotometry(model, fwhm=2.0)(frame,
                                                     skycoord=scene.coord)
    assert table.meta['ood_guard'].startswith('unavailable')
    assert np.isnan(table['ood_score']).all()
    assert not (table['flags'] & SATPHOT_FLAGS.OUT_OF_DISTRIBUTION).any()
    # Two stars: too few for the frame check, which says so.
    assert table.meta['frame_check']['status'] == 'too_few_stars'


def test_corrected_bright_stars_are_kept_from_the_aperture():
    # The survey correction replaced the bright stars' saturated cores,
    # so their pixels are below the level: their counts keep them from
    # the hybrid's aperture (a rule on the pixels alone gave five of them
    # the aperture, 0.8-1.2 dex off). Most unsaturated ones get it.
    frame, scene = _frame(fwhm=3.0, beta=4.0)
    centre = SkyCoord(150, -40, unit='deg')
    _, truth = _Sim(camera=Camera(detector=Detector(shape=(300, 300))),
                    pointing=centre, fwhm=3.0, beta=4.0)(
        scene, mjd=59000.0, seed=0)
    table = SaturatedStarPhotometry()(frame, skycoord=truth['sky_coord'])
    classical = np.asarray(table['method']) == 'ap2'
    bright = np.asarray(truth['g']) < 10
    assert np.asarray(truth['saturated'])[bright].all()
    assert bright.sum() >= 10
    assert not classical[bright].any()
    unsat = ~np.asarray(truth['saturated'])
    assert classical[unsat].mean() > 0.75
    d = np.asarray(table['log_counts']) - np.asarray(truth['log_counts'])
    assert np.median(np.abs(d[unsat & classical])) < 0.01


@pytest.mark.parametrize(('fwhm', 'beta', 'tolerance'), [
    (1.7, 2.5, 0.003), (3.0, 2.5, 0.006), (3.5, 4.0, 0.003),
    (3.0, 1.5, 0.03)])
def test_wing_fraction_recovers_what_the_aperture_holds(fwhm, beta,
                                                         tolerance):
    # Pixel-integrated Moffat stars with Poisson noise, off-centre, one
    # with a neighbour in its stamp; truth: their own sums.
    from satphotutils.photometry.check import wing_fraction
    from satphotutils.stamps.apertures import aperture_sums

    rng = np.random.default_rng(4)
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    yy, xx = np.mgrid[-10:11, -10:11].astype(float)
    sub = (np.arange(8) + 0.5) / 8 - 0.5
    n = 12
    dx, dy = rng.uniform(-0.5, 0.5, (2, n))

    def star(cx, cy):
        r2 = ((xx[..., None, None] - cx + sub[None, :])**2
              + (yy[..., None, None] - cy + sub[:, None])**2)
        return ((beta - 1) / (np.pi * alpha**2)
                * (1 + r2 / alpha**2) ** -beta).mean(axis=(-1, -2))

    flux = 10 ** rng.uniform(5.5, 6.5, n)
    clean = np.array([star(dx[k], dy[k]) * flux[k] for k in range(n)])
    stamps = clean + 500.0
    stamps[0] += 0.2 * flux[0] * star(7.0, -6.0)
    stamps = rng.poisson(stamps).astype(float)
    ring = (np.hypot(xx, yy) >= 7) & (np.hypot(xx, yy) <= 10) \
        & (np.abs(xx) > 2)
    bkg = np.median(stamps[:, ring], axis=1)
    sums = aperture_sums(stamps, 7.0, dx=dx, dy=dy)
    held_sum = sums.sum - bkg * sums.area
    report = wing_fraction(stamps, bkg, held_sum, dx, dy,
                           np.ones(n, bool), radius=7.0, annulus=(7.0, 10.0))
    assert report['status'] == 'fitted'
    truth = np.median(held_sum[1:] / flux[1:])
    assert abs(report['held'] - truth) < tolerance


def test_broad_wings_are_not_a_mismatch():
    # A camera-agnostic default on a camera of FWHM 3 px and beta 2.5:
    # 0.02 mag off the truth, but a plain 7-px aperture and annulus miss
    # 0.06 mag of the light, which the check took for a mismatch.
    frame, scene = _frame(fwhm=3.0, beta=2.5)
    table = SaturatedStarPhotometry()(frame, skycoord=scene.coord)
    check = table.meta['frame_check']
    assert check['status'] == 'ok'
    assert check['wings']['status'] == 'fitted'
    assert 2.0 < check['wings']['fwhm'] < 3.6
