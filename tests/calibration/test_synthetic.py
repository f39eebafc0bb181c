import numpy as np
import pytest
from astropy import units as u
from astropy.modeling.physical_models import BlackBody
from numpy.testing import assert_allclose
from specutils import Spectrum

from satphotutils.calibration import (
    BANDPASSES,
    GAIA_RELATIONS,
    synthetic_magnitude,
)

WAVE = np.linspace(2800, 12000, 4000) * u.AA


def blackbody(temperature):
    flux = (BlackBody(temperature * u.K)(WAVE) * u.sr).to(
        u.Jy, u.spectral_density(WAVE))
    return Spectrum(flux=flux, spectral_axis=WAVE)


@pytest.mark.parametrize('band', sorted(BANDPASSES))
def test_flat_f_nu_spectrum_is_ab_zero_in_every_band(band):
    flat = Spectrum(flux=np.full(WAVE.size, 3631.0) * u.Jy,
                    spectral_axis=WAVE)
    assert abs(synthetic_magnitude(flat, band)) < 5e-4


def test_flux_per_wavelength_and_several_spectra():
    flat = np.full((2, WAVE.size), 3631.0) * u.Jy
    flam = flat.to(u.erg / u.s / u.cm**2 / u.AA, u.spectral_density(WAVE))
    spectra = Spectrum(flux=flam * [[1.0], [100.0]], spectral_axis=WAVE)
    assert_allclose(synthetic_magnitude(spectra, 'V'), [0.0, -5.0],
                    atol=5e-4)


@pytest.mark.parametrize('temperature', [3500, 4000, 5000, 6000])
def test_colour_relations_agree_with_blackbody_photometry(temperature):
    # An independent check of the Riello et al. polynomials: blackbodies
    # are not stars, but for FGK colours G - V agrees to 0.02 mag and
    # G - g to within the relation's 0.0745 mag scatter.
    spectrum = blackbody(temperature)
    G, BP, RP = (synthetic_magnitude(spectrum, b, system='Vega')
                 for b in ('G', 'BP', 'RP'))
    x = BP - RP
    g = synthetic_magnitude(spectrum, 'g')
    V = synthetic_magnitude(spectrum, 'V')  # AB; V_AB - V_Vega ~ 0.02
    assert abs((G - V) - GAIA_RELATIONS['V'].g_minus_x(x)) < 0.02
    assert abs((G - g) - GAIA_RELATIONS['g'].g_minus_x(x)) < 0.0745


def test_errors_name_the_problem():
    narrow = Spectrum(flux=np.ones(10) * u.Jy,
                      spectral_axis=np.linspace(4000, 5000, 10) * u.AA)
    with pytest.raises(ValueError, match='does not cover'):
        synthetic_magnitude(narrow, 'g')
    with pytest.raises(ValueError, match='unknown band'):
        synthetic_magnitude(blackbody(5000), 'not-a-band')
    with pytest.raises(ValueError, match='only for the Gaia bands'):
        synthetic_magnitude(blackbody(5000), 'g', system='Vega')
