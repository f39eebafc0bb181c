# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The O(N) likelihood against dense linear algebra and celerite2."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from satphotutils.intercalibration import marginal_log_likelihood
from satphotutils.intercalibration.likelihood import (
    Layout,
    RestrictedLikelihood,
)


def _problem(*, seed=3, n=240, ratio=True, scale=True, jitter=True):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 500, n))
    # Points at one time (two cameras in one night) share the signal.
    t[10] = t[9]
    t[51] = t[50]
    t[52] = t[50]
    group = rng.integers(0, 4, n)
    band = (group >= 2).astype(int)
    err = rng.uniform(0.01, 0.05, n)
    y = rng.normal(0, 0.1, n)
    use = rng.uniform(size=n) > 0.15
    design = np.column_stack([np.ones(n)] + [group == k for k in (1, 2, 3)]
                             + [(band == 1) * (t - 250) / 250])
    layout = Layout(n_groups=4, ratio_bands=np.array([1] if ratio else [],
                                                     dtype=int),
                    jitter=jitter, error_scale=scale)
    lik = RestrictedLikelihood(t, y, err, group=group, band=band, use=use,
                               design=design, layout=layout, n_bands=2)
    p = [np.log(0.2), np.log(60.0)]
    if ratio:
        p += [np.log(1.3)]
    if jitter:
        p += list(np.log([0.01, 0.02, 0.005, 0.03]))
    if scale:
        p += list(np.log([1.0, 1.2, 0.9, 1.5]))
    return lik, np.array(p), (t, y, err, group, band, use, design)


def _dense(lik, p, arrays):
    t, y, err, group, band, use, design = arrays
    sigma, tau, ratio, jitter, scale = lik.layout.unpack(p, 2)
    r = ratio[band]
    cov_all = sigma**2 * np.exp(-np.abs(t[:, None] - t[None, :]) / tau) \
        * r[:, None] * r[None, :]
    noise = (scale[group] * err) ** 2 + jitter[group] ** 2
    c = cov_all[np.ix_(use, use)] + np.diag(noise[use])
    ci = np.linalg.inv(c)
    x, yu = design[use], y[use]
    gram = x.T @ ci @ x
    beta = np.linalg.solve(gram, x.T @ ci @ yu)
    resid = yu - x @ beta
    k = x.shape[1]
    reml = -0.5 * (resid @ ci @ resid + np.linalg.slogdet(c)[1]
                   + np.linalg.slogdet(gram)[1]
                   + (use.sum() - k) * np.log(2 * np.pi))
    p_mat = ci - ci @ x @ np.linalg.solve(gram, x.T @ ci)
    return {'reml': reml, 'beta': beta, 'beta_cov': np.linalg.inv(gram),
            'cov_all': cov_all, 'ci': ci, 'c': c, 'resid': resid,
            'p': p_mat, 'noise': noise, 'gram': gram}


@pytest.mark.parametrize('options', [
    {}, {'ratio': False}, {'scale': False}, {'jitter': False, 'scale': True},
])
def test_restricted_likelihood_equals_dense(options):
    lik, p, arrays = _problem(**options)
    ll, _ = lik(p)
    dense = _dense(lik, p, arrays)
    assert_allclose(ll, dense['reml'], rtol=0, atol=1e-8)
    sol = lik.solution(p)
    assert_allclose(sol['beta'], dense['beta'], atol=1e-10)
    assert_allclose(sol['beta_cov'], dense['beta_cov'], rtol=1e-8,
                    atol=1e-14)


def test_restricted_likelihood_equals_celerite2():
    from celerite2 import GaussianProcess, terms

    lik, p, arrays = _problem(ratio=False, scale=False)
    t, y, err, group, _, use, design = arrays
    sigma, tau, _, jitter, _ = lik.layout.unpack(p, 2)
    gp = GaussianProcess(terms.RealTerm(a=sigma**2, c=1 / tau))
    # celerite2 needs increasing times: ties nudged by far less than
    # the noise.
    tu = t[use] + np.arange(use.sum()) * 1e-9
    gp.compute(tu, diag=err[use] ** 2 + jitter[group[use]] ** 2)
    expected, beta, _ = marginal_log_likelihood(gp, y[use], design[use])
    ll, _ = lik(p)
    assert_allclose(ll, expected, atol=1e-5)
    assert_allclose(lik.solution(p)['beta'], beta, atol=1e-8)


@pytest.mark.parametrize('options', [{}, {'ratio': False, 'scale': False}])
def test_gradient_equals_finite_differences(options):
    lik, p, _ = _problem(**options)
    _, grad = lik(p)

    def f(q):
        return lik(q, gradient=False)[0]

    step = 1e-6
    numeric = np.array([(f(p + step * e) - f(p - step * e)) / (2 * step)
                        for e in np.eye(len(p))])
    assert_allclose(grad, numeric, rtol=1e-5, atol=1e-4)


