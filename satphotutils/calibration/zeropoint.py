# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""A frame's zero point from the stars on it with catalogue magnitudes."""

import dataclasses
import logging

import numpy as np

__all__ = ['FrameZeropoint', 'frame_zeropoint']

log = logging.getLogger(__name__)


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

    colour_term, colour_term_error : float
        With a colour fit, the slope ``c`` of the zero point with colour
        and its standard error: a star of colour ``x`` has the zero point
        ``zeropoint + c (x - colour_ref)`` (``at``). NaN without one.

    colour_ref : float
        The colour the zero point is quoted at (the median colour of the
        stars used); NaN without a colour fit.

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
    colour_term: float = np.nan
    colour_term_error: float = np.nan
    colour_ref: float = np.nan

    @property
    def valid(self):
        """Whether a zero point was determined."""
        return bool(np.isfinite(self.zeropoint))

    def at(self, colour=None):
        """
        Return the zero point of stars of the given colour.

        Parameters
        ----------
        colour : array-like, optional
            The stars' colours (as fitted, e.g. Gaia BP - RP). Required
            when the fit has a colour term; ignored without one.

        Returns
        -------
        zeropoint : float or `~numpy.ndarray`

        Examples
        --------
        >>> from satphotutils.calibration import FrameZeropoint
        >>> fit = FrameZeropoint(25.0, 0.002, 50, 1, colour_term=0.1,
        ...                      colour_term_error=0.01, colour_ref=1.0)
        >>> fit.at([0.5, 1.0, 2.0]).round(3).tolist()
        [24.95, 25.0, 25.1]
        """
        if not np.isfinite(self.colour_term):
            return self.zeropoint if colour is None else \
                np.full(np.shape(colour), self.zeropoint)
        if colour is None:
            msg = ('this zero point has a colour term: give the colours of '
                   'the stars (colour=)')
            raise ValueError(msg)
        return self.zeropoint + self.colour_term * (
            np.asarray(colour, dtype=float) - self.colour_ref)


def frame_zeropoint(log_counts, catalog_mag, *, usable=None, sigma=3.0,
                    min_stars=5, colour=None):
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

    colour : array-like, optional
        The stars' colours (e.g. Gaia BP - RP). With them a colour term
        is fitted too: ``catalog_mag + 2.5 log10(counts) = Z + c (colour
        - colour_ref)`` by least squares, the outliers clipped
        (`~astropy.modeling.fitting.FittingWithOutlierRemoval`, at
        ``sigma`` MAD standard deviations); ``Z`` is quoted at the median
        colour of the stars used, where it is best known, and its error
        is then the fit's. Stars without a finite colour are not used;
        ``min_stars + 1`` are needed. The colours of the stars must span
        a range for ``c`` to mean anything.

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
    if colour is not None:
        colour = np.asarray(colour, dtype=float)
        if colour.shape != log_counts.shape:
            msg = ('colour must have the shape of log_counts, got '
                   f'{colour.shape} and {log_counts.shape}')
            raise ValueError(msg)
        ok &= np.isfinite(colour)
        fit = _colour_fit(catalog_mag[ok] + 2.5 * log_counts[ok],
                          colour[ok], sigma, min_stars)
        if fit is not None:
            return fit
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


# Least spread (standard deviation, mag) of the stars' colours, and stars
# on each side of their median, for a colour term to be fitted: with less,
# one star sets the slope and cannot be clipped.
_MIN_COLOUR_SPREAD = 0.1
_MIN_EACH_SIDE = 3


def _spans(colour, ref):
    """Whether the colours can determine a colour term; say if not."""
    spread = float(np.std(colour))
    sides = min(np.count_nonzero(colour < ref - 0.5 * _MIN_COLOUR_SPREAD),
                np.count_nonzero(colour > ref + 0.5 * _MIN_COLOUR_SPREAD))
    if spread >= _MIN_COLOUR_SPREAD and sides >= _MIN_EACH_SIDE:
        return True
    log.warning('frame_zeropoint: the colours of the stars span too '
                'little for a colour term (standard deviation %.3f mag, %d '
                'stars on the sparser side of the median; %.2f and %d '
                'needed); the zero point is fitted without one', spread,
                sides, _MIN_COLOUR_SPREAD, _MIN_EACH_SIDE)
    return False


def _colour_fit(values, colour, sigma, min_stars):
    """
    Fit the zero point and the colour term, outliers clipped.

    Returns `None` when the colours cannot determine a colour term (the
    caller then fits the zero point alone).
    """
    import warnings

    from astropy.modeling import fitting, models
    from astropy.stats import sigma_clip
    from astropy.utils.exceptions import AstropyUserWarning

    n = len(values)
    if n < min_stars + 1:
        return FrameZeropoint(np.nan, np.nan, n, 0)
    ref = float(np.median(colour))
    if not _spans(colour, ref):
        return None
    fitter = fitting.FittingWithOutlierRemoval(
        fitting.LinearLSQFitter(), sigma_clip, niter=10, sigma=sigma,
        stdfunc='mad_std', cenfunc='median')
    start = models.Linear1D(slope=0.0, intercept=float(np.median(values)))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', AstropyUserWarning)
        try:
            line, rejected = fitter(start, colour - ref, values)
        except np.linalg.LinAlgError:
            log.warning('frame_zeropoint: the colour fit failed; the zero '
                        'point is fitted without a colour term')
            return None
    kept = ~np.asarray(rejected, dtype=bool)
    n_kept = int(kept.sum())
    if n_kept < min_stars + 1:
        return FrameZeropoint(np.nan, np.nan, n_kept, n - n_kept)
    if not _spans(colour[kept], ref):
        return None
    x, y = colour[kept] - ref, values[kept]
    residual = y - line(x)
    # The robust scatter, as for the median fit; standard errors of the
    # intercept (at the reference colour) and the slope.
    spread = 1.482602218505602 * np.median(np.abs(residual
                                                  - np.median(residual)))
    sxx = np.sum((x - x.mean()) ** 2)
    slope_err = spread / np.sqrt(sxx) if sxx > 0 else np.inf
    zero_err = spread * np.sqrt(1 / n_kept + x.mean() ** 2 / sxx) \
        if sxx > 0 else np.inf
    if not np.isfinite(slope_err):
        return FrameZeropoint(np.nan, np.nan, n_kept, n - n_kept)
    return FrameZeropoint(float(line.intercept.value), float(zero_err),
                          n_kept, n - n_kept,
                          colour_term=float(line.slope.value),
                          colour_term_error=float(slope_err),
                          colour_ref=ref)
