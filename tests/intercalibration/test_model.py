# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The model's optional terms, their selection, uncertainties and cost."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from satphotutils.intercalibration import DRWIntercalibrator
from satphotutils.intercalibration import likelihood as likelihood_module
from satphotutils.utils.flags import SATPHOT_FLAGS as F

from .conftest import OFFSETS, simulate_drw


def _offset(result, group):
    row = result.offsets[list(result.offsets['group']).index(group)]
    return row['offset'].value, row['offset_err'].value


@pytest.mark.parametrize('seed', [4, 5])
def test_amplitude_ratio_with_outliers(seed):
    """The issue's injection: V varies 1.3x g, offsets, 10% outliers."""
    lc = simulate_drw(np.random.default_rng(seed), ratio={'V': 1.3},
                      outliers=0.1)
    result = DRWIntercalibrator(robust=True, amplitude_ratio=True)(lc)
    drw = result.drw
    assert drw['reference_band'] == 'g'
    ratio, err = drw['amplitude_ratio']['V'], drw['amplitude_ratio_err']['V']
    assert abs(ratio - 1.3) < 0.05
    assert 0.002 < err < 0.05
    # The g cameras' offsets among themselves (the V-g offset also holds
    # the unknown mean of the signal times the ratio's excess).
    for group in ('bj/g', 'bm/g', 'bE/g'):
        diff = _offset(result, group)[0] - _offset(result, 'bi/g')[0]
        assert abs(diff - (OFFSETS[group] - OFFSETS['bi/g'])) < 0.006
    # The outliers are clipped, hardly anything else.
    order = np.argsort(lc['time'].jd, kind='stable')
    truth = np.asarray(lc['outlier'])[order]
    clipped = (result.lightcurve['flags'] & F.INTERCAL_CLIPPED) != 0
    assert clipped[truth].mean() > 0.95
    assert clipped[~truth].mean() < 0.01
    # V points are put on the g scale: the V variability shrinks by 1.3.
    out = result.lightcurve
    v = (out['filter'] == 'V') & ~clipped
    assert np.allclose(out['ratio'][v], ratio)
    assert np.allclose(out['mag_err'][v].value,
                       np.asarray(lc['mag_err'])[order][v] / ratio)


def test_offsets_at_the_signal_mean_are_fixed_to_the_noise():
    """
    The V-g offset at the process mean holds (ratio - 1) times the mean
    of the realised DRW over the light curve, which the data fix only to
    sigma sqrt(2 tau / span); at the signal's mean it does not.
    """
    process, signal = [], []
    for seed in (4, 5, 6, 8):
        lc = simulate_drw(np.random.default_rng(seed), ratio={'V': 1.3})
        results = {at: DRWIntercalibrator(amplitude_ratio=True,
                                          offsets_at=at)(lc)
                   for at in ('process_mean', 'signal_mean')}
        ref = results['signal_mean'].drw['reference']
        assert ref.endswith('/g')
        truth = OFFSETS['ba/V'] - OFFSETS[ref]
        # At the mean of the realised signal (g's amplitude) over the
        # points: the V group's level there is 1.3 times it, g's once.
        truth_at_signal = truth + 0.3 * float(np.mean(lc['signal']))
        value, err = _offset(results['signal_mean'], 'ba/V')
        signal.append(value - truth_at_signal)
        assert abs(value - truth_at_signal) < 3 * err
        value, err = _offset(results['process_mean'], 'ba/V')
        process.append(value - truth)
        assert abs(value - truth) < 3 * err
        # Offsets within a band and the light curve do not change.
        for group in ('bj/g', 'bm/g', 'bE/g'):
            assert abs(_offset(results['signal_mean'], group)[0]
                       - _offset(results['process_mean'], group)[0]) < 1e-12
        np.testing.assert_allclose(
            results['signal_mean'].lightcurve['mag'].value,
            results['process_mean'].lightcurve['mag'].value, atol=1e-9)
        assert results['signal_mean'].drw['offsets_at'] == 'signal_mean'
    assert np.max(np.abs(signal)) < 0.005
    assert np.max(np.abs(process)) > 0.01


def test_without_the_ratio_the_bands_share_one_amplitude():
    lc = simulate_drw(np.random.default_rng(4), ratio={'V': 1.3})
    result = DRWIntercalibrator()(lc)
    assert result.drw['amplitude_ratio'] == {'V': 1.0, 'g': 1.0}
    assert np.all(result.lightcurve['ratio'] == 1.0)


def test_error_scale_recovered():
    scale = {'bj/g': 2.0, 'bm/g': 0.8}
    lc = simulate_drw(np.random.default_rng(7), scale=scale)
    result = DRWIntercalibrator(error_scale=True, jitter=False)(lc)
    table = result.offsets
    for group, factor in scale.items():
        row = table[list(table['group']).index(group)]
        assert abs(row['error_scale'] - factor) < 4 * row['error_scale_err']
        assert abs(row['error_scale'] / factor - 1) < 0.1
    model = result.lightcurve['mag_err_model'].value
    stated = result.lightcurve['mag_err'].value
    bj = result.lightcurve['group'] == 'bj/g'
    assert np.allclose(model[bj] / stated[bj], table['error_scale'][
        list(table['group']).index('bj/g')])


