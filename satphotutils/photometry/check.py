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
                 radius, outer_radius, annulus=None, x=None, y=None):
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

    annulus : tuple of float, optional
        Inner and outer radius of the annulus ``local_bkg`` is the median
        of (the columns within 2 px of the centre left out). With it and
        ``x``, ``y``, the light beyond R and the wings' light in the
        annulus are put back (`wing_fraction`).

    x, y : `~numpy.ndarray`, optional
        Target positions, to choose isolated stars for the wing fit.

    Returns
    -------
    inputs : dict
        ``{'check_residual': array, 'check_wings': dict}``, NaN where
        not compared; ``check_wings`` is `wing_fraction`'s report (or
        ``{'status': 'not fitted: ...'}``).
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
        wings = {'status': 'not fitted (the check is made without it '
                           'unless the network and the plain aperture '
                           'disagree)'}
        if annulus is not None and x is not None and y is not None:
            isolated = _isolated(np.asarray(x, float)[sel],
                                 np.asarray(y, float)[sel], ISOLATION)
            wings = wing_fraction(stamps[sel], bkg, a_out, dx[sel], dy[sel],
                                  isolated & good, radius=outer_radius,
                                  annulus=annulus)
            if wings['status'] == 'fitted':
                corrected = corrected - np.log10(wings['held'])
        residual[sel] = log_counts[sel] - corrected
    else:
        wings = {'status': 'not fitted: no unsaturated targets'}
    return {'check_residual': residual, 'check_wings': wings}


