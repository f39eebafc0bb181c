# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Crowding corrections of Winecki & Kochanek (2024), their Eq. 2.

The predicted counts of a target, N_s, are rescaled to
``N_s (1 + f_c) - b_c``, where ``f_c`` is the flux of all other stars
within a radius (8 arcsec) relative to the target and ``b_c`` is the
median contribution of stars to a region of that radius at a random
position: the stellar part of the background, which a local background
estimate removes.

These functions work on positions in any flat coordinate system (pixels,
or tangent-plane offsets); they are the numerical core used by both the
simulator and the Gaia-based calibration.
"""

import numpy as np
from scipy.spatial import cKDTree

__all__ = ['blended_flux_ratio', 'stellar_background']


def _as_points(pos, name):
    pos = np.asarray(pos, dtype=float)
    if pos.ndim != 2 or pos.shape[1] != 2:
        msg = f'{name} must have shape (N, 2), got {pos.shape}'
        raise ValueError(msg)
    return pos


def blended_flux_ratio(target_pos, target_flux, source_pos, source_flux, *,
                       radius, target_index=None):
    """
    Compute the blended-flux ratio ``f_c`` of Eq. 2.

    This is the flux of the other sources within ``radius`` of each
    target, relative to the target's own flux.

    Parameters
    ----------
    target_pos : array-like, shape (N, 2)
        Target positions.

    target_flux : array-like, shape (N,)
        Target fluxes (any linear unit, the same as ``source_flux``).

    source_pos : array-like, shape (M, 2)
        Positions of all the sources that may blend with the targets.

    source_flux : array-like, shape (M,)
        Their fluxes.

    radius : float
        The blending radius, in the units of the positions.

    target_index : array-like of int, shape (N,), optional
        Where each target appears in the source list, so that it is not
        counted as its own neighbour. `None` if the targets are not among
        the sources.

    Returns
    -------
    f_c : `~numpy.ndarray`, shape (N,)
        The blended-flux ratio.

    Examples
    --------
    >>> from satphotutils.calibration import blended_flux_ratio
    >>> stars = [[0.0, 0.0], [0.5, 0.0], [3.0, 0.0]]
    >>> flux = [100.0, 10.0, 50.0]
    >>> blended_flux_ratio(stars, flux, stars, flux, radius=1.0,
    ...                    target_index=[0, 1, 2])
    array([0.1, 10. , 0. ])
    """
    target_pos = _as_points(target_pos, 'target_pos')
    source_pos = _as_points(source_pos, 'source_pos')
    target_flux = np.asarray(target_flux, dtype=float)
    source_flux = np.asarray(source_flux, dtype=float)
    if target_flux.shape != (len(target_pos),):
        msg = 'target_flux must have one value per target position'
        raise ValueError(msg)
    if source_flux.shape != (len(source_pos),):
        msg = 'source_flux must have one value per source position'
        raise ValueError(msg)
    if not radius > 0:
        msg = 'radius must be positive'
        raise ValueError(msg)
    if len(target_pos) == 0 or len(source_pos) == 0:
        return np.zeros(len(target_pos))

    pairs = cKDTree(target_pos).sparse_distance_matrix(
        cKDTree(source_pos), radius, output_type='ndarray')
    rows, cols = pairs['i'], pairs['j']
    if target_index is not None:
        target_index = np.asarray(target_index, dtype=int)
        keep = cols != target_index[rows]
        rows, cols = rows[keep], cols[keep]
    blend = np.bincount(rows, weights=source_flux[cols],
                        minlength=len(target_pos))
    with np.errstate(divide='ignore', invalid='ignore'):
        return blend / target_flux


def stellar_background(source_pos, source_flux, *, radius, bounds,
                       n_samples=4000, seed=None):
    """
    Compute the stellar background ``b_c`` of Eq. 2.

    This is the median flux of sources within ``radius`` of a random
    position.

    Parameters
    ----------
    source_pos : array-like, shape (M, 2)
        Positions of the sources.

    source_flux : array-like, shape (M,)
        Their fluxes.

    radius : float
        The radius of the signal region, in the units of the positions.

    bounds : tuple of float
        ``(xmin, xmax, ymin, ymax)`` of the region to sample; keep it
        ``radius`` inside the area the sources cover.

    n_samples : int, optional
        The number of random positions.

    seed : int or `~numpy.random.Generator`, optional
        Random seed.

    Returns
    -------
    b_c : float
        The median stellar flux in a region of that radius.
    """
    source_pos = _as_points(source_pos, 'source_pos')
    source_flux = np.asarray(source_flux, dtype=float)
    rng = np.random.default_rng(seed)
    xmin, xmax, ymin, ymax = bounds
    probes = np.column_stack([rng.uniform(xmin, xmax, n_samples),
                              rng.uniform(ymin, ymax, n_samples)])
    if len(source_pos) == 0:
        return 0.0
    pairs = cKDTree(probes).sparse_distance_matrix(
        cKDTree(source_pos), radius, output_type='ndarray')
    total = np.bincount(pairs['i'], weights=source_flux[pairs['j']],
                        minlength=n_samples)
    return float(np.median(total))