def test_selection_by_bic():
    """The criterion keeps a term the data need and drops one they don't."""
    rng = np.random.default_rng(8)
    with_ratio = simulate_drw(rng, ratio={'V': 1.5})
    result = DRWIntercalibrator(amplitude_ratio=True, error_scale=True,
                                select=True)(with_ratio)
    chosen = [row for row in result.drw['selection'] if row['chosen']]
    assert len(chosen) == 1
    assert chosen[0]['amplitude_ratio'] is True
    # Stated errors are right: the error scale costs more than it gains.
    assert chosen[0]['error_scale'] is False
    assert result.drw['model'] == {k: chosen[0][k] for k in
                                   ('jitter', 'error_scale',
                                    'amplitude_ratio', 'trend')}
    assert abs(result.drw['amplitude_ratio']['V'] - 1.5) < 0.08
    plain = simulate_drw(np.random.default_rng(9))
    result = DRWIntercalibrator(amplitude_ratio=True, select=True)(plain)
    assert result.drw['model']['amplitude_ratio'] is False
    assert result.offsets.meta['drw']['selection'] == result.drw['selection']


def test_trend_term():
    """A slow trend beside a fast DRW is chosen and measured; without one,
    the criterion leaves it out. (A trend over a DRW whose timescale is
    not much shorter than the light curve is degenerate with it.)"""
    lc = simulate_drw(np.random.default_rng(10), trend=0.5, tau=10.0,
                      sigma=0.05)
    result = DRWIntercalibrator(trend=1, select=True)(lc)
    assert result.drw['model']['trend'] == 1
    # The slope per band in scaled time, (t - mid) / half the span.
    half_span = 0.5 * np.ptp(lc['time'].jd)
    for band in ('g', 'V'):
        slope = result.drw['trend'][band][0] / half_span * 1000
        assert abs(slope - 0.5) < 0.15
    flat = simulate_drw(np.random.default_rng(14), tau=10.0, sigma=0.05)
    result = DRWIntercalibrator(trend=1, select=True)(flat)
    assert result.drw['model']['trend'] == 0
    assert result.drw['trend'] == {}


def test_parameter_uncertainties_are_reported():
    result = DRWIntercalibrator()(simulate_drw(np.random.default_rng(11)))
    drw = result.drw
    assert 0 < drw['sigma_err'] < drw['sigma']
    assert 0 < drw['tau_err'] < drw['tau']
    meta = result.offsets.meta['drw']
    assert meta['bic'] == drw['bic']
    assert np.isfinite(drw['bic'])
    # A jitter at the fit's lower bound has no Laplace error (NaN); the
    # others are positive and smaller than a magnitude.
    jit = result.offsets['jitter'].value
    jit_err = result.offsets['jitter_err'].value
    free = jit > 2e-4
    assert free.any()
    assert np.all((jit_err[free] > 0) & (jit_err[free] < 1))


def test_blas_threads_are_bounded_inside_the_fit(monkeypatch):
    seen = []
    original = likelihood_module.RestrictedLikelihood.__call__

    def spy(self, p, **kwargs):
        seen.append(max((pool['num_threads'] for pool in threadpool_info()
                         if pool['user_api'] == 'blas'), default=1))
        return original(self, p, **kwargs)

    monkeypatch.setattr(likelihood_module.RestrictedLikelihood, '__call__',
                        spy)
    lc = simulate_drw(np.random.default_rng(13), n=300)
    # Whatever the caller allows (two threads here, as on the 2-core
    # machines where oversubscription made run times vary 6x).
    with threadpool_limits(limits=2):
        DRWIntercalibrator()(lc)
    assert seen
    assert max(seen) == 1


def test_binned_median_equals_numpy():
    from satphotutils.intercalibration.drw import _binned_median

    rng = np.random.default_rng(3)
    keys = rng.integers(0, 40, 999)
    keys[:40] = np.arange(40)  # every bin used, some with one point
    values = rng.normal(size=999)
    expected = [np.median(values[keys == k]) for k in range(40)]
    np.testing.assert_array_equal(_binned_median(keys, values, 40),
                                  expected)


def test_the_default_offsets_are_at_the_signal_mean():
    """
    By default the V-g offset is the colour at the light curve's mean
    brightness, which the data fix to the noise level (seed 6: 0.027 mag
    off at the process mean).
    """
    lc = simulate_drw(np.random.default_rng(6), ratio={'V': 1.3})
    result = DRWIntercalibrator(amplitude_ratio=True)(lc)
    assert result.drw['offsets_at'] == 'signal_mean'
    ref = result.drw['reference']
    truth = OFFSETS['ba/V'] - OFFSETS[ref] \
        + 0.3 * float(np.mean(lc['signal']))
    value, err = _offset(result, 'ba/V')
    assert abs(value - truth) < 0.005
    assert err < 0.01
    assert 'ratio_at_bound' not in result.drw
