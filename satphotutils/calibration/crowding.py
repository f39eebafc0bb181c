# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Crowding corrections of Winecki & Kochanek (2024), their Eq. 2.

The predicted counts of a target, N_s, are rescaled to
``N_s (1 + f_c) - b_c``, where ``f_c`` is the flux of all other stars
within a radius (8 arcsec) relative to the target and ``b_c`` is the
median contribution of stars to a region of that radius at a random
position: the stellar part of the background, which a local background
estimate removes.

`blended_flux_ratio` and `stellar_background` work on positions in any
flat coordinate system (pixels, tangent-plane offsets) and are shared with
the simulator; `gaia_crowding` computes both terms on the sky from Gaia
neighbours, with KD-trees of unit vectors (exact chord distances, no
projection, any part of the sky).
"""

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from scipy.spatial import cKDTree

from .gaia import GAIA_RELATIONS, gaia_saturation_correction

__all__ = ['blended_flux_ratio', 'gaia_crowding', 'neighbour_flux',
           'stellar_background']


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

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.calibration import stellar_background
    >>> rng = np.random.default_rng(1)
    >>> pos = rng.uniform(0, 100, (400, 2))
    >>> b = stellar_background(pos, np.ones(400), radius=3.0,
    ...                        bounds=(0, 100, 0, 100), seed=2)
    >>> bool(0.5 < float(b) < 2.0)  # about 400 * pi 3**2 / 100**2 = 1.13
    True
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


def _unit_vectors(coord):
    cart = coord.icrs.cartesian
    xyz = np.column_stack([cart.x.value, cart.y.value, cart.z.value])
    return xyz / np.linalg.norm(xyz, axis=1, keepdims=True)


def _chord(angle):
    return 2.0 * np.sin(0.5 * angle.to_value(u.rad))


def neighbour_flux(table, *, band='g'):
    """
    Estimate the flux of Gaia sources in a band from G and BP - RP.

    The saturation correction is applied, then the colour relation for
    ``band``; where the colour is missing or outside the relation's
    range, the corrected G is used instead (the paper's choice for all
    stars).

    Parameters
    ----------
    table : `~astropy.table.Table`
        Gaia DR3 columns ``phot_g_mean_mag`` and ``bp_rp``.

    band : {'g', 'r', 'i', 'V'}, optional
        The band.

    Returns
    -------
    flux : `~numpy.ndarray`
        Flux relative to a zero-magnitude star, ``10**(-0.4 m)``.

    from_colour : `~numpy.ndarray` of bool
        Whether the colour relation was used.

    Examples
    --------
    >>> from astropy.table import Table
    >>> from satphotutils.calibration import neighbour_flux
    >>> gaia = Table({'phot_g_mean_mag': [12.0, 13.0],
    ...               'bp_rp': [0.8, float('nan')]})
    >>> flux, from_colour = neighbour_flux(gaia)
    >>> from_colour.tolist()
    [True, False]
    """
    G = np.ma.filled(np.ma.asarray(_column(table, 'phot_g_mean_mag'),
                                   dtype=float), np.nan)
    G = G + np.ma.filled(gaia_saturation_correction(G=G), 0.0)
    x = np.ma.filled(np.ma.asarray(_column(table, 'bp_rp'), dtype=float),
                     np.nan)
    mag, _ = GAIA_RELATIONS[band](G, x)
    from_colour = ~np.ma.getmaskarray(mag)
    mag = np.where(from_colour, np.ma.filled(mag, np.nan), G)
    return 10 ** (-0.4 * mag), from_colour


def _column(table, name):
    if name not in table.colnames:
        msg = (f'the neighbour table needs a {name!r} column (Gaia DR3 '
               f'names); it has {table.colnames}')
        raise ValueError(msg)
    col = table[name]
    return col.value if isinstance(col, u.Quantity) else col


def gaia_crowding(targets, target_mag, neighbours, *, radius=8 * u.arcsec,
                  search_radius=1 * u.arcmin, g_max=20.0, band='g',
                  n_probes=32, seed=None, chunk_size=2_000_000):
    """
    Compute the crowding terms of Eq. 2 from Gaia neighbours.

    ``f_c`` is the flux of the other sources within ``radius`` of each
    target relative to the target; ``b_c`` is the median flux of sources
    within ``radius`` of random points within ``search_radius -
    radius`` of the target (the stellar background a local background
    estimate removes). Neighbour fluxes are the estimated ``band``
    magnitudes where the Gaia colour allows (the paper used G).

    Parameters
    ----------
    targets : `~astropy.coordinates.SkyCoord`
        Target positions.

    target_mag : array-like
        Target magnitudes in ``band``.

    neighbours : `~astropy.table.Table`
        Gaia sources around the targets: ``ra``, ``dec`` (deg),
        ``phot_g_mean_mag`` and ``bp_rp``. A source within 1 arcsec of
        a target and within 0.75 mag of its magnitude is the target
        itself and is excluded.

    radius : `~astropy.units.Quantity`, optional
        The blending (signal) radius.

    search_radius : `~astropy.units.Quantity`, optional
        The neighbourhood used for ``b_c``.

    g_max : float, optional
        Faintest neighbour (Gaia G) counted.

    band : {'g', 'r', 'i', 'V'}, optional
        The band of ``target_mag`` and of the fluxes.

    n_probes : int, optional
        Random positions per target for ``b_c``.

    seed : int or `~numpy.random.Generator`, optional
        Random seed of the probe positions.

    chunk_size : int, optional
        Probes per KD-tree query; bounds the memory.

    Returns
    -------
    result : `~astropy.table.QTable`
        One row per target: ``f_c``; ``b_c`` (flux relative to a
        zero-magnitude star; multiply by ``10**(0.4 Z) / t`` for
        counts); ``n_blend`` (neighbours within ``radius``) and
        ``n_blend_no_colour`` (of those, how many used G for want of a
        colour).

    Examples
    --------
    >>> from astropy.coordinates import SkyCoord
    >>> from astropy.table import Table
    >>> from satphotutils.calibration import gaia_crowding
    >>> target = SkyCoord([10.0], [-30.0], unit='deg')
    >>> gaia = Table({'ra': [10.0, 10.001], 'dec': [-30.0, -30.0],
    ...               'phot_g_mean_mag': [9.0, 11.5],
    ...               'bp_rp': [1.0, 1.0]})
    >>> result = gaia_crowding(target, [9.565], gaia, seed=1)
    >>> print(round(float(result['f_c'][0]), 3), int(result['n_blend'][0]))
    0.1 1
    """
    from astropy.table import QTable

    if not isinstance(targets, SkyCoord):
        msg = 'targets must be a SkyCoord'
        raise TypeError(msg)
    targets = targets.reshape(-1)
    target_mag = np.asarray(target_mag, dtype=float).reshape(-1)
    if target_mag.shape != (len(targets),):
        msg = 'target_mag must have one value per target'
        raise ValueError(msg)
    if not radius < search_radius:
        msg = 'radius must be smaller than search_radius'
        raise ValueError(msg)
    G = np.ma.filled(np.ma.asarray(_column(neighbours, 'phot_g_mean_mag'),
                                   dtype=float), np.nan)
    keep = np.isfinite(G) & (g_max > G)
    nb = neighbours[keep]
    flux, from_colour = neighbour_flux(nb, band=band)
    nb_xyz = _unit_vectors(SkyCoord(_column(nb, 'ra'), _column(nb, 'dec'),
                                    unit='deg'))
    t_xyz = _unit_vectors(targets)
    target_flux = 10 ** (-0.4 * target_mag)
    n = len(targets)
    result = QTable()
    if len(nb) == 0 or n == 0:
        for name in ('f_c', 'b_c'):
            result[name] = np.zeros(n)
        for name in ('n_blend', 'n_blend_no_colour'):
            result[name] = np.zeros(n, dtype=int)
        return result

    nb_tree = cKDTree(nb_xyz)
    chord = _chord(radius)
    # The target itself: a source within 1" whose flux is within 0.75 mag.
    pairs = cKDTree(t_xyz).sparse_distance_matrix(
        nb_tree, chord, output_type='ndarray')
    rows, cols = pairs['i'], pairs['j']
    self_match = ((pairs['v'] < _chord(1 * u.arcsec))
                  & (np.abs(np.log10(flux[cols] / target_flux[rows]))
                     < 0.3))
    owner = np.full(len(nb), -1)
    owner[cols[self_match]] = rows[self_match]
    rows, cols = rows[~self_match], cols[~self_match]
    result['f_c'] = np.bincount(rows, weights=flux[cols], minlength=n) \
        / target_flux
    result['b_c'] = _median_background(
        targets, nb_tree, flux, owner, radius=radius,
        search_radius=search_radius, n_probes=n_probes, seed=seed,
        chunk_size=chunk_size)
    result['n_blend'] = np.bincount(rows, minlength=n)
    result['n_blend_no_colour'] = np.bincount(
        rows, weights=~from_colour[cols], minlength=n).astype(int)
    return result


def _median_background(targets, nb_tree, flux, owner, *, radius,
                       search_radius, n_probes, seed, chunk_size):
    rng = np.random.default_rng(seed)
    n = len(targets)
    limit = (search_radius - radius).to_value(u.rad)
    # Uniform over the spherical cap of the probes' centres.
    sep = np.arccos(1 - rng.uniform(0, 1, (n, n_probes))
                    * (1 - np.cos(limit)))
    pa = rng.uniform(0, 2 * np.pi, (n, n_probes))
    ra0 = targets.icrs.ra.rad[:, None]
    dec0 = targets.icrs.dec.rad[:, None]
    dec = np.arcsin(np.sin(dec0) * np.cos(sep)
                    + np.cos(dec0) * np.sin(sep) * np.cos(pa))
    ra = ra0 + np.arctan2(np.sin(pa) * np.sin(sep) * np.cos(dec0),
                          np.cos(sep) - np.sin(dec0) * np.sin(dec))
    probes = np.column_stack([
        (np.cos(dec) * np.cos(ra)).ravel(),
        (np.cos(dec) * np.sin(ra)).ravel(),
        np.sin(dec).ravel()])
    probe_owner = np.repeat(np.arange(n), n_probes)
    total = np.zeros(len(probes))
    chord = _chord(radius)
    for start in range(0, len(probes), chunk_size):
        chunk = probes[start:start + chunk_size]
        pairs = cKDTree(chunk).sparse_distance_matrix(
            nb_tree, chord, output_type='ndarray')
        i, j = pairs['i'], pairs['j']
        # Each target's own light is signal, not background.
        other = owner[j] != probe_owner[start + i]
        total[start:start + len(chunk)] = np.bincount(
            i[other], weights=flux[j[other]], minlength=len(chunk))
    return np.median(total.reshape(n, n_probes), axis=1)
