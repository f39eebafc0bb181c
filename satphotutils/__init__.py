# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
satphotutils: photometry of saturated stars with a neural network.

The package follows the data through the pipeline, one subpackage per
stage:

* `satphotutils.simulation` -- saturated CCD frames and stamp sets with
  the survey pipeline's artefacts (the data engine for training and tests);
* `satphotutils.calibration` -- Gaia corrections and transformations,
  expected counts, crowding;
* `satphotutils.stamps` -- the stamp-table interchange format;
* `satphotutils.network` -- preprocessing, the model, training and
  model files;
* `satphotutils.photometry` -- photutils-style photometry of saturated
  stars on images;
* `satphotutils.lightcurves` -- light curves from many frames;
* `satphotutils.intercalibration` -- putting several cameras and filters
  on one scale.
"""

try:
    from ._version import version as __version__
except ImportError:  # a source tree that was never built or installed
    from importlib.metadata import PackageNotFoundError, version

    try:
        __version__ = version('satphotutils')
    except PackageNotFoundError:
        __version__ = '0.0.0'

__all__ = ['__version__']
