# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Robust statistics used across the pipeline."""

import numpy as np

__all__ = ['dispersion']


def dispersion(values, axis=None):
    """
    Return half of the 15-85 per cent range: a robust 1-sigma.

    This is the paper's measure of scatter, for single exposures and for
    light curves alike.

    Parameters
    ----------
    values : array-like
        The values; NaN are ignored.

    axis : int, optional
        Axis along which to compute it.

    Returns
    -------
    dispersion : float or `~numpy.ndarray`

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.utils.stats import dispersion
    >>> x = np.random.default_rng(1).normal(0, 2.0, 200000)
    >>> print(round(float(dispersion(x)), 2))
    2.07
    """
    lo, hi = np.nanpercentile(values, [15, 85], axis=axis)
    return 0.5 * (hi - lo)
