# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Per-exposure measurements to per-epoch light curves, and their statistics.

Pure NumPy/astropy: no I/O.
"""

import numpy as np
from astropy import units as u
from astropy.stats import mad_std, sigma_clip
from astropy.time import Time
from astropy.timeseries import TimeSeries

from satphotutils.utils.flags import SATPHOT_FLAGS
from satphotutils.utils.stats import dispersion

__all__ = ['REJECT_FLAGS', 'assign_epochs', 'combine_epochs',
           'lightcurve_statistics']

#: Exposure flags that keep an exposure out of its epoch's median when the
#: epoch has exposures without them (and out of the statistics).
REJECT_FLAGS = (SATPHOT_FLAGS.DAMAGED_CORE | SATPHOT_FLAGS.NO_OVERLAP
                | SATPHOT_FLAGS.NON_FINITE_DATA
                | SATPHOT_FLAGS.NO_CALIBRATION)


def assign_epochs(times, *, window=0.1):
    """
    Assign epoch numbers to a sequence of exposure times.

    Exposures closer than ``window`` days to the previous one (in time
    order) share its epoch, as ASAS-SN's three dithered exposures do.

    Parameters
    ----------
    times : array-like
        Exposure times in days (e.g. MJD).

    window : float, optional
        Largest gap (days) within an epoch.

    Returns
    -------
    epoch : `~numpy.ndarray` of int
        Epoch number of each exposure, in the input order.

    Examples
    --------
    >>> from satphotutils.lightcurves import assign_epochs
    >>> assign_epochs([10.0, 10.001, 10.002, 12.0, 12.001]).tolist()
    [0, 0, 0, 1, 1]
    """
    times = np.asarray(times, dtype=float)
    order = np.argsort(times, kind='stable')
    new = np.concatenate([[True], np.diff(times[order]) > window])
    epoch = np.empty(len(times), dtype=int)
    epoch[order] = np.cumsum(new) - 1
    return epoch


def _combine(values, errors):
    """Combine by the paper's rule: median, mean of two, value of one."""
    n = len(values)
    if n == 1:
        return values[0], errors[0]
    if n == 2:
        return values.mean(), max(0.5 * np.sqrt(np.sum(errors**2)),
                                  0.5 * abs(values[0] - values[1]))
    # A median is 1.2533x noisier than a mean of Gaussian values; the
    # scatter of the exposures is used when it exceeds their errors.
    stat = np.sqrt(np.mean(errors**2) / n)
    spread = mad_std(values) / np.sqrt(n)
    return np.median(values), 1.2533 * max(stat, spread)


