import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import integrate

from satphotutils.simulation import MoffatPSF, render_gaussian, render_stars


@pytest.mark.parametrize('fwhm', [1.4, 1.8, 2.6])
def test_fwhm_of_the_profile(fwhm):
    psf = MoffatPSF(fwhm=fwhm, beta=2.5)
    half = psf.evaluate(fwhm / 2, 0.0) / psf.evaluate(0.0, 0.0)
    assert_allclose(half, 0.5, rtol=1e-12)


def test_elliptical_profile_is_normalised():
    psf = MoffatPSF(fwhm=1.8, beta=2.5, ellipticity=0.3, theta=0.7)
    total, _ = integrate.dblquad(lambda y, x: psf.evaluate(x, y),
                                 -60, 60, -60, 60, epsabs=1e-10)
    # The analytic flux outside r = 60 for the circular-equivalent profile.
    assert_allclose(total, 1 - psf.outside_fraction(60.0), atol=2e-4)


@pytest.mark.parametrize(('dx', 'dy'), [(0.0, 0.0), (0.5, 0.5),
                                        (0.3, -1.2), (2.0, 0.4)])
def test_pixel_integration_against_adaptive_quadrature(dx, dy):
    # Independent truth: scipy's adaptive 2-D quadrature over the pixel.
    psf = MoffatPSF(fwhm=1.5, beta=2.5, ellipticity=0.1, theta=0.3)
    exact, _ = integrate.dblquad(lambda y, x: psf.evaluate(x, y),
                                 dx - 0.5, dx + 0.5, dy - 0.5, dy + 0.5,
                                 epsabs=1e-12)
    assert_allclose(psf.integrate(dx, dy), exact, rtol=2e-4)
    # Point sampling is the error the simulator avoids: several per cent
    # in the peak pixel of a 1.5-px PSF.
    if dx == dy == 0:
        assert psf.evaluate(0.0, 0.0) / exact > 1.03


@pytest.mark.parametrize('flux', [50.0, 1e4, 5e5, 3e8])
def test_rendered_stars_deposit_their_flux(flux):
    psf = MoffatPSF(fwhm=1.7, beta=2.5, ellipticity=0.05)
    image = render_stars((900, 900), [450.3], [449.8], [flux], psf)
    # Flux beyond 450 px of the centre is outside the image.
    expected = flux * (1 - psf.outside_fraction(450.0))
    assert_allclose(image.sum(), expected, rtol=1e-3)


def test_rendered_centroid_follows_subpixel_position():
    psf = MoffatPSF(fwhm=1.7)
    image = render_stars((31, 31), [15.3], [14.8], [1e4], psf)
    yy, xx = np.mgrid[10:21, 10:21]
    core = image[10:21, 10:21]
    assert_allclose((core * xx).sum() / core.sum(), 15.3, atol=0.07)
    assert_allclose((core * yy).sum() / core.sum(), 14.8, atol=0.07)


def test_gaussian_putback_is_pixel_integrated():
    image = render_gaussian((41, 41), 20.2, 19.7, 1000.0, 2.0)
    assert_allclose(image.sum(), 1000.0, rtol=1e-9)
    sigma = 2.0 / (2 * np.sqrt(2 * np.log(2)))
    xx = np.arange(41)[None, :]
    var = (image * (xx - 20.2) ** 2).sum() / image.sum()
    # A pixel-integrated Gaussian has variance sigma^2 + 1/12.
    assert_allclose(var, sigma**2 + 1 / 12, rtol=1e-6)


@pytest.mark.parametrize(('kwargs', 'match'), [
    ({'fwhm': 0}, 'fwhm must be positive'),
    ({'beta': 1.0}, 'beta must be greater than 1'),
    ({'ellipticity': 1.0}, 'ellipticity must be in'),
])
def test_invalid_psf(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MoffatPSF(**kwargs)
