# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""PSF-wing photometry with the frame's empirical PSF (#27)."""

import numpy as np
import pytest
from astropy.table import QTable
from photutils.datasets import make_model_image
from photutils.psf import MoffatPSF

from satphotutils.frames import frame_psf
from satphotutils.photometry import PSFWingPhotometry

LEVEL = 4000.0


def _frame(seed=1):
    # Moffat beta 2.5 stars, FWHM 3 px, on a grid; the brightest clipped
    # at the level, as an ADC clips them (no bleeding).
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[30:570:45, 30:570:45]
    n = xx.size
    flux = 10 ** rng.uniform(4.0, 5.0, n)
    flux[:8] = np.geomspace(1e5, 1.5e6, 8)
    alpha = 3.0 / (2 * np.sqrt(2 ** (1 / 2.5) - 1))
    stars = QTable({'x_0': xx.ravel() + rng.uniform(-0.5, 0.5, n),
                    'y_0': yy.ravel() + rng.uniform(-0.5, 0.5, n),
                    'flux': flux})
    image = make_model_image((600, 600), MoffatPSF(alpha=alpha, beta=2.5),
                             stars, model_shape=(41, 41)) + 100.0
    image = rng.normal(rng.poisson(image).astype(float), 5.0)
    return np.minimum(image, LEVEL), stars


def test_the_empirical_psf_is_unit_flux_and_needs_stars():
    image, _ = _frame()
    psf, n = frame_psf(image, saturation=LEVEL)
    assert n >= 20
    assert psf.data.sum() == pytest.approx(1.0)
    flat = np.full((100, 100), 100.0)
    assert frame_psf(flat, saturation=LEVEL) == (None, 0)
    with pytest.raises(ValueError, match='size must be odd'):
        frame_psf(image, saturation=LEVEL, size=24)


def test_clipped_stars_from_their_wings_need_the_real_psf():
    image, stars = _frame()
    positions = np.column_stack([stars['x_0'], stars['y_0']])[:8]
    truth = np.log10(np.asarray(stars['flux'][:8]))
    assert (image[np.rint(positions[:, 1]).astype(int),
                  np.rint(positions[:, 0]).astype(int)] >= LEVEL).all()
    empirical = PSFWingPhotometry(saturation_level=LEVEL, annulus=None)(
        image, positions=positions)
    gaussian = PSFWingPhotometry('gaussian', saturation_level=LEVEL)(
        image, positions=positions)
    local = PSFWingPhotometry(saturation_level=LEVEL)(
        image, positions=positions)
    e = np.asarray(empirical['log_counts']) - truth
    g = np.asarray(gaussian['log_counts']) - truth
    ann = np.asarray(local['log_counts']) - truth
    # Only the wings are fitted: a Gaussian's are a Moffat's by far not.
    # (0.002-0.023 dex: the least clipped lean on the pixels beside the
    # plateau, where the PSF image is interpolated most.)
    assert np.max(np.abs(e)) < 0.03
    assert np.median(np.abs(g)) > 0.05
    # A 7-10 px annulus lies in those wings: low, the more so the more of
    # the star is clipped.
    assert np.median(ann) < np.median(e) - 0.01
    assert empirical.meta['config']['psf_model'] == 'empirical'


def test_psf_model_option_is_checked():
    with pytest.raises(ValueError, match="psf_model must be 'empirical'"):
        PSFWingPhotometry('moffat')
