import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import integrate

from satphotutils.simulation import (
    CoreHaloPSF,
    GaussianPSF,
    MoffatPSF,
    render_gaussian,
    render_stars,
)


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


_ADAPTIVE = [
    # The sharpest, most elliptical profile a family draws (FWHM 1.2 px,
    # ellipticity 0.25 + 0.15 in the corners), heavy Moffat wings and a
    # broad halo.
    GaussianPSF(fwhm=1.2, ellipticity=0.4, theta=0.3, adaptive=True),
    MoffatPSF(fwhm=1.3, beta=1.5, ellipticity=0.3, theta=1.1, adaptive=True),
    CoreHaloPSF(fwhm=1.5, halo_fraction=0.2, halo_scale=8.0, beta=1.6,
                ellipticity=0.2, theta=2.0, adaptive=True),
]


@pytest.mark.parametrize('psf', _ADAPTIVE, ids=repr)
@pytest.mark.parametrize(('half_width', 'phases'), [(15, 8), (64, 4)])
def test_adaptive_tables_against_adaptive_quadrature(psf, half_width,
                                                     phases):
    table, totals = psf.table(half_width, phases)
    assert table.shape == (phases, phases, 2 * half_width + 1,
                           2 * half_width + 1)
    offsets = -0.5 + (np.arange(phases) + 0.5) / phases
    peak = float(psf.integrate(0.0, 0.0))
    # Pixels of the core, the flank, the 3x3-quadrature zone and the wing,
    # at phases on both sides of the centre.
    for ky, kx, cy, cx in [(0, 0, 0, 0), (phases - 1, 2, 0, 0),
                           (3, 1, 1, -1), (1, phases - 1, 2, 0),
                           (2, 2, 0, 3), (0, 1, 13, 2), (1, 1, -14, 5)]:
        x0, y0 = cx - offsets[kx], cy - offsets[ky]
        exact, _ = integrate.dblquad(lambda y, x: psf.evaluate(x, y),
                                     x0 - 0.5, x0 + 0.5, y0 - 0.5, y0 + 0.5,
                                     epsabs=1e-13)
        h = half_width
        assert abs(table[ky, kx, cy + h, cx + h] - exact) < 1e-4 * peak
    assert_allclose(totals, table.sum(axis=(2, 3), dtype=float))


def _integrated(psf, flux, x, y, half_width=15):
    """
    The pixels within ``half_width`` of (20, 20), independently integrated.

    5x5 Gauss-Legendre nodes on each of 4x4 sub-pixels.
    """
    nodes, weights = np.polynomial.legendre.leggauss(5)
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    offsets = (sub[:, None] + nodes[None, :] / 8).ravel()
    w = np.tile(weights / 8, 4)
    grid = np.arange(-half_width, half_width + 1)
    dx = grid[:, None] + offsets[None, :] - (x - 20)
    dy = grid[:, None] + offsets[None, :] - (y - 20)
    values = psf.evaluate(dx[None, :, None, :], dy[:, None, :, None])
    return flux * np.einsum('yxij,i,j->yx', values, w, w)


@pytest.mark.parametrize('psf', _ADAPTIVE, ids=repr)
def test_table_rendered_star_matches_direct_integration(psf):
    # A star at the centre of a phase cell, where the table is exact: the
    # rendered star must match an independent pixel integration within
    # 1e-3 of the peak, and the footprint must hold the same flux.
    flux, x, y = 5e5, 20 + 1 / 16, 20 - 3 / 16
    image = render_stars((41, 41), [x], [y], [flux], psf)
    direct = _integrated(psf, flux, x, y)
    core = image[5:36, 5:36]
    assert np.abs(core - direct).max() < 1e-3 * core.max()
    _, totals = psf.table(15, 8)
    assert_allclose(flux * totals[2, 4], direct.sum(), rtol=1e-4)


@pytest.mark.parametrize('psf', _ADAPTIVE, ids=repr)
@pytest.mark.parametrize('flux', [3e6, 5e7])
def test_few_bright_stars_render_at_their_own_position(psf, flux):
    # The wide tiers' tables have 4 phases, a quarter of a pixel; a drawn
    # camera renders few stars that bright, each integrated at its own
    # position instead: off the phase centres too, within 1e-3 of the
    # peak of an independent integration, and with all of its flux.
    x, y = 20.0 + 0.23, 20.0 - 0.41
    image = render_stars((41, 41), [x], [y], [flux], psf)
    direct = _integrated(psf, flux, x, y)
    core = image[5:36, 5:36]
    assert np.abs(core - direct).max() < 1e-3 * core.max()
    big = render_stars((301, 301), [150 + 0.23], [150 - 0.41], [flux], psf)
    assert_allclose(big.sum(), flux, rtol=1e-9)


def test_adaptive_tables_evaluate_the_profile_sparingly():
    # Both tables of an adaptive PSF from one grid of nodes: the original
    # per-phase quadrature evaluated the profile 790,000 times.
    psf = CoreHaloPSF(fwhm=1.8, halo_fraction=0.1, halo_scale=5.0,
                      adaptive=True)
    calls = []
    evaluate = psf.evaluate

    def counting(dx, dy):
        calls.append(np.broadcast(dx, dy).size)
        return evaluate(dx, dy)

    psf.evaluate = counting
    psf.table(5, 8)
    psf.table(48, 4)
    assert sum(calls) < 200_000


@pytest.mark.parametrize('adaptive', [False, True])
def test_stars_at_and_beyond_the_edges_render_their_in_image_part(adaptive):
    # Independent truth: the same stars on an image 40 px larger on every
    # side, cut to the small image (light is lost beyond the edges). The
    # 32-px wing blocks differ between the two grids, so only the
    # footprints are compared: fluxes where the wings are negligible.
    psf = MoffatPSF(fwhm=1.8, beta=4.0, adaptive=adaptive)
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-25, 65, 300), [-15.2, 54.6, 20.0]])
    y = np.concatenate([rng.uniform(-25, 60, 300), [30.0, -14.7, 59.4]])
    flux = np.concatenate([10 ** rng.uniform(1, 5.9, 300), [8e5] * 3])
    small = render_stars((2, 36, 41), x, y, flux, psf,
                         item=np.arange(x.size) % 2)
    big = render_stars((2, 116, 121), x + 40, y + 40, flux, psf,
                       item=np.arange(x.size) % 2)[:, 40:76, 40:81]
    assert np.abs(small - big).max() < 1e-5 * big.max()
