# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Expected counts of a star in an exposure (Winecki & Kochanek, Eqs. 1-2).

``log10 N_s = -0.4 (m - Z) - log10 t`` with ``Z`` the zero point of the
reference image and ``t`` the transparency factor of the exposure
relative to the reference (fluxes on the reference are ``t`` times those
on the exposure, as ISIS's kernel sum defines it), and the crowding
rescaling ``N_s -> N_s (1 + f_c) - b_c``.
"""

import numpy as np
from astropy import units as u

__all__ = ['counts_to_magnitude', 'crowded_log_counts',
           'expected_log_counts']


def _values(value, name, unit=None):
    if isinstance(value, u.Quantity):
        if unit is None:
            value = value.to_value(u.dimensionless_unscaled)
        else:
            value = value.to_value(unit)
    value = np.ma.filled(np.ma.asarray(value, dtype=float), np.nan)
    return np.asarray(value)


def _positive(value, name):
    value = _values(value, name)
    if np.any(value <= 0):
        msg = f'{name} must be positive'
        raise ValueError(msg)
    return value


def expected_log_counts(mag, zeropoint, transparency=1.0):
    """
    Predict log10 counts of a star from its magnitude (Eq. 1).

    Parameters
    ----------
    mag : array-like or `~astropy.units.Quantity`
        Magnitude in the camera's band (e.g. SDSS g).

    zeropoint : float or array-like
        Zero point ``Z`` of the reference image: the magnitude of a star
        giving one count.

    transparency : float or array-like, optional
        Transparency factor ``t`` of the exposure relative to the
        reference image: ``t > 1`` means the exposure received less
        light (clouds, airmass).

    Returns
    -------
    log_counts : `~numpy.ndarray`
        ``-0.4 (mag - Z) - log10 t``.

    Raises
    ------
    ValueError
        If ``transparency`` is not positive.

    Examples
    --------
    >>> from satphotutils.calibration import expected_log_counts
    >>> float(expected_log_counts(10.5, 25.5))
    6.0
    >>> float(expected_log_counts(10.5, 25.5, transparency=10.0))
    5.0
    """
    mag = _values(mag, 'mag', u.mag)
    zeropoint = _values(zeropoint, 'zeropoint', u.mag)
    transparency = _positive(transparency, 'transparency')
    return -0.4 * (mag - zeropoint) - np.log10(transparency)


def counts_to_magnitude(log_counts, zeropoint, transparency=1.0, *,
                        log_counts_err=None):
    """
    Convert log10 counts to a magnitude, the inverse of Eq. 1.

    Parameters
    ----------
    log_counts : array-like
        log10 of the counts.

    zeropoint : float or array-like
        Zero point ``Z`` of the reference image.

    transparency : float or array-like, optional
        Transparency factor ``t`` of the exposure.

    log_counts_err : array-like, optional
        Uncertainty of ``log_counts`` (dex).

    Returns
    -------
    mag : `~numpy.ndarray`
        ``Z - 2.5 (log_counts + log10 t)``.

    mag_err : `~numpy.ndarray`
        ``2.5 log_counts_err``; only returned if ``log_counts_err`` is
        given.

    Examples
    --------
    >>> from satphotutils.calibration import counts_to_magnitude
    >>> mag, err = counts_to_magnitude(6.0, 25.5, log_counts_err=0.004)
    >>> print(float(mag), round(float(err), 6))
    10.5 0.01
    """
    log_counts = _values(log_counts, 'log_counts')
    zeropoint = _values(zeropoint, 'zeropoint', u.mag)
    transparency = _positive(transparency, 'transparency')
    mag = zeropoint - 2.5 * (log_counts + np.log10(transparency))
    if log_counts_err is None:
        return mag
    return mag, 2.5 * np.abs(_values(log_counts_err, 'log_counts_err'))


def crowded_log_counts(log_counts, f_c, b_c):
    """
    Rescale predicted counts for crowding (Eq. 2).

    The counts a measurement in the signal region sees are the target's
    ``N_s`` plus the blended neighbours ``f_c N_s``, minus the stellar
    background ``b_c`` a local background estimate already removes.

    Parameters
    ----------
    log_counts : array-like
        log10 of the target's own counts ``N_s``.

    f_c : array-like
        Flux of neighbours within the blending radius relative to the
        target (`~satphotutils.calibration.blended_flux_ratio`).

    b_c : array-like
        Median stellar background in the signal region, in counts.

    Returns
    -------
    log_counts : `~numpy.ndarray`
        ``log10(N_s (1 + f_c) - b_c)``; NaN where that is not positive
        (the target is lost in its neighbours' background).

    Examples
    --------
    >>> from satphotutils.calibration import crowded_log_counts
    >>> float(crowded_log_counts(4.0, 0.1, 1000.0))
    4.0
    """
    log_counts = _values(log_counts, 'log_counts')
    counts = 10 ** log_counts * (1 + _values(f_c, 'f_c')) \
        - _values(b_c, 'b_c')
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(counts > 0, np.log10(np.where(counts > 0, counts, 1)),
                        np.nan)
