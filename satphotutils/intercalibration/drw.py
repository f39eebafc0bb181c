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

import copy
import dataclasses
import logging

import numpy as np
from astropy import units as u
from astropy.stats import mad_std
from astropy.table import QTable
from scipy.linalg import cho_factor, cho_solve
from scipy.optimize import minimize

from satphotutils.intercalibration.readers import _quality_from_flags
from satphotutils.utils._misc import get_meta
from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.flags import SATPHOT_FLAGS

__all__ = ['DRWIntercalibrator', 'IntercalibrationResult',
           'marginal_log_likelihood']

log = logging.getLogger(__name__)

# The flag bits the intercalibration sets (and recomputes: those of an
# input that was itself intercalibrated are cleared). A point with any of
# them is left out of the fit.
_OWN_FLAGS = (SATPHOT_FLAGS.INTERCAL_FAINTEST | SATPHOT_FLAGS.INTERCAL_CLIPPED
              | SATPHOT_FLAGS.BAD_QUALITY | SATPHOT_FLAGS.SMALL_GROUP
              | SATPHOT_FLAGS.REJECTED_GROUP)

# Group-level flags: the group is left out of the light curve.
_GROUP_FLAGS = SATPHOT_FLAGS.SMALL_GROUP | SATPHOT_FLAGS.REJECTED_GROUP

