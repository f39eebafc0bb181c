# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The DRW intercalibrator: speed, injection recovery, real files."""

import time
from pathlib import Path

import numpy as np
from astropy.table import QTable
from astropy.time import Time

from benchmarks import Metric, Result, benchmark, best_time

_SHARED = Path(__file__).parents[1] / 'tests' / 'data' / 'asassn_lc'


def _drw(rng, n, *, groups=5, sigma=0.2, tau=150.0, years=6):
    t = np.sort(rng.uniform(0, 365 * years, 3 * n))
    t = t[np.cos(2 * np.pi * t / 365) > -0.3][:n]
    y = np.empty(len(t))
    y[0] = rng.normal(0, sigma)
    for i in range(1, len(t)):
        a = np.exp(-(t[i] - t[i - 1]) / tau)
        y[i] = a * y[i - 1] + rng.normal(0, sigma * np.sqrt(1 - a**2))
    g = rng.integers(0, groups, len(t))
    offsets = rng.uniform(-0.3, 0.3, groups)
    offsets[0] = 0.0
    err = rng.uniform(0.01, 0.03, len(t))
    return t, 11 + y + offsets[g] + rng.normal(0, err), err, g, offsets


@benchmark('intercalibration', description=(
    'DRW intercalibration: one marginal likelihood evaluation with 10 '
    'groups at N = 10^5 (celerite2 RealTerm, offsets solved analytically), '
    'a full fit of a 5,000-point light curve with 5 groups, the same '
    'likelihood by a dense Cholesky at N = 4,000 for the ratio; injected '
    'offsets recovered on 10 simulated light curves; real Sky Patrol '
    'files: median |difference| of points of different groups within '
    '0.1 d, before and after. Targets: <= 50 ms, <= 1 s, offsets within '
    '0.005 mag and 2 sigma.'))
def intercalibration(ctx):
    from celerite2 import GaussianProcess, terms
    from scipy.linalg import cho_factor, cho_solve

    from satphotutils.intercalibration import (
        DRWIntercalibrator,
        marginal_log_likelihood,
        read_lightcurve,
    )

    rng = np.random.default_rng(1)
    n = 100_000
    t = np.sort(rng.uniform(0, 3000, n))
    y = rng.normal(0, 0.2, n)
    err = np.full(n, 0.02)
    g = rng.integers(0, 10, n)
    design = np.column_stack([np.ones(n)] + [g == k for k in range(1, 10)])
    gp = GaussianProcess(terms.RealTerm(a=0.04, c=1 / 100.0))

    def likelihood():
        gp.compute(t, diag=err**2)
        marginal_log_likelihood(gp, y, design)

    t_like = best_time(likelihood, repeat=5)

    m = 4000
    kernel = terms.RealTerm(a=0.04, c=1 / 100.0)
    ts, ys, es = t[:: n // m][:m], y[:m], err[:m]
    ds = design[:m]

    def dense():
        k = kernel.to_dense(ts, es**2)
        f = cho_factor(k, lower=True)
        kinv_a = cho_solve(f, ds)
        kinv_y = cho_solve(f, ys)
        c = cho_factor(ds.T @ kinv_a)
        cho_solve(c, ds.T @ kinv_y)

    def fast():
        gp.compute(ts, diag=es**2)
        marginal_log_likelihood(gp, ys, ds)

    t_dense = best_time(dense, repeat=2)
    t_fast = best_time(fast, repeat=5)

    worst, zs, fit_times = 0.0, [], []
    for seed in range(3 if ctx.quick else 10):
        r = np.random.default_rng(100 + seed)
        tt, mag, e, gg, true = _drw(r, 5000)
        lc = QTable({'time': Time(2458000 + tt, format='jd'), 'mag': mag,
                     'mag_err': e, 'camera': [f'c{k}' for k in gg],
                     'filter': np.full(len(tt), 'g')})
        start = time.perf_counter()
        res = DRWIntercalibrator()(lc)
        fit_times.append(time.perf_counter() - start)
        off = {row['group']: row for row in res.offsets}
        ref = int(res.drw['reference'][1:].split('/')[0])
        for k in range(len(true)):
            row = off[f'c{k}/g']
            diff = row['offset'].value - (true[k] - true[ref])
            worst = max(worst, abs(diff))
            if k != ref:
                zs.append(diff / row['offset_err'].value)

    metrics = [
        Metric('marginal likelihood, N = 1e5, 10 groups', t_like * 1e3,
               'ms', '<= 50', t_like <= 0.05),
        Metric('median full fit, 5,000 points, 5 groups',
               float(np.median(fit_times)), 's', '<= 1',
               np.median(fit_times) <= 1),
        Metric('dense Cholesky likelihood, N = 4,000', t_dense, 's'),
        Metric('celerite2 likelihood, N = 4,000', t_fast * 1e3, 'ms'),
        Metric('dense / celerite2 at N = 4,000', t_dense / t_fast),
        Metric('worst offset error (10 light curves x 5 groups)', worst,
               'mag', '<= 0.005', worst <= 0.005),
        Metric('fraction of offsets within 2 sigma', float(np.mean(
            np.abs(zs) < 2)), '', '>= 0.9 (0.95 expected)',
            np.mean(np.abs(zs) < 2) >= 0.9),
        Metric('rms of error / stated uncertainty', float(np.sqrt(np.mean(
            np.square(zs)))), '', '~1')]
    for path in sorted(_SHARED.glob('*.csv')):
        lc = read_lightcurve(path)
        out = DRWIntercalibrator(robust=True)(lc).lightcurve
        before, after = _pairs(out, 'mag_raw'), _pairs(out, 'mag')
        metrics.append(Metric(
            f'{path.stem}: near-simultaneous difference, after / before',
            after / before))
        metrics.append(Metric(f'{path.stem}: before', before, 'mag'))
        metrics.append(Metric(f'{path.stem}: after', after, 'mag'))
    return Result(metrics=metrics)


def _pairs(lc, column, window=0.1):
    jd = lc['time'].jd
    group = np.asarray(lc['group'])
    mag = lc[column].value
    diffs = []
    for i in range(len(jd)):
        j = i + 1
        while j < len(jd) and jd[j] - jd[i] < window:
            if group[j] != group[i]:
                diffs.append(abs(mag[j] - mag[i]))
            j += 1
    return float(np.median(diffs)) if diffs else np.nan
