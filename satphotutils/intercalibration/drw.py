# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Intercalibration of light curves from several cameras and filters.

The model (Kozlowski et al. 2010; Winecki & Kochanek, Section 4;
PyCALI's per-telescope terms, Li et al. 2014) is ::

    y_i = mean + offset[group_i] + trend_band(t_i) + ratio[band_i] s(t_i)
          + noise_i,   var(noise_i) = (scale[group_i] err_i)^2
                                      + jitter[group_i]^2

``s`` a damped random walk (DRW) Gaussian process with covariance
``sigma^2 exp(-|dt| / tau)``; the offsets of the (camera, filter) groups
and the optional per-band polynomial trend are linear parameters solved
analytically (generalised least squares, with their covariance) inside
the restricted likelihood that ``sigma``, ``tau``, the optional per-band
amplitude ratios and the per-group jitters and error scales maximise
(`satphotutils.intercalibration.likelihood`: O(N) with exact gradients).
"""

import copy
import dataclasses
import itertools
import logging

import numpy as np
from astropy import units as u
from astropy.stats import mad_std
from astropy.table import QTable
from scipy.linalg import cho_factor, cho_solve
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from satphotutils.intercalibration.likelihood import (
    Layout,
    RestrictedLikelihood,
)
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

# Fits on more than twice as many used points explore their starts on a
# subsample of about this many (`_GPFit._explorer`); every real Sky Patrol
# file tried has fewer than 5,000 points.
_EXPLORE_POINTS = 10_000


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

    error_scale : bool, optional
        Fit a factor per group that multiplies the stated errors
        (PyCALI's error scaling; with ``jitter`` both).

    amplitude_ratio : bool, optional
        Fit the amplitude of the variability in each band relative to the
        band with the most points (a variable star varies more in V than
        in g, say); the points of other bands are then put on the
        reference band's scale (see `__call__`). Without it all bands
        share one amplitude, the paper's assumption.

    trend : int, optional
        Degree of a polynomial trend in time per band (0: none), a
        linear term beside the DRW for slow changes longer than the
        light curve.

    select : bool, optional
        Choose the model by the Bayesian information criterion among the
        one configured and those with ``error_scale``,
        ``amplitude_ratio`` and ``trend`` switched off (each alone and all
        together); the candidates and their criteria are in
        ``drw['selection']`` and the meta.

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

    offsets_at : {'signal_mean', 'process_mean'}, optional
        Where the offsets between groups of bands of different amplitude
        (``amplitude_ratio``) are defined. ``'signal_mean'`` (the
        default): at the mean of the fitted signal over the used points,
        which the data fix to the noise level; the offsets then hold the
        colour at the light curve's mean brightness, and ``drw['mean']``
        the reference group's level there. ``'process_mean'``: at
        ``s = 0``, the mean of the DRW process; a light curve samples
        only a stretch of it, whose mean the data fix only to about
        ``sigma sqrt(2 tau / span)``, and the offset between a V and a g
        group carries (ratio - 1) times that (0.03 mag for a DRW of 0.2
        mag and 150 d over six years): honestly in its uncertainty.
        Offsets between groups of one band, and the intercalibrated light
        curve (but for a constant when the reference group is not in the
        reference band), are the same either way; without
        ``amplitude_ratio`` the two are identical.

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
                 clip_sigma=5.0, max_iter=5, jitter=True, error_scale=False,
                 amplitude_ratio=False, trend=0, select=False, min_points=5,
                 max_offset=1.0, max_offset_sigma=5.0,
                 max_clipped_fraction=0.5, keep_flagged_groups=False,
                 offsets_at='signal_mean'):
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
        if isinstance(trend, bool) or int(trend) != trend \
                or not 0 <= trend <= 3:
            msg = f'trend must be an integer degree 0-3, not {trend!r}'
            raise ValueError(msg)
        self.method = method
        self.drop_faintest = float(drop_faintest)
        self.robust = bool(robust)
        self.clip_sigma = float(clip_sigma)
        self.max_iter = int(max_iter)
        self.jitter = bool(jitter)
        self.error_scale = bool(error_scale)
        self.amplitude_ratio = bool(amplitude_ratio)
        self.trend = int(trend)
        self.select = bool(select)
        self.min_points = int(min_points)
        self.max_offset = float(max_offset)
        self.max_offset_sigma = float(max_offset_sigma)
        self.max_clipped_fraction = float(max_clipped_fraction)
        self.keep_flagged_groups = bool(keep_flagged_groups)
        if offsets_at not in ('process_mean', 'signal_mean'):
            msg = ("offsets_at must be 'process_mean' or 'signal_mean', "
                   f'not {offsets_at!r}')
            raise ValueError(msg)
        self.offsets_at = offsets_at

    def _config(self):
        names = ('method', 'drop_faintest', 'robust', 'clip_sigma',
                 'max_iter', 'jitter', 'error_scale', 'amplitude_ratio',
                 'trend', 'select', 'min_points', 'max_offset',
                 'max_offset_sigma', 'max_clipped_fraction',
                 'keep_flagged_groups', 'offsets_at')
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
        if not (flags == 0).any():
            usable = {str(g): int(np.count_nonzero(
                (gidx == k) & ((flags & ~SATPHOT_FLAGS.SMALL_GROUP) == 0)))
                for k, g in enumerate(groups)}
            msg = ('no camera/filter group has the min_points='
                   f'{self.min_points} usable points an offset needs '
                   f'(usable points per group: {usable}, of '
                   f'{len(flags)} rows); lower min_points only if so few '
                   'points can be trusted')
            raise SatphotutilsError(msg)
        # Outliers from the running median of all groups: the GP's pass
        # may take them back when a group's jitter grows to absorb them,
        # but a group made mostly of them is not to be trusted.
        outliers = np.zeros(len(flags), dtype=bool)
        if self.robust:
            first = self._clip_to_medians(data, gidx, flags)
            outliers = first != 0
            flags |= first
        offset, offset_err, drw, ll, extra, flags = self._fit(
            data, gidx, flags, groups)
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
            first_extra = extra
            offset, offset_err, drw, ll, extra, flags = self._fit(
                data, gidx, flags, groups)
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
            if extra is not None:
                # The noise terms of a rejected group are those fitted to
                # it; the amplitude ratio is the band's in the final fit.
                for name in ('jitter', 'jitter_err', 'error_scale',
                             'error_scale_err'):
                    extra[name] = np.where(rejected, first_extra[name],
                                           extra[name])
        for band, bound in drw.get('ratio_at_bound', {}).items():
            log.warning(
                'amplitude ratio of band %s to band %s is at the bound of '
                'the fit (%g): the data do not constrain it (bands that '
                'barely overlap in time, or variability below the noise); '
                'its offsets rest on that bound: fit without '
                'amplitude_ratio or with more overlapping data',
                band, drw['reference_band'], bound)
        what = 'flagged' if self.keep_flagged_groups else \
            'left out of the light curve'
        for g in np.flatnonzero(group_flags):
            log.warning('camera/filter group %s %s: %s', groups[g], what,
                        reasons[g])
        return _result(self, lightcurve, data, groups, gidx, flags, offset,
                       offset_err, drw, ll, group_flags, reasons, n_used,
                       extra)

    def _fit(self, data, gidx, flags, groups):
        if self.method == 'paper':
            offset, offset_err, drw, ll = self._paper(data, gidx, flags,
                                                      len(groups))
            return offset, offset_err, drw, ll, None, flags
        # The fit's matrices are small and its solves sequential: BLAS
        # threads only compete with each other (and the machine's other
        # work) there, which made run times vary 6x.
        with threadpool_limits(limits=1):
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

    def _clip_to_gp(self, fit, params, flags):
        """Flag the points beyond ``clip_sigma`` of the GP's prediction."""
        use = fit.use
        # Leave-one-out residuals for the points in the fit (a point's
        # own weight pulls the prediction towards it and hid outliers of
        # 0.2-0.7 mag), the prediction for those left out (every point is
        # on the time grid, unweighted).
        z = fit.likelihood.solution(params)['z']
        scale = mad_std(z[use])
        clip = SATPHOT_FLAGS.INTERCAL_CLIPPED
        new = (np.abs(z) > self.clip_sigma * max(scale, 1.0)) \
            & ((flags & ~clip) == 0)
        return (flags & ~clip) | np.where(new, clip, 0)

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
        ids, inverse = np.unique(bins[usable], return_inverse=True)
        inverse = inverse.ravel()
        centres = np.bincount(inverse, weights=t[usable]) / np.bincount(
            inverse)
        for _ in range(3):
            aligned = y - offset[gidx]
            med = _binned_median(inverse, aligned[usable], len(ids))
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
        bands, bidx = np.unique(data['filter'], return_inverse=True)
        bidx = bidx.ravel()

        def model(flags):
            if not (flags == 0).any():
                msg = 'no usable points left to intercalibrate'
                raise SatphotutilsError(msg)
            return _GPFit(data, gidx, bidx, flags == 0, len(groups),
                          len(bands), jitter=self.jitter,
                          error_scale=self.error_scale,
                          amplitude_ratio=self.amplitude_ratio,
                          trend=self.trend)

        fit = model(flags)
        params = fit.optimise()
        evaluations = fit.n_evaluations
        # Robust mode: clip at fixed variance parameters until the
        # clipped set settles (one solve each), then refit them from where
        # they were, and again while the refit changes what is clipped.
        for _ in range(self.max_iter if self.robust else 0):
            changed = False
            for _ in range(self.max_iter):
                updated = self._clip_to_gp(fit, params, flags)
                if np.array_equal(updated, flags):
                    break
                flags, changed = updated, True
                layout = fit.layout
                fit = model(flags)
                if not _same_layout(layout, fit.layout):
                    params = fit.optimise()
                    evaluations += fit.n_evaluations
            if not changed:
                break
            fit.n_evaluations = 0
            params = fit.optimise(params)
            evaluations += fit.n_evaluations
        fit.n_evaluations = evaluations
        if self.select:
            fit, params, models = _select(fit, params, data, gidx, bidx,
                                          flags == 0, len(groups),
                                          len(bands))
        else:
            models = None
        return (*fit.summarise(params, groups, bands, models=models,
                               signal_mean=self.offsets_at == 'signal_mean'),
                flags)


def _binned_median(keys, values, n_bins):
    """Median of ``values`` in each bin ``keys`` (0..n_bins-1, all used)."""
    order = np.lexsort((values, keys))
    counts = np.bincount(keys, minlength=n_bins)
    start = np.r_[0, np.cumsum(counts)[:-1]]
    ordered = values[order]
    low = ordered[start + (counts - 1) // 2]
    high = ordered[start + counts // 2]
    return 0.5 * (low + high)


class _GPFit:
    """One model's restricted likelihood on the used points, and its fit."""

    def __init__(self, data, gidx, bidx, use, n_groups, n_bands, *,
                 jitter, error_scale, amplitude_ratio, trend,
                 reference_band=None):
        self.data, self.gidx, self.bidx, self.use = data, gidx, bidx, use
        self.n_evaluations = 0
        self._last = None
        self._bounds = None
        self.n_groups, self.n_bands = n_groups, n_bands
        self.options = {'jitter': bool(jitter),
                        'error_scale': bool(error_scale),
                        'amplitude_ratio': bool(amplitude_ratio),
                        'trend': int(trend)}
        used_bands = np.unique(bidx[use])
        counts = np.bincount(bidx[use], minlength=n_bands)
        self.reference_band = int(np.argmax(counts)) \
            if reference_band is None else int(reference_band)
        ratio_bands = np.array([b for b in used_bands
                                if b != self.reference_band], dtype=int) \
            if amplitude_ratio else np.zeros(0, dtype=int)
        self.layout = Layout(n_groups=n_groups, ratio_bands=ratio_bands,
                             jitter=bool(jitter),
                             error_scale=bool(error_scale))
        self.design, self.columns, self.trend_columns = _design(
            data['t'], gidx, bidx, use, trend)
        self.likelihood = RestrictedLikelihood(
            data['t'], data['y'], data['err'], group=gidx, band=bidx,
            use=use, design=self.design, layout=self.layout,
            n_bands=n_bands)

    def bounds(self):
        """Lower and upper bounds and the start of the fit's parameters."""
        if self._bounds is None:
            self._bounds = self._compute_bounds()
        return tuple(v.copy() for v in self._bounds)

    def _compute_bounds(self):
        t, y = self.data['t'][self.use], self.data['y'][self.use]
        span = max(t.max() - t.min(), 1.0)
        gaps = np.diff(t)
        cadence = max(np.median(gaps[gaps > 0]) if (gaps > 0).any() else
                      1.0, 0.01)
        scatter = max(float(np.std(y)), 1e-3)
        lay = self.layout
        lower = [np.log(1e-4), np.log(cadence)]
        upper = [np.log(10 * scatter + 1.0), np.log(10 * span)]
        start = [np.log(scatter),
                 np.log(min(max(0.1 * span, cadence), span))]
        n = len(lay.ratio_bands)
        lower += [np.log(0.05)] * n
        upper += [np.log(20.0)] * n
        start += [0.0] * n
        if lay.jitter:
            lower += [np.log(1e-4)] * lay.n_groups
            upper += [np.log(1.0)] * lay.n_groups
            start += list(np.log(self._excess_scatter(robust=True)))
        if lay.error_scale:
            lower += [np.log(0.1)] * lay.n_groups
            upper += [np.log(30.0)] * lay.n_groups
            start += [0.0] * lay.n_groups
        return np.array(lower), np.array(upper), np.array(start)

    def _excess_scatter(self, *, robust):
        """
        Estimate each group's scatter beyond its stated errors.

        From differences of its consecutive points: starts for the
        jitters. Real light curves have separate maxima where a group's jitter
        absorbs its noise (and outliers) and where a fast DRW does: on
        the real Sky Patrol files tried, a start at a small jitter ended
        up to 100, one at the full scatter up to 280, in log likelihood
        below the better maximum. Both starts are tried.
        """
        out = np.full(self.n_groups, 0.005)
        y, err = self.data['y'], self.data['err']
        spread = mad_std if robust else np.std
        for g in np.unique(self.gidx[self.use]):
            sel = self.use & (self.gidx == g)
            if sel.sum() < 5:
                continue
            excess = (spread(np.diff(y[sel])) / np.sqrt(2)) ** 2 \
                - np.median(err[sel]) ** 2
            out[g] = np.sqrt(excess) if excess > 0 else 1e-3
        return np.clip(out, 2e-4, 0.5)

    def optimise(self, start=None):
        """
        Maximise the restricted likelihood.

        The likelihood of a DRW has separate maxima at short and long
        timescales and where a group's jitter or a fast DRW absorbs its
        noise; a single start lands in any of them (on the 28 real Sky
        Patrol files tried, up to 280 in log likelihood below the best).
        Without ``start``, a coarse grid (timescale, amplitude, two starts
        for the jitters) is scored with the unrestricted likelihood at the
        groups' median offsets (one solve per point instead of one per
        linear parameter), the fit climbs a few steps from the best grid
        point of each third of the timescale range and follows the
        highest to convergence. On more than ``2 * _EXPLORE_POINTS``
        used points the grid and the first steps are taken on a
        subsample (`_explorer`) and only the last climb on all points.
        """
        lower, upper, x0 = self.bounds()
        bounds = list(zip(lower, upper, strict=True))
        evaluations = 0
        explorer = self
        if start is None:
            explorer = self._explorer()
            starts, evaluations = explorer._grid_starts(x0, lower, upper)
        else:
            starts = [np.clip(start, lower, upper)]
        best = None
        scale = explorer._scale(starts[0])
        for x in starts:
            # A few steps from each start tell which maximum is highest;
            # only that one is followed to convergence.
            explore = len(starts) > 1 or explorer is not self
            res = explorer._climb(x, bounds, scale=scale,
                                  maxiter=10 if explore else None)
            evaluations += int(res.nfev)
            if best is None or res.fun < best.fun:
                best = res
        if explorer is not self:
            # From the subsample's point, far along the DRW's degenerate
            # valley and the small jitters' flat slopes, the climb in the
            # logarithms took 30 evaluations at 10^5 points, and a fresh
            # L-BFGS-B's first step, along the bare gradient, gained too
            # little and stopped it 9 below the maximum at 3 x 10^4; in
            # `_ClimbCoordinates` scaled by the subsample's curvature, 8
            # reach it. (On the real files, all below the subsample's
            # size, the coordinates would change which of nearby maxima
            # the climb reaches, so they are kept to this.)
            curvature = explorer._curvature(best.x, bounds) * (
                np.count_nonzero(self.use) / np.count_nonzero(explorer.use))
            evaluations += len(best.x) + 1
            best = self._climb(best.x, bounds, coordinates=True,
                               curvature=curvature)
            evaluations += int(best.nfev)
        elif len(starts) > 1:
            best = self._climb(best.x, bounds, scale=scale)
            evaluations += int(best.nfev)
        self.n_evaluations += evaluations
        return best.x

    def _evaluate(self, p):
        """
        Evaluate the likelihood and its gradient at ``p``, remembered.

        The climb's last evaluation is usually at the point it returns,
        where the summary and the Laplace errors ask again.
        """
        p = np.asarray(p, dtype=float)
        if self._last is not None and np.array_equal(self._last[0], p):
            return self._last[1]
        out = self.likelihood(p)
        self._last = (p.copy(), out)
        return out

    def _negll(self, p):
        try:
            ll, grad = self._evaluate(p)
        except (np.linalg.LinAlgError, ValueError):
            return 1e25, np.zeros(len(p))
        if not np.isfinite(ll):
            return 1e25, np.zeros(len(p))
        return -ll, -grad

    def _scale(self, x):
        """
        |log likelihood| at ``x``, for the climbs' tolerance.

        With the gradient, remembered: a climb starts there.
        """
        try:
            value = self._evaluate(x)[0]
        except (np.linalg.LinAlgError, ValueError):
            return 1e25
        return max(abs(value), 1.0) if np.isfinite(value) else 1e25

    def _climb(self, x, bounds, *, scale=None, maxiter=None,
               coordinates=False, curvature=None):
        """
        L-BFGS-B on the restricted likelihood from ``x``.

        In the logarithms, or with ``coordinates`` in those of
        `_ClimbCoordinates`, each divided by the square root of
        ``curvature`` (there) if given, so that the first step, which
        L-BFGS-B takes along the gradient, is the diagonal Newton step.
        ``scale``: the tolerance's (`_scale`); by default from the start.
        """
        if coordinates:
            coords = _ClimbCoordinates(self, bounds)
            d = np.ones(len(x)) if curvature is None else np.sqrt(curvature)
            w0 = coords.to_u(x) * d
            # The start as the climb will evaluate it (remembered).
            x = coords.to_x(w0 / d)
        if scale is None:
            scale = self._scale(x)
        # Converged when a step gains less than 0.01 in log likelihood
        # (a few hundredths of a standard error of any parameter), not at
        # scipy's default relative 2e-9, which on 10^5 points asked for
        # gains of 1e-3 and doubled the evaluations.
        options = {'ftol': 0.01 / scale}
        if maxiter is not None:
            options['maxiter'] = maxiter
        if not coordinates:
            return minimize(self._negll, x, jac=True, method='L-BFGS-B',
                            bounds=bounds, options=options)

        def negll(w):
            u = w / d
            value, grad = self._negll(coords.to_x(u))
            return value, coords.gradient(u, grad) / d

        res = minimize(negll, w0, jac=True,
                       method='L-BFGS-B',
                       bounds=[(lo * s, hi * s) for (lo, hi), s in zip(
                           coords.bounds, d, strict=True)],
                       options=options)
        res.x = coords.to_x(res.x / d)
        return res

    def _curvature(self, x, bounds):
        """
        Diagonal of the negative Hessian in `_ClimbCoordinates` at ``x``.

        By differences of the gradient; where it is not positive (a
        bound, a saddle) 1, L-BFGS-B's own assumption.
        """
        coords = _ClimbCoordinates(self, bounds)
        u = coords.to_u(x)
        g0 = coords.gradient(u, self._evaluate(x)[1])
        steps = coords.steps(u)
        out = np.ones(len(u))
        for i in range(len(u)):
            shifted = u.copy()
            shifted[i] += steps[i]
            try:
                grad = self.likelihood(coords.to_x(shifted))[1]
            except (np.linalg.LinAlgError, ValueError):
                continue
            value = -(coords.gradient(shifted, grad)[i] - g0[i]) / steps[i]
            if np.isfinite(value) and value > 0:
                out[i] = value
        return out

    def _explorer(self):
        """
        Return the fit to explore the starts with: this or a subsample's.

        Beyond ``2 * _EXPLORE_POINTS`` used points, every k-th point of
        each group (so that every group keeps points and its share),
        about ``_EXPLORE_POINTS`` in all: which of the maxima is highest
        shows on them at a tenth of the cost, and the final climb on all
        points corrects what the subsample got wrong.
        """
        used = np.flatnonzero(self.use)
        if len(used) <= 2 * _EXPLORE_POINTS:
            return self
        step = int(np.ceil(len(used) / _EXPLORE_POINTS))
        keep = np.zeros(len(self.use), dtype=bool)
        for g in np.unique(self.gidx[used]):
            keep[used[self.gidx[used] == g][::step]] = True
        data = {name: self.data[name][keep] for name in ('t', 'y', 'err')}
        return _GPFit(data, self.gidx[keep], self.bidx[keep],
                      np.ones(int(keep.sum()), dtype=bool), self.n_groups,
                      self.n_bands, **self.options,
                      reference_band=self.reference_band)

    def _beta_start(self):
        """Medians: the reference group's level and the others' shifts."""
        y = self.data['y']
        beta = np.zeros(self.design.shape[1])
        ref = self.use & (self.gidx == self.columns[0])
        beta[0] = np.median(y[ref])
        for k, g in enumerate(self.columns[1:], start=1):
            beta[k] = np.median(y[self.use & (self.gidx == g)]) - beta[0]
        return beta

    def _grid_starts(self, x0, lower, upper, *, n_starts=3):
        beta0 = self._beta_start()
        jitters = [None]
        if self.layout.jitter:
            sl = self.layout.slices()['log_jitter']
            jitters = [np.log(self._excess_scatter(robust=robust))
                       for robust in (True, False)]
        scored = []
        for jitter in jitters:
            for log_tau in np.linspace(lower[1], upper[1], 9):
                for shift in (-1.5, -0.5, 0.5):
                    p = x0.copy()
                    if jitter is not None:
                        p[sl] = jitter
                    p[0] = np.clip(x0[0] + shift, lower[0], upper[0])
                    p[1] = log_tau
                    try:
                        ll = self.likelihood.unrestricted(
                            p, beta0, gradient=False)[0]
                    except (np.linalg.LinAlgError, ValueError):
                        continue
                    if np.isfinite(ll):
                        scored.append((ll, log_tau, p))
        # The best grid point in each third of the timescale range: the
        # score at the median offsets does not tell which maximum is the
        # highest (on real files the best one was reached from a start
        # ranked fifth), but each third climbs to its own.
        edges = np.linspace(lower[1], upper[1], n_starts + 1)
        starts = []
        for lo, hi in itertools.pairwise(edges):
            inside = [item for item in scored if lo - 1e-9 <= item[1] <= hi]
            if inside:
                starts.append(max(inside, key=lambda item: item[0])[2])
        return starts or [x0], len(scored)

    def laplace(self, params):
        """
        Give the standard errors of the log-parameters (Laplace).

        The Hessian of the negative log-likelihood is differentiated from
        the analytic gradient in the climb's coordinates
        (`_ClimbCoordinates`), where the likelihood is regular at a
        jitter of zero: in the logarithm its curvature there vanishes
        below the differences' rounding (10^5 points without jitter made
        the Hessian indefinite and every error NaN). The covariance is
        carried back to the logarithms; at an interior maximum the two
        agree. Parameters at a bound of the fit (a jitter too small to
        matter, say) get NaN.
        """
        lower, upper, _ = self.bounds()
        size = len(params)
        free = (params > lower + 1e-3) & (params < upper - 1e-3)
        # The noise terms of groups without a point in the fit are not
        # constrained at all (a zero row of the Hessian).
        fitted = np.bincount(self.gidx[self.use],
                             minlength=self.n_groups) > 0
        sl = self.layout.slices()
        for name in ('log_jitter', 'log_scale'):
            if name in sl:
                free[sl[name]] &= fitted
        errors = np.full(size, np.nan)
        if not free.any():
            return errors
        coords = _ClimbCoordinates(self, list(zip(lower, upper,
                                                  strict=True)))
        u = coords.to_u(params)
        g0 = coords.gradient(u, self._evaluate(params)[1])
        steps = coords.steps(u)
        # Only the free parameters' columns: the others are not used.
        index = np.flatnonzero(free)
        hess = np.empty((len(index), len(index)))
        for col, i in enumerate(index):
            shifted = u.copy()
            shifted[i] += steps[i]
            grad = coords.gradient(shifted, self.likelihood(
                coords.to_x(shifted))[1])
            hess[:, col] = -(grad[index] - g0[index]) / steps[i]
        hess = 0.5 * (hess + hess.T)
        try:
            cov = np.linalg.inv(hess)
        except np.linalg.LinAlgError:
            return errors
        jac = coords.jacobian(u)[np.ix_(index, index)]
        diag = np.diag(jac @ cov @ jac.T)
        errors[free] = np.where(diag > 0, np.sqrt(np.abs(diag)), np.nan)
        return errors

    def summarise(self, params, groups, bands, *, models=None,
                  signal_mean=False):
        lay = self.layout
        lik = self.likelihood
        ll, _ = self._evaluate(params)
        sol = lik.solution(params, signal_mean=signal_mean)
        log_err = self.laplace(params)
        sigma, tau, ratio, jitter, scale = lay.unpack(params,
                                                      self.n_bands)
        sl = lay.slices()
        beta, cov = sol['beta'], sol['beta_cov']
        offset = np.full(self.n_groups, np.nan)
        offset_err = np.full(self.n_groups, np.nan)
        ref = self.columns[0]
        offset[ref] = 0.0
        offset_err[ref] = 0.0
        others = self.columns[1:]
        offset[others] = beta[1:1 + len(others)]
        offset_err[others] = np.sqrt(np.diag(cov)[1:1 + len(others)])
        ratio_err = np.zeros(self.n_bands)
        ratio_err[lay.ratio_bands] = ratio[lay.ratio_bands] * log_err[
            sl['log_ratio']]
        level = float(beta[0])
        if signal_mean:
            # y = mean + offset + r s: with s = sbar + s', the reference
            # group's level at sbar is mean + r_ref sbar and each offset
            # gains (r - r_ref) sbar.
            sbar = sol['signal_mean']
            band = self._band_of_group()[others]
            r_ref = ratio[self._band_of_group()[ref]]
            dr = ratio[band] - r_ref
            dr_err = np.hypot(ratio_err[band],
                              ratio_err[self._band_of_group()[ref]])
            offset[others] += dr * sbar
            cross = sol['signal_mean_beta_cov'][1:1 + len(others)]
            var = offset_err[others] ** 2 + dr**2 * sol['signal_mean_var'] \
                + 2 * dr * cross + (sbar * np.nan_to_num(dr_err)) ** 2
            offset_err[others] = np.sqrt(np.maximum(var, 0.0))
            level += r_ref * sbar
        jitter_err = jitter * log_err[sl['log_jitter']] if lay.jitter \
            else np.zeros(self.n_groups)
        scale_err = scale * log_err[sl['log_scale']] \
            if lay.error_scale else np.zeros(self.n_groups)
        n_params = self.n_parameters()
        bic = self.bic(sol)
        trend = {str(bands[b]): [float(v) for v in beta[cols]]
                 for b, cols in self.trend_columns.items()}
        drw = {'sigma': sigma, 'sigma_err': float(sigma * log_err[0]),
               'tau': tau, 'tau_err': float(tau * log_err[1]),
               'jitter': {str(groups[g]): float(jitter[g])
                          for g in range(self.n_groups)},
               'reference': str(groups[ref]),
               'mean': level,
               'offsets_at': 'signal_mean' if signal_mean
               else 'process_mean',
               'model': dict(self.options),
               'reference_band': str(bands[self.reference_band]),
               'amplitude_ratio': {str(bands[b]): float(ratio[b])
                                   for b in range(self.n_bands)},
               'amplitude_ratio_err': {str(bands[b]): float(ratio_err[b])
                                       for b in range(self.n_bands)},
               'error_scale': {str(groups[g]): float(scale[g])
                               for g in range(self.n_groups)},
               'trend': trend,
               'n_parameters': int(n_params),
               'bic': float(bic),
               'ml_log_likelihood': sol['ml_log_likelihood'],
               'n_evaluations': self.n_evaluations}
        if lay.ratio_bands.size:
            # A ratio pinned to a bound is a degenerate fit, not an
            # estimate: the Laplace error is NaN there and the CLI only
            # says 'at the bound'; name it so that it is not missed.
            lower, upper, _ = self.bounds()
            log_ratio = params[sl['log_ratio']]
            at_bound = {}
            for k, band in enumerate(lay.ratio_bands):
                for edge in (lower[sl['log_ratio']][k],
                             upper[sl['log_ratio']][k]):
                    if abs(log_ratio[k] - edge) < 1e-3:
                        at_bound[str(bands[band])] = float(np.exp(edge))
            if at_bound:
                drw['ratio_at_bound'] = at_bound
        if models is not None:
            drw['selection'] = models
        per_group = {'jitter': jitter, 'jitter_err': jitter_err,
                     'error_scale': scale, 'error_scale_err': scale_err,
                     'ratio': ratio[self._band_of_group()]}
        return offset, offset_err, drw, ll, per_group

    def n_parameters(self):
        """Variance parameters that the data constrain, plus the linear."""
        lay = self.layout
        fitted = int(np.count_nonzero(np.bincount(
            self.gidx[self.use], minlength=self.n_groups)))
        return 2 + len(lay.ratio_bands) + fitted * (
            int(lay.jitter) + int(lay.error_scale)) + self.design.shape[1]

    def bic(self, solution):
        """Bayesian information criterion (unrestricted likelihood)."""
        return float(-2 * solution['ml_log_likelihood']
                     + self.n_parameters() * np.log(int(self.use.sum())))

    def _band_of_group(self):
        band = np.zeros(self.n_groups, dtype=int)
        band[self.gidx] = self.bidx
        return band


class _ClimbCoordinates:
    """
    The variables the optimiser climbs in, and back.

    The likelihood takes logarithms; two of them make L-BFGS crawl. The
    DRW's amplitude and timescale are degenerate along sigma^2 / tau =
    const (the short-timescale diffusion, which the data fix): the climb
    runs in ``log(sigma / sqrt(tau))`` and ``log(tau)``. A jitter far
    below its group's errors barely changes the likelihood, whose
    gradient in ``log(jitter)`` vanishes there as the jitter squared:
    from a start above it the climb crept towards the lower bound for
    twenty steps of a few tenths in log likelihood each (10^5 points, no
    jitter). The climb runs in ``(jitter / e_g)^2`` (``e_g`` the group's
    median error), whose gradient stays finite, so that the bound is
    reached in one projected step. The bounds are the same jitters,
    timescales and amplitudes as before.
    """

    def __init__(self, fit, bounds):
        lower, upper = np.array(bounds, dtype=float).T
        self.jitter = fit.layout.slices().get('log_jitter')
        if self.jitter is not None:
            err = np.ones(fit.n_groups)
            used = fit.use
            for g in np.unique(fit.gidx[used]):
                err[g] = np.median(fit.data['err'][used & (fit.gidx == g)])
            self.log_err = np.log(err)
        lo, hi = self.to_u(lower), self.to_u(upper)
        # The amplitude's bound along the timescale's range.
        lo[0], hi[0] = lower[0] - 0.5 * upper[1], upper[0] - 0.5 * lower[1]
        self.bounds = list(zip(lo, hi, strict=True))
        self._lower, self._upper = lower, upper

    def to_u(self, x):
        u = np.array(x, dtype=float)
        u[0] -= 0.5 * u[1]
        if self.jitter is not None:
            u[self.jitter] = np.exp(2 * (u[self.jitter] - self.log_err))
        return u

    def to_x(self, u):
        x = np.array(u, dtype=float)
        x[0] += 0.5 * x[1]
        if self.jitter is not None:
            with np.errstate(divide='ignore'):
                x[self.jitter] = 0.5 * np.log(x[self.jitter]) + self.log_err
        return np.clip(x, self._lower, self._upper)

    def gradient(self, u, grad_x):
        """Carry the gradient in the logarithms over to ``u``."""
        g = np.array(grad_x, dtype=float)
        g[1] += 0.5 * g[0]
        if self.jitter is not None:
            g[self.jitter] /= 2 * np.asarray(u)[self.jitter]
        return g

    def jacobian(self, u):
        """Differentiate the logarithms in ``u``."""
        jac = np.eye(len(u))
        jac[0, 1] = 0.5
        if self.jitter is not None:
            sl = self.jitter
            jac[sl, sl] = np.diag(1 / (2 * np.asarray(u)[sl]))
        return jac

    def steps(self, u):
        """
        Give the steps of the Hessian's differences.

        1e-4 in each logarithm, 1e-4 in a jitter's ``u`` (relative above
        1).
        """
        steps = np.full(len(u), 1e-4)
        if self.jitter is not None:
            steps[self.jitter] *= np.maximum(np.asarray(u)[self.jitter],
                                             1.0)
        return steps


def _select(fit, params, data, gidx, bidx, use, n_groups, n_bands):
    """
    Choose the model by the Bayesian information criterion.

    Among the fitted one and those with one optional term (or all) off.
    The criterion uses the unrestricted likelihood at the restricted
    estimates, since restricted likelihoods of different designs (trend
    terms) cannot be compared.
    """
    rich = fit.options
    candidates = [rich]
    for name in ('error_scale', 'amplitude_ratio'):
        if rich[name]:
            candidates.append({**rich, name: False})
    if rich['trend']:
        candidates.append({**rich, 'trend': 0})
    if len(candidates) > 2:
        candidates.append({**rich, 'error_scale': False,
                           'amplitude_ratio': False, 'trend': 0})
    results = []
    for options in candidates:
        cand = fit if options == rich else _GPFit(
            data, gidx, bidx, use, n_groups, n_bands, **options)
        p = params if cand is fit else cand.optimise(
            _transfer(params, fit.layout, cand.layout))
        bic = cand.bic(cand.likelihood.solution(p))
        results.append((bic, cand, p, options))
    best = min(results, key=lambda r: r[0])
    table = [{**opts, 'bic': float(b), 'chosen': c is best[1]}
             for b, c, _, opts in results]
    return best[1], best[2], table


def _same_layout(a, b):
    return a is not None and (a.n_groups, a.jitter, a.error_scale) == (
        b.n_groups, b.jitter, b.error_scale) and np.array_equal(
            a.ratio_bands, b.ratio_bands)


def _transfer(params, source, target):
    """Start values for a nested model from a fitted richer one."""
    src, dst = source.slices(), target.slices()
    out = np.zeros(target.size)
    out[:2] = params[:2]
    for name in ('log_jitter', 'log_scale'):
        if name in dst and name in src:
            out[dst[name]] = params[src[name]]
    if len(target.ratio_bands) == len(source.ratio_bands):
        out[dst['log_ratio']] = params[src['log_ratio']]
    return out


def _design(t, gidx, bidx, use, trend):
    """
    Build the linear parameters' design on every point (left out too).

    A mean column, one per used group but the largest (the reference),
    and for each used band the powers 1..trend of the time scaled to
    [-1, 1].
    """
    fit_groups = np.unique(gidx[use])
    counts = np.bincount(gidx[use], minlength=int(gidx.max()) + 1)
    reference = fit_groups[np.argmax(counts[fit_groups])]
    others = [g for g in fit_groups if g != reference]
    columns = [np.ones(len(gidx))]
    columns += [(gidx == g).astype(float) for g in others]
    trend_columns = {}
    if trend:
        tu = t[use]
        mid, half = 0.5 * (tu.max() + tu.min()), \
            max(0.5 * (tu.max() - tu.min()), 1.0)
        scaled = (t - mid) / half
        for b in np.unique(bidx[use]):
            trend_columns[int(b)] = list(range(
                len(columns), len(columns) + int(trend)))
            columns += [(bidx == b) * scaled**d
                        for d in range(1, int(trend) + 1)]
    return (np.column_stack(columns), np.array([reference, *others]),
            trend_columns)


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
            offset_err, drw, ll, group_flags, reasons, n_used, extra):
    order = data['order']
    flags = flags | group_flags[gidx]
    n_groups = len(groups)
    if extra is None:
        # The paper's procedure has no noise model and one amplitude.
        extra = {'jitter': np.zeros(n_groups),
                 'jitter_err': np.zeros(n_groups),
                 'error_scale': np.ones(n_groups),
                 'error_scale_err': np.zeros(n_groups),
                 'ratio': np.ones(n_groups)}
    out = QTable()
    time = lightcurve['time']
    out['time'] = time[order]
    shift = -np.nan_to_num(offset[gidx], nan=0.0)
    ratio = extra['ratio'][gidx]
    level = drw.get('mean', 0.0)
    # Other bands' variability put on the reference band's scale.
    out['mag'] = (level + (data['y'] + shift - level) / ratio) * u.mag
    out['mag_err'] = data['err'] / ratio * u.mag
    model_var = (extra['error_scale'][gidx] * data['err']) ** 2 \
        + extra['jitter'][gidx] ** 2
    out['mag_err_model'] = np.sqrt(model_var) / ratio * u.mag
    out['camera'] = data['camera']
    out['filter'] = data['filter']
    out['group'] = data['group']
    out['offset'] = shift * u.mag
    out['ratio'] = ratio
    out['mag_raw'] = data['y'] * u.mag
    out['flags'] = data['incoming'] | flags
    table = QTable()
    table['group'] = groups
    table['offset'] = offset * u.mag
    table['offset_err'] = offset_err * u.mag
    table['n'] = np.bincount(gidx, minlength=n_groups)
    table['n_used'] = n_used
    table['jitter'] = extra['jitter'] * u.mag
    table['jitter_err'] = extra['jitter_err'] * u.mag
    table['error_scale'] = extra['error_scale']
    table['error_scale_err'] = extra['error_scale_err']
    table['ratio'] = extra['ratio']
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
