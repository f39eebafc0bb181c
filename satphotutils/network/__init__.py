# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The neural network: preprocessing, model, training and model files.

Stage 4 of the pipeline (simulate, calibrate, stamps, *network*,
photometry, light curves, intercalibration).
"""

__all__ = []
