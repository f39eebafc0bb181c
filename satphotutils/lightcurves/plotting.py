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
    mags = [_values(ts) for ts in lightcurves if ts is not None]
    values = np.concatenate([m[0][m[2]] for m in mags])
    if not values.size:
        # Nothing usable: the scale of whatever values there are.
        values = np.concatenate([m[0][np.isfinite(m[0])] for m in mags])
    if not values.size:
        return (1.0, 0.0)
    # A robust range, so that one wild epoch does not squash the rest;
    # points beyond it are drawn on the edge.
    lo, hi = np.percentile(values, [2, 98])
    pad = 0.25 * (hi - lo) + 0.05
    return (min(hi + pad, values.max() + 0.05),
            max(lo - pad, values.min() - 0.05))


def _panel(ax, ts, *, period, ylim, label, colour):
    """Draw one light curve; return the number of usable points."""
    mag, err, usable, clipped = _values(ts)
    t = ts['time'].mjd
    x = ((t - t.min()) / period) % 1.0 if period else t
    inside = usable & (mag <= ylim[0]) & (mag >= ylim[1])
    keep = inside & ~clipped
    if keep.any():
        ax.errorbar(x[keep], mag[keep], err[keep], fmt='o', ms=2.5,
                    lw=0.5, color=colour, label=f'epoch ({keep.sum()})')
    # Sigma-clipped points stay in place, open: they may be real
    # (eclipses, flares).
    open_ = inside & clipped
    if open_.any():
        ax.plot(x[open_], mag[open_], 'o', ms=4, mfc='none', color=colour,
                label=f'sigma-clipped, kept in place ({open_.sum()})')
    # Unusable points and points beyond the range sit along the bottom
    # edge, as in the paper's figures.
    edge = ~inside & np.isfinite(mag)
    if edge.any():
        ax.plot(x[edge], np.full(edge.sum(), ylim[0]), 'v', ms=4,
                color=colour, alpha=0.7, clip_on=False,
                label=f'flagged or off scale, at the edge ({edge.sum()})')
    missing = ~np.isfinite(mag)
    if missing.any():
        ax.plot([], [], ' ', label=f'no value ({missing.sum()})')
    ax.set_ylim(*ylim)
    ax.set_xlabel(f'phase (P = {period:g} d)' if period else
                  f'time [MJD, {ts["time"].scale.upper()}]')
    ax.set_title(label)
    ax.legend(loc='best', fontsize='small', framealpha=0.8)
    return int(usable.sum())


# Panel titles of the photometry classes, spelled out.
_METHOD_TITLES = {
    'SaturatedStarPhotometry': 'satphotutils network',
    'AperturePhotometryBaseline': 'baseline: aperture photometry',
    'PSFWingPhotometry': 'baseline: PSF fit of the wings',
}


def _method_label(ts, default):
    """Return the panel title: the measurement method, spelled out."""
    meta = ts.meta or {}
    method = meta.get('method') or meta.get('config', {}).get('photometry')
    return _METHOD_TITLES.get(method, default if method is None else
                              str(method))


def plot_lightcurve(lightcurve, *, baseline=None, period=None, path=None,
                    title=None, fig=None):
    """
    Plot a light curve, outliers marked along the bottom edge.

    Usable epochs are filled points with error bars; sigma-clipped epochs
    stay in place as open circles (they may be eclipses or flares);
    flagged epochs and epochs beyond the vertical range sit on the bottom
    edge as triangles. The legend counts each kind. A light curve
    without a usable epoch is drawn as a message saying so, not as an
    empty frame.

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

    fig : `~matplotlib.figure.Figure`, optional
        An empty figure to draw on, e.g. ``plt.figure()`` to show it
        with pyplot; by default a new figure that pyplot does not manage
        (safe in worker threads, nothing to close).

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
    from satphotutils.utils._plotting import empty_figure

    panels = 2 if baseline is not None else 1
    fig = empty_figure(fig, (5.5 * panels, 3.8))
    axes = fig.subplots(1, panels, squeeze=False, sharey=True)
    # One vertical scale for both panels, from the main light curve.
    ylim = _limits(lightcurve)
    n_usable = _panel(axes[0, 0], lightcurve, period=period, ylim=ylim,
                      label=_method_label(lightcurve, 'satphotutils network'),
                      colour='tab:red')
    if baseline is not None:
        _panel(axes[0, 1], baseline, period=period, ylim=ylim,
               label=_method_label(baseline, 'baseline'), colour='k')
    axes[0, 0].set_ylabel('magnitude')
    if n_usable == 0:
        # An empty frame looks like a plotting bug; say what happened.
        n = len(lightcurve)
        axes[0, 0].text(
            0.5, 0.5, f'no usable epoch: {n} epoch{"s" * (n != 1)}, all '
            'flagged or without a value\n(see the flags column)',
            transform=axes[0, 0].transAxes, ha='center', va='center',
            fontsize='medium', wrap=True)
    name = title or lightcurve.meta.get('name', '')
    what = f'folded on P = {period:g} d' if period else 'light curve'
    fig.suptitle(f'{name}: {what}' if name else what)
    if path is not None:
        from satphotutils.utils.io import atomic_output

        with atomic_output(path, overwrite=True) as tmp:
            fig.savefig(tmp, dpi=100)
    return fig
