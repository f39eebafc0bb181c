# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Light-curve plots in the style of the paper's Figs. 6-9."""

import numpy as np

from satphotutils.utils.flags import SATPHOT_FLAGS

__all__ = ['plot_lightcurve']


def _panel(ax, ts, *, period, ylim, label):
    mag = np.asarray(getattr(ts['mag'], 'value', ts['mag']), dtype=float)
    err = np.asarray(getattr(ts['mag_err'], 'value', ts['mag_err']),
                     dtype=float)
    t = ts['time'].mjd
    x = ((t - t.min()) / period) % 1.0 if period else t
    outlier = (np.asarray(ts['flags']) & SATPHOT_FLAGS.LIGHTCURVE_OUTLIER) \
        > 0
    good = np.isfinite(mag) & ~outlier
    if ylim is None:
        lo, hi = np.nanpercentile(mag[good], [1, 99]) if good.any() else \
            (0, 1)
        pad = 0.15 * max(hi - lo, 0.1)
        ylim = (hi + pad, lo - pad)
    ax.errorbar(x[good], mag[good], err[good], fmt='o', ms=2, lw=0.5,
                color='tab:red' if label == 'network' else 'k')
    # Outliers and points beyond the range sit along the bottom edge.
    beyond = np.isfinite(mag) & ~outlier & (mag > ylim[0])
    edge = outlier | beyond
    ax.plot(x[edge], np.full(edge.sum(), ylim[0]), 'v', ms=3,
            color='tab:red' if label == 'network' else 'k', alpha=0.7)
    ax.set_ylim(*ylim)
    ax.set_xlabel(f'phase (P = {period:g} d)' if period else 'MJD')
    ax.set_title(label)
    return ylim


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
    """
    import matplotlib.pyplot as plt

    panels = 2 if baseline is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.5),
                             squeeze=False, sharey=True,
                             layout='constrained')
    ylim = _panel(axes[0, 0], lightcurve, period=period, ylim=None,
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
