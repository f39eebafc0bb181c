# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Light curves from many frames: per-epoch photometry and statistics.

Stage 6 of the pipeline (simulate, calibrate, stamps, network,
photometry, *light curves*, intercalibration).
"""

__all__ = []
