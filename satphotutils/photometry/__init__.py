# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Photometry of saturated stars on images, in the photutils style.

Stage 5 of the pipeline (simulate, calibrate, stamps, network,
*photometry*, light curves, intercalibration).
"""

__all__ = []
