# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Simulated saturated CCD data with the survey pipeline's artefacts.

Stage 1 of the pipeline (*simulate*, calibrate, stamps, network,
photometry, light curves, intercalibration). Real survey pixels are not
public, so this physically grounded simulator is the package's data
engine: it trains the bundled model and drives the tests, benchmarks and
``satphot demo``. Every ingredient is configurable: detector (gain, read
noise, full well, ADC, vignetting), pixel-integrated Moffat PSF, Gaia-like
star fields, blooming, the ASAS-style saturation correction with its
failure modes, integer-overflow damage, resampling, cadence, cameras and
variability.
"""

from .detector import *
from .exposure import *
from .frames import *
from .observe import *
from .pipeline import *
from .psf import *
from .scene import *
from .stamps import *
from .variability import *
