# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Before/after plot of an intercalibration."""

import numpy as np

__all__ = ['plot_intercalibration']


def plot_intercalibration(result, *, path=None):
    """
    Plot a light curve before and after intercalibration, by group.

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

    lc = result.lightcurve
    t = lc['time'].jd - 2450000
    fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True,
                             layout='constrained')
    for group in np.unique(lc['group']):
        sel = lc['group'] == group
        good = sel & (lc['flags'] == 0)
        for ax, col in ((axes[0], 'mag_raw'), (axes[1], 'mag')):
            line, = ax.plot(t[good], lc[col].value[good], '.', ms=2,
                            label=group)
            bad = sel & (lc['flags'] != 0)
            ax.plot(t[bad], lc[col].value[bad], 'x', ms=3,
                    color=line.get_color(), alpha=0.5)
    for ax, title in zip(axes, ('before', 'after (x: flagged)'),
                         strict=True):
        ax.invert_yaxis()
        ax.set_ylabel('mag')
        ax.set_title(title)
    axes[1].set_xlabel('JD - 2450000')
    axes[0].legend(ncol=4, fontsize='small', markerscale=4)
    if path is not None:
        from satphotutils.utils.io import atomic_output

        with atomic_output(path, overwrite=True) as tmp:
            fig.savefig(tmp, dpi=100)
        plt.close(fig)
    return fig