def wing_fraction(stamps, local_bkg, held_sum, dx, dy, use, *, radius,
                  annulus, max_stars=30, min_stars=5):
    """
    Fit the frame's PSF wings: what an aperture of ``radius`` holds.

    A circular Moffat profile is fitted to the stacked radial profiles
    of the brightest ``use`` stars, each background-subtracted with its
    annulus median and divided by its aperture sum, so that the model
    has two parameters (alpha, beta): for unit flux, a pixel at ``r``
    reads ``I(r) - I(r_a)`` (``r_a`` the annulus's median radius, where
    the median of a falling profile lies) and the aperture holds
    ``held = 1 - w(R) - pi R**2 I(r_a)``, with ``w(R)`` the light beyond
    R. For a beta of 2.5 and a FWHM of 3 px, ``held`` is 0.91 with the
    (7, 10) px annulus: the light a plain aperture and annulus miss.

    Parameters
    ----------
    stamps : `~numpy.ndarray`, shape (N, n, n)
        Square stamps, the targets at their central pixels.

    local_bkg, held_sum : `~numpy.ndarray`
        Each star's annulus median and background-subtracted sum within
        ``radius``.

    dx, dy : `~numpy.ndarray`
        Offsets of the stars from their central pixels.

    use : `~numpy.ndarray` of bool
        Stars the wings may be fitted on (isolated, unsaturated, with a
        positive sum).

    radius : float
        The aperture radius R.

    annulus : tuple of float
        The background annulus (inner, outer), as the features define
        it (the columns within 2 px of the centre left out).

    max_stars, min_stars : int, optional
        At most the ``max_stars`` brightest are stacked; with fewer than
        ``min_stars`` nothing is fitted.

    Returns
    -------
    report : dict
        ``status`` (``'fitted'`` or why not), and when fitted ``held``,
        ``alpha``, ``beta``, ``fwhm`` (px) and ``n_stars``.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.photometry.check import wing_fraction
    >>> from satphotutils.stamps.apertures import aperture_sums
    >>> yy, xx = np.mgrid[-10:11, -10:11]
    >>> alpha, beta = 2.94, 2.5  # FWHM 3 px
    >>> star = (beta - 1) / (np.pi * alpha**2) * (
    ...     1 + (xx**2 + yy**2) / alpha**2) ** -beta
    >>> stamps = 1e5 * np.repeat(star[None], 8, axis=0) + 100.0
    >>> r = np.hypot(xx, yy)
    >>> ring = (r >= 7) & (r <= 10) & (np.abs(xx) > 2)
    >>> bkg = np.median(stamps[:, ring], axis=1)
    >>> sums = aperture_sums(stamps, 7.0)
    >>> held_sum = sums.sum - bkg * sums.area
    >>> report = wing_fraction(stamps, bkg, held_sum, np.zeros(8),
    ...                        np.zeros(8), np.ones(8, bool), radius=7.0,
    ...                        annulus=(7.0, 10.0))
    >>> print(f"fit {report['held']:.3f}, true {held_sum[0] / 1e5:.3f}")
    fit 0.908, true 0.911
    """
    from scipy.optimize import least_squares

    n_y, n_x = stamps.shape[1:]
    if n_y != n_x:
        return {'status': 'not fitted: tall stamps'}
    half = n_x // 2
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1].astype(float)
    centre = np.hypot(xx, yy)
    idx = np.flatnonzero(use)
    if len(idx) < min_stars:
        return {'status': f'not fitted: {len(idx)} isolated unsaturated '
                          f'stars, it needs {min_stars}'}
    idx = idx[np.argsort(held_sum[idx])[::-1][:max_stars]]
    ring = ((centre >= annulus[0]) & (centre <= annulus[1])
            & (np.abs(xx) > 2))
    ox, oy = dx[idx, None, None], dy[idx, None, None]
    values = stamps[idx].astype(float) - local_bkg[idx, None, None]
    # Inside 2 px the core is too steep for the sampling below; beyond
    # half the stamp the annulus is all there is.
    pick = ((np.hypot(xx - ox, yy - oy) >= 2.0) & (centre <= half - 0.5)
            & np.isfinite(values))
    norm = np.broadcast_to(held_sum[idx, None, None], values.shape)
    # Poisson weights (relative between stars, whatever the gain).
    noise = np.sqrt(np.maximum(stamps[idx].astype(float), 0.0)
                    + np.maximum(local_bkg[idx, None, None], 0.0) + 1.0)
    v = (values / norm)[pick]
    weight = (norm / noise)[pick]
    # Each pixel's light by 3 x 3 sub-pixels (the profile is convex);
    # the annulus median of each star's own pixels.
    sub = np.array([-1 / 3, 0.0, 1 / 3])
    r2_pick = ((np.broadcast_to(xx - ox, values.shape)[pick][:, None, None]
                + sub[None, None, :]) ** 2
               + (np.broadcast_to(yy - oy, values.shape)[pick][:, None, None]
                  + sub[None, :, None]) ** 2)
    r2_ring = ((np.broadcast_to(xx - ox, values.shape)[:, ring][..., None,
                                                                None]
                + sub[None, None, None, :]) ** 2
               + (np.broadcast_to(yy - oy, values.shape)[:, ring][..., None,
                                                                  None]
                  + sub[None, None, :, None]) ** 2)
    star_of = np.broadcast_to(np.arange(len(idx))[:, None, None],
                              values.shape)[pick]

    def profile(p, r2):
        alpha, beta = np.exp(p[0]), 1.0 + np.exp(p[1])
        return ((beta - 1) / (np.pi * alpha**2)
                * (1 + r2 / alpha**2) ** -beta).mean(axis=(-1, -2))

    def held_and_ring(p):
        alpha, beta = np.exp(p[0]), 1.0 + np.exp(p[1])
        at_ring = np.median(profile(p, r2_ring), axis=1)
        held = 1 - (1 + radius**2 / alpha**2) ** (1 - beta) \
            - np.pi * radius**2 * at_ring
        return held, at_ring

    def residual(p):
        held, at_ring = held_and_ring(p)
        model = (profile(p, r2_pick) - at_ring[star_of]) / held[star_of]
        return (v - model) * weight

    # Neighbours' light in the stamps (unlisted stars, a bright star's
    # wings beyond the isolation radius) would pass for wings: a robust
    # loss, residuals in units of the pixel noise.
    fit = least_squares(residual, x0=[np.log(2.0), np.log(1.5)],
                        bounds=([np.log(0.3), np.log(0.2)],
                                [np.log(20.0), np.log(9.0)]),
                        loss='soft_l1', f_scale=3.0)
    held = float(np.median(held_and_ring(fit.x)[0]))
    alpha, beta = float(np.exp(fit.x[0])), float(1 + np.exp(fit.x[1]))
    if not (fit.success and 0.5 < held <= 1.0):
        return {'status': 'not fitted: the wing fit failed',
                'n_stars': len(idx)}
    return {'status': 'fitted', 'held': float(held), 'alpha': alpha,
            'beta': beta,
            'fwhm': 2 * alpha * float(np.sqrt(2 ** (1 / beta) - 1)),
            'n_stars': len(idx)}


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
