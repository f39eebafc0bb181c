# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""A frame's zero point from the stars on it with catalogue magnitudes."""

import dataclasses

import numpy as np

__all__ = ['FrameZeropoint', 'frame_zeropoint']


@dataclasses.dataclass(frozen=True)
class FrameZeropoint:
    """
    The zero point of one frame and how well it is known.

    Attributes
    ----------
    zeropoint : float
        Z such that ``mag = Z - 2.5 log10(counts)``; NaN when too few
        stars were usable.

    error : float
        Its standard error (mag).

    n_used, n_rejected : int
        Stars used, and usable stars rejected by the clipping.

    Examples
    --------
    >>> from satphotutils.calibration import FrameZeropoint
    >>> FrameZeropoint(25.1, 0.004, 40, 2).valid
    True
    """

    zeropoint: float
    error: float
    n_used: int
    n_rejected: int

    @property
    def valid(self):
        """Whether a zero point was determined."""
        return bool(np.isfinite(self.zeropoint))


def frame_zeropoint(log_counts, catalog_mag, *, usable=None, sigma=3.0,
                    min_stars=5):
    """
    Fit a frame's zero point to stars of known magnitude.

    Each star gives ``catalog_mag + 2.5 log10(counts)``; the zero point
    is their sigma-clipped median (MAD standard deviation, so variable
    or blended stars do not pull it) and its error the median's standard
    error, 1.2533 sigma / sqrt(n).

    Parameters
    ----------
    log_counts : array-like
        Measured log10 counts of the stars.

    catalog_mag : array-like
        Their catalogue magnitudes in the frame's band.

    usable : array-like of bool, optional
        Stars that may be used (e.g. unflagged ones); all finite ones if
        `None`.

    sigma : float, optional
        Clipping threshold.

    min_stars : int, optional
        Fewest stars left after clipping; with fewer, the zero point is
        NaN.

    Returns
    -------
    result : `FrameZeropoint`

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.calibration import frame_zeropoint
    >>> mag = np.array([12.0, 12.5, 13.0, 13.5, 14.0, 14.5])
    >>> log_counts = -0.4 * (mag - 25.0)
    >>> log_counts[2] += 0.2  # a blended star
    >>> fit = frame_zeropoint(log_counts, mag)
    >>> round(fit.zeropoint, 3), fit.n_used, fit.n_rejected
    (25.0, 5, 1)
    """
    from astropy.stats import sigma_clip

    log_counts = np.asarray(log_counts, dtype=float)
    catalog_mag = np.asarray(catalog_mag, dtype=float)
    if log_counts.shape != catalog_mag.shape:
        msg = ('log_counts and catalog_mag must have the same shape, got '
               f'{log_counts.shape} and {catalog_mag.shape}')
        raise ValueError(msg)
    ok = np.isfinite(log_counts) & np.isfinite(catalog_mag)
    if usable is not None:
        ok &= np.asarray(usable, dtype=bool)
    values = catalog_mag[ok] + 2.5 * log_counts[ok]
    if len(values) < min_stars:
        return FrameZeropoint(np.nan, np.nan, len(values), 0)
    clipped = sigma_clip(values, sigma=sigma, stdfunc='mad_std',
                         cenfunc='median', maxiters=10)
    kept = values[~np.ma.getmaskarray(clipped)]
    if len(kept) < min_stars:
        return FrameZeropoint(np.nan, np.nan, len(kept),
                              int(len(values) - len(kept)))
    median = float(np.median(kept))
    spread = 1.482602218505602 * np.median(np.abs(kept - median))
    error = 1.2533 * spread / np.sqrt(len(kept))
    return FrameZeropoint(median, float(error), len(kept),
                          int(len(values) - len(kept)))
