# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Gaia (E)DR3 photometric relations: Gaia magnitudes to SDSS and Johnson.

The relations are the polynomials of Riello et al. (2021, A&A 649, A3,
Appendix C) in x = G_BP - G_RP, as given in the Gaia EDR3/DR3
documentation (section 5.5.1). A target magnitude is X = G - P(x); the
relation's population scatter is returned as its uncertainty. Apply the
bright-star saturation corrections to G, BP and RP first.
"""

import numpy as np
from astropy import units as u
from astropy.utils.masked import Masked

__all__ = ['GAIA_RELATIONS', 'GaiaRelation', 'gaia_saturation_correction',
           'gaia_to_johnson_v', 'gaia_to_sdss_g', 'gaia_to_sdss_i',
           'gaia_to_sdss_r']

# Gaia (E)DR3 bright-star saturation corrections (Riello et al. 2021,
# Eq. C.1 for G; EDR3 documentation Eqs. 5.29-5.31): X_corr = X + P(X) for
# lower < X < upper, in increasing powers of X. The DR2 versions differ and
# must not be mixed in. Each polynomial is ~0 (|P| < 0.001) at its upper
# limit, so the correction is continuous there.
_SATURATION = {
    'G': ((-0.09892, 0.059, -0.009775, 0.0004934), (2.0, 8.0)),
    'BP': ((-0.9921, -0.02598, 0.1833, -0.02862), (2.0, 3.94)),
    'RP': ((-14.94, 14.41, -4.657, 0.503), (2.0, 3.45)),
}


class GaiaRelation:
    """
    A colour relation ``G - X = P(x)`` with its scatter and validity range.

    Parameters
    ----------
    band : str
        The target band, e.g. ``'g'``.

    coefficients : tuple of float
        Polynomial coefficients of ``G - X`` in increasing powers of
        ``x = BP - RP``.

    scatter : float
        The relation's scatter in magnitudes.

    x_range : tuple of float
        The closed interval of ``x`` in which the relation is valid.

    Examples
    --------
    >>> from satphotutils.calibration import GAIA_RELATIONS
    >>> relation = GAIA_RELATIONS['g']
    >>> relation.band, relation.scatter
    ('g', 0.0745)
    """

    def __init__(self, band, coefficients, scatter, x_range):
        self.band = band
        self.coefficients = tuple(coefficients)
        self.scatter = float(scatter)
        self.x_range = tuple(x_range)

    def __repr__(self):
        return (f'<GaiaRelation G-{self.band}: x in {self.x_range}, '
                f'scatter {self.scatter} mag>')

    def g_minus_x(self, bp_rp):
        """Evaluate ``G - X`` at ``bp_rp`` (no validity check)."""
        return np.polynomial.polynomial.polyval(
            np.asarray(bp_rp, dtype=float), self.coefficients)

    def valid(self, bp_rp):
        """Return a boolean array: is ``bp_rp`` inside the valid range."""
        x = np.asarray(bp_rp, dtype=float)
        lo, hi = self.x_range
        return np.isfinite(x) & (x >= lo) & (x <= hi)

    def __call__(self, G, bp_rp):
        """
        Transform Gaia ``G`` and ``bp_rp`` to this band.

        Returns
        -------
        mag : `~numpy.ma.MaskedArray` or `~astropy.units.Quantity`
            The magnitude, masked where ``bp_rp`` is outside the valid
            range (never extrapolated). A Quantity if ``G`` is one.

        err : `~numpy.ndarray` or `~astropy.units.Quantity`
            The relation's scatter, the uncertainty of ``mag``.
        """
        return _transform(self, G, bp_rp)


def _strip(value, name):
    if isinstance(value, Masked):
        value = value.filled(np.nan)
    if isinstance(value, u.Quantity):
        if not value.unit.is_equivalent(u.mag):
            msg = f'{name} must be in magnitudes, not {value.unit}'
            raise u.UnitsError(msg)
        return np.asarray(value.to_value(u.mag), dtype=float), True
    return np.asarray(np.ma.filled(np.ma.asarray(value, dtype=float),
                                   np.nan)), False


def _transform(relation, G, bp_rp):
    g_arr, g_unit = _strip(G, 'G')
    x_arr, _ = _strip(bp_rp, 'bp_rp')
    mag = g_arr - relation.g_minus_x(x_arr)
    bad = ~relation.valid(x_arr) | ~np.isfinite(g_arr)
    err = np.broadcast_to(relation.scatter, mag.shape).copy()
    if g_unit:
        return Masked(mag * u.mag, mask=bad), err * u.mag
    return np.ma.MaskedArray(mag, mask=bad), err


GAIA_RELATIONS = {
    'g': GaiaRelation('g', (0.2199, -0.6365, -0.1548, 0.0064), 0.0745,
                      (0.3, 3.0)),
    'r': GaiaRelation('r', (-0.09837, 0.08592, 0.1907, -0.1701, 0.02263),
                      0.03776, (0.0, 3.0)),
    'i': GaiaRelation('i', (-0.293, 0.6404, -0.09609, -0.002104), 0.04092,
                      (0.5, 2.0)),
    'V': GaiaRelation('V', (-0.02704, 0.01424, -0.2156, 0.01426), 0.03017,
                      (-0.5, 5.0)),
}


def gaia_to_sdss_g(G, bp_rp):
    """
    Estimate SDSS g from Gaia G and BP-RP (Riello et al. 2021).

    Parameters
    ----------
    G : array-like or `~astropy.units.Quantity`
        Gaia G magnitude, with the saturation correction already applied
        for G < 8.

    bp_rp : array-like or `~astropy.units.Quantity`
        Gaia BP - RP colour. Valid for 0.3 < BP - RP < 3.0.

    Returns
    -------
    g : `~numpy.ma.MaskedArray` or masked `~astropy.units.Quantity`
        SDSS g, masked where the colour is outside the valid range or G
        is not finite.

    g_err : `~numpy.ndarray` or `~astropy.units.Quantity`
        The relation's scatter, 0.0745 mag.

    Examples
    --------
    >>> from satphotutils.calibration import gaia_to_sdss_g
    >>> g, err = gaia_to_sdss_g([10.0, 10.0], [1.0, 3.5])
    >>> print(g)
    [10.565 --]
    >>> print(err)
    [0.0745 0.0745]
    """
    return GAIA_RELATIONS['g'](G, bp_rp)


def gaia_to_sdss_r(G, bp_rp):
    """
    Estimate SDSS r from Gaia G and BP-RP; see `gaia_to_sdss_g`.

    Examples
    --------
    >>> from satphotutils.calibration import gaia_to_sdss_r
    >>> r, err = gaia_to_sdss_r(10.0, 1.0)
    >>> bool(9.5 < float(r) < 10.5)
    True
    """
    return GAIA_RELATIONS['r'](G, bp_rp)


def gaia_to_sdss_i(G, bp_rp):
    """
    Estimate SDSS i from Gaia G and BP-RP; see `gaia_to_sdss_g`.

    Examples
    --------
    >>> from satphotutils.calibration import gaia_to_sdss_i
    >>> i, err = gaia_to_sdss_i(10.0, 1.0)
    >>> bool(9.0 < float(i) < 10.5)
    True
    """
    return GAIA_RELATIONS['i'](G, bp_rp)


def gaia_to_johnson_v(G, bp_rp):
    """
    Estimate Johnson V from Gaia G and BP-RP (Riello et al. 2021).

    Valid for -0.5 < BP - RP < 5.0; scatter 0.030 mag. See
    `gaia_to_sdss_g` for the parameters and returns.

    Examples
    --------
    >>> from satphotutils.calibration import gaia_to_johnson_v
    >>> v, err = gaia_to_johnson_v(10.0, 1.0)
    >>> print(round(float(v), 3))
    10.214
    """
    return GAIA_RELATIONS['V'](G, bp_rp)


def gaia_saturation_correction(G=None, BP=None, RP=None):
    """
    Compute the Gaia (E)DR3 bright-star saturation corrections.

    Gaia DR3 ``gaia_source`` magnitudes do not include them. The corrected
    magnitude is the catalogue magnitude plus the correction returned
    here (Riello et al. 2021, Appendix C; Gaia EDR3 documentation section
    5.5.2). Apply them before `gaia_to_sdss_g` and the other colour
    relations.

    ========  ==================  ======================
    band      corrected range     correction at 2.0 mag
    ========  ==================  ======================
    G         2.0 < G < 8.0       -0.016
    BP        2.0 < BP < 3.94     -0.540
    RP        2.0 < RP < 3.45     -0.724
    ========  ==================  ======================

    Parameters
    ----------
    G, BP, RP : array-like, `~astropy.units.Quantity` or Table column, optional
        Gaia ``phot_g_mean_mag``, ``phot_bp_mean_mag`` and
        ``phot_rp_mean_mag``. Give at least one.

    Returns
    -------
    correction : `~numpy.ma.MaskedArray`, `~astropy.units.Quantity` or tuple
        The correction to add, zero fainter than the corrected range. It
        is masked where the magnitude is missing or brighter than 2.0,
        where the published fits stop (Gaia is incomplete there and
        the fits are not extrapolated). With several bands given, a
        tuple in the order G, BP, RP of the bands given.

    Raises
    ------
    ValueError
        If no band is given.

    Examples
    --------
    >>> from satphotutils.calibration import gaia_saturation_correction
    >>> print(gaia_saturation_correction(G=[2.0, 5.0, 9.0]).round(3))
    [-0.016 0.013 0.0]
    >>> dg, dbp = gaia_saturation_correction(G=3.0, BP=3.0)
    >>> print(round(float(dg), 3), round(float(dbp), 3))
    0.003 -0.193
    """
    given = [(band, value) for band, value in
             (('G', G), ('BP', BP), ('RP', RP)) if value is not None]
    if not given:
        msg = 'give at least one of G, BP and RP'
        raise ValueError(msg)
    out = tuple(_saturation_correction(band, value)
                for band, value in given)
    return out[0] if len(out) == 1 else out


def _saturation_correction(band, value):
    mag, has_unit = _strip(value, band)
    coefficients, (lower, upper) = _SATURATION[band]
    inside = (mag >= lower) & (mag < upper)
    correction = np.where(
        inside, np.polynomial.polynomial.polyval(mag, coefficients), 0.0)
    bad = ~np.isfinite(mag) | (mag < lower)
    if has_unit:
        return Masked(correction * u.mag, mask=bad)
    return np.ma.MaskedArray(correction, mask=bad)
