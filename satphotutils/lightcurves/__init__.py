# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Light curves from many frames: per-epoch photometry and statistics.

Stage 6 of the pipeline (simulate, calibrate, stamps, network,
photometry, *light curves*, intercalibration).
"""

from satphotutils.utils._lazy import lazy_namespace

# Public names and their modules, imported on first use.
__getattr__, __dir__, __all__ = lazy_namespace(__name__, {
    'epochs': [
        'REJECT_FLAGS', 'assign_epochs', 'combine_epochs',
        'combine_exposures', 'lightcurve_statistics'],
    'interop': [
        'to_lightkurve', 'write_skypatrol'],
    'pipeline': [
        'LightCurvePipeline', 'LightCurveRun', 'NothingMeasuredError'],
    'plotting': [
        'plot_lightcurve'],
    'skypatrol': [
        'BAD_QUALITY_FLAGS', 'SP2WEB_COLUMNS'],
})
