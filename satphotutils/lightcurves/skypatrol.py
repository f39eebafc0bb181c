# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The ASAS-SN Sky Patrol v2 web CSV: its columns and what is bad quality.

Shared by the reader (`satphotutils.intercalibration.read_lightcurve`)
and the writer (`satphotutils.lightcurves.write_skypatrol`), so that a
file the package writes is one it reads.
"""

from satphotutils.utils.flags import SATPHOT_FLAGS

from .epochs import REJECT_FLAGS

__all__ = ['BAD_QUALITY_FLAGS', 'SP2WEB_COLUMNS']

#: The columns of a Sky Patrol v2 web export, in its order: time (JD),
#: flux and its error (mJy), magnitude and its error, the limiting
#: magnitude, the FWHM (pixels), the filter, the quality (``G`` good,
#: ``B`` bad) and the camera.
SP2WEB_COLUMNS = ('JD', 'Flux', 'Flux Error', 'Mag', 'Mag Error', 'Limit',
                  'FWHM', 'Filter', 'Quality', 'Camera')

# Photometry flags that make a point bad quality: those that keep an
# exposure out of its epoch (an epoch carries them only when none of its
# exposures was clean), and a previous intercalibration's bad-quality
# mark. Not ``lightcurve_outlier``: the light-curve stage clips about the
# median of all cameras before their offsets are known, so it flags every
# point of a camera whose zero point is off (a simulated camera 0.25 mag
# off had all its epochs flagged), the very points intercalibration
# corrects; its robust mode clips again after the offsets.
BAD_QUALITY_FLAGS = REJECT_FLAGS | SATPHOT_FLAGS.BAD_QUALITY
