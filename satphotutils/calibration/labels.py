# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Training labels from Gaia: the predicted counts of Eqs. 1-2."""

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import QTable

from .counts import crowded_log_counts, expected_log_counts
from .crowding import gaia_crowding
from .gaia import GAIA_RELATIONS, gaia_saturation_correction

__all__ = ['training_labels']


def _magnitudes(targets, name):
    if name not in targets.colnames:
        return None
    col = targets[name]
    if isinstance(col, u.Quantity):
        col = col.to_value(u.mag)
    return np.ma.filled(np.ma.asarray(col, dtype=float), np.nan)


def training_labels(targets, *, zeropoint, transparency=1.0, band='g',
                    neighbours=None, radius=8 * u.arcsec,
                    search_radius=1 * u.arcmin, seed=None):
    """
    Compute the label ``log10 N_s`` of each target exposure from Gaia.

    The steps are the paper's: the Gaia saturation corrections, the
    Riello et al. (2021) colour relation to ``band``, the expected counts
    for the reference zero point and the exposure's transparency (Eq. 1)
    and, with ``neighbours``, the crowding rescaling (Eq. 2).

    Parameters
    ----------
    targets : `~astropy.table.Table`
        One row per target exposure, with Gaia DR3 ``phot_g_mean_mag``
        and either ``phot_bp_mean_mag`` and ``phot_rp_mean_mag`` (each
        corrected for saturation before the colour is formed) or
        ``bp_rp``; ``ra`` and ``dec`` (deg) when ``neighbours`` are given.

    zeropoint : float or array-like
        Zero point ``Z`` of the reference image, per row or for all.

    transparency : float or array-like, optional
        Transparency ``t`` of each exposure.

    band : {'g', 'r', 'i', 'V'}, optional
        The camera's band.

    neighbours : `~astropy.table.Table`, optional
        Gaia sources around the targets (``ra``, ``dec``,
        ``phot_g_mean_mag``, ``bp_rp``) for the crowding terms; none if
        `None`.

    radius, search_radius : `~astropy.units.Quantity`, optional
        Blending radius and the neighbourhood of the stellar background
        (`~satphotutils.calibration.gaia_crowding`).

    seed : int or `~numpy.random.Generator`, optional
        Random seed of the background probes.

    Returns
    -------
    labels : `~astropy.table.QTable`
        ``mag`` (masked where the colour is outside the relation's
        range), ``mag_err`` (the relation's scatter), ``f_c``, ``b_c``
        (counts), ``log_counts`` (NaN where ``mag`` is masked),
        ``valid`` and ``bp_rp`` (the colour used, after the saturation
        corrections).

    Examples
    --------
    >>> from astropy.table import Table
    >>> from satphotutils.calibration import training_labels
    >>> stars = Table({'phot_g_mean_mag': [9.0, 9.0], 'bp_rp': [1.0, 4.0]})
    >>> labels = training_labels(stars, zeropoint=25.5)
    >>> print(labels['log_counts'].round(4))
    [6.374 nan]
    """
    G = _magnitudes(targets, 'phot_g_mean_mag')
    if G is None:
        msg = 'targets need a phot_g_mean_mag column (Gaia DR3 names)'
        raise ValueError(msg)
    G = G + np.ma.filled(gaia_saturation_correction(G=G), np.nan)
    bp = _magnitudes(targets, 'phot_bp_mean_mag')
    rp = _magnitudes(targets, 'phot_rp_mean_mag')
    if bp is not None and rp is not None:
        dbp, drp = gaia_saturation_correction(BP=bp, RP=rp)
        x = (bp + np.ma.filled(dbp, np.nan)) - (rp + np.ma.filled(drp,
                                                                  np.nan))
    elif 'bp_rp' in targets.colnames:
        x = _magnitudes(targets, 'bp_rp')
    else:
        msg = ('targets need phot_bp_mean_mag and phot_rp_mean_mag, or '
               'bp_rp')
        raise ValueError(msg)
    if band not in GAIA_RELATIONS:
        msg = f'band must be one of {sorted(GAIA_RELATIONS)}, not {band!r}'
        raise ValueError(msg)
    mag, mag_err = GAIA_RELATIONS[band](G, x)
    valid = ~np.ma.getmaskarray(mag)
    log_counts = expected_log_counts(np.ma.filled(mag, np.nan), zeropoint,
                                     transparency)
    n = len(targets)
    f_c = np.zeros(n)
    b_c = np.zeros(n)
    if neighbours is not None:
        coords = SkyCoord(_magnitudes(targets, 'ra'),
                          _magnitudes(targets, 'dec'), unit='deg')
        good = np.flatnonzero(valid)
        crowd = gaia_crowding(coords[good], np.ma.filled(mag, np.nan)[good],
                              neighbours, radius=radius,
                              search_radius=search_radius, band=band,
                              seed=seed)
        f_c[good] = crowd['f_c']
        b_c_flux = np.zeros(n)
        b_c_flux[good] = crowd['b_c']
        counts_per_flux = np.broadcast_to(
            10 ** expected_log_counts(0.0, zeropoint, transparency), n)
        b_c = b_c_flux * counts_per_flux
        log_counts = crowded_log_counts(log_counts, f_c, b_c)
    result = QTable()
    result['mag'] = mag * u.mag
    result['mag_err'] = mag_err * u.mag
    result['f_c'] = f_c
    result['b_c'] = b_c
    result['log_counts'] = np.where(valid, log_counts, np.nan)
    result['valid'] = valid & np.isfinite(result['log_counts'])
    # The colour the relation used, for a zero point with a colour term.
    result['bp_rp'] = np.ma.filled(np.ma.asarray(x, dtype=float), np.nan)
    return result
