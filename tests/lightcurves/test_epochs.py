"""Epochs: assign_epochs, and combine_exposures against a plain per-epoch
reference computation."""

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.stats import mad_std
from astropy.table import Table
from astropy.time import Time
from numpy.testing import assert_allclose

from satphotutils.lightcurves import (
    REJECT_FLAGS,
    LightCurvePipeline,
    assign_epochs,
    combine_epochs,
    combine_exposures,
)
from satphotutils.network import lightcurve_dispersion
from satphotutils.simulation import (
    Camera,
    Detector,
    FrameSimulator,
    Scene,
    SurveyPipeline,
    simulate_field,
)
from satphotutils.utils.flags import SATPHOT_FLAGS
from satphotutils.utils.stats import dispersion


def _reference(values, errors):
    """The paper's rule for one epoch, written out plainly."""
    n = len(values)
    if n == 1:
        return values[0], errors[0]
    if n == 2:
        return values.mean(), max(0.5 * np.hypot(*errors),
                                  0.5 * abs(values[0] - values[1]))
    return np.median(values), 1.2533 * max(
        np.sqrt(np.mean(errors**2) / n), mad_std(values) / np.sqrt(n))


@pytest.fixture
def exposures():
    rng = np.random.default_rng(4)
    n = 4000
    mag = rng.normal(8.0, 0.05, n)
    mag[rng.random(n) < 0.03] = np.nan
    return Table({
        'target': rng.integers(0, 40, n),
        # Nights a day apart, exposures within 0.03 d.
        'time': Time(rng.integers(0, 60, n) + rng.uniform(0, 0.03, n),
                     format='mjd'),
        'mag': mag, 'mag_err': rng.uniform(0.005, 0.03, n),
        'flux': 10 ** (-0.4 * (mag - 20)), 'flux_err': rng.uniform(1, 9, n),
        'flags': np.where(rng.random(n) < 0.1, 65536, 0)
        | np.where(rng.random(n) < 0.1, 4, 0),
        'camera': rng.choice(['ba', 'bb'], n),
        'filter': np.full(n, 'g')})


def test_all_targets_at_once_equal_the_per_epoch_rule(exposures):
    epochs = combine_exposures(exposures, window=0.1)
    day = np.floor(exposures['time'].mjd).astype(int)
    checked = 0
    for row in epochs:
        members = np.flatnonzero(
            (exposures['target'] == row['target'])
            & (day == int(np.floor(row['time'].mjd)))
            & (exposures['camera'] == row['camera']))
        mag = np.asarray(exposures['mag'])[members]
        flags = np.asarray(exposures['flags'])[members]
        used = np.isfinite(mag) & ((flags & REJECT_FLAGS) == 0)
        assert row['n_exposures'] == used.sum()
        assert row['n_rejected'] == len(members) - used.sum()
        assert row['flags'] == np.bitwise_or.reduce(
            flags[used] if used.any() else flags)
        assert_allclose(row['time'].mjd,
                        exposures['time'].mjd[members].mean())
        if used.any():
            for name in ('mag', 'flux'):
                value, error = _reference(
                    np.asarray(exposures[name])[members][used],
                    np.asarray(exposures[f'{name}_err'])[members][used])
                assert_allclose(row[name].value if name == 'mag'
                                else row[name], value, rtol=1e-12)
                assert_allclose(row[f'{name}_err'].value if name == 'mag'
                                else row[f'{name}_err'], error, rtol=1e-12)
            checked += 1
        else:
            for name in ('mag', 'mag_err', 'flux', 'flux_err'):
                assert np.isnan(row[name])
    assert checked > 2000


def test_one_target_is_the_same_through_combine_epochs(exposures):
    one = exposures[exposures['target'] == 3]
    many = combine_exposures(exposures)
    lc = combine_epochs(one)
    mine = many[many['target'] == 3]
    assert_allclose(lc['mag'].value, mine['mag'].value)
    assert_allclose(lc['time'].mjd, mine['time'].mjd)


def test_combine_epochs_refuses_several_targets(exposures):
    with pytest.raises(ValueError, match='combine_exposures'):
        combine_epochs(exposures)


def test_time_must_be_astropy_time(exposures):
    exposures = Table(exposures)
    exposures.replace_column('time', exposures['time'].mjd)
    with pytest.raises(TypeError, match="Time\\(table\\['time'\\]"):
        combine_exposures(exposures)


