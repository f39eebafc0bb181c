# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Putting light curves from several cameras and filters on one scale.

Stage 7 of the pipeline (simulate, calibrate, stamps, network,
photometry, light curves, *intercalibration*).
"""

__all__ = []
