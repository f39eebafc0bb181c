# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Synthetic photometry of spectra through standard bandpasses.

The bandpasses are the curves shipped with `speclite` (available offline):
SDSS ``sdss2010-*`` (Doi et al. 2010, airmass 1.3), Johnson-Cousins
``bessell-*`` and the Gaia DR3 passbands ``gaiadr3-*``. Use it to check the
Gaia colour relations and to label stars whose colours are outside their
validity range when a spectrum is known.
"""

import numpy as np
from astropy import units as u
from scipy.interpolate import interp1d

__all__ = ['BANDPASSES', 'synthetic_magnitude']

# Short names for the bandpasses used in this package; any other speclite
# filter name ('group-band') is accepted as is.
BANDPASSES = {
    'u': 'sdss2010-u', 'g': 'sdss2010-g', 'r': 'sdss2010-r',
    'i': 'sdss2010-i', 'z': 'sdss2010-z',
    'U': 'bessell-U', 'B': 'bessell-B', 'V': 'bessell-V',
    'R': 'bessell-R', 'I': 'bessell-I',
    'G': 'gaiadr3-G', 'BP': 'gaiadr3-BP', 'RP': 'gaiadr3-RP',
}

# Gaia DR3 zero points (Riello et al. 2021, Table 3): VEGAMAG minus AB, so
# that the Gaia bands can be returned in the Vega system of the catalogue.
_GAIA_VEGA_MINUS_AB = {
    'gaiadr3-G': 25.6874 - 25.8010,
    'gaiadr3-BP': 25.3385 - 25.3540,
    'gaiadr3-RP': 24.7479 - 25.1040,
}

_FLAM = u.erg / u.s / u.cm**2 / u.AA


def _load(band):
    from speclite import filters

    name = BANDPASSES.get(band, band)
    try:
        return filters.load_filter(name)
    except (ValueError, OSError) as exc:
        msg = (f'unknown band {band!r}: use one of {sorted(BANDPASSES)} or '
               'a speclite filter name such as "sdss2010-g"')
        raise ValueError(msg) from exc


def synthetic_magnitude(spectrum, band, *, system='AB'):
    """
    Compute the magnitude of a spectrum through a bandpass.

    Parameters
    ----------
    spectrum : `specutils.Spectrum` or `specutils.Spectrum1D`
        The spectrum; its flux in any spectral flux density unit (per
        wavelength or per frequency), one spectrum or several sharing a
        spectral axis (flux shape ``(..., n_wavelengths)``). It must
        cover the bandpass.

    band : str
        A key of ``BANDPASSES`` (``'g'``, ``'V'``, ``'G'``, ...) or a
        speclite filter name.

    system : {'AB', 'Vega'}, optional
        Magnitude system. ``'Vega'`` is available for the Gaia bands,
        whose catalogue magnitudes are Vega magnitudes, through the Gaia
        DR3 zero points.

    Returns
    -------
    mag : float or `~numpy.ndarray`
        The magnitude.

    Raises
    ------
    ValueError
        If the band is unknown, the spectrum does not cover it or the
        system is not available for it.

    Examples
    --------
    A flat spectrum of 3631 Jy has AB magnitude 0 in every band:

    >>> import numpy as np
    >>> from astropy import units as u
    >>> from specutils import Spectrum
    >>> from satphotutils.calibration import synthetic_magnitude
    >>> wave = np.linspace(3000, 11000, 2000) * u.AA
    >>> flat = Spectrum(flux=np.full(wave.size, 3631.0) * u.Jy,
    ...                 spectral_axis=wave)
    >>> print(f"{synthetic_magnitude(flat, 'g'):.4f}")
    0.0000
    """
    response = _load(band)
    if system not in ('AB', 'Vega'):
        msg = f"system must be 'AB' or 'Vega', not {system!r}"
        raise ValueError(msg)
    if system == 'Vega' and response.name not in _GAIA_VEGA_MINUS_AB:
        msg = (f'Vega magnitudes are available only for the Gaia bands, '
               f'not {band!r}; use system="AB"')
        raise ValueError(msg)
    wave = spectrum.spectral_axis.to(u.AA, equivalencies=u.spectral())
    flux = spectrum.flux.to(_FLAM, equivalencies=u.spectral_density(wave))
    order = np.argsort(wave.value)
    wave, flux = wave[order], flux[..., order]
    lo, hi = response.wavelength[0], response.wavelength[-1]
    if wave.value[0] > lo or wave.value[-1] < hi:
        msg = (f'the spectrum ({wave.value[0]:.0f}-{wave.value[-1]:.0f} A) '
               f'does not cover the {response.name} bandpass '
               f'({lo:.0f}-{hi:.0f} A)')
        raise ValueError(msg)
    # The photon-counting AB magnitude as a ratio of two integrals with
    # the same quadrature on the union of both grids, so that a flat f_nu
    # spectrum is exactly AB 0 whatever the spectrum's sampling.
    grid = np.union1d(response.wavelength,
                      wave.value[(wave.value > lo) & (wave.value < hi)])
    weight = grid * np.interp(grid, response.wavelength, response.response)
    flux = interp1d(wave.value, flux.value, axis=-1, assume_sorted=True)(
        grid)
    ab = (3631 * u.Jy).to_value(_FLAM, u.spectral_density(grid * u.AA))
    mag = -2.5 * np.log10(np.trapezoid(flux * weight, grid, axis=-1)
                          / np.trapezoid(ab * weight, grid))
    if system == 'Vega':
        mag = mag + _GAIA_VEGA_MINUS_AB[response.name]
    return mag if np.ndim(mag) else float(mag)
