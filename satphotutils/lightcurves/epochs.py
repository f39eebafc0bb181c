# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Per-exposure measurements to per-epoch light curves, and their statistics.

Pure NumPy/astropy: no I/O.
"""

import warnings

import numpy as np
from astropy import units as u
from astropy.stats import sigma_clip
from astropy.table import QTable
from astropy.time import Time
from astropy.timeseries import TimeSeries
from astropy.utils.exceptions import AstropyUserWarning

from satphotutils.utils.flags import SATPHOT_FLAGS
from satphotutils.utils.stats import dispersion

__all__ = ['REJECT_FLAGS', 'assign_epochs', 'combine_epochs',
           'combine_exposures', 'lightcurve_statistics']

#: Exposure flags that keep an exposure out of its epoch's value and out of
#: the statistics: an epoch with only such exposures is NaN, flags kept.
REJECT_FLAGS = (SATPHOT_FLAGS.DAMAGED_CORE | SATPHOT_FLAGS.NO_OVERLAP
                | SATPHOT_FLAGS.NON_FINITE_DATA
                | SATPHOT_FLAGS.NO_CALIBRATION)


def assign_epochs(times, *, window=0.1, groups=None):
    """
    Assign epoch numbers to exposure times.

    Exposures closer than ``window`` days to the previous one (in time
    order) share its epoch, as ASAS-SN's three dithered exposures do.
    ``window=0`` combines nothing: each exposure is an epoch, even two of
    one time (a high-cadence series).
    With ``groups``, each group (a target, say) has epochs of its own:
    an epoch never holds exposures of two groups.

    An exposure whose time is not finite (unknown) is an epoch by itself:
    nothing says which exposures it was taken with.

    Parameters
    ----------
    times : array-like
        Exposure times in days (e.g. MJD).

    window : float, optional
        Largest gap (days) within an epoch; 0 for one epoch per exposure.

    groups : array-like, optional
        Group of each exposure (any values `numpy.unique` can sort).

    Returns
    -------
    epoch : `~numpy.ndarray` of int
        Epoch number of each exposure, in the input order: 0, 1, ... in
        order of group and time, the epochs of unknown times after the
        others of their group; unique across groups.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.lightcurves import assign_epochs
    >>> assign_epochs([10.0, 10.001, 10.002, 12.0, 12.001]).tolist()
    [0, 0, 0, 1, 1]
    >>> assign_epochs([10.0, 10.001, 10.0, 12.0, np.nan],
    ...               groups=['a', 'a', 'b', 'b', 'b']).tolist()
    [0, 0, 1, 2, 3]
    >>> assign_epochs([10.0, 10.0, 10.002], window=0).tolist()
    [0, 1, 2]
    """
    times = np.asarray(times, dtype=float).ravel()
    n = len(times)
    if groups is None:
        group = np.zeros(n, dtype=np.int64)
    else:
        group = _codes(np.asarray(groups).ravel())[1]
        if len(group) != n:
            msg = (f'groups must have one value per time ({n}), got '
                   f'{len(group)}')
            raise ValueError(msg)
    # Time order within each group; argsort puts unknown (NaN) times last.
    order = np.lexsort((times, group))
    t, g = times[order], group[order]
    new = np.ones(n, dtype=bool)
    if window > 0:
        with np.errstate(invalid='ignore'):
            # A NaN gap is never within the window.
            new[1:] = (g[1:] != g[:-1]) | ~(np.diff(t) <= window)
    epoch = np.empty(n, dtype=np.int64)
    epoch[order] = np.cumsum(new) - 1
    return epoch


# astropy.stats.mad_std's scale: MAD to Gaussian sigma.
_MAD_TO_SIGMA = 1.482602218505602


def _sorted_groups(group, values, n_groups):
    """Sort values within groups; return them with group starts and sizes."""
    order = np.lexsort((values, group))
    counts = np.bincount(group, minlength=n_groups)
    start = np.cumsum(counts) - counts
    return values[order], start, counts


def _group_median(group, values, n_groups):
    v, start, counts = _sorted_groups(group, values, n_groups)
    med = np.full(n_groups, np.nan)
    ok = counts > 0
    lo = start[ok] + (counts[ok] - 1) // 2
    hi = start[ok] + counts[ok] // 2
    med[ok] = 0.5 * (v[lo] + v[hi])
    return med, v, start, counts


def _combine_groups(group, values, errors, n_groups):
    """
    Combine values by group with the paper's rule, all groups at once.

    The median of each group, the mean of two, the value of one. The
    uncertainty is the propagated error of that estimate or, when larger,
    the scatter of the exposures (a median is 1.2533x noisier than the
    mean of Gaussian values). Groups without values give NaN.
    """
    med, v, start, n = _group_median(group, values, n_groups)
    sum_e2 = np.bincount(group, weights=errors**2, minlength=n_groups)
    value = np.full(n_groups, np.nan)
    error = np.full(n_groups, np.nan)
    one, two, many = n == 1, n == 2, n >= 3
    value[one] = v[start[one]]
    error[one] = np.sqrt(sum_e2[one])
    value[two] = med[two]
    error[two] = np.maximum(
        0.5 * np.sqrt(sum_e2[two]),
        0.5 * (v[start[two] + 1] - v[start[two]]))
    if many.any():
        dev, _, _, _ = _group_median(group, np.abs(values - med[group]),
                                     n_groups)
        stat = np.sqrt(sum_e2[many] / n[many] / n[many])
        spread = _MAD_TO_SIGMA * dev[many] / np.sqrt(n[many])
        value[many] = med[many]
        error[many] = 1.2533 * np.maximum(stat, spread)
    # A NaN anywhere in a group makes its estimate NaN, as np.median does.
    bad = np.bincount(group, weights=~np.isfinite(values),
                      minlength=n_groups) > 0
    value[bad] = np.nan
    error[bad] = np.nan
    return value, error


def _codes(values):
    uniq, inverse = np.unique(values, return_inverse=True)
    return uniq, inverse.ravel()


def _group_index(*keys):
    """
    Group rows with equal keys, the most significant key first.

    Returns the group of each row (groups numbered in key order), the
    number of groups, the rows in key order and, along that order, where
    a new group starts.
    """
    keys = [k if k.dtype.kind in 'iu' else _codes(k)[1]
            for k in map(np.asarray, keys)]
    order = np.lexsort(keys[::-1])
    new = np.zeros(len(order), dtype=bool)
    new[:1] = True
    for k in keys:
        k = k[order]
        new[1:] |= k[1:] != k[:-1]
    group = np.empty(len(order), dtype=np.int64)
    group[order] = np.cumsum(new) - 1
    return group, int(new.sum()), order, new


def combine_exposures(exposures, *, window=0.1, carry=()):
    """
    Combine the exposures of many targets into per-epoch measurements.

    Exposures are grouped by target (``target`` column, if any), epoch
    (``epoch`` column, or `assign_epochs` of each target's times with
    ``window``), camera and filter, and combined by the paper's rule: the
    median of the exposures, the mean of two, the value of one; the
    uncertainty is robust (the larger of the propagated errors and the
    scatter of the exposures). Exposures with a flag in
    `~satphotutils.lightcurves.REJECT_FLAGS` (damaged core, no overlap,
    non-finite data, no calibration) are left out and counted in
    ``n_rejected``; so are rows with a non-finite magnitude. Flags of the
    exposures used are OR-ed. An epoch left without usable exposures has
    NaN ``mag``, ``mag_err``, ``flux`` and ``flux_err``, no exposures used
    and the OR of all its exposures' flags. All targets are combined in
    one vectorised pass.

    Parameters
    ----------
    exposures : `~astropy.table.Table`
        ``time`` (`~astropy.time.Time`), ``mag``, ``mag_err``, ``flux``,
        ``flux_err``, ``flags`` and optional ``target``, ``camera``,
        ``filter`` and ``epoch``.

    window : float, optional
        Largest gap (days) within an epoch when there is no ``epoch``
        column; 0 for one epoch per exposure (see `assign_epochs`).

    carry : sequence of str, optional
        Columns of per-exposure values (the frame, the position measured,
        its zero point...) copied to the epochs from each epoch's first
        exposure in time: the exposure's own values when each epoch is
        one exposure (``window=0``). Names not in ``exposures`` are
        skipped.

    Returns
    -------
    epochs : `~astropy.table.QTable`
        One row per target and epoch, sorted by target and time:
        ``target`` (when given), ``time`` (mean time of the epoch's
        exposures, in the scale of the input), ``mag``, ``mag_err``,
        ``flux``, ``flux_err``, ``camera``, ``filter``, ``n_exposures``,
        ``n_rejected`` and ``flags``, then the ``carry`` columns.

    Raises
    ------
    TypeError
        If ``time`` is not an astropy `~astropy.time.Time` column.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import Table
    >>> from astropy.time import Time
    >>> from satphotutils.lightcurves import combine_exposures
    >>> exp = Table({'target': [0, 0, 0, 1, 1],
    ...              'time': Time([1.0, 1.01, 1.02, 1.0, 1.01],
    ...                           format='mjd'),
    ...              'mag': [8.0, 8.1, 9.0, 10.0, 10.2],
    ...              'mag_err': np.full(5, 0.01),
    ...              'flux': np.ones(5), 'flux_err': np.ones(5),
    ...              'flags': np.zeros(5, int)})
    >>> ep = combine_exposures(exp)
    >>> ep['target'].tolist(), np.round(ep['mag'].value, 3).tolist()
    ([0, 1], [8.1, 10.1])
    """
    t = exposures['time']
    if not isinstance(t, Time):
        msg = ('exposures need a time column of astropy Time; convert it '
               "with Time(table['time'], format='mjd')")
        raise TypeError(msg)
    n = len(exposures)
    mjd = np.asarray(t.mjd, dtype=float).reshape(n)
    target = np.asarray(exposures['target'], dtype=np.int64) \
        if 'target' in exposures.colnames else np.zeros(n, np.int64)
    camera = np.asarray(exposures['camera'], dtype=str) \
        if 'camera' in exposures.colnames else np.full(n, '')
    filt = np.asarray(exposures['filter'], dtype=str) \
        if 'filter' in exposures.colnames else np.full(n, '')
    if 'epoch' in exposures.colnames:
        epoch = np.asarray(exposures['epoch'], dtype=np.int64)
    else:
        epoch = assign_epochs(mjd, window=window, groups=target)
    cameras, cam_code = _codes(camera)
    filters, filt_code = _codes(filt)
    group, n_groups, order, new = _group_index(target, epoch, cam_code,
                                               filt_code)
    first = order[new]  # the first member of each group

    mag = _value(exposures['mag'])
    flags = np.asarray(exposures['flags'], dtype=np.int64)
    # Rejected exposures are never used, even when nothing else is left:
    # a damaged core's network value can be 100 mag off.
    use = np.isfinite(mag) & ((flags & REJECT_FLAGS) == 0)
    n_members = np.bincount(group, minlength=n_groups)
    n_used = np.bincount(group, weights=use, minlength=n_groups
                         ).astype(np.int64)
    has_used = n_used > 0
    # OR of the used exposures' flags, or of all when none is usable.
    contributing = np.where(has_used[group], use, True)
    grouped = np.where(contributing, flags, 0)[order]
    combined_flags = np.bitwise_or.reduceat(grouped, np.flatnonzero(new))

    g = group[use]
    out = {}
    for name in ('mag', 'flux'):
        values = _value(exposures[name])
        errors = _value(exposures[f'{name}_err'])
        out[name], out[f'{name}_err'] = _combine_groups(
            g, values[use], errors[use], n_groups)
    time = np.bincount(group, weights=mjd, minlength=n_groups) / n_members
    result_order = np.lexsort((time, target[first]))
    table = QTable()
    if 'target' in exposures.colnames:
        table['target'] = target[first][result_order]
    table['time'] = Time(time[result_order], format='mjd', scale=t.scale)
    mag_unit = getattr(exposures['mag'], 'unit', None) or u.mag
    flux_unit = getattr(exposures['flux'], 'unit', None) or 1
    table['mag'] = out['mag'][result_order] * mag_unit
    table['mag_err'] = out['mag_err'][result_order] * mag_unit
    table['flux'] = out['flux'][result_order] * flux_unit
    table['flux_err'] = out['flux_err'][result_order] * flux_unit
    table['camera'] = cameras[cam_code[first]][result_order]
    table['filter'] = filters[filt_code[first]][result_order]
    table['n_exposures'] = n_used[result_order]
    table['n_rejected'] = (n_members - n_used)[result_order]
    table['flags'] = combined_flags[result_order]
    if carry:
        earliest = _earliest(group, mjd, n_groups)
        for name in carry:
            if name in exposures.colnames and name not in table.colnames:
                table[name] = exposures[name][earliest][result_order]
    return table


def _earliest(group, mjd, n_groups):
    """Return the first exposure in time of each group (NaN last)."""
    order = np.lexsort((mjd, group))
    start = np.ones(len(order), dtype=bool)
    start[1:] = group[order][1:] != group[order][:-1]
    out = np.empty(n_groups, dtype=np.int64)
    out[group[order][start]] = order[start]
    return out


def combine_epochs(exposures, *, window=0.1):
    """
    Combine the exposures of one target into a per-epoch light curve.

    The rules are those of `combine_exposures` (which does many targets
    at once); this returns the one target's light curve as a
    `~astropy.timeseries.TimeSeries`.

    Parameters
    ----------
    exposures : `~astropy.table.Table`
        ``time`` (`~astropy.time.Time`), ``mag``, ``mag_err``, ``flux``,
        ``flux_err``, ``flags`` and optional ``camera``, ``filter`` and
        ``epoch``.

    window : float, optional
        Largest gap (days) within an epoch when there is no ``epoch``
        column.

    Returns
    -------
    lightcurve : `~astropy.timeseries.TimeSeries`
        ``time`` (mean time of the epoch's exposures, in the scale of
        the input), ``mag``, ``mag_err``, ``flux``, ``flux_err``,
        ``camera``, ``filter``, ``n_exposures``, ``n_rejected`` and
        ``flags``.

    Raises
    ------
    TypeError
        If ``time`` is not an astropy `~astropy.time.Time` column.
    ValueError
        If the exposures belong to more than one ``target``.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import Table
    >>> from astropy.time import Time
    >>> from satphotutils.lightcurves import combine_epochs
    >>> exp = Table({'time': Time([1.0, 1.01, 1.02, 5.0], format='mjd'),
    ...              'mag': [8.0, 8.1, 9.0, 8.2],
    ...              'mag_err': np.full(4, 0.01),
    ...              'flux': np.ones(4), 'flux_err': np.ones(4),
    ...              'flags': np.zeros(4, int)})
    >>> lc = combine_epochs(exp)
    >>> lc['mag'].value.round(3).tolist(), lc['n_exposures'].tolist()
    ([8.1, 8.2], [3, 1])
    """
    if 'target' in exposures.colnames and \
            len(np.unique(np.asarray(exposures['target']))) > 1:
        msg = ('exposures of several targets given to combine_epochs; use '
               'combine_exposures, or select one target first')
        raise ValueError(msg)
    return _to_timeseries(combine_exposures(exposures, window=window))


_EPOCH_COLUMNS = ('mag', 'mag_err', 'flux', 'flux_err', 'camera', 'filter',
                  'n_exposures', 'n_rejected', 'flags')


def _to_timeseries(table):
    ts = TimeSeries(time=table['time'])
    for name in _EPOCH_COLUMNS:
        ts[name] = table[name]
    # The per-exposure columns carried through (combine_exposures carry).
    for name in table.colnames:
        if name not in ts.colnames and name != 'target':
            ts[name] = table[name]
    return ts


def _value(col):
    return np.asarray(getattr(col, 'value', col), dtype=float)


def lightcurve_statistics(lightcurve, *, sigma=5.0):
    """
    Summarise a light curve and flag its outliers.

    Outliers are found by `~astropy.stats.sigma_clip` about the median
    with the MAD-based standard deviation; they are flagged
    (``lightcurve_outlier``) in the light curve's ``flags`` column, never
    dropped.

    Parameters
    ----------
    lightcurve : `~astropy.timeseries.TimeSeries` or `~astropy.table.Table`
        With ``mag`` and ``flags`` columns.

    sigma : float, optional
        Clipping threshold.

    Returns
    -------
    stats : dict
        ``n``, ``median``, ``dispersion`` (half the 15-85 per cent range
        about the median, the paper's measure), ``rms`` (about the
        median) and ``n_outliers``, computed over the finite points
        without a `~satphotutils.lightcurves.REJECT_FLAGS` flag
        (outliers included in ``dispersion``, excluded from ``rms``);
        ``n_rejected`` counts the points left out for their flags.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import Table
    >>> from satphotutils.lightcurves import lightcurve_statistics
    >>> lc = Table({'mag': np.r_[np.full(20, 8.0), 3.0],
    ...             'flags': np.zeros(21, int)})
    >>> lightcurve_statistics(lc)['n_outliers'], lc['flags'][-1] > 0
    (1, np.True_)
    """
    mag = _value(lightcurve['mag'])
    flags = np.asarray(lightcurve['flags'], dtype=np.int64)
    stats, outlier = _statistics(mag, flags, np.array([0]),
                                 np.array([len(mag)]), sigma=sigma)
    flags[outlier] |= SATPHOT_FLAGS.LIGHTCURVE_OUTLIER
    lightcurve['flags'] = flags
    return _stats_row(stats, 0)


def _stats_row(stats, k):
    return {name: int(v[k]) if v.dtype.kind == 'i' else float(v[k])
            for name, v in stats.items()}


def _statistics(mag, flags, start, length, *, sigma):
    """
    Statistics of many light curves stored one after another.

    Light curve k is ``mag[start[k]:start[k] + length[k]]``. They are
    laid out in a NaN-padded 2-D array so that one
    `~astropy.stats.sigma_clip` call (``axis=1``) clips them all.

    Returns
    -------
    stats : dict of `~numpy.ndarray`
        As `lightcurve_statistics`, one entry per light curve.

    outlier : `~numpy.ndarray` of bool
        The outliers, aligned with ``mag``.
    """
    n_lc = len(start)
    rejected = np.isfinite(mag) & ((flags & REJECT_FLAGS) != 0)
    usable = np.isfinite(mag) & ~rejected
    row = np.repeat(np.arange(n_lc), length)
    col = np.arange(len(mag)) - np.repeat(start, length)
    grid = np.full((n_lc, max(int(length.max(initial=0)), 1)), np.nan)
    grid[row, col] = np.where(usable, mag, np.nan)
    n = np.bincount(row, weights=usable, minlength=n_lc).astype(int)
    has = n > 0
    with warnings.catch_warnings():
        # The NaN padding is invalid on purpose, and all-NaN rows (no
        # usable point) give NaN statistics.
        warnings.simplefilter('ignore', RuntimeWarning)
        warnings.filterwarnings('ignore', 'Input data contains invalid',
                                AstropyUserWarning)
        clipped = sigma_clip(grid, sigma=sigma, stdfunc='mad_std',
                             cenfunc='median', maxiters=5, axis=1,
                             masked=True)
        median = np.nanmedian(grid, axis=1)
        spread = dispersion(grid, axis=1)
        out_grid = np.ma.getmaskarray(clipped) & np.isfinite(grid)
        kept = np.where(out_grid, np.nan, grid)
        rms = np.sqrt(np.nanmean((kept - median[:, None]) ** 2, axis=1))
    outlier = out_grid[row, col]
    stats = {'n': n, 'median': np.where(has, median, np.nan),
             'dispersion': np.where(has, spread, np.nan),
             'rms': np.where(has, rms, np.nan),
             'n_outliers': out_grid.sum(axis=1),
             'n_rejected': np.bincount(row, weights=rejected,
                                       minlength=n_lc).astype(int)}
    return stats, outlier
