# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Star fields: a Gaia-like luminosity function, colours and sky density.

Counts follow Gaia DR3: measured all-sky N(<G) for G < 10, estimates for
10 < G < 15 (Tycho-2/UCAC4 growth ratios), and a slowly flattening
extrapolation to G = 20. The density scales with Galactic latitude by
a factor of about 24 between the poles and the plane. Each star gets a
BP - RP colour, and its SDSS g and Johnson V follow from G through the
same Riello et al. (2021) relations the calibration uses, so simulated
stars are consistent with the labels built from Gaia.
"""

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import QTable

from satphotutils.calibration.gaia import GAIA_RELATIONS

__all__ = ['cumulative_star_density', 'draw_stars',
           'galactic_density_factor', 'latitude_factor']

# All-sky mean N(<G) per square degree.
_G_ANCHORS = np.array([2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0,
                       12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 19.0,
                       20.0])
_N_ANCHORS = np.array([0.0012, 0.0053, 0.017, 0.054, 0.17, 0.52, 1.5, 4.3,
                       11.7, 30.3, 82.0, 201.0, 473.0, 1067.0, 2350.0,
                       4930.0, 9860.0, 18700.0, 33700.0])
_LOG_N = np.log10(_N_ANCHORS)
# Latitude profile: a floor plus a disc with a 12-degree scale height,
# normalised to an all-sky mean of 1.
_FLOOR, _DISC, _SCALE_DEG = 0.15, 3.5, 12.0
_MEAN = _FLOOR + _DISC * (np.deg2rad(_SCALE_DEG)
                          / (1 + np.deg2rad(_SCALE_DEG) ** 2))


def cumulative_star_density(G):
    """
    All-sky mean number of stars brighter than ``G`` per square degree.

    Examples
    --------
    >>> from satphotutils.simulation.scene import cumulative_star_density
    >>> print(round(float(cumulative_star_density(10.0)), 1))
    11.7
    """
    return 10 ** np.interp(G, _G_ANCHORS, _LOG_N)


def latitude_factor(b):
    """
    Star density at Galactic latitude ``b`` relative to the sky average.

    Parameters
    ----------
    b : `~astropy.units.Quantity` or float
        Galactic latitude (degrees if a float).

    Returns
    -------
    factor : float or `~numpy.ndarray`
        About 0.18 at the poles and 4.3 in the plane.

    Examples
    --------
    >>> from astropy import units as u
    >>> from satphotutils.simulation import latitude_factor
    >>> bool(latitude_factor(0 * u.deg) > latitude_factor(60 * u.deg))
    True
    """
    b = np.abs(u.Quantity(b, u.deg).to_value(u.deg))
    return (_FLOOR + _DISC * np.exp(-b / _SCALE_DEG)) / _MEAN


def _draw_colours(n, rng):
    """BP - RP: a dwarf and a giant population, within [0.3, 3.0]."""
    giant = rng.random(n) < 0.3
    x = np.where(giant, rng.normal(1.35, 0.25, n), rng.normal(0.85, 0.25, n))
    # Keep colours inside the validity range of the G - g relation, so
    # that every simulated star has a well-defined g.
    return np.clip(x, GAIA_RELATIONS['g'].x_range[0] + 1e-3,
                   GAIA_RELATIONS['g'].x_range[1] - 1e-3)


def draw_stars(n_or_area, *, g_min=2.0, g_max=19.0, density_factor=1.0,
               rng=None):
    """
    Draw stars from the Gaia-like luminosity function.

    Parameters
    ----------
    n_or_area : `~astropy.units.Quantity` or int
        A solid angle (the expected number of stars then follows from the
        luminosity function and ``density_factor``, with Poisson scatter)
        or an exact number of stars.

    g_min, g_max : float, optional
        Range of SDSS g.

    density_factor : float, optional
        Density relative to the all-sky mean; see `latitude_factor`.

    rng : `~numpy.random.Generator`, optional
        Random generator.

    Returns
    -------
    stars : `~astropy.table.QTable`
        Columns ``g``, ``G``, ``bp_rp``, ``V`` (magnitudes).

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.simulation import draw_stars
    >>> stars = draw_stars(1000, g_max=15.0, rng=np.random.default_rng(2))
    >>> len(stars), bool(np.max(stars['g'].value) <= 15.0)
    (1000, True)
    """
    rng = np.random.default_rng(rng)
    g, G, x = _draw_arrays(n_or_area, g_min, g_max, density_factor, rng)
    V = G - GAIA_RELATIONS['V'].g_minus_x(x)
    return QTable({'g': g * u.mag, 'G': G * u.mag, 'bp_rp': x * u.mag,
                   'V': V * u.mag})


def _draw_arrays(n_or_area, g_min, g_max, density_factor, rng):
    """`draw_stars` as plain arrays ``(g, G, bp_rp)``, for inner loops."""
    # g >= G for every colour allowed here, so the G range [G_lo, g_max]
    # contains every star with g in [g_min, g_max].
    G_lo = g_min + float(GAIA_RELATIONS['g'].g_minus_x(3.0))
    n_lo, n_hi = cumulative_star_density(G_lo), cumulative_star_density(g_max)
    if isinstance(n_or_area, u.Quantity):
        area = n_or_area.to_value(u.deg**2)
        n_draw = rng.poisson((n_hi - n_lo) * area * density_factor)
        exact = None
    else:
        exact = int(n_or_area)
        n_draw = max(4 * exact, 16)
    parts = []
    n_have = 0
    while True:
        # Inverse-CDF sampling: uniform in N(<G).
        G = np.interp(np.log10(rng.uniform(n_lo, n_hi, n_draw)), _LOG_N,
                      _G_ANCHORS)
        x = _draw_colours(G.size, rng)
        g = G - GAIA_RELATIONS['g'].g_minus_x(x)
        keep = (g >= g_min) & (g <= g_max)
        parts.append((g[keep], G[keep], x[keep]))
        n_have += keep.sum()
        if exact is None or n_have >= exact:
            break
    g, G, x = (np.concatenate(p) for p in zip(*parts, strict=True))
    if exact is not None:
        g, G, x = g[:exact], G[:exact], x[:exact]
    return g, G, x


def galactic_density_factor(center):
    """
    Density factor at the Galactic latitude of a sky position.

    Parameters
    ----------
    center : `~astropy.coordinates.SkyCoord`
        The position.

    Returns
    -------
    factor : float
        As `latitude_factor` at the position's Galactic latitude.

    Examples
    --------
    >>> from astropy.coordinates import SkyCoord
    >>> from satphotutils.simulation import galactic_density_factor
    >>> plane = SkyCoord(l=30.0, b=0.0, unit='deg', frame='galactic')
    >>> pole = SkyCoord(l=30.0, b=89.0, unit='deg', frame='galactic')
    >>> bool(galactic_density_factor(plane) > galactic_density_factor(pole))
    True
    """
    return latitude_factor(SkyCoord(center).galactic.b)
