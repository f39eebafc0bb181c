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
    image = np.asarray(image)
    if read_axis not in (0, 1):
        msg = f'read_axis must be 0 or 1, got {read_axis!r}'
        raise ValueError(msg)
    saturated = image >= _LEVEL_FRACTION * float(saturation)
    if mask is not None:
        saturated &= ~np.asarray(mask, dtype=bool)
    extents = _region_extents(saturated)
    if extents is None:
        return None, {'n_regions': 0, 'elongation': float('nan')}
    size, rows, cols = extents
    big = size >= _MIN_PIXELS
    if not big.any():
        return None, {'n_regions': 0, 'elongation': float('nan')}
    along, across = (rows, cols) if read_axis == 0 else (cols, rows)
    elongation = float(np.median(along[big] / across[big]))
    return bool(elongation >= _ELONGATION), {
        'n_regions': int(big.sum()), 'elongation': elongation}


def _region_extents(mask):
    """
    Return the size and bounding-box extents of each region of ``mask``.

    The regions of `scipy.ndimage.label` (4-connected), found among the
    set pixels alone: a frame has a few thousand saturated pixels among
    millions, and labelling the whole image cost some 50 ms per frame.

    Returns
    -------
    size, rows, cols : `~numpy.ndarray` or `None`
        Pixels in each region and the number of rows and columns its
        bounding box spans (in the order of the regions' first pixels);
        `None` without any set pixel.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ny, nx = mask.shape
    index = np.flatnonzero(mask)
    if not len(index):
        return None
    iy, ix = np.divmod(index, nx)
    edges = []
    # The right-hand neighbour (same row) and the one below.
    for step, allowed in ((1, ix < nx - 1), (nx, iy < ny - 1)):
        where = np.searchsorted(index, index + step)
        where = np.minimum(where, len(index) - 1)
        linked = allowed & (index[where] == index + step)
        edges.append((np.flatnonzero(linked), where[linked]))
    a = np.concatenate([e[0] for e in edges])
    b = np.concatenate([e[1] for e in edges])
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)),
                       shape=(len(index), len(index)))
    n, label = connected_components(graph, directed=False)
    size = np.bincount(label, minlength=n)
    extents = []
    for coord in (iy, ix):
        low = np.full(n, np.iinfo(np.int64).max)
        high = np.full(n, -1)
        np.minimum.at(low, label, coord)
        np.maximum.at(high, label, coord)
        extents.append(high - low + 1)
    return size, extents[0], extents[1]