def combine_epochs(exposures, *, window=0.1):
    """
    Combine the exposures of one target into a per-epoch light curve.

    Exposures are grouped by epoch (``epoch`` column, or times within
    ``window`` days) and by camera and filter, and combined by the
    paper's rule: the median of the exposures, the mean of two, the value
    of one; the uncertainty is robust (the larger of the propagated
    errors and the scatter of the exposures). Exposures with a flag in
    `REJECT_FLAGS` (damaged core, no overlap, non-finite data, no
    calibration) are left out when the epoch has others, and counted in
    ``n_rejected``. Flags of the exposures used are OR-ed.

    Parameters
    ----------
    exposures : `~astropy.table.Table`
        ``time`` (`~astropy.time.Time`), ``mag``, ``mag_err``, ``flux``,
        ``flux_err``, ``flags`` and optional ``camera``, ``filter`` and
        ``epoch``. Rows with a non-finite magnitude are kept out of the
        medians but counted in ``n_rejected``.

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
    """
    t = exposures['time']
    if not isinstance(t, Time):
        msg = 'exposures need a time column of astropy Time'
        raise TypeError(msg)
    n = len(exposures)
    camera = np.asarray(exposures['camera'], dtype=str) \
        if 'camera' in exposures.colnames else np.full(n, '')
    filt = np.asarray(exposures['filter'], dtype=str) \
        if 'filter' in exposures.colnames else np.full(n, '')
    epoch = np.asarray(exposures['epoch']) if 'epoch' in exposures.colnames \
        else assign_epochs(t.mjd, window=window)
    mag = _value(exposures['mag'])
    mag_err = _value(exposures['mag_err'])
    flux = _value(exposures['flux'])
    flux_err = _value(exposures['flux_err'])
    flags = np.asarray(exposures['flags'], dtype=np.int64)
    keys = np.array([f'{e}|{c}|{f}' for e, c, f in zip(epoch, camera, filt,
                                                       strict=True)])
    uniq, inverse = np.unique(keys, return_inverse=True)
    inverse = inverse.ravel()
    rows = {k: [] for k in ('time', 'mag', 'mag_err', 'flux', 'flux_err',
                            'camera', 'filter', 'n_exposures', 'n_rejected',
                            'flags')}
    for k in range(len(uniq)):
        members = np.flatnonzero(inverse == k)
        good = members[np.isfinite(mag[members])]
        clean = good[(flags[good] & REJECT_FLAGS) == 0]
        if len(clean):
            good = clean
        rows['time'].append(t.mjd[members].mean())
        rows['camera'].append(camera[members[0]])
        rows['filter'].append(filt[members[0]])
        rows['n_exposures'].append(len(good))
        rows['n_rejected'].append(len(members) - len(good))
        rows['flags'].append(np.bitwise_or.reduce(
            flags[good] if len(good) else flags[members]))
        if len(good):
            m, me = _combine(mag[good], mag_err[good])
            f, fe = _combine(flux[good], flux_err[good])
        else:
            m = me = f = fe = np.nan
        rows['mag'].append(m)
        rows['mag_err'].append(me)
        rows['flux'].append(f)
        rows['flux_err'].append(fe)
    order = np.argsort(rows['time'], kind='stable')
    time = Time(np.asarray(rows['time'])[order], format='mjd',
                scale=t.scale)
    columns = {k: np.asarray(v)[order] for k, v in rows.items()
               if k != 'time'}
    ts = TimeSeries(time=time)
    mag_unit = getattr(exposures['mag'], 'unit', None) or u.mag
    flux_unit = getattr(exposures['flux'], 'unit', None)
    ts['mag'] = columns['mag'] * mag_unit
    ts['mag_err'] = columns['mag_err'] * mag_unit
    ts['flux'] = columns['flux'] * (flux_unit or 1)
    ts['flux_err'] = columns['flux_err'] * (flux_unit or 1)
    for name in ('camera', 'filter', 'n_exposures', 'n_rejected', 'flags'):
        ts[name] = columns[name]
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
        without a `REJECT_FLAGS` flag (outliers included in
        ``dispersion``, excluded from ``rms``); ``n_rejected`` counts
        the points left out for their flags.

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
    rejected = np.isfinite(mag) & ((flags & REJECT_FLAGS) != 0)
    finite = np.isfinite(mag) & ~rejected
    if not finite.any():
        return {'n': 0, 'median': np.nan, 'dispersion': np.nan,
                'rms': np.nan, 'n_outliers': 0,
                'n_rejected': int(rejected.sum())}
    clipped = sigma_clip(mag[finite], sigma=sigma, stdfunc='mad_std',
                         cenfunc='median', maxiters=5)
    outlier = np.zeros(len(mag), dtype=bool)
    outlier[np.flatnonzero(finite)[np.ma.getmaskarray(clipped)]] = True
    flags[outlier] |= SATPHOT_FLAGS.LIGHTCURVE_OUTLIER
    lightcurve['flags'] = flags
    med = float(np.median(mag[finite]))
    kept = mag[finite & ~outlier]
    return {'n': int(finite.sum()), 'median': med,
            'dispersion': float(dispersion(mag[finite])),
            'rms': float(np.sqrt(np.mean((kept - med) ** 2))),
            'n_outliers': int(outlier.sum()),
            'n_rejected': int(rejected.sum())}

