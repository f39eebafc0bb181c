import math

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from satphotutils.frames import frame_fwhm, gaussian_fit_fwhm, saturation_level
from satphotutils.simulation import (
    Camera,
    Detector,
    ExposureConditions,
    FrameSimulator,
    Scene,
    SurveyPipeline,
)

# Near the south galactic pole: a sparse field.
CENTRE = SkyCoord(15.0, -27.0, unit='deg')


def _frame(fwhm, beta, seed):
    detector = Detector(shape=(700, 700))
    sim = FrameSimulator(camera=Camera(detector=detector), pointing=CENTRE,
                         # Nearest-pixel resampling onto the reference grid:
                         # the bilinear default broadens the stars by up to
                         # half a pixel, which the measurement (rightly)
                         # sees and a fit to the model PSF does not.
                         pipeline=SurveyPipeline(damage_fraction=0.0,
                                                 resample_order=0))
    scene = Scene.random(CENTRE, radius=1.5 * u.deg, g_max=15.5, seed=seed)
    cond = ExposureConditions(mjd=59000.0, zeropoint=25.5, fwhm=fwhm,
                              beta=beta, ellipticity=0.0,
                              fwhm_gradient=0.0)
    frame, _ = sim(scene, conditions=cond, seed=seed)
    psf = cond.psf(detector)
    yy, xx = np.mgrid[-10:11, -10:11]
    return np.asarray(frame.data), gaussian_fit_fwhm(psf.integrate(xx, yy))


@pytest.mark.parametrize(('fwhm', 'beta'), [(2.6, 4.0), (3.5, 1.8)])
def test_frame_fwhm_is_what_a_fit_to_the_true_psf_gives(fwhm, beta):
    # Simulated truth: the frame's stars are drawn with a known Moffat
    # PSF; the width measured on the frame's isolated unsaturated stars
    # is the one a Gaussian fit to that PSF gives (the definition the
    # simulator labels its stamps with), within 3%.
    data, truth = _frame(fwhm, beta, seed=int(10 * fwhm))
    measured = frame_fwhm(data)
    assert measured == pytest.approx(truth, rel=0.03)
    # A Gaussian fit to a Moffat core is not its FWHM, but it follows it.
    assert 0.8 * fwhm < truth < 1.4 * fwhm


def test_frame_fwhm_without_enough_stars_is_nan(rng):
    data = rng.normal(200.0, 5.0, (300, 300))
    assert np.isnan(frame_fwhm(data))
    with pytest.raises(ValueError, match='2-D'):
        frame_fwhm(np.zeros(10))


def test_saturation_plateau():
    image = np.full((40, 40), 250.0)
    image[10:20, 10:12] = 16383.0  # a 14-bit ADC
    assert saturation_level(image) == 16383.0
    image[10:20, 10:12] = np.linspace(9e3, 1.6e4, 20).reshape(10, 2)
    assert saturation_level(image) is None
    image[0, :3] = 40000.0
    assert saturation_level(image) is None  # 3 pixels: a peak, not a plateau
    assert saturation_level(image, min_pixels=3) == 40000.0
    assert saturation_level(np.full((3, 3), np.nan)) is None


def test_frame_fwhm_of_an_undersampled_psf_is_broader_than_the_model():
    # At FWHM 1.5 px the pixel phase of each star matters: a Gaussian fit
    # to the model PSF gives 1.74 px centred on a pixel, 1.89 px on a
    # pixel corner, and the frame's stars, at every phase, measure about
    # 2.0 px. The network is trained with its FWHM input scattered by
    # this much (see StampFeatures), so it must not lean on it closely.
    data, truth = _frame(1.5, 2.5, seed=15)
    measured = frame_fwhm(data)
    assert truth < measured < 1.25 * truth


def test_the_fit_is_photutils_fit_fwhm(rng):
    # Peer library: the same model fitted by photutils' fit_fwhm on the
    # same noisy stars gives the same FWHM.
    from photutils.psf import CircularGaussianPRF, fit_fwhm

    from satphotutils.frames import stamp_fwhm

    yy, xx = np.mgrid[-10:11, -10:11]
    widths = [1.3, 1.9, 2.7, 3.6]
    shifts = rng.uniform(-0.5, 0.5, (4, 2))
    stamps = np.array([
        2e4 * CircularGaussianPRF(fwhm=w)(xx - sx, yy - sy)
        for w, (sx, sy) in zip(widths, shifts, strict=True)])
    stamps += rng.normal(0, 8, stamps.shape) + 120.0
    ours = stamp_fwhm(stamps, shifts[:, 0], shifts[:, 1],
                      background=[120.0] * 4)
    theirs = [fit_fwhm(s - 120.0, xypos=[(10 + sx, 10 + sy)], fit_shape=7,
                       fwhm=2.0)[0] for s, (sx, sy) in zip(stamps, shifts,
                                                          strict=True)]
    assert np.allclose(ours, theirs, rtol=1e-4)
    assert np.allclose(ours, widths, rtol=0.03)


