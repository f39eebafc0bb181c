# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Classical photometry of stamps: the baselines the network must beat.

Aperture sums use photutils' exact circle-pixel overlaps
(`~photutils.aperture.CircularAperture` masks), computed once per
sub-pixel offset on a 1/20-pixel grid and applied to whole stacks of
stamps at once; the local background is the sigma-clipped median of an
annulus.
"""

import functools

import numpy as np
from astropy.stats import sigma_clipped_stats

__all__ = ['stamp_aperture_photometry']

_GRID = 20  # sub-pixel steps per pixel of the cached aperture masks


@functools.lru_cache(maxsize=4096)
def _mask(size, radius, ix, iy):
    from photutils.aperture import CircularAperture

    c = size // 2
    aperture = CircularAperture((c + ix / _GRID, c + iy / _GRID), r=radius)
    return aperture.to_mask(method='exact').to_image((size, size))


def _aperture_sums(sub, radius, dx, dy):
    """Exact-overlap aperture sums, one mask per 1/20-px offset group."""
    size = sub.shape[1]
    ix = np.rint(np.clip(dx, -0.5, 0.5) * _GRID).astype(int)
    iy = np.rint(np.clip(dy, -0.5, 0.5) * _GRID).astype(int)
    pairs, inverse = np.unique(np.column_stack([ix, iy]), axis=0,
                               return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind='stable')
    bounds = np.searchsorted(inverse[order], np.arange(len(pairs) + 1))
    flat = sub.reshape(len(sub), -1)
    sums = np.empty(len(sub))
    for k, (a, b) in enumerate(pairs):
        rows = order[bounds[k]:bounds[k + 1]]
        sums[rows] = flat[rows] @ _mask(size, float(radius), int(a),
                                        int(b)).ravel()
    return sums


def stamp_aperture_photometry(stamps, radii, *, dx=None, dy=None,
                              annulus=(7.0, 10.0), local_bkg=None):
    """
    Aperture photometry of the central star of each stamp.

    Parameters
    ----------
    stamps : array-like, shape (N, size, size)
        The stamps, the star near the central pixel.

    radii : float or sequence of float
        Aperture radii (pixels).

    dx, dy : array-like, shape (N,), optional
        Offsets of the star from the central pixel's centre.

    annulus : tuple of float, optional
        Inner and outer radius of the background annulus; its
        sigma-clipped median (3 sigma) is the local background.

    local_bkg : array-like, shape (N,), optional
        The local background per pixel, instead of the annulus.

    Returns
    -------
    flux : `~numpy.ndarray`, shape (N, len(radii))
        Background-subtracted aperture sums.

    local_bkg : `~numpy.ndarray`, shape (N,)
        The background per pixel that was subtracted.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.photometry import stamp_aperture_photometry
    >>> stamps = np.full((1, 21, 21), 100.0)
    >>> stamps[0, 10, 10] += 5000.0
    >>> flux, bkg = stamp_aperture_photometry(stamps, [1.0, 3.0])
    >>> flux.round(1), bkg
    (array([[5000., 5000.]]), array([100.]))
    """
    stamps = np.asarray(stamps, dtype=float)
    if stamps.ndim != 3 or stamps.shape[1] != stamps.shape[2]:
        msg = 'stamps must have shape (N, size, size)'
        raise ValueError(msg)
    n, size = len(stamps), stamps.shape[1]
    radii = np.atleast_1d(np.asarray(radii, dtype=float))
    dx = np.zeros(n) if dx is None else np.asarray(dx, dtype=float)
    dy = np.zeros(n) if dy is None else np.asarray(dy, dtype=float)
    if local_bkg is None:
        half = size // 2
        yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
        r = np.hypot(xx, yy)
        ring = (r >= annulus[0]) & (r <= annulus[1])
        _, local_bkg, _ = sigma_clipped_stats(stamps[:, ring], axis=1,
                                              sigma=3.0)
        local_bkg = np.asarray(local_bkg)
    else:
        local_bkg = np.broadcast_to(np.asarray(local_bkg, dtype=float), n)
    sub = stamps - local_bkg[:, None, None]
    flux = np.empty((n, len(radii)))
    for j, radius in enumerate(radii):
        flux[:, j] = _aperture_sums(sub, radius, dx, dy)
    return flux, np.asarray(local_bkg, dtype=float)