def test_epochs_without_usable_exposures_are_nan():
    # Damaged cores: the network's values are ~100 mag off (the values
    # below are those of a run on damaged frames); an epoch with nothing
    # else is NaN, not their median, and keeps their flags.
    damaged = SATPHOT_FLAGS.DAMAGED_CORE | SATPHOT_FLAGS.OUTSIDE_TRAINING_RANGE
    exposures = Table({
        'time': Time([1.0, 1.01, 1.02, 2.0, 2.01, 2.02], format='mjd'),
        'mag': [96.4, 138.8, 118.2, 8.0, 8.1, 131.0],
        'mag_err': [69.0, 105.2, 92.9, 0.01, 0.01, 70.0],
        'flux': [4e-29, 4e-46, 8e-38, 6e5, 5.5e5, 1e-40],
        'flux_err': [1e-28, 1e-45, 1e-37, 6e3, 5e3, 1e-40],
        'flags': [damaged, damaged, damaged | SATPHOT_FLAGS.NEAR_EDGE,
                  0, SATPHOT_FLAGS.HYBRID_CLASSICAL, damaged]})
    lc = combine_epochs(exposures)
    for name in ('mag', 'mag_err', 'flux', 'flux_err'):
        assert np.isnan(np.asarray(getattr(lc[name], 'value', lc[name]))[0])
    assert lc['flags'][0] == damaged | SATPHOT_FLAGS.NEAR_EDGE
    assert (lc['n_exposures'][0], lc['n_rejected'][0]) == (0, 3)
    # The other epoch: the two clean exposures only.
    assert_allclose(lc['mag'][1].value, 8.05)
    assert lc['flags'][1] == SATPHOT_FLAGS.HYBRID_CLASSICAL
    assert (lc['n_exposures'][1], lc['n_rejected'][1]) == (2, 1)


def test_damaged_epochs_of_a_pipeline_run_are_nan(tmp_path):
    # Every frame damaged: the saturated stars' cores are exactly 1.
    centre = SkyCoord(250.0, -45.0, unit='deg')
    detector = Detector(shape=(200, 200))
    coords = detector.wcs(centre).pixel_to_world([60.0], [100.0])
    scene = Scene(coords, [6.5], [1.0], name=['bright'])
    sim = FrameSimulator(camera=Camera(detector=detector), pointing=centre,
                         pipeline=SurveyPipeline(damage_fraction=1.0))
    simulate_field(tmp_path / 'frames', scene, [sim], n_epochs=2,
                   exposures_per_epoch=3, cadence=0.7, seed=2)
    targets = Table({'name': ['bright'], 'ra': coords.ra.deg,
                     'dec': coords.dec.deg})
    run = LightCurvePipeline(epoch_window=0.01)(
        sorted((tmp_path / 'frames').glob('*.fits')), targets)
    lc = run.lightcurves['bright']
    gone = lc['n_exposures'] == 0
    assert gone.any()
    assert np.isnan(lc['mag'][gone].value).all()
    assert np.isnan(lc['mag_err'][gone].value).all()
    assert np.isnan(np.asarray(lc['flux'][gone])).all()
    assert np.all(lc['flags'][gone] & SATPHOT_FLAGS.DAMAGED_CORE)
    # Whatever was measured is a magnitude, not a damaged core's 100+.
    assert np.nanmax(lc['mag'].value, initial=0.0) < 20


def test_assign_epochs_by_group_and_unknown_times():
    times = np.array([5.0, 1.0, 1.01, 5.02, np.nan, 1.005, np.nan, 1.0])
    groups = np.array(['a', 'a', 'a', 'a', 'a', 'b', 'b', 'b'])
    # One window over all: unknown times are epochs of their own.
    assert assign_epochs(times, window=0.1).tolist() == \
        [1, 0, 0, 1, 2, 0, 3, 0]
    assert assign_epochs(times, window=0.1, groups=groups).tolist() == \
        [1, 0, 0, 1, 2, 3, 4, 3]
    assert assign_epochs(times, window=0.003).tolist() == \
        [3, 0, 2, 4, 5, 1, 6, 0]
    with pytest.raises(ValueError, match='one value per time'):
        assign_epochs(times, groups=groups[:3])



def test_lightcurve_dispersion_groups_like_combine_exposures():
    # evaluate's per-star, per-epoch medians come from the same grouping:
    # against np.median per group, with NaNs, string ids and groups of
    # even and odd size; no finite value at all is no light curve, not
    # an error.
    rng = np.random.default_rng(8)
    n = 3000
    star = rng.choice(['b', 'a', 'c', 'd'], n)
    epoch = rng.integers(0, 25, n)
    mag = rng.normal(10, 0.2, n)
    mag[rng.random(n) < 0.05] = np.nan
    stars, disp, n_epochs = lightcurve_dispersion(star, epoch, mag)
    assert stars.tolist() == ['a', 'b', 'c', 'd']
    for s, d, k in zip(stars, disp, n_epochs, strict=True):
        good = (star == s) & np.isfinite(mag)
        values = np.array([np.median(mag[good & (epoch == e)])
                           for e in np.unique(epoch[good])])
        assert k == len(values)
        assert d == dispersion(values - np.median(values))
    empty = lightcurve_dispersion([1, 1], [0, 1], [np.nan, np.nan])
    assert [len(a) for a in empty] == [0, 0, 0]
