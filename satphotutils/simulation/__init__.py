# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Simulated saturated CCD data with the survey pipeline's artefacts.

Stage 1 of the pipeline (*simulate*, calibrate, stamps, network,
photometry, light curves, intercalibration).
"""

__all__ = []