@pytest.mark.parametrize(('fwhm', 'dither'), [(1.5, (3.5, -2.5)),
                                              (2.4, (0.0, 0.0)),
                                              (3.2, (1.3, 0.2))])
def test_simulated_stamps_are_labelled_with_what_frame_fwhm_measures(
        fwhm, dither):
    # The stamp simulator labels every stamp with measured_fwhm: the fit
    # to a noiseless star of the exposure's PSF, resampled by its dither.
    # On a whole simulated frame of the same exposure, frame_fwhm (on
    # noisy, crowded, resampled stars) gives the same within 5%.
    from satphotutils.simulation import measured_fwhm

    detector = Detector(shape=(700, 700))
    pipeline = SurveyPipeline(damage_fraction=0.0)
    sim = FrameSimulator(camera=Camera(detector=detector), pointing=CENTRE,
                         pipeline=pipeline)
    scene = Scene.random(CENTRE, radius=1.5 * u.deg, g_max=15.5, seed=7)
    cond = ExposureConditions(mjd=59000.0, zeropoint=25.5, fwhm=fwhm,
                              beta=2.5, ellipticity=0.03, dither=dither)
    frame, _ = sim(scene, conditions=cond, seed=8)
    assert frame_fwhm(np.asarray(frame.data)) == pytest.approx(
        measured_fwhm(cond, detector, pipeline), rel=0.05)


@pytest.mark.parametrize('seed', range(6))
def test_the_peaks_are_photutils_find_peaks(seed):
    # Peer library: the peak search frame_fwhm uses returns the peaks of
    # photutils' find_peaks (box and border 7) in the same order, with
    # integer ties (plateaus), NaN pixels and a mask.
    import warnings

    from photutils.detection import find_peaks

    from satphotutils.frames.descriptors import _local_maxima

    rng = np.random.default_rng(seed)
    image = rng.poisson(5, (40 + 37 * seed, 61)).astype(float)
    if seed % 2:
        image[rng.random(image.shape) < 0.01] = np.nan
    mask = rng.random(image.shape) < 0.02 if seed % 3 == 0 else None
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        theirs = find_peaks(image, 7.0, box_size=7, mask=mask,
                            border_width=7)
    y, x = _local_maxima(image, 7.0, 7, mask)
    assert theirs is not None
    assert len(theirs) > 5
    np.testing.assert_array_equal(x, theirs['x_peak'])
    np.testing.assert_array_equal(y, theirs['y_peak'])


def test_the_fit_of_many_stars_is_each_stars_least_squares_fit():
    # All stars are fitted at once; each must reach what
    # scipy.optimize.least_squares finds for it alone, converged tightly:
    # faint and bright, narrow and wide, with a missing pixel.
    from photutils.psf import CircularGaussianPRF
    from scipy.optimize import least_squares

    from satphotutils.frames.descriptors import _fit

    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:7, :7]
    n = 60
    mosaic = np.full((7, 14 * n), np.nan)
    expected = []
    for i in range(n):
        star = CircularGaussianPRF(
            flux=10 ** rng.uniform(2.5, 5.5), fwhm=rng.uniform(1.1, 4.2),
            x_0=3 + rng.uniform(-0.5, 0.5), y_0=3 + rng.uniform(-0.5, 0.5))
        box = rng.normal(star(xx, yy), 3.0)
        if i % 4 == 0:
            box[rng.integers(7), rng.integers(7)] = np.nan
        mosaic[:, 14 * i:14 * i + 7] = box
        good = np.isfinite(box)
        flux0 = box[good].sum()

        def residual(p, box=box, good=good, flux0=flux0):
            model = CircularGaussianPRF(flux=p[0] * flux0, x_0=p[1],
                                        y_0=p[2], fwhm=p[3])(xx, yy)
            return (model - box)[good]

        fit = least_squares(residual, [1.0, 3.0, 3.0, 2.0], method='lm',
                            xtol=1e-14, ftol=1e-14, gtol=1e-14)
        expected.append(abs(fit.x[3]))
    positions = np.column_stack([14.0 * np.arange(n) + 3.0, np.full(n, 3.0)])
    ours = _fit(mosaic, positions)
    np.testing.assert_allclose(ours, expected, rtol=1e-6)


