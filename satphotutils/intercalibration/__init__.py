# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Putting light curves from several cameras and filters on one scale.

Stage 7 of the pipeline (simulate, calibrate, stamps, network,
photometry, light curves, *intercalibration*).
"""

from satphotutils.utils._lazy import lazy_namespace

# Public names and their modules, imported on first use.
__getattr__, __dir__, __all__ = lazy_namespace(__name__, {
    'drw': [
        'DRWIntercalibrator', 'IntercalibrationResult',
        'marginal_log_likelihood'],
    'plotting': [
        'plot_intercalibration'],
    'readers': [
        'read_lightcurve'],
})