def test_unrestricted_likelihood_and_gradient():
    lik, p, arrays = _problem()
    dense = _dense(lik, p, arrays)
    beta = dense['beta'] + np.array([0.01, -0.02, 0.03, 0.0, 0.01])
    y, use, design = arrays[1], arrays[5], arrays[6]
    resid = y[use] - design[use] @ beta
    expected = -0.5 * (resid @ dense['ci'] @ resid
                       + np.linalg.slogdet(dense['c'])[1]
                       + use.sum() * np.log(2 * np.pi))
    ll, grad_p, grad_beta = lik.unrestricted(p, beta)
    assert_allclose(ll, expected, atol=1e-8)
    assert_allclose(grad_beta, design[use].T @ dense['ci'] @ resid,
                    rtol=1e-8)
    step = 1e-6
    numeric = np.array([
        (lik.unrestricted(p + step * e, beta)[0]
         - lik.unrestricted(p - step * e, beta)[0]) / (2 * step)
        for e in np.eye(len(p))])
    assert_allclose(grad_p, numeric, rtol=1e-5, atol=1e-4)
    # At the generalised-least-squares beta the restricted and
    # unrestricted likelihoods differ by the log det of the gram matrix.
    ml = lik.solution(p)['ml_log_likelihood']
    reml, _ = lik(p)
    k = design.shape[1]
    assert_allclose(reml - ml, -0.5 * np.linalg.slogdet(dense['gram'])[1]
                    + 0.5 * k * np.log(2 * np.pi), atol=1e-8)


def test_prediction_at_every_point():
    """Mean and variance at used and unused points, as by dense algebra."""
    lik, p, arrays = _problem()
    use = arrays[5]
    dense = _dense(lik, p, arrays)
    sol = lik.solution(p)
    k_all = dense['cov_all'][:, use]
    mean = k_all @ dense['ci'] @ dense['resid']
    var = np.diag(dense['cov_all']) - np.einsum(
        'ij,ji->i', k_all, dense['ci'] @ k_all.T)
    assert_allclose(sol['mean'], mean, atol=1e-10)
    assert_allclose(sol['mean_var'], var, atol=1e-12)


def test_leave_one_out_residuals_are_exact():
    """The used points' z equals refitting without each point."""
    lik, p, arrays = _problem()
    y, use, design = arrays[1], arrays[5], arrays[6]
    dense = _dense(lik, p, arrays)
    z = lik.solution(p)['z']
    cov = dense['cov_all'] + np.diag(dense['noise'])
    for i in np.flatnonzero(use)[[0, 17, 60, -1]]:
        keep = use.copy()
        keep[i] = False
        ci = np.linalg.inv(cov[np.ix_(keep, keep)])
        x = design[keep]
        gram = x.T @ ci @ x
        beta = np.linalg.solve(gram, x.T @ ci @ y[keep])
        kx = cov[i, keep]
        pred = design[i] @ beta + kx @ ci @ (y[keep] - x @ beta)
        # Predictive variance with the linear parameters' uncertainty.
        h = design[i] - x.T @ ci @ kx
        var = cov[i, i] - kx @ ci @ kx + h @ np.linalg.solve(gram, h)
        assert_allclose(z[i], (y[i] - pred) / np.sqrt(var), rtol=1e-7)


def test_signal_mean_and_its_covariance_equal_dense():
    """The mean of the signal over the used points, with its variance and
    covariance with the linear parameters, from the joint posterior."""
    lik, p, arrays = _problem()
    t, y, err, group, band, use, design = arrays
    sigma, tau, ratio, jitter, scale = lik.layout.unpack(p, 2)
    r = ratio[band]
    noise = (scale[group] * err) ** 2 + jitter[group] ** 2
    # The signal at every point (ties give equal rows), then at the used
    # ones: y_u = diag(r_u) s_u + X_u beta + e; s ~ N(0, K), beta flat.
    k = sigma**2 * np.exp(-np.abs(t[:, None] - t[None, :]) / tau)
    ku = k[np.ix_(use, use)] + 1e-10 * np.eye(use.sum())
    ru, xu, yu = r[use], design[use], y[use]
    n, q = use.sum(), design.shape[1]
    a = np.hstack([np.diag(ru), xu])
    prec = a.T @ (a / noise[use][:, None])
    prec[:n, :n] += np.linalg.inv(ku)
    cov = np.linalg.inv(prec)
    mean = cov @ (a.T @ (yu / noise[use]))
    w = np.r_[np.full(n, 1 / n), np.zeros(q)]
    sol = lik.solution(p, signal_mean=True)
    assert_allclose(sol['signal_mean'], w @ mean, atol=1e-8)
    assert_allclose(sol['signal_mean_var'], w @ cov @ w, rtol=1e-6)
    assert_allclose(sol['signal_mean_beta_cov'], (cov @ w)[n:], rtol=1e-6,
                    atol=1e-12)
    assert_allclose(sol['beta'], mean[n:], atol=1e-8)
