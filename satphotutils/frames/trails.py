# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Whether a frame's bleed trails were left in place, from its pixels."""

import numpy as np

__all__ = ['bleed_trails']

# A pixel counts as saturated from this fraction of the saturation level
# (as in BleedTrailPhotometry: a trail's pixels read their full well
# with read noise and the non-linear roll-off).
_LEVEL_FRACTION = 0.9
# Regions smaller than this say nothing about their shape.
_MIN_PIXELS = 6
# A trail is at least this many times longer along the read direction
# than across it; a star's own saturated core is about round.
_ELONGATION = 2.0


def bleed_trails(image, saturation, *, mask=None, read_axis=0):
    """
    Measure whether a frame's saturated stars kept their bleed trails.

    On a frame whose pipeline left the trails in place, the saturated
    pixels of a bright star run along the read direction far beyond its
    core; a pipeline that corrected the frame (ASAS-SN's) replaced them
    by an interpolation of the columns beside them and put the flux back
    as a round profile, so that what saturated pixels remain are about
    as wide as they are long. The test: among the connected regions of
    at least 6 pixels at or above 0.9 times the saturation level, the
    median ratio of the extent along the read axis to that across it is
    2 or more.

    Parameters
    ----------
    image : 2D array-like
        The frame, in counts with the sky.

    saturation : float
        The level (counts, sky included) at which pixels stop responding.

    mask : 2D bool array, optional
        Pixels that are not data.

    read_axis : {0, 1}, optional
        The image axis along which charge bleeds.

    Returns
    -------
    trails : bool or `None`
        ``True`` when the trails are there (an uncorrected frame), ``False``
        when they are not, `None` when the frame has no saturated region
        large enough to tell (a corrected frame's restored cores often
        are not: they are measured as corrected frames are).

    details : dict
        ``n_regions`` (the regions measured) and ``elongation`` (their
        median ratio, NaN without any).

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.frames import bleed_trails
    >>> image = np.full((100, 60), 100.0)
    >>> image[20:60, 30] = 6e4  # a trail 40 rows long
    >>> image[70:73, 10:13] = 6e4  # a round core
    >>> image[40:43, 50:53] = 6e4
    >>> bleed_trails(image, 6e4)
    (False, {'n_regions': 3, 'elongation': 1.0})
    >>> image[73:90, 11] = 6e4  # the two cores' trails
    >>> image[43:60, 51] = 6e4
    >>> bleed_trails(image, 6e4)
    (True, {'n_regions': 3, 'elongation': 6.666666666666667})
    """
    from scipy import ndimage

    image = np.asarray(image)
    if read_axis not in (0, 1):
        msg = f'read_axis must be 0 or 1, got {read_axis!r}'
        raise ValueError(msg)
    saturated = image >= _LEVEL_FRACTION * float(saturation)
    if mask is not None:
        saturated &= ~np.asarray(mask, dtype=bool)
    labels, n = ndimage.label(saturated)
    if n == 0:
        return None, {'n_regions': 0, 'elongation': float('nan')}
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    ratios = []
    for k, box in enumerate(ndimage.find_objects(labels)):
        if sizes[k] < _MIN_PIXELS:
            continue
        along = box[read_axis].stop - box[read_axis].start
        across = box[1 - read_axis].stop - box[1 - read_axis].start
        ratios.append(along / across)
    if not ratios:
        return None, {'n_regions': 0, 'elongation': float('nan')}
    elongation = float(np.median(ratios))
    return bool(elongation >= _ELONGATION), {'n_regions': len(ratios),
                                             'elongation': elongation}
