# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The frame-level check of the network against exact apertures.

The per-stamp guard (``satphotutils.network.guard``) asks whether each
stamp looks like the training stamps; this check asks the frame itself.
On the isolated unsaturated stars among the measured targets, an exact
aperture measures the counts with no model at all, so a network that
has learnt the camera and one that has not differ there:

1. every unsaturated target gets the exact-overlap aperture sum
   (`satphotutils.stamps.apertures.aperture_sums`) within the network's
   radius r (5 px), minus the network's local background;
2. the light the aperture misses is not ignored but measured on the same
   star: the curve of growth from r to the inner background radius R
   (7 px), ``log10(A(R) / A(r))``, is added. What remains beyond R is
   a few thousandths of a magnitude for any PSF the default was trained
   on, so the network and the corrected aperture should agree;
3. over the targets that have no other target within ``isolation``
   pixels, the median of ``network - corrected aperture`` (the offset)
   and 1.4826 times its median absolute deviation (the scatter), both in
   magnitudes.

Both are compared with tolerances (`OFFSET_TOLERANCE`,
`SCATTER_TOLERANCE`). The offset is the primary signal: a model that
does not know the camera's PSF or saturation shifts all its stars, which
the aperture, corrected on the same stars, does not. The scatter catches
a model whose errors vary from star to star. Neither compares the
aperture with a correction from a table: the correction comes from the
frame's own stars, whatever the seeing.

Pure numerical functions: no I/O.
"""

import numpy as np

from satphotutils.stamps.apertures import aperture_sums

__all__ = []

#: Largest |median offset| (mag) between the network and the corrected
#: apertures before the check warns.
OFFSET_TOLERANCE = 0.05
#: Largest scatter (mag, 1.4826 MAD) before the check warns.
SCATTER_TOLERANCE = 0.1
#: Fewest isolated unsaturated stars the check needs.
MIN_STARS = 5
#: Radius (pixels) within which no other target may lie.
ISOLATION = 10.0


def check_inputs(stamps, log_counts, local_bkg, unsaturated, dx, dy, *,
                 radius, outer_radius):
    """
    Return each target's ``network - corrected aperture`` (dex).

    Parameters
    ----------
    stamps : `~numpy.ndarray`, shape (N, n, n)
        The targets' stamps.

    log_counts, local_bkg : `~numpy.ndarray`
        The network's values and local background.

    unsaturated : `~numpy.ndarray` of bool
        Targets to compare; NaN elsewhere.

    dx, dy : `~numpy.ndarray`
        Offsets of the targets from their stamps' central pixels.

    radius, outer_radius : float
        The aperture radius r and the radius R the curve of growth is
        followed to.

    Returns
    -------
    inputs : dict
        ``{'check_residual': array}``, NaN where not compared.
    """
    residual = np.full(len(log_counts), np.nan)
    sel = np.asarray(unsaturated, dtype=bool)
    if sel.any():
        bkg = local_bkg[sel]
        inner = aperture_sums(stamps[sel], radius, dx=dx[sel], dy=dy[sel])
        outer = aperture_sums(stamps[sel], outer_radius, dx=dx[sel],
                              dy=dy[sel])
        a_in = inner.sum - bkg * inner.area
        a_out = outer.sum - bkg * outer.area
        with np.errstate(invalid='ignore', divide='ignore'):
            good = (a_in > 0) & (a_out > 0)
            corrected = np.where(good, np.log10(np.where(good, a_out, 1.0)),
                                 np.nan)
        residual[sel] = log_counts[sel] - corrected
    return {'check_residual': residual}


def frame_check(x, y, residual, *, isolation=ISOLATION,
                min_stars=MIN_STARS, offset_tolerance=OFFSET_TOLERANCE,
                scatter_tolerance=SCATTER_TOLERANCE):
    """
    Compare the network with corrected apertures on a frame's stars.

    Parameters
    ----------
    x, y : `~numpy.ndarray`
        Positions of all measured targets (the isolation is judged among
        them).

    residual : `~numpy.ndarray`
        ``check_residual`` of `check_inputs` (dex; NaN where not
        compared).

    isolation : float, optional
        Radius (pixels) within which no other target may lie.

    min_stars : int, optional
        Fewest isolated stars for a verdict; with fewer the status is
        ``'too_few_stars'`` and nothing is judged.

    offset_tolerance, scatter_tolerance : float, optional
        Tolerances (mag).

    Returns
    -------
    result : dict
        ``status`` (``'ok'``, ``'mismatch'`` or ``'too_few_stars'``),
        ``n_stars``, ``offset`` and ``scatter`` (mag, NaN with too few
        stars), the tolerances and a one-line ``message``.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.photometry.check import frame_check
    >>> x = np.arange(8) * 50.0
    >>> frame_check(x, x, np.full(8, -0.04))['status']
    'mismatch'
    >>> frame_check(x, x, np.full(8, 0.004))['status']
    'ok'
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    residual = np.asarray(residual, float)
    isolated = _isolated(x, y, isolation) & np.isfinite(residual)
    n = int(isolated.sum())
    result = {'n_stars': n, 'offset_tolerance': offset_tolerance,
              'scatter_tolerance': scatter_tolerance,
              'isolation': isolation, 'min_stars': min_stars}
    if n < min_stars:
        result.update(status='too_few_stars', offset=np.nan,
                      scatter=np.nan, message=(
                          f'frame check not made: {n} isolated '
                          f'unsaturated stars, it needs {min_stars}'))
        return result
    # Magnitudes: positive when the network is fainter.
    diff = -2.5 * residual[isolated]
    offset = float(np.median(diff))
    scatter = float(1.4826 * np.median(np.abs(diff - offset)))
    bad = abs(offset) > offset_tolerance or scatter > scatter_tolerance
    result.update(offset=offset, scatter=scatter,
                  status='mismatch' if bad else 'ok')
    result['message'] = (
        f'{"model and camera disagree" if bad else "frame check ok"}: '
        f'network - aperture {offset:+.3f} mag (tolerance '
        f'{offset_tolerance}), scatter {scatter:.3f} mag (tolerance '
        f'{scatter_tolerance}) on {n} isolated unsaturated stars')
    return result


def _isolated(x, y, radius):
    """Targets with no other finite target within ``radius``."""
    from scipy.spatial import cKDTree

    finite = np.isfinite(x) & np.isfinite(y)
    out = np.zeros(len(x), dtype=bool)
    if finite.sum() == 0:
        return out
    points = np.column_stack([x[finite], y[finite]])
    counts = cKDTree(points).query_ball_point(points, radius,
                                              return_length=True)
    out[np.flatnonzero(finite)] = counts == 1
    return out
