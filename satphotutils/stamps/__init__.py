# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The stamp table: postage stamps of targets, the data interchange format.

Stage 3 of the pipeline (simulate, calibrate, *stamps*, network,
photometry, light curves, intercalibration).
"""

from .table import *