def test_the_saturation_margin_is_counted_above_the_sky():
    # Stars are left out when their peak *above the sky* reaches half of
    # the saturation level above the sky: on a bright sky (20,000 of a
    # 60,000 level), stars peaking 15,000 above it qualify.
    from astropy.table import QTable
    from photutils.datasets import make_model_image
    from photutils.psf import CircularGaussianPRF

    rng = np.random.default_rng(3)
    n = 60
    fwhm = np.r_[np.full(30, 3.0), np.full(30, 2.0)]
    peak = np.r_[np.full(30, 15000.0), np.full(30, 4000.0)]
    # Peak of a pixel-integrated Gaussian at a pixel centre, to flux.
    sigma = fwhm / 2.3548
    flux = peak / (0.25 * (2 * np.array([math.erf(0.5 / (np.sqrt(2) * s))
                                         for s in sigma])) ** 2)
    x, y = np.meshgrid(np.arange(30, 600, 60), np.arange(30, 380, 60))
    stars = QTable({'x_0': x.ravel()[:n] + 0.0, 'y_0': y.ravel()[:n] + 0.0,
                    'flux': flux, 'fwhm': fwhm})
    image = make_model_image((400, 600), CircularGaussianPRF(), stars,
                             model_shape=(15, 15)) + 20000.0
    image = rng.normal(image, np.sqrt(image))
    assert frame_fwhm(image, saturation=60000.0) == pytest.approx(
        3.0, rel=0.03)


@pytest.mark.parametrize('fwhm', [0.6, 0.8, 1.0, 1.1, 6.5])
def test_undersampled_and_wide_stars_are_fitted(fwhm):
    # The first step from the 2-px start overshoots for an undersampled
    # star; the fit must come back as photutils' fit_fwhm does, not give
    # up at the edge of the width range.
    from photutils.psf import CircularGaussianPRF, fit_fwhm

    yy, xx = np.mgrid[-10:11, -10:11]
    psf = CircularGaussianPRF(fwhm=fwhm)(xx - 0.17, yy + 0.23)
    theirs = fit_fwhm(psf, xypos=[(10.17, 9.77)], fit_shape=7, fwhm=2.0)[0]
    assert gaussian_fit_fwhm(psf) == pytest.approx(theirs, rel=1e-6)
    assert theirs == pytest.approx(fwhm, rel=1e-6)



@pytest.mark.parametrize('case', ['float64', 'float32', 'int', 'nan_mask'])
def test_frame_background_is_astropys_sigma_clipped_stats(case):
    # Peer library: the sky level and noise are astropy's 3-sigma, five
    # iteration clipped median and std of the same regular sample.
    from astropy.stats import sigma_clipped_stats

    from satphotutils.frames import frame_background

    rng = np.random.default_rng(len(case))
    image = rng.normal(800.0, 12.0, (1100, 1300))
    # Stars, a bleed trail and a few cold pixels to clip.
    hot = rng.random(image.shape) < 0.03
    image[hot] += rng.exponential(400.0, hot.sum())
    image[300:420, 500:503] = 65535.0
    image[rng.random(image.shape) < 0.001] = 0.0
    mask = None
    if case == 'float32':
        image = image.astype(np.float32)
    elif case == 'int':
        image = np.rint(image).astype(np.int32)
    elif case == 'nan_mask':
        image[rng.random(image.shape) < 0.01] = np.nan
        mask = rng.random(image.shape) < 0.05
    median, std = frame_background(image, mask=mask)
    step = int(np.sqrt(image.size / 65_536))
    sample = image[::step, ::step].astype(float)
    keep = np.isfinite(sample)
    if mask is not None:
        keep &= ~mask[::step, ::step]
    _, their_median, their_std = sigma_clipped_stats(sample[keep],
                                                     sigma=3.0, maxiters=5)
    assert median == pytest.approx(their_median, rel=1e-12)
    assert std == pytest.approx(their_std, rel=1e-9)
    assert 11.0 < std < 13.0


