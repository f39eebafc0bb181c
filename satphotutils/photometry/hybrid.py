# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The frame-calibrated hybrid for unsaturated stars.

On a frame, an exact 2-px aperture sum is the lowest-noise estimate of
an unsaturated star's counts when nothing else falls in the aperture,
and the network is the better one when something does (it learned to
discount neighbours). The hybrid therefore:

1. measures every unsaturated target with an exact-overlap circular
   aperture (`satphotutils.stamps.apertures.aperture_sums`), minus the
   network's local background;
2. puts the aperture on the network's scale with one offset per frame,
   the median of ``network - aperture`` over the stars that agree (the
   aperture correction, which depends on the seeing, is learned from the
   frame itself, never from a table);
3. keeps the aperture value where it agrees with the network within
   ``tolerance`` and the network's value elsewhere;
4. where the network is out of distribution (the guard's flag), the
   network's value is not evidence: such stars neither calibrate the
   offset nor need to agree, and get the calibrated aperture value;
5. a star whose own curve of growth (2 px out to the background
   annulus) agrees with the frame's has no neighbour's light in the
   aperture: it gets the calibrated aperture value whether or not the
   network agrees (where the network is noisy, near saturation on a
   camera that saturates low, its disagreement is its own error).

Pure numerical functions: no I/O, no frame handling.
"""

import numpy as np

from satphotutils.stamps.apertures import (
    PixelPhaseCorrection,
    phase_terms_matter,
)

__all__ = []

# Systematic floor (dex) of a calibrated aperture value: sub-pixel
# centring, the PSF's variation within the offset surface and
# neighbours fainter than the tolerance. 0.002 dex (0.005 mag) gave
# 1-sigma coverage of 0.54-0.74 on simulated frames of 1.6-2.5 px FWHM
# where the network itself was unbiased.
_FLOOR = 0.002


def frame_hybrid(log_counts, log_counts_err, aperture_sum, area,
                 local_bkg, unsaturated, x, y, *, tolerance=0.03, gain=1.0,
                 read_noise=0.0, min_stars=20, out_of_distribution=None,
                 reference=None):
    """
    Choose between the network and a frame-calibrated aperture.

    Parameters
    ----------
    log_counts, log_counts_err : `~numpy.ndarray`
        The network's values for all targets on one frame.

    aperture_sum, area : `~numpy.ndarray`
        Exact aperture sums (sky included) and aperture areas (pixels).

    local_bkg : `~numpy.ndarray`
        Local background per pixel (counts).

    unsaturated : `~numpy.ndarray` of bool
        Targets the hybrid may change.

    x, y : `~numpy.ndarray`
        Pixel positions: the offset may vary smoothly across the image
        (the PSF, hence the aperture correction, does).

    tolerance : float, optional
        Largest difference (mag) between the calibrated aperture and the
        network for the aperture value to be used.

    gain, read_noise : float, optional
        Detector gain (e-/ADU) and read noise (e-) for the aperture's
        uncertainty.

    min_stars : int, optional
        Fewest agreeing stars to calibrate the offset with; below it the
        network's values are kept.

    out_of_distribution : `~numpy.ndarray` of bool, optional
        Targets the guard flagged: left out of the offset's calibration
        and given the calibrated aperture value whether or not they
        agree with the network (if ``unsaturated`` and the aperture sum
        is positive).

    reference : `~numpy.ndarray`, optional
        Log counts of a classical estimate (the frame check's aperture
        followed out to the background annulus, its wings put back), NaN
        where there is none. A target whose own curve of growth (the
        reference minus the aperture) agrees with the frame's smooth
        surface of it has no neighbour's light in the aperture, and gets
        the calibrated aperture value whether or not it agrees with the
        network: the network's disagreement there is its own error.

    Returns
    -------
    use : `~numpy.ndarray` of bool
        Targets given the aperture value.

    log_counts, log_counts_err : `~numpy.ndarray`
        The chosen values and their uncertainties.

    offset : `~numpy.ndarray`
        The ``network - aperture`` offset (dex) at each target, NaN if
        none was calibrated.
    """
    net = np.asarray(log_counts, dtype=float)
    signal = aperture_sum - local_bkg * area
    with np.errstate(invalid='ignore', divide='ignore'):
        ap = np.where(signal > 0, np.log10(signal), np.nan)
    ood = np.zeros(len(net), dtype=bool) if out_of_distribution is None \
        else np.asarray(out_of_distribution, dtype=bool)
    values = net.copy()
    errors = np.asarray(log_counts_err, dtype=float).copy()
    nothing = (np.zeros(len(net), dtype=bool), values, errors,
               np.full(len(net), np.nan))
    finite = unsaturated & np.isfinite(ap)
    fallback = finite & ood
    tol = tolerance / 2.5
    ok = finite & np.isfinite(net) & ~ood
    grown = None
    if reference is not None:
        reference = np.asarray(reference, dtype=float)
        grown = _agreeing_surface(reference, ap,
                                  finite & np.isfinite(reference), x, y,
                                  tol, min_stars)
    if grown is None:
        found = _agreeing_surface(net, ap, ok, x, y, tol, min_stars)
        if found is None:
            return nothing
        agree, offset, offset_err = found
        use = agree | fallback
    else:
        # The aperture correction's shape across the frame from the
        # stars' own curves of growth (a noisy network would bend a
        # surface fitted to it), its level on the network's scale from
        # the median over the clean stars.
        clean, surface, surface_err = grown
        level = net - reference
        pick = clean & ok
        if pick.sum() < min_stars:
            return nothing
        # The level where the network agrees with the clean stars (the
        # mode, as for the surface above): not pulled by those it
        # mismeasures.
        # Clean stars have nothing else in their apertures, so their
        # median is the network's level (a window about it would be
        # noisier and understate its error).
        shift = np.median(level[pick])
        offset = surface + shift
        offset_err = np.hypot(surface_err, 1.2533 * 1.4826 * np.median(
            np.abs(level[pick] - shift)) / np.sqrt(pick.sum()))
        agree = ok & (np.abs(net - ap - offset) < tol)
        use = clean | agree | fallback
    # Poisson noise of the star and the sky, read noise, the
    # uncertainty of the offset surface and the systematic floor.
    var = (np.maximum(signal, 0) / gain
           + area * (np.maximum(local_bkg, 0) / gain
                     + (read_noise / gain) ** 2))
    with np.errstate(invalid='ignore', divide='ignore'):
        ap_err = np.sqrt(var) / signal / np.log(10)
    values[use] = ap[use] + offset[use]
    errors[use] = np.sqrt(ap_err[use] ** 2 + offset_err ** 2 + _FLOOR ** 2)
    return use, values, errors, offset


def _agreeing_surface(scale, ap, ok, x, y, tol, min_stars):
    """
    Return the stars whose ``scale - ap`` agrees with its smooth surface.

    The first guess is the densest value (most stars within ``tol``):
    the median over all ``ok`` stars is pulled by the crowded ones, by
    more than ``tol`` on a moderately crowded frame. Then a smooth
    surface over those that agree with it, until they settle (the first,
    constant guess cuts off the corners of a varying one). Returns
    ``(agree, surface, error)``, or `None` with fewer than ``min_stars``
    agreeing.
    """
    if ok.sum() < min_stars:
        return None
    diff = np.sort(scale[ok] - ap[ok])
    within = (np.searchsorted(diff, diff + tol, side='right')
              - np.searchsorted(diff, diff - tol, side='left'))
    densest = within == within.max()
    offset = np.full(len(ap), np.median(diff[densest]))
    agree = ok & (np.abs(scale - ap - offset) < tol)
    for _ in range(10):
        if agree.sum() < min_stars:
            return None
        offset, offset_err = _offset_surface(x, y, scale - ap, agree)
        again = ok & (np.abs(scale - ap - offset) < tol)
        if np.array_equal(again, agree):
            break
        agree = again
    return agree, offset, offset_err


def _offset_surface(x, y, diff, sel):
    """
    Fit a quadratic surface in x, y to ``diff[sel]`` by least squares.

    With the pixel-phase terms of
    `~satphotutils.stamps.PixelPhaseCorrection` when the stars spread
    over their pixels and the terms pass an F test at 1% (on a FWHM-2.4
    px frame they take the hybrid's scatter from 0.0050 to 0.0044 dex,
    1.03 times the 2-px aperture's with its offset from the truth).
    With fewer than 60
    stars, a constant (their median). Returns the surface at every
    target and the standard error of its mean level.
    """
    n = int(sel.sum())
    if n < 60:
        level = np.median(diff[sel])
        resid = diff[sel] - level
        scatter = 1.4826 * np.median(np.abs(resid))
        return np.full(len(diff), level), 1.2533 * scatter / np.sqrt(n)
    # Centred and scaled positions keep the design well conditioned.
    cx, cy = np.median(x[sel]), np.median(y[sel])
    scale = max(np.ptp(x[sel]), np.ptp(y[sel]), 1.0)
    u, v = (x - cx) / scale, (y - cy) / scale
    design = np.column_stack([np.ones_like(u), u, v, u * u, u * v, v * v])
    coef, *_ = np.linalg.lstsq(design[sel], diff[sel], rcond=None)
    # And where each star falls in its pixel, if the stars say so (an F
    # test at 1%): a small aperture's share of an undersampled star
    # changes by a few per cent across a pixel, of a well-sampled one
    # not at all, and terms fitted to noise only add it.
    _, spread = PixelPhaseCorrection.terms(x[sel] - np.rint(x[sel]),
                                           y[sel] - np.rint(y[sel]))
    if spread:
        phased = np.column_stack([design, PixelPhaseCorrection.terms(
            x - np.rint(x), y - np.rint(y))[0][:, 1:]])
        coef_p, *_ = np.linalg.lstsq(phased[sel], diff[sel], rcond=None)
        if phase_terms_matter(
                np.sum((diff[sel] - design[sel] @ coef) ** 2),
                np.sum((diff[sel] - phased[sel] @ coef_p) ** 2), n,
                phased.shape[1]):
            design, coef = phased, coef_p
    surface = design @ coef
    # Faint neighbours only ever add light to the aperture: the mean of
    # the agreeing stars leans their way, their median much less.
    resid = diff[sel] - surface[sel]
    surface += np.median(resid)
    scatter = 1.4826 * np.median(np.abs(resid - np.median(resid)))
    return surface, 1.2533 * scatter / np.sqrt(n)
