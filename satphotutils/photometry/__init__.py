# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Photometry of saturated stars on images, in the photutils style.

Stage 5 of the pipeline (simulate, calibrate, stamps, network,
*photometry*, light curves, intercalibration).
"""

from satphotutils.utils._lazy import lazy_namespace

# Public names and their modules, imported on first use.
__getattr__, __dir__, __all__ = lazy_namespace(__name__, {
    'core': [
        'AperturePhotometryBaseline', 'PSFWingPhotometry',
        'SaturatedStarPhotometry'],
    'bleed': ['BleedTrailPhotometry', 'trail_reaches_end'],
    'centroids': ['recentre'],
    'demo': ['PIPELINE_OUTCOMES', 'plot_demo', 'run_demo'],
    'methods': ['METHODS', 'photometry_method'],
})
