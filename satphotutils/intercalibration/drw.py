# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Intercalibration of light curves from several cameras and filters.

The model (Kozlowski et al. 2010; Winecki & Kochanek, Section 4) is
``y_i = s(t_i) + offset[group_i] + noise``: ``s`` a damped random walk
(DRW) Gaussian process with covariance ``sigma^2 exp(-|dt| / tau)``,
evaluated in O(N) by celerite2's ``RealTerm``; the offsets of the
(camera, filter) groups are linear parameters solved analytically
(generalised least squares, with their covariance) inside the restricted
likelihood that ``sigma``, ``tau`` and an optional per-group jitter
maximise.
"""

import dataclasses

import numpy as np
from astropy import units as u
from astropy.stats import mad_std
from astropy.table import QTable
from scipy.linalg import cho_factor, cho_solve
from scipy.optimize import minimize

from satphotutils.utils.exceptions import SatphotutilsError

__all__ = ['DRWIntercalibrator', 'IntercalibrationResult',
           'marginal_log_likelihood']

# Flag bits of the intercalibrated light curve.
FLAG_FAINTEST = 1      # dropped as one of the faintest of its group
FLAG_CLIPPED = 2       # rejected by the robust clipping
FLAG_BAD_QUALITY = 4   # the survey marked the point bad
FLAG_SMALL_GROUP = 8   # its group has too few points for an offset


def marginal_log_likelihood(gp, y, design):
    """
    Log-likelihood with linear parameters marginalised (flat prior).

    Parameters
    ----------
    gp : `celerite2.GaussianProcess`
        Computed at the data times, mean zero.

    y : `~numpy.ndarray`
        The data.

    design : `~numpy.ndarray`, shape (N, p)
        The design matrix of the linear parameters.

    Returns
    -------
    log_likelihood : float
        The restricted log-likelihood.

    beta : `~numpy.ndarray`
        The generalised-least-squares estimate of the linear parameters.

    beta_cov : `~numpy.ndarray`
        Its covariance.

    Examples
    --------
    >>> import numpy as np
    >>> import celerite2
    >>> from celerite2 import terms
    >>> from satphotutils.intercalibration import marginal_log_likelihood
    >>> t = np.linspace(0, 100, 50)
    >>> gp = celerite2.GaussianProcess(terms.RealTerm(a=1.0, c=0.05))
    >>> _ = gp.compute(t, yerr=0.01)
    >>> design = np.column_stack([np.ones(50), (t > 50).astype(float)])
    >>> y = np.sin(t / 10) + 0.3 * design[:, 1]
    >>> ll, beta, cov = marginal_log_likelihood(gp, y, design)
    >>> bool(np.isfinite(ll)), beta.shape, cov.shape
    (True, (2,), (2, 2))
    """
    kinv_a = gp.apply_inverse(design)
    kinv_y = gp.apply_inverse(y)
    c = design.T @ kinv_a
    b = design.T @ kinv_y
    factor = cho_factor(c, lower=True)
    beta = cho_solve(factor, b)
    beta_cov = cho_solve(factor, np.eye(len(b)))
    ll = gp.log_likelihood(y) + 0.5 * b @ beta \
        - np.sum(np.log(np.diag(factor[0]))) + 0.5 * len(b) * np.log(
            2 * np.pi)
    return float(ll), beta, beta_cov


@dataclasses.dataclass
class IntercalibrationResult:
    """
    What `DRWIntercalibrator` returns.

    Examples
    --------
    What `DRWIntercalibrator` returns:

    >>> import numpy as np
    >>> from astropy.table import QTable
    >>> from astropy.time import Time
    >>> from satphotutils.intercalibration import DRWIntercalibrator
    >>> t = np.linspace(0, 300, 120)
    >>> lc = QTable({'time': Time(59000 + t, format='mjd'),
    ...              'mag': 9 + 0.25 * (t > 150),
    ...              'mag_err': np.full(120, 0.01),
    ...              'camera': np.where(t > 150, 'bb', 'ba'),
    ...              'filter': np.full(120, 'g')})
    >>> result = DRWIntercalibrator()(lc)
    >>> round(float(np.ptp(result.lightcurve['mag'].value)), 3)
    0.0
    """

    lightcurve: QTable
    offsets: QTable
    drw: dict
    log_likelihood: float = np.nan


class DRWIntercalibrator:
    """
    Put light curves from several cameras/filters on one scale.

    Parameters
    ----------
    method : {'gp', 'paper'}, optional
        ``'gp'``: the DRW model above. ``'paper'``: the paper's
        procedure exactly: after dropping the faintest fraction of each
        group, the reference is the median of the group means and each
        group is shifted by (median of means - its mean).

    drop_faintest : float, optional
        Fraction of the faintest points of each group left out of the fit
        (flagged; the paper used 0.1).

    robust : bool, optional
        Reject outliers iteratively: first against each group's median,
        then against the GP prediction, clipping at ``clip_sigma`` robust
        standard deviations (flagged, never dropped); survives groups
        dominated by outliers and wildly offset groups.

    clip_sigma : float, optional
        Clipping threshold of the robust mode.

    max_iter : int, optional
        Iterations of the robust clipping.

    jitter : bool, optional
        Fit an extra white-noise term per group.

    min_points : int, optional
        Groups with fewer usable points get no offset (flagged).

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import QTable
    >>> from astropy.time import Time
    >>> from satphotutils.intercalibration import DRWIntercalibrator
    >>> rng = np.random.default_rng(1)
    >>> t = np.sort(rng.uniform(0, 1000, 600))
    >>> cam = np.where(rng.uniform(size=600) < 0.5, 'bi', 'bj')
    >>> mag = 12 + 0.1 * np.sin(t / 50) + np.where(cam == 'bj', 0.3, 0.0)
    >>> lc = QTable({'time': Time(t + 2458000, format='jd'),
    ...              'mag': mag + rng.normal(0, 0.01, 600),
    ...              'mag_err': np.full(600, 0.01), 'camera': cam,
    ...              'filter': np.full(600, 'g')})
    >>> result = DRWIntercalibrator()(lc)
    >>> off = dict(zip(result.offsets['group'], result.offsets['offset']))
    >>> print(f"{(off['bj/g'] - off['bi/g']).value:.2f}")
    0.30
    """

    def __init__(self, *, method='gp', drop_faintest=0.0, robust=False,
                 clip_sigma=5.0, max_iter=5, jitter=True, min_points=5):
        if method not in ('gp', 'paper'):
            msg = f"method must be 'gp' or 'paper', not {method!r}"
            raise ValueError(msg)
        if not 0 <= drop_faintest < 1:
            msg = 'drop_faintest must be in [0, 1)'
            raise ValueError(msg)
        self.method = method
        self.drop_faintest = float(drop_faintest)
        self.robust = bool(robust)
        self.clip_sigma = float(clip_sigma)
        self.max_iter = int(max_iter)
        self.jitter = bool(jitter)
        self.min_points = int(min_points)

    def __call__(self, lightcurve):
        """
        Intercalibrate a light curve.

        Parameters
        ----------
        lightcurve : `~astropy.table.Table`
            ``time`` (`~astropy.time.Time`), ``mag``, ``mag_err``,
            ``camera``, ``filter`` and optional ``quality`` (e.g. from
            `~satphotutils.intercalibration.read_lightcurve`).

        Returns
        -------
        result : `IntercalibrationResult`
            ``lightcurve``: every input row, time-sorted, with ``mag``
            intercalibrated, ``mag_raw``, ``offset`` (the shift added to
            that row), ``group`` and ``flags`` (non-zero for points left
            out of the fit: 1 faintest, 2 clipped, 4 bad quality, 8 group
            too small); ``offsets``: per group the ``offset`` (its
            magnitude minus the reference's), ``offset_err``, ``n`` and
            ``n_used``; ``drw``: ``sigma``, ``tau`` (days) and the
            jitters.
        """
        data = _prepare(lightcurve)
        groups, gidx = np.unique(data['group'], return_inverse=True)
        gidx = gidx.ravel()
        flags = np.zeros(len(data['y']), dtype=np.int64)
        flags[~data['quality']] |= FLAG_BAD_QUALITY
        if self.drop_faintest > 0:
            for g in range(len(groups)):
                members = np.flatnonzero(gidx == g)
                cut = np.quantile(data['y'][members], 1 - self.drop_faintest)
                flags[members[data['y'][members] > cut]] |= FLAG_FAINTEST
        for g in range(len(groups)):
            members = gidx == g
            if np.count_nonzero(members & (flags == 0)) < self.min_points:
                flags[members] |= FLAG_SMALL_GROUP
        if self.robust:
            flags |= self._clip_to_medians(data, gidx, flags)
        if self.method == 'paper':
            offset, offset_err, drw, ll = self._paper(data, gidx, flags,
                                                      len(groups))
        else:
            offset, offset_err, drw, ll, flags = self._gp(data, gidx, flags,
                                                          groups)
        return _result(lightcurve, data, groups, gidx, flags, offset,
                       offset_err, drw, ll)

    # -- the paper's procedure ---------------------------------------------

    def _paper(self, data, gidx, flags, n_groups):
        means = np.full(n_groups, np.nan)
        errs = np.full(n_groups, np.nan)
        for g in range(n_groups):
            use = (gidx == g) & (flags == 0)
            if use.any():
                means[g] = data['y'][use].mean()
                errs[g] = data['y'][use].std() / np.sqrt(use.sum())
        reference = np.nanmedian(means)
        return means - reference, errs, {}, np.nan

    # -- the GP --------------------------------------------------------------

    def _clip_to_medians(self, data, gidx, flags, *, bin_days=5.0):
        """
        First pass of the robust mode: clip against a running median.

        Groups are aligned by their medians, a median light curve is
        formed in ``bin_days`` bins from all groups together (robust while
        fewer than half the points of a bin are bad), each group's
        offset is re-estimated as its median residual, and points
        further than ``clip_sigma`` robust deviations are flagged.
        """
        t, y = data['t'], data['y']
        usable = flags == 0
        offset = np.zeros(int(gidx.max()) + 1)
        for g in np.unique(gidx[usable]):
            offset[g] = np.median(y[usable & (gidx == g)])
        bins = np.floor(t / bin_days).astype(int)
        for _ in range(3):
            aligned = y - offset[gidx]
            ref = np.full(len(y), np.nan)
            ids, inverse = np.unique(bins[usable], return_inverse=True)
            med = np.array([np.median(aligned[usable][inverse.ravel() == k])
                            for k in range(len(ids))])
            centres = np.array([t[usable][inverse.ravel() == k].mean()
                                for k in range(len(ids))])
            ref = np.interp(t, centres, med)
            resid = aligned - ref
            for g in np.unique(gidx[usable]):
                sel = usable & (gidx == g)
                offset[g] += np.median(resid[sel])
        resid = y - offset[gidx] - ref
        scale = max(float(mad_std(resid[usable])), 1e-3)
        out = np.zeros(len(flags), dtype=np.int64)
        out[usable & (np.abs(resid) > self.clip_sigma * scale)] = \
            FLAG_CLIPPED
        return out

    def _gp(self, data, gidx, flags, groups):
        from celerite2 import GaussianProcess, terms

        t, y, err = data['t'], data['y'], data['err']
        n_groups = len(groups)
        params = None
        for _ in range(self.max_iter if self.robust else 1):
            use = flags == 0
            fit_groups = np.unique(gidx[use])
            if len(fit_groups) == 0:
                msg = 'no usable points left to intercalibrate'
                raise SatphotutilsError(msg)
            design, columns = _design(gidx[use], fit_groups)
            params, ll, beta, cov = self._optimise(
                t[use], y[use], err[use], gidx[use], design, fit_groups,
                params)
            if not self.robust:
                break
            # Clip against the GP prediction at every point.
            sigma, tau, jit = _unpack(params, n_groups, self.jitter)
            offset = np.zeros(n_groups)
            offset[columns[1:]] = beta[1:]
            ycorr = y - offset[gidx] - beta[0]
            var = err**2 + jit[gidx] ** 2
            gp = GaussianProcess(terms.RealTerm(a=sigma**2, c=1 / tau))
            gp.compute(t[use], diag=var[use], quiet=True)
            mu, pvar = gp.predict(ycorr[use], t=t, return_var=True)
            z = (ycorr - mu) / np.sqrt(pvar + var)
            scale = mad_std(z[use])
            new = (np.abs(z) > self.clip_sigma * max(scale, 1.0)) \
                & ((flags & ~FLAG_CLIPPED) == 0)
            updated = (flags & ~FLAG_CLIPPED) | np.where(new, FLAG_CLIPPED, 0)
            if np.array_equal(updated, flags):
                break
            flags = updated
        sigma, tau, jit = _unpack(params, n_groups, self.jitter)
        offset = np.full(n_groups, np.nan)
        offset_err = np.full(n_groups, np.nan)
        offset[columns[0]] = 0.0
        offset_err[columns[0]] = 0.0
        offset[columns[1:]] = beta[1:]
        offset_err[columns[1:]] = np.sqrt(np.diag(cov)[1:])
        drw = {'sigma': sigma, 'tau': tau,
               'jitter': {str(groups[g]): float(jit[g])
                          for g in range(n_groups)},
               'reference': str(groups[columns[0]]),
               'mean': float(beta[0])}
        return offset, offset_err, drw, ll, flags

    def _optimise(self, t, y, err, gidx, design, fit_groups, start):
        from celerite2 import GaussianProcess, terms

        n_groups = int(gidx.max()) + 1 if len(gidx) else 0
        n_groups = max(n_groups, int(fit_groups.max()) + 1)
        span = max(t.max() - t.min(), 1.0)
        gaps = np.diff(t)
        cadence = max(np.median(gaps[gaps > 0]) if (gaps > 0).any() else
                      1.0, 0.01)
        scatter = max(float(np.std(y)), 1e-3)
        bounds = [(np.log(1e-4), np.log(10 * scatter + 1.0)),
                  (np.log(cadence), np.log(10 * span))]
        x0 = [np.log(scatter), np.log(min(max(0.1 * span, cadence), span))]
        if self.jitter:
            bounds += [(np.log(1e-4), np.log(1.0))] * n_groups
            x0 += [np.log(0.005)] * n_groups
        if start is not None:
            x0 = list(start)
        gp = GaussianProcess(terms.RealTerm(a=1.0, c=1.0))

        def negll(p):
            sigma, tau, jit = _unpack(p, n_groups, self.jitter)
            gp.kernel = terms.RealTerm(a=sigma**2, c=1.0 / tau)
            gp.compute(t, diag=err**2 + jit[gidx] ** 2, quiet=True)
            try:
                ll, _, _ = marginal_log_likelihood(gp, y, design)
            except (np.linalg.LinAlgError, ValueError):
                return 1e25
            return -ll if np.isfinite(ll) else 1e25

        best = minimize(negll, x0, method='L-BFGS-B', bounds=bounds)
        sigma, tau, jit = _unpack(best.x, n_groups, self.jitter)
        gp.kernel = terms.RealTerm(a=sigma**2, c=1.0 / tau)
        gp.compute(t, diag=err**2 + jit[gidx] ** 2, quiet=True)
        ll, beta, cov = marginal_log_likelihood(gp, y, design)
        return best.x, ll, beta, cov


def _unpack(p, n_groups, jitter):
    sigma, tau = float(np.exp(p[0])), float(np.exp(p[1]))
    jit = np.exp(np.asarray(p[2:2 + n_groups])) if jitter else \
        np.zeros(n_groups)
    return sigma, tau, jit


def _design(gidx, fit_groups):
    """Build the design matrix: a mean column, one per other group."""
    counts = np.array([np.count_nonzero(gidx == g) for g in fit_groups])
    reference = fit_groups[np.argmax(counts)]
    others = [g for g in fit_groups if g != reference]
    design = np.ones((len(gidx), 1 + len(others)))
    for k, g in enumerate(others):
        design[:, 1 + k] = gidx == g
    return design, np.array([reference, *others])


def _prepare(lightcurve):
    from astropy.time import Time

    for name in ('time', 'mag', 'mag_err', 'camera', 'filter'):
        if name not in lightcurve.colnames:
            msg = f'the light curve needs a {name!r} column'
            raise ValueError(msg)
    if len(lightcurve) == 0:
        msg = ('the light curve has no valid points (all were limits, '
               'placeholders or bad rows, or the file has none)')
        raise SatphotutilsError(msg)
    time = lightcurve['time']
    jd = time.jd if isinstance(time, Time) else np.asarray(time, float)
    order = np.argsort(jd, kind='stable')
    mag = np.asarray(getattr(lightcurve['mag'], 'value',
                             lightcurve['mag']), float)[order]
    err = np.asarray(getattr(lightcurve['mag_err'], 'value',
                             lightcurve['mag_err']), float)[order]
    if not (np.isfinite(mag).all() and np.isfinite(err).all()
            and (err > 0).all()):
        msg = ('mag and mag_err must be finite with mag_err > 0; read '
               'files with read_lightcurve, which drops invalid rows')
        raise ValueError(msg)
    group = np.char.add(np.char.add(
        np.asarray(lightcurve['camera']).astype(str)[order], '/'),
        np.asarray(lightcurve['filter']).astype(str)[order])
    quality = (np.asarray(lightcurve['quality'], bool)[order]
               if 'quality' in lightcurve.colnames
               else np.ones(len(mag), bool))
    return {'order': order, 't': jd[order] - jd.min(), 'y': mag,
            'err': err, 'group': group, 'quality': quality}


def _result(lightcurve, data, groups, gidx, flags, offset, offset_err, drw,
            ll):
    order = data['order']
    out = QTable()
    time = lightcurve['time']
    out['time'] = time[order]
    shift = -np.nan_to_num(offset[gidx], nan=0.0)
    out['mag'] = (data['y'] + shift) * u.mag
    out['mag_err'] = data['err'] * u.mag
    out['camera'] = np.asarray(lightcurve['camera']).astype(str)[order]
    out['filter'] = np.asarray(lightcurve['filter']).astype(str)[order]
    out['group'] = data['group']
    out['offset'] = shift * u.mag
    out['mag_raw'] = data['y'] * u.mag
    no_offset = ~np.isfinite(offset[gidx])
    flags = flags | np.where(no_offset, FLAG_SMALL_GROUP, 0)
    out['flags'] = flags
    table = QTable()
    table['group'] = groups
    table['offset'] = offset * u.mag
    table['offset_err'] = offset_err * u.mag
    table['n'] = [int(np.count_nonzero(gidx == g)) for g in
                  range(len(groups))]
    table['n_used'] = [int(np.count_nonzero((gidx == g) & (flags == 0)))
                       for g in range(len(groups))]
    out.meta['drw'] = drw
    return IntercalibrationResult(lightcurve=out, offsets=table, drw=drw,
                                  log_likelihood=ll)
