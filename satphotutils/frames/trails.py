# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Whether a frame's bleed trails were left in place, from its pixels."""

import numpy as np

__all__ = ['bleed_trails', 'runs_along']

# A pixel counts as saturated from this fraction of the saturation level
# (as in BleedTrailPhotometry: a trail's pixels read their full well
# with read noise and the non-linear roll-off).
_LEVEL_FRACTION = 0.9
# Regions smaller than this say nothing about their shape.
_MIN_PIXELS = 6
# A trail is at least this many times longer along the read direction
# than across it; a star's own saturated core is about round.
_ELONGATION = 2.0
# A clipped region's brightest pixel lies within this fraction of its
# median: the ADC (or the storage) returns one value however much charge
# a pixel holds, while a corrected core is the survey's re-inserted
# profile, peaked by a factor 1.5-100 on the frames measured.
_FLAT_TOP = 0.02
# A clipped core is round: a camera whose full well filled before its ADC
# clipped spreads the charge into a short trail first (median elongation
# 1.5-1.8 at g 9.6-11 on a 20,000 e- well), and its trail sum is right.
_ROUND = 1.25
# Plateaus this high may be the storage's (16-bit integers) rather than
# the ADC's: an ASAS-SN-style corrected frame clipped on storage shows
# round flat cores at 65535 too. Such frames keep their old verdict.
_STORAGE_PLATEAU = 32000.0


def bleed_trails(image, saturation, *, mask=None, read_axis=0):
    """
    Measure whether a frame's pipeline left its saturated stars in place.

    On a frame whose pipeline left the trails in place, the saturated
    pixels of a bright star run along the read direction far beyond its
    core; a pipeline that corrected the frame (ASAS-SN's) replaced them
    by an interpolation of the columns beside them and put the flux back
    as a round profile, so that what saturated pixels remain are about
    as wide as they are long. The test: among the connected regions of
    at least 6 pixels at or above 0.9 times the saturation level, the
    median ratio of the extent along the read axis to that across it is
    2 or more.

    A camera whose ADC clips before the full well (a 12-bit CMOS, many
    small-telescope CCDs) has round saturated cores too, and no trail
    until a star is far brighter: each core is a plateau, every pixel at
    the one value the ADC returns, where a corrected core is the survey's
    re-inserted profile, peaked. Such a frame is uncorrected as well
    (``kind`` ``'clipped'``): most regions' brightest pixel within 2% of
    their median, the regions round (median elongation at most 1.25:
    a camera whose well fills first grows short trails, elongation
    1.5-2, and is called corrected as before), and the level below
    32,000 (a plateau at 16-bit storage's 65535 may be a corrected
    frame's restored core clipped on storage; no 16-bit clipping camera
    is called clipped).

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
        ``True`` when the frame is uncorrected (its trails are there, or
        its saturated cores are clipped plateaus), ``False`` when it was
        corrected, `None` when the frame has no saturated region large
        enough to tell (a corrected frame's restored cores often are
        not: they are measured as corrected frames are).

    details : dict
        ``n_regions`` (the regions measured), ``elongation`` (their
        median ratio, NaN without any), ``flat_tops`` (the fraction of
        them that are plateaus) and ``kind``: ``'trails'``, ``'clipped'``
        (uncorrected, round plateaus), ``'corrected'`` or `None`.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.frames import bleed_trails
    >>> image = np.full((100, 60), 100.0)
    >>> image[20:60, 30] = 6e4  # a trail 40 rows long
    >>> core = 6e4 * np.array([[1, 1.5, 1], [1.5, 3, 1.5], [1, 1.5, 1]])
    >>> image[70:73, 10:13] = core  # two round, corrected cores
    >>> image[40:43, 50:53] = core
    >>> trails, details = bleed_trails(image, 6e4)
    >>> trails, details['kind'], details['elongation']
    (False, 'corrected', 1.0)
    >>> image[73:90, 11] = 6e4  # the two cores' trails
    >>> image[43:60, 51] = 6e4
    >>> trails, details = bleed_trails(image, 6e4)
    >>> trails, details['kind'], round(details['elongation'], 2)
    (True, 'trails', 6.67)
    """
    image = np.asarray(image)
    if read_axis not in (0, 1):
        msg = f'read_axis must be 0 or 1, got {read_axis!r}'
        raise ValueError(msg)
    saturated = image >= _LEVEL_FRACTION * float(saturation)
    if mask is not None:
        saturated &= ~np.asarray(mask, dtype=bool)
    none = {'n_regions': 0, 'elongation': float('nan'),
            'flat_tops': float('nan'), 'kind': None}
    extents = _region_extents(saturated, values=image)
    if extents is None:
        return None, none
    size, rows, cols, flat = extents
    big = size >= _MIN_PIXELS
    if not big.any():
        return None, none
    along, across = (rows, cols) if read_axis == 0 else (cols, rows)
    elongation = float(np.median(along[big] / across[big]))
    flat_tops = float(np.mean(flat[big]))
    kind = 'trails' if elongation >= _ELONGATION else \
        'clipped' if (flat_tops > 0.5 and elongation <= _ROUND
                      and float(saturation) < _STORAGE_PLATEAU) \
        else 'corrected'
    return kind != 'corrected', {
        'n_regions': int(big.sum()), 'elongation': elongation,
        'flat_tops': flat_tops, 'kind': kind}


def runs_along(rows, cols, height):
    """
    Whether saturated regions run along the columns: a bleed trail.

    For one star's region seen in a box: it spans at least 4 more rows
    than columns (2 beyond a round core at each end; a clipped core's
    rows and columns differ by 1-2 with the seeing and the sampling), or
    every row of the box (a trail cut by the box's ends).

    Parameters
    ----------
    rows, cols : array-like of int
        Rows and columns the saturated pixels span.

    height : int
        Rows of the box.

    Returns
    -------
    `~numpy.ndarray` of bool

    Examples
    --------
    >>> from satphotutils.frames import runs_along
    >>> runs_along([3, 2, 12, 21], [3, 1, 8, 11], height=21).tolist()
    [False, False, True, True]
    """
    rows, cols = np.asarray(rows), np.asarray(cols)
    return (rows > 0) & ((rows >= cols + 4) | (rows >= height))


def _region_extents(mask, values=None):
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

    flat : `~numpy.ndarray` of bool
        Only with ``values`` (the image): whether each region is a
        plateau, its largest value within `_FLAT_TOP` of its median.
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
    if values is None:
        return size, extents[0], extents[1]
    from scipy import ndimage

    pixels = np.asarray(values).ravel()[index].astype(float)
    regions = np.arange(n)
    peak = np.asarray(ndimage.maximum(pixels, label, regions))
    middle = np.asarray(ndimage.median(pixels, label, regions))
    with np.errstate(invalid='ignore', divide='ignore'):
        flat = peak <= (1 + _FLAT_TOP) * middle
    return size, extents[0], extents[1], flat