def test_frame_fwhm_at_given_positions_is_the_detected_fwhm():
    # Stars given (a catalogue through a WCS up to a pixel off) instead
    # of detected: the same stars qualify, so the same width, which is
    # the simulated PSF's; saturated or too faint stars given are not
    # used, and fewer than three usable ones measure nothing.
    from satphotutils.stamps.calibrate import _isolated

    detector = Detector(shape=(700, 700))
    sim = FrameSimulator(camera=Camera(detector=detector), pointing=CENTRE,
                         pipeline=SurveyPipeline(damage_fraction=0.0,
                                                 resample_order=0))
    scene = Scene.random(CENTRE, radius=1.5 * u.deg, g_max=15.5, seed=26)
    cond = ExposureConditions(mjd=59000.0, zeropoint=25.5, fwhm=2.6,
                              beta=4.0, ellipticity=0.0, fwhm_gradient=0.0)
    frame, stars = sim(scene, conditions=cond, seed=26)
    data, level = np.asarray(frame.data), frame.meta['SATURATE']
    yy, xx = np.mgrid[-10:11, -10:11]
    truth = gaussian_fit_fwhm(cond.psf(detector).integrate(xx, yy))
    x, y = np.asarray(stars['x'], float), np.asarray(stars['y'], float)
    alone = _isolated(x, y, np.asarray(stars['g'], float), 14.0, limit=0.01)
    rng = np.random.default_rng(3)
    given = np.column_stack([x, y])[alone] + rng.uniform(-1, 1, (
        alone.sum(), 2))
    detected = frame_fwhm(data, saturation=level)
    measured = frame_fwhm(data, saturation=level, positions=given)
    assert measured == pytest.approx(detected, rel=0.01)
    assert measured == pytest.approx(truth, rel=0.03)
    saturated = np.asarray(stars['saturated'])[alone]
    assert saturated.sum() >= 3
    assert np.isnan(frame_fwhm(data, saturation=level,
                               positions=given[saturated]))
    assert np.isnan(frame_fwhm(data, saturation=level, positions=given[:2]))
    # Positions 6 px off (a wrong WCS) find only the stars' wings, which
    # are not peaks: nothing is measured rather than a wrong width.
    off = np.column_stack([x, y])[alone] + [6.0, 0.0]
    assert np.isnan(frame_fwhm(data, saturation=level, positions=off))


def test_no_given_positions_measure_nothing(rng):
    # Review finding: an empty list crashed (reshape of an empty array)
    # instead of measuring nothing, so the stamp builder skipped the frame
    # instead of detecting its stars.
    image = rng.normal(200.0, 5.0, (100, 100))
    assert np.isnan(frame_fwhm(image, saturation=6e4,
                               positions=np.empty((0, 2))))
    assert np.isnan(frame_fwhm(image, saturation=6e4,
                               positions=[(1.0, 1.0), (99.0, 50.0)]))


def test_a_flat_fielded_frame_shows_its_lowest_plateau():
    # A 12-bit ADC clipping at 4,000 e- on a vignetted camera: each clipped
    # pixel is divided by its flat, so no two plateaus share a value and
    # the exact test found none (the level was then unknown).
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    from satphotutils.simulation import (
        Camera,
        Detector,
        ExposureConditions,
        FrameSimulator,
        Scene,
        SurveyPipeline,
    )

    centre = SkyCoord(280, 20, unit='deg')
    dx, dy = np.meshgrid(np.arange(-3, 4), np.arange(-3, 4))
    scene = Scene(centre.spherical_offsets_by(dx.ravel() * 100 * u.arcsec,
                                              dy.ravel() * 100 * u.arcsec),
                  np.linspace(10.0, 14.0, 49), np.ones(49))
    detector = Detector(shape=(500, 500), pixel_scale=1.8 * u.arcsec,
                        gain=1.0, read_noise=5.0, bias=100.0,
                        full_well=30000.0, adc_max=4095,
                        corner_throughput=0.8)
    frame, _ = FrameSimulator(
        camera=Camera('cmos', detector=detector), pointing=centre,
        pipeline=SurveyPipeline(correction=False, misplace_rate=0.0,
                                lost_rate=0.0, damage_fraction=0.0))(
        scene, seed=1, conditions=ExposureConditions(
            mjd=59000.0, zeropoint=24.5, sky=120.0, fwhm=3.0, exptime=60.0))
    data = np.asarray(frame.data)
    centre_level = frame.meta['SATURATE']
    assert np.count_nonzero(data == data.max()) < 5
    level = saturation_level(data)
    assert centre_level <= level < 1.05 * centre_level
