# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Before/after plot of an intercalibration."""

import numpy as np

from satphotutils.utils.flags import SATPHOT_FLAGS

__all__ = ['plot_intercalibration']


# Ten colours and seven markers: (k mod 10, k mod 7) differs for every
# pair of the first 70 groups, and neighbours differ in both.
_MARKERS = ('o', 's', '^', 'D', 'v', 'P', 'X')

# Points left out of the fit (drawn hollow).
_NOT_FITTED = (SATPHOT_FLAGS.INTERCAL_FAINTEST | SATPHOT_FLAGS.INTERCAL_CLIPPED
               | SATPHOT_FLAGS.BAD_QUALITY)


def plot_intercalibration(result, *, path=None):
    """
    Plot a light curve before and after intercalibration, by group.

    Each camera/filter group has its own colour and marker; points left
    out of the fit (faintest, clipped, bad quality) are hollow. Flagged
    groups (too small, implausible offset, mostly clipped) are drawn in
    a panel of their own, as measured, and marked in the legend, which
    sits outside the data.

    Parameters
    ----------
    result : `~satphotutils.intercalibration.IntercalibrationResult`
        The intercalibration.

    path : path-like, optional
        Write the figure to this PNG.

    Returns
    -------
    fig : `~matplotlib.figure.Figure`

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import QTable
    >>> from astropy.time import Time
    >>> from satphotutils.intercalibration import (DRWIntercalibrator,
    ...                                            plot_intercalibration)
    >>> rng = np.random.default_rng(1)
    >>> t = np.sort(rng.uniform(0, 500, 200))
    >>> lc = QTable({'time': Time(59000 + t, format='mjd'),
    ...              'mag': 9 + 0.1 * np.sin(t / 40) + 0.2 * (t > 250)
    ...              + rng.normal(0, 0.01, 200),
    ...              'mag_err': np.full(200, 0.01),
    ...              'camera': np.where(t > 250, 'bb', 'ba'),
    ...              'filter': np.full(200, 'g')})
    >>> fig = plot_intercalibration(DRWIntercalibrator()(lc))
    >>> len(fig.axes) >= 2
    True
    """
    import matplotlib.pyplot as plt

    flagged = result.flagged_groups
    parts = [result.lightcurve] if result.left_out is None else \
        [result.lightcurve, result.left_out]
    n_rows = 3 if flagged else 2
    fig, axes = plt.subplots(n_rows, 1, figsize=(10, 2.6 * n_rows + 0.6),
                             sharex=True, layout='constrained')
    colours = plt.rcParams['axes.prop_cycle'].by_key().get('color') or \
        [f'C{k}' for k in range(10)]
    handles = []
    plotted = {ax: ([], [], []) for ax in axes}  # t, y, fitted
    for k, group in enumerate(result.offsets['group']):
        group = str(group)
        style = {'color': colours[k % len(colours)],
                 'marker': _MARKERS[k % len(_MARKERS)], 'ms': 3,
                 'ls': 'none'}
        rows = [p[p['group'] == group] for p in parts]
        if group in flagged:
            targets = [(axes[2], 'mag_raw')]
        else:
            targets = [(axes[0], 'mag_raw'), (axes[1], 'mag')]
        for part in rows:
            t = part['time'].jd - 2450000
            bad = (np.asarray(part['flags']) & _NOT_FITTED) != 0
            for ax, col in targets:
                y = part[col].value
                ax.plot(t[~bad], y[~bad], **style)
                ax.plot(t[bad], y[bad], mfc='none', alpha=0.6, **style)
                plotted[ax][0].append(t)
                plotted[ax][1].append(y)
                plotted[ax][2].append(~bad)
        label = f'{group} (flagged)' if group in flagged else group
        handles.append(plt.Line2D([], [], label=label, **style))
    titles = ['before (hollow: left out of the fit)', 'after']
    if flagged:
        titles.append('flagged groups, as measured: '
                      + ', '.join(flagged))
    # Every panel clipped (a generator in any() would stop at the first).
    if any([_clip_to_range(ax, *plotted[ax]) for ax in axes]):
        handles.append(plt.Line2D([], [], color='0.3', marker='^', ms=5,
                                  ls='none',
                                  label='beyond the range, at the edge'))
    for ax, title in zip(axes, titles, strict=True):
        ax.invert_yaxis()
        ax.set_ylabel('mag')
        ax.set_title(title, fontsize='medium', loc='left')
    axes[-1].set_xlabel('JD - 2450000')
    fig.legend(handles=handles, loc='outside right upper',
               fontsize='small', markerscale=1.5,
               ncols=1 + (len(handles) - 1) // 24)
    if path is not None:
        from satphotutils.utils.io import atomic_output

        with atomic_output(path, overwrite=True) as tmp:
            fig.savefig(tmp, dpi=100)
        plt.close(fig)
    return fig


def _clip_to_range(ax, times, values, fitted):
    """
    Limit the magnitude axis to the fitted points' range.

    A few bad points 1 mag off (bad quality, left out of the fit) would
    otherwise squeeze the light curve into a line; points beyond the
    range are drawn on its edge. Returns whether any was.
    """
    if not times:
        return False
    t = np.concatenate(times)
    y = np.concatenate(values)
    good = np.concatenate(fitted) & np.isfinite(y)
    if not good.any():
        return False
    low, high = np.percentile(y[good], [0.5, 99.5])
    pad = max(0.3 * (high - low), 0.05)
    low, high = low - pad, high + pad
    ax.set_ylim(low, high)
    above, below = y > high, y < low
    ax.plot(t[above], np.full(above.sum(), high), 'v', color='0.3', ms=5)
    ax.plot(t[below], np.full(below.sum(), low), '^', color='0.3', ms=5)
    return bool(above.any() or below.any())
