# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Gaia corrections and transformations, expected counts and crowding.

Stage 2 of the pipeline (simulate, *calibrate*, stamps, network,
photometry, light curves, intercalibration).
"""

from .crowding import *
from .gaia import *
