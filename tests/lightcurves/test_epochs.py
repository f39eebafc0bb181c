"""combine_exposures against a plain per-epoch reference computation."""

import numpy as np
import pytest
from astropy.stats import mad_std
from astropy.table import Table
from astropy.time import Time
from numpy.testing import assert_allclose

from satphotutils.lightcurves import (
    REJECT_FLAGS,
    combine_epochs,
    combine_exposures,
)


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
        good = np.isfinite(mag)
        clean = good & ((flags & REJECT_FLAGS) == 0)
        used = clean if clean.any() else good
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
