# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Light-curve plots in the style of the paper's Figs. 6-9."""

import numpy as np

from satphotutils.utils.flags import SATPHOT_FLAGS

from .epochs import REJECT_FLAGS

__all__ = ['plot_lightcurve']


def _values(ts):
    mag = np.asarray(getattr(ts['mag'], 'value', ts['mag']), dtype=float)
    err = np.asarray(getattr(ts['mag_err'], 'value', ts['mag_err']),
                     dtype=float)
    flags = np.asarray(ts['flags'])
    usable = np.isfinite(mag) & ((flags & REJECT_FLAGS) == 0)
    clipped = (flags & SATPHOT_FLAGS.LIGHTCURVE_OUTLIER) > 0
    return mag, err, usable, clipped


def _limits(*lightcurves):
    values = np.concatenate([_values(ts)[0][_values(ts)[2]]
                             for ts in lightcurves if ts is not None])
    if not values.size:
        return (1.0, 0.0)
    lo, hi = np.percentile(values, [0.5, 99.5])
    pad = 0.1 * max(hi - lo, 0.1)
    return (hi + pad, lo - pad)


def _panel(ax, ts, *, period, ylim, label):
    mag, err, usable, clipped = _values(ts)
    t = ts['time'].mjd
    x = ((t - t.min()) / period) % 1.0 if period else t
    colour = 'tab:red' if label == 'network' else 'k'
    inside = usable & (mag <= ylim[0]) & (mag >= ylim[1])
    keep = inside & ~clipped
    ax.errorbar(x[keep], mag[keep], err[keep], fmt='o', ms=2, lw=0.5,
                color=colour)
    # Sigma-clipped points stay in place, open: they may be real
    # (eclipses, flares).
    ax.plot(x[inside & clipped], mag[inside & clipped], 'o', ms=4,
            mfc='none', color=colour)
    # Unusable points and points beyond the range sit along the bottom
    # edge, as in the paper's figures.
    edge = ~inside & np.isfinite(mag)
    ax.plot(x[edge], np.full(edge.sum(), ylim[0]), 'v', ms=3, color=colour,
            alpha=0.7)
    ax.set_ylim(*ylim)
    ax.set_xlabel(f'phase (P = {period:g} d)' if period else 'MJD')
    ax.set_title(label)


def plot_lightcurve(lightcurve, *, baseline=None, period=None, path=None,
                    title=None):
    """
    Plot a light curve, outliers marked along the bottom edge.

    Parameters
    ----------
    lightcurve : `~astropy.timeseries.TimeSeries`
        ``time``, ``mag``, ``mag_err`` and ``flags``.

    baseline : `~astropy.timeseries.TimeSeries`, optional
        The same target by a baseline method, in a panel on the right on
        the same vertical scale.

    period : float, optional
        Fold on this period (days).

    path : path-like, optional
        Write the figure to this PNG.

    title : str, optional
        Figure title; the light curve's ``meta['name']`` by default.

    Returns
    -------
    fig : `~matplotlib.figure.Figure`

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.time import Time
    >>> from astropy.timeseries import TimeSeries
    >>> from satphotutils.lightcurves import plot_lightcurve
    >>> lc = TimeSeries(time=Time(59000 + np.arange(30.0), format='mjd'))
    >>> lc['mag'] = 8 + 0.3 * np.sin(np.arange(30.0))
    >>> lc['mag_err'] = np.full(30, 0.01)
    >>> lc['flags'] = np.zeros(30, int)
    >>> fig = plot_lightcurve(lc, title='example')
    >>> len(fig.axes)
    1
    """
    import matplotlib.pyplot as plt

    panels = 2 if baseline is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.5),
                             squeeze=False, sharey=True,
                             layout='constrained')
    # One vertical scale for both panels, from the main light curve.
    ylim = _limits(lightcurve)
    _panel(axes[0, 0], lightcurve, period=period, ylim=ylim,
           label='network')
    if baseline is not None:
        _panel(axes[0, 1], baseline, period=period, ylim=ylim,
               label='baseline')
    axes[0, 0].set_ylabel('mag')
    fig.suptitle(title or lightcurve.meta.get('name', ''))
    if path is not None:
        from satphotutils.utils.io import atomic_output

        with atomic_output(path, overwrite=True) as tmp:
            fig.savefig(tmp, dpi=100)
        plt.close(fig)
    return fig
