# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The fit's speed-ups change neither real fits nor their uncertainties."""

from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from satphotutils.intercalibration import DRWIntercalibrator, read_lightcurve
from satphotutils.intercalibration import drw as drw_module
from satphotutils.intercalibration import likelihood as likelihood_module

from .conftest import OFFSETS, simulate_drw

SHARED = Path(__file__).parents[1] / 'data' / 'asassn_lc'

# The robust fit of the real 22-group Sky Patrol v2 file as the code
# before the O(N)-design and large-N changes (commit 097db21) gave it:
# offsets (mag) per group, and the restricted log likelihood.
REFERENCE_22 = {
    'bA/g': -0.01758, 'bB/g': -0.00513, 'bC/g': -0.03002, 'bE/g': -0.03137,
    'bF/g': -0.01839, 'bG/g': -0.01092, 'ba/V': -0.58850, 'bb/V': -0.58446,
    'bc/V': -0.57893, 'be/V': -0.58591, 'bf/V': -0.58234, 'bi/g': -0.02812,
    'bj/g': -0.02682, 'bk/g': 0.0, 'bl/g': -0.03000, 'bm/g': -0.03154,
    'bn/g': -0.02006, 'bo/g': 0.00018, 'bp/g': -0.01749, 'bq/g': -0.01082,
    'br/g': -0.01466, 'bs/g': -0.00399}
REFERENCE_22_LOG_LIKELIHOOD = 8477.9314


def test_real_22_group_fit_is_pinned():
    result = DRWIntercalibrator(robust=True)(read_lightcurve(
        SHARED / 'sp2web_377958261591.csv'))
    fitted = dict(zip(result.offsets['group'],
                      result.offsets['offset'].value, strict=True))
    assert set(fitted) == set(REFERENCE_22)
    for group, value in REFERENCE_22.items():
        assert abs(fitted[group] - value) < 1e-3, group
    assert abs(result.log_likelihood - REFERENCE_22_LOG_LIKELIHOOD) < 0.05
    assert result.flagged_groups == {}


def _count_full_evaluations(monkeypatch, n):
    """Count the restricted likelihood's evaluations on all n points."""
    counts = {'full': 0, 'other': 0}
    original = likelihood_module.RestrictedLikelihood.__call__

    def spy(self, p, **kwargs):
        counts['full' if len(self.y) == n else 'other'] += 1
        return original(self, p, **kwargs)

    monkeypatch.setattr(likelihood_module.RestrictedLikelihood, '__call__',
                        spy)
    return counts


@pytest.mark.parametrize('jitter', [0.0, 0.01])
def test_large_fit_explores_on_a_subsample(monkeypatch, jitter):
    """
    Beyond 2 * 10^4 points the starts are explored on a subsample and
    only the last climb and the uncertainties use all points: a third of
    the evaluations on all points, the same fit.
    """
    n = 30_000
    lc = simulate_drw(np.random.default_rng(21), n=n, years=12)
    rng = np.random.default_rng(22)
    lc['mag'] = lc['mag'] + rng.normal(0, jitter, n)
    counts = _count_full_evaluations(monkeypatch, n)
    result = DRWIntercalibrator()(lc)
    assert counts['other'] > 0
    assert counts['full'] <= 25
    # The same fit as exploring on all points (the code before, here
    # with the subsample switched off), and the truth.
    monkeypatch.setattr(drw_module, '_EXPLORE_POINTS', 10**6)
    everything = DRWIntercalibrator()(lc)
    assert counts['full'] >= 40
    assert result.log_likelihood > everything.log_likelihood - 0.5
    assert_allclose(result.offsets['offset'].value,
                    everything.offsets['offset'].value, atol=5e-4)
    ref = result.drw['reference']
    for row in result.offsets:
        if row['group'] != ref:
            truth = OFFSETS[row['group']] - OFFSETS[ref]
            assert abs(row['offset'].value - truth) \
                < 5 * row['offset_err'].value
    for drw in (result.drw, everything.drw):
        assert 0 < drw['sigma_err'] < drw['sigma']
        assert 0 < drw['tau_err'] < drw['tau']
