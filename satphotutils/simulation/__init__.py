# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Simulated saturated CCD data with the survey pipeline's artefacts.

Stage 1 of the pipeline (*simulate*, calibrate, stamps, network,
photometry, light curves, intercalibration). Real survey pixels are not
public, so this physically grounded simulator is the package's data
engine: it trains the bundled model and drives the tests, benchmarks and
``satphot demo``. Every ingredient is configurable: detector (gain, read
noise, full well, ADC, non-linearity, vignetting), pixel-integrated
Moffat, Gaussian or core-halo PSFs, randomised camera families, Gaia-like
star fields, blooming, the ASAS-style saturation correction with its
failure modes, integer-overflow damage, resampling, cadence, cameras and
variability.
"""

from satphotutils.utils._lazy import lazy_namespace

# Public names and their modules, imported on first use.
__getattr__, __dir__, __all__ = lazy_namespace(__name__, {
    'detector': [
        'Camera', 'Detector'],
    'exposure': [
        'bleed_columns', 'expose', 'expose_and_read', 'read_out'],
    'families': [
        'AXES', 'OPT_IN', 'RANGES', 'CameraDraw', 'CameraFamily',
        'ConditionsSampler'],
    'frames': [
        'FrameSimulator', 'Scene', 'simulate_field'],
    'night': [
        'simulate_night'],
    'observation': [
        'ExposureConditions', 'Observation', 'draw_conditions',
        'measured_fwhm', 'observe', 'observe_many'],
    'pipeline': [
        'SurveyPipeline'],
    'psf': [
        'CoreHaloPSF', 'GaussianPSF', 'MoffatPSF', 'render_gaussian',
        'render_stars'],
    'scene': [
        'cumulative_star_density', 'draw_stars',
        'galactic_density_factor', 'latitude_factor'],
    'stamps': [
        'StampSimulator'],
    'variability': [
        'Constant', 'DampedRandomWalk', 'EclipsingBinary',
        'PulsatingStar'],
})