# Smallest scatter of the zero points of one filter's cameras assumed when
# judging whether a group's offset is consistent with the others: ASAS-SN
# cameras of one filter agree to 0.01-0.1 mag on the 31 real Sky Patrol
# files tried, and a camera 0.25 mag off the others is seen on blended
# stars and corrected by its offset, not a failure.
_CAMERA_SCATTER = 0.05


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

    Attributes
    ----------
    lightcurve : `~astropy.table.QTable`
        The intercalibrated light curve (see `DRWIntercalibrator`).

    offsets : `~astropy.table.QTable`
        One row per camera/filter group.

    drw : dict
        The fitted damped random walk.

    log_likelihood : float
        The restricted log-likelihood of the fit (NaN for the paper's
        procedure).

    left_out : `~astropy.table.QTable` or `None`
        The points of flagged groups, left out of ``lightcurve`` (same
        columns); `None` when they were kept in it.

    Examples
    --------
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
    >>> result.flagged_groups
    {}
    """

    lightcurve: QTable
    offsets: QTable
    drw: dict
    log_likelihood: float = np.nan
    left_out: QTable | None = None

    @property
    def flagged_groups(self):
        """The flagged groups and why: ``{group: reason}``."""
        return {str(row['group']): str(row['reason'])
                for row in self.offsets if row['flags']}


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
        Groups with fewer usable points get no offset: flagged
        ``small_group`` and left out of the light curve.

    max_offset : float, optional
        Largest plausible difference (mag) between a group's offset and
        the median offset of the other groups of its filter (cameras of
        one filter differ by hundredths of a magnitude; across filters
        the offsets hold the star's colour and are not judged). A group
        beyond it is flagged ``rejected_group``; of two groups of one
        filter that differ by more, both are.

    max_offset_sigma : float, optional
        A group whose offset differs from the median of the other groups
        of its filter (at least three) by more than this many standard
        deviations (its uncertainty and the scatter of the others, at
        least 0.05 mag, in quadrature) is flagged ``rejected_group``.

    max_clipped_fraction : float, optional
        With ``robust``, a group of which a larger fraction of the points
        (of those not left out for quality or faintness) are outliers,
        clipped against the running median of all groups or against the
        GP, is flagged ``rejected_group`` (the GP pass may take outliers
        of a group back when its jitter grows to absorb them).

    keep_flagged_groups : bool, optional
        Keep the points of flagged groups in the light curve (flagged,
        with the offset fitted to them, if any) instead of leaving them
        out. Either way the offsets table names them and why, and each
        is logged as a warning.

    Notes
    -----
    The offsets are fitted again without the groups flagged
    ``rejected_group``, so that they do not bias the others; the
    offsets table keeps the value first fitted to a rejected group (on
    the same reference).

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
                 clip_sigma=5.0, max_iter=5, jitter=True, min_points=5,
                 max_offset=1.0, max_offset_sigma=5.0,
                 max_clipped_fraction=0.5, keep_flagged_groups=False):
        if method not in ('gp', 'paper'):
            msg = f"method must be 'gp' or 'paper', not {method!r}"
            raise ValueError(msg)
        if not 0 <= drop_faintest < 1:
            msg = 'drop_faintest must be in [0, 1)'
            raise ValueError(msg)
        for label, value in (('clip_sigma', clip_sigma),
                             ('max_offset', max_offset),
                             ('max_offset_sigma', max_offset_sigma)):
            if not (np.isfinite(value) and value > 0):
                msg = f'{label} must be a positive number, not {value!r}'
                raise ValueError(msg)
        if not 0 < max_clipped_fraction <= 1:
            msg = 'max_clipped_fraction must be in (0, 1]'
            raise ValueError(msg)
        for label, value in (('max_iter', max_iter),
                             ('min_points', min_points)):
            if int(value) != value or value < 1:
                msg = f'{label} must be a positive integer, not {value!r}'
                raise ValueError(msg)
        self.method = method
        self.drop_faintest = float(drop_faintest)
        self.robust = bool(robust)
        self.clip_sigma = float(clip_sigma)
        self.max_iter = int(max_iter)
        self.jitter = bool(jitter)
        self.min_points = int(min_points)
        self.max_offset = float(max_offset)
        self.max_offset_sigma = float(max_offset_sigma)
        self.max_clipped_fraction = float(max_clipped_fraction)
        self.keep_flagged_groups = bool(keep_flagged_groups)

    def _config(self):
        names = ('method', 'drop_faintest', 'robust', 'clip_sigma',
                 'max_iter', 'jitter', 'min_points', 'max_offset',
                 'max_offset_sigma', 'max_clipped_fraction',
                 'keep_flagged_groups')
        return {'intercalibrator': type(self).__name__,
                **{n: getattr(self, n) for n in names}}

    def __call__(self, lightcurve):
        """
        Intercalibrate a light curve.

        Parameters
        ----------
        lightcurve : `~astropy.table.Table`
            ``time`` (`~astropy.time.Time`), ``mag``, ``mag_err``,
            ``camera``, ``filter``, optional ``quality`` and optional
            ``flags`` (photometry flags: kept, and those that mark a bad
            point make it bad quality), e.g. from
            `~satphotutils.intercalibration.read_lightcurve`.

        Returns
        -------
        result : `IntercalibrationResult`
            ``lightcurve``: every input row of the groups that were not
            flagged (all rows with ``keep_flagged_groups``), time-sorted,
            with ``mag`` intercalibrated, ``mag_raw``, ``offset`` (the
            shift added to that row), ``group`` and ``flags``: the
            input's flags and the registry's ``intercal_faintest``,
            ``intercal_clipped``, ``bad_quality`` (points left out of
            the fit), ``small_group`` and ``rejected_group`` (points of a
            flagged group); decode them with
            `~satphotutils.utils.flags.decode_flags`. ``offsets``: per
            group the ``offset`` (its magnitude minus the reference's;
            NaN for a group too small to have one), ``offset_err``,
            ``n``, ``n_used``, ``flags`` (``small_group`` or
            ``rejected_group``) and ``reason`` (why it was flagged, or
            empty). ``drw``: ``sigma``, ``tau`` (days), the jitters and
            the reference group. Both tables' ``meta`` hold the date,
            versions, flag meanings, configuration, the fitted model and
            the flagged groups.

        Raises
        ------
        SatphotutilsError
            If no points are usable, or every group is flagged and
            ``keep_flagged_groups`` is False.
        """
        data = _prepare(lightcurve)
        groups, gidx = np.unique(data['group'], return_inverse=True)
        gidx = gidx.ravel()
        flags = np.zeros(len(data['y']), dtype=np.int64)
        flags[~data['quality']] |= SATPHOT_FLAGS.BAD_QUALITY
        if self.drop_faintest > 0:
            for g in range(len(groups)):
                members = np.flatnonzero(gidx == g)
                cut = np.quantile(data['y'][members], 1 - self.drop_faintest)
                flags[members[data['y'][members] > cut]] |= \
                    SATPHOT_FLAGS.INTERCAL_FAINTEST
        for g in range(len(groups)):
            members = gidx == g
            if np.count_nonzero(members & (flags == 0)) < self.min_points:
                flags[members] |= SATPHOT_FLAGS.SMALL_GROUP
        # Outliers from the running median of all groups: the GP's pass
        # may take them back when a group's jitter grows to absorb them,
        # but a group made mostly of them is not to be trusted.
        outliers = np.zeros(len(flags), dtype=bool)
        if self.robust:
            first = self._clip_to_medians(data, gidx, flags)
            outliers = first != 0
            flags |= first
        offset, offset_err, drw, ll, flags = self._fit(data, gidx, flags,
                                                       groups)
        group_flags, reasons = self._judge(data, gidx, flags, outliers,
                                           offset, offset_err, groups)
        rejected = (group_flags & SATPHOT_FLAGS.REJECTED_GROUP) != 0
        if (group_flags != 0).all() and not self.keep_flagged_groups:
            msg = ('every camera/filter group was flagged, so none is left '
                   'for the light curve: ' + '; '.join(
                       f'{g}: {r}' for g, r in zip(groups, reasons,
                                                   strict=True))
                   + '; keep them with keep_flagged_groups=True '
                   '(--keep-flagged-groups) or loosen the limits')
            raise SatphotutilsError(msg)
        # Points used for each offset that the table reports.
        n_used = np.bincount(gidx, weights=flags == 0,
                             minlength=len(groups)).astype(int)
        if rejected.any() and not (group_flags != 0).all():
            flags = flags | np.where(rejected[gidx],
                                     SATPHOT_FLAGS.REJECTED_GROUP, 0)
            first, first_err, first_used = offset, offset_err, n_used
            offset, offset_err, drw, ll, flags = self._fit(data, gidx,
                                                           flags, groups)
            n_used = np.bincount(gidx, weights=flags == 0,
                                 minlength=len(groups)).astype(int)
            # The first fit's value, put on the new fit's reference by
            # the groups in both fits.
            common = ~rejected & np.isfinite(first) & np.isfinite(offset)
            shift = np.median(first[common] - offset[common]) \
                if common.any() else 0.0
            offset = np.where(rejected, first - shift, offset)
            offset_err = np.where(rejected, first_err, offset_err)
            n_used = np.where(rejected, first_used, n_used)
        what = 'flagged' if self.keep_flagged_groups else \
            'left out of the light curve'
        for g in np.flatnonzero(group_flags):
            log.warning('camera/filter group %s %s: %s', groups[g], what,
                        reasons[g])
        return _result(self, lightcurve, data, groups, gidx, flags, offset,
                       offset_err, drw, ll, group_flags, reasons, n_used)

    def _fit(self, data, gidx, flags, groups):
        if self.method == 'paper':
            offset, offset_err, drw, ll = self._paper(data, gidx, flags,
                                                      len(groups))
            return offset, offset_err, drw, ll, flags
        return self._gp(data, gidx, flags, groups)

    def _judge(self, data, gidx, flags, outliers, offset, offset_err,
               groups):
        """
        Flag the groups whose offsets should not be trusted.

        Returns the group flags (``small_group``, ``rejected_group``) and
        the reason for each flagged group.
        """
        n = len(groups)
        group_flags = np.zeros(n, dtype=np.int64)
        reasons = [''] * n
        # The filter of each group (one per group by construction).
        filters = np.empty(n, dtype=object)
        filters[gidx] = data['filter']

        def flag(g, bit, reason):
            group_flags[g] |= bit
            reasons[g] = '; '.join(filter(None, [reasons[g], reason]))

        clipped = ((flags & SATPHOT_FLAGS.INTERCAL_CLIPPED) != 0) | outliers
        candidates = (flags & (SATPHOT_FLAGS.BAD_QUALITY
                               | SATPHOT_FLAGS.INTERCAL_FAINTEST)) == 0
        for g in range(n):
            members = gidx == g
            if not np.isfinite(offset[g]):
                usable = int(np.count_nonzero(
                    members & ((flags & ~SATPHOT_FLAGS.SMALL_GROUP) == 0)))
                flag(g, SATPHOT_FLAGS.SMALL_GROUP,
                     f'too few usable points for an offset ({usable}, '
                     f'fewer than min_points={self.min_points})')
                continue
            tried = np.count_nonzero(members & candidates)
            fraction = np.count_nonzero(members & candidates & clipped) \
                / max(tried, 1)
            if fraction > self.max_clipped_fraction:
                flag(g, SATPHOT_FLAGS.REJECTED_GROUP,
                     f'{fraction:.0%} of its points are outliers, clipped '
                     'against the running median of all groups or the GP '
                     '(limit max_clipped_fraction='
                     f'{self.max_clipped_fraction:g})')
        fitted = np.isfinite(offset)
        # Groups already rejected are no standard for the others.
        trusted = fitted & (group_flags == 0)
        for g in np.flatnonzero(fitted):
            others = np.flatnonzero(trusted & (filters == filters[g]))
            others = others[others != g]
            if len(others) == 0:
                continue
            deviation = offset[g] - np.median(offset[others])
            what = (f'its offset is {deviation:+.3f} mag from that of '
                    f'the other {filters[g]} group, {groups[others[0]]}'
                    if len(others) == 1 else
                    f'its offset is {deviation:+.3f} mag from the median '
                    f'of the {len(others)} other {filters[g]} groups')
            if abs(deviation) > self.max_offset:
                flag(g, SATPHOT_FLAGS.REJECTED_GROUP,
                     f'{what}, beyond max_offset={self.max_offset:g} mag')
            elif len(others) >= 3:
                scatter = max(float(mad_std(offset[others])),
                              _CAMERA_SCATTER)
                z = deviation / np.hypot(offset_err[g], scatter)
                if abs(z) > self.max_offset_sigma:
                    flag(g, SATPHOT_FLAGS.REJECTED_GROUP,
                         f'{what}, {abs(z):.1f} sigma (limit '
                         f'max_offset_sigma={self.max_offset_sigma:g}; '
                         f'scatter of the others {scatter:.3f} mag)')
        return group_flags, reasons

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
            SATPHOT_FLAGS.INTERCAL_CLIPPED
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
            # One jitter per group, fitted or not, so that the parameters
            # index every group (groups after the last fitted one too).
            params, ll, beta, cov = self._optimise(
                t[use], y[use], err[use], gidx[use], design, n_groups,
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
            clip = SATPHOT_FLAGS.INTERCAL_CLIPPED
            new = (np.abs(z) > self.clip_sigma * max(scale, 1.0)) \
                & ((flags & ~clip) == 0)
            updated = (flags & ~clip) | np.where(new, clip, 0)
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

    def _optimise(self, t, y, err, gidx, design, n_groups, start):
        from celerite2 import GaussianProcess, terms

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
    camera = np.asarray(lightcurve['camera']).astype(str)[order]
    filt = np.asarray(lightcurve['filter']).astype(str)[order]
    group = np.char.add(np.char.add(camera, '/'), filt)
    quality = (np.asarray(lightcurve['quality'], bool)[order]
               if 'quality' in lightcurve.colnames
               else np.ones(len(mag), bool))
    # The input's own flags are kept; those of a previous
    # intercalibration are recomputed.
    incoming = (np.asarray(lightcurve['flags'], dtype=np.int64)[order]
                if 'flags' in lightcurve.colnames
                else np.zeros(len(mag), dtype=np.int64))
    quality = quality & _quality_from_flags(incoming)
    return {'order': order, 't': jd[order] - jd.min(), 'y': mag,
            'err': err, 'camera': camera, 'filter': filt, 'group': group,
            'quality': quality, 'incoming': incoming & ~_OWN_FLAGS}


def _result(intercalibrator, lightcurve, data, groups, gidx, flags, offset,
            offset_err, drw, ll, group_flags, reasons, n_used):
    order = data['order']
    flags = flags | group_flags[gidx]
    out = QTable()
    time = lightcurve['time']
    out['time'] = time[order]
    shift = -np.nan_to_num(offset[gidx], nan=0.0)
    out['mag'] = (data['y'] + shift) * u.mag
    out['mag_err'] = data['err'] * u.mag
    out['camera'] = data['camera']
    out['filter'] = data['filter']
    out['group'] = data['group']
    out['offset'] = shift * u.mag
    out['mag_raw'] = data['y'] * u.mag
    out['flags'] = data['incoming'] | flags
    table = QTable()
    table['group'] = groups
    table['offset'] = offset * u.mag
    table['offset_err'] = offset_err * u.mag
    table['n'] = np.bincount(gidx, minlength=len(groups))
    table['n_used'] = n_used
    table['flags'] = group_flags
    table['reason'] = np.array(reasons, dtype=str)
    flagged = {str(groups[g]): reasons[g]
               for g in np.flatnonzero(group_flags)}
    source = {k: lightcurve.meta[k] for k in
              ('name', 'source', 'format', 'n_rows', 'n_invalid')
              if k in lightcurve.meta}
    meta = get_meta(config=intercalibrator._config(), input=source,
                    drw=drw, log_likelihood=float(ll),
                    flagged_groups=flagged)
    left_out = None
    if not intercalibrator.keep_flagged_groups:
        keep = (flags & _GROUP_FLAGS) == 0
        left_out = out[~keep]
        out = out[keep]
    # Each table its own copy: the meta holds mutable dicts.
    out.meta.update(copy.deepcopy(meta))
    table.meta.update(meta)
    return IntercalibrationResult(lightcurve=out, offsets=table, drw=drw,
                                  log_likelihood=ll, left_out=left_out)
