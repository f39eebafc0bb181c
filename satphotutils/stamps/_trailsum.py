# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The trail sum of `~satphotutils.photometry.BleedTrailPhotometry`.

Below the photometry and the network, which both use it: the photometry
on frames, the model training on its validation stamps (through
`stamp_trail_sums`), so that the two measure a trail with one code.
"""

import warnings

import numpy as np
from astropy.utils.exceptions import AstropyUserWarning
from scipy import ndimage

from satphotutils.utils.flags import SATPHOT_FLAGS

__all__ = []

_MIN_BACKGROUND_PIXELS = 10

#: ``BleedTrailPhotometry``'s defaults, for callers below the photometry
#: (a test holds the two together).
TRAIL_DEFAULTS = {'margin_fwhm': 3.0, 'radius_fwhm': 0.9,
                  'level_fraction': 0.9, 'trail_fraction': 0.25,
                  'background_gap': 2, 'background_width': 6,
                  'match_radius': 2.0}


def stamp_trail_sums(stamps, *, sky, saturation, margin, radius,
                     level_fraction, trail_fraction, gap, width,
                     match_radius, dx, dy):
    """
    Trail-sum log10 counts and flags of each stamp's central target.

    Each stamp is measured as a frame of its own with no other star (see
    ``BleedTrailPhotometry.measure_stamps``); ``margin`` and ``radius``
    are per stamp.
    """
    n, ny, nx = stamps.shape
    log_counts = np.full(n, np.nan)
    flags = np.zeros(n, dtype=np.int64)
    nobody = np.empty((0, 2))
    for k in range(n):
        flux, _, _, flag, _, _ = _trail_sums(
            stamps[k], None, None, np.array([nx // 2 + dx[k]]),
            np.array([ny // 2 + dy[k]]), nobody,
            level=level_fraction * saturation[k],
            trail_level=trail_fraction * saturation[k],
            margin=margin[k], radius=radius[k], gap=gap, width=width,
            match_radius=match_radius, sky=sky[k], gain=1.0,
            read_noise=0.0)
        if flux[0] > 0:
            log_counts[k] = np.log10(flux[0])
        else:
            flag[0] |= SATPHOT_FLAGS.NO_SIGNAL
        flags[k] = flag[0]
    return log_counts, flags


def trail_reaches_end(stamps, saturation, *, columns=5.0,
                      level_fraction=0.9):
    """
    Say which stamps' bleed trails run past the stamp's ends.

    A stamp (rows along the read direction) whose first or last row has
    a saturated pixel within ``columns`` of the central column holds
    only part of its target's trail: the charge beyond it is not in the
    stamp, so only the trail sum on the frame can measure the target.

    Parameters
    ----------
    stamps : array-like, shape (N, ny, nx)
        Stamps in counts, sky included.

    saturation : array-like, shape (N,)
        Each stamp's saturation level (counts, sky included).

    columns : float, optional
        Half-width (pixels) of the central columns looked at.

    level_fraction : float, optional
        A pixel is saturated from this fraction of the level (as
        `BleedTrailPhotometry`'s ``level_fraction``).

    Returns
    -------
    reaches : `~numpy.ndarray` of bool

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.photometry import trail_reaches_end
    >>> stamps = np.full((2, 21, 11), 100.0)
    >>> stamps[0, 5:16, 5] = 6e4
    >>> stamps[1, 0:21, 5] = 6e4
    >>> trail_reaches_end(stamps, [6e4, 6e4]).tolist()
    [False, True]
    """
    stamps = np.asarray(stamps)
    n, _, nx = stamps.shape
    level = level_fraction * np.broadcast_to(
        np.asarray(saturation, dtype=float), (n,))
    centre = np.abs(np.arange(nx) - nx // 2) <= columns
    ends = stamps[:, [0, -1]][:, :, centre]
    with np.errstate(invalid='ignore'):
        return (ends >= level[:, None, None]).any(axis=(1, 2))


def _region_of(labels, x, y, radius):
    """Find the saturated region nearest each position (0: none near)."""
    ny, nx = labels.shape
    reach = int(np.ceil(radius))
    offsets = np.arange(-reach, reach + 1)
    oy, ox = np.meshgrid(offsets, offsets, indexing='ij')
    near = np.hypot(oy, ox) <= radius
    oy, ox = oy[near], ox[near]
    order = np.argsort(np.hypot(oy, ox), kind='stable')
    oy, ox = oy[order], ox[order]
    ix = np.rint(np.where(np.isfinite(x), x, -1e9)).astype(np.int64)
    iy = np.rint(np.where(np.isfinite(y), y, -1e9)).astype(np.int64)
    py = iy[:, None] + oy[None, :]
    px = ix[:, None] + ox[None, :]
    inside = (py >= 0) & (py < ny) & (px >= 0) & (px < nx)
    found = np.where(inside, labels[np.clip(py, 0, ny - 1),
                                    np.clip(px, 0, nx - 1)], 0)
    # The first (nearest) saturated pixel of each row of offsets.
    first = np.argmax(found > 0, axis=1)
    return found[np.arange(len(x)), first]


def _owners(labels, n_labels, x, y, region):
    """
    Give every star's pixels its index + 1 (other regions: -label).

    ``x``, ``y`` are all the stars (targets first), ``region`` the region
    of each. Of the stars in a region, those on its wide rows are its
    cores (see `_cores`); the region is divided between its cores
    (`_divide`). A star in no region owns its own pixel; one on
    another star's trail owns nothing (its light is in the trail).

    Returns the owner image, the region's stars by region label and
    whether each star is a core.
    """
    owner = -labels.astype(np.int64)
    ny, nx = labels.shape
    members = {}
    for k in np.flatnonzero(region > 0):
        members.setdefault(int(region[k]), []).append(k)
    objects = ndimage.find_objects(labels, max_label=n_labels)
    core = np.zeros(len(x), dtype=bool)
    for r, stars in members.items():
        sy, sx = objects[r - 1]
        mine = labels[sy, sx] == r
        stars = np.array(stars)
        cores = stars if len(stars) == 1 else _cores(
            mine, sy.start, sx.start, x[stars], y[stars], stars)
        if len(cores) > 1:
            yy, xx, which, cores = _divide(mine, sy.start, sx.start, x, y,
                                           cores)
            owner[yy, xx] = which + 1
        else:
            owner[sy, sx][mine] = cores[0] + 1
        core[cores] = True
    alone = np.flatnonzero((region == 0) & np.isfinite(x) & np.isfinite(y))
    ix = np.rint(x[alone]).astype(np.int64)
    iy = np.rint(y[alone]).astype(np.int64)
    inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    owner[iy[inside], ix[inside]] = alone[inside] + 1
    return owner, members, core


def _cores(mine, row0, col0, x, y, stars):
    """
    Find the stars of one region whose own saturated cores it holds.

    A saturated star is where its region is widest: the trail that runs
    from it is a column or a few, so a star lying on another star's
    trail sits on a narrow row. The star nearest the region's widest row
    is its first core; the others on rows at least half as wide as the
    widest row of a star (and 3 px) are cores too, widest first, unless
    they lie within a core already taken (a star there cannot be told
    apart: its light is that core's).
    """
    rows = np.clip(np.rint(y).astype(int) - row0, 0, mine.shape[0] - 1)
    width = mine[rows].sum(axis=1)
    floor = max(3, 0.5 * width.max())
    # The brightest star is the one nearest the region's widest row.
    profile = mine.sum(axis=1)
    wide_rows = np.flatnonzero(profile >= 0.8 * profile.max())
    widest = int(np.rint(np.mean(wide_rows)))
    centre = np.mean(np.flatnonzero(mine[widest])) + col0 \
        if mine[widest].any() else np.mean(x)
    first = int(np.argmin((y - row0 - widest) ** 2 + (x - centre) ** 2))
    width[first] = max(width[first], profile[widest])
    accepted = []
    for c in np.r_[first, np.argsort(-width, kind='stable')]:
        if accepted and (width[c] < floor or c in accepted):
            continue
        inside = any(abs(x[c] - x[a]) <= width[a] / 2 + 1
                     and abs(y[c] - y[a]) <= width[a] / 2 + 1
                     for a in accepted)
        if not inside:
            accepted.append(c)
    return stars[np.array(accepted)]


def _divide(mine, row0, col0, x, y, cores):
    """
    Give each pixel of a region to one of its cores.

    Two cores in one column (merged trails) are divided row by row as
    trails grow, symmetrically about their stars: in each column the
    upper star's trail ends as far below it as it reaches above it, and
    the lower star's likewise; the boundary is halfway between those
    ends, between the two stars. Otherwise each pixel goes to the
    nearest core. Where one star's trail, so divided, would reach past
    the other star, the other's light cannot be told from the trail: the
    first core keeps the region. Returns the pixels' rows, columns and
    cores, and the cores that kept pixels.
    """
    yy, xx = np.nonzero(mine)
    d2 = ((yy[:, None] + row0 - y[None, cores]) ** 2
          + (xx[:, None] + col0 - x[None, cores]) ** 2)
    owner = cores[np.argmin(d2, axis=1)]
    if len(cores) == 2 and abs(x[cores[0]] - x[cores[1]]) < 3:
        upper, lower = sorted(cores, key=lambda c: y[c])
        ya, yb = y[upper] - row0, y[lower] - row0
        rows = np.arange(mine.shape[0])[:, None]
        top = np.where(mine, rows, mine.shape[0]).min(axis=0)
        bottom = np.where(mine, rows, -1).max(axis=0)
        ends = 0.5 * ((2 * ya - top) + (2 * yb - bottom))
        col = int(np.rint(0.5 * (x[upper] + x[lower]))) - col0
        col = min(max(col, 0), mine.shape[1] - 1)
        if ya <= ends[col] <= yb:
            owner = np.where(yy <= np.clip(ends, ya, yb)[xx], upper, lower)
        else:
            # One trail reaches past the other star: its light cannot be
            # told from the trail's; the first core keeps the region.
            owner = np.full(yy.shape, cores[0])
            cores = cores[:1]
    return yy + row0, xx + col0, owner, cores


def _bridge(followed, bad):
    """
    Follow trails through masked pixels along the read direction.

    A run of bad pixels in a column joins the trail when the pixels just
    above and below it are followed (a bad column segment across a
    trail does not cut it in two).
    """
    # Only columns where a bad run starts below a followed pixel and one
    # ends above a followed pixel can have a bridged run.
    cols = np.flatnonzero((bad[1:] & followed[:-1]).any(axis=0)
                          & (bad[:-1] & followed[1:]).any(axis=0))
    if not cols.size:
        return followed
    f, b = followed[:, cols], bad[:, cols]
    ny = followed.shape[0]
    rows = np.arange(ny)[:, None]
    index = np.arange(cols.size)[None, :]
    above = np.maximum.accumulate(np.where(b, -1, rows), axis=0)
    below = np.minimum.accumulate(np.where(b, ny, rows)[::-1],
                                  axis=0)[::-1]
    ends = ((above >= 0) & (below < ny)
            & f[np.clip(above, 0, ny - 1), index]
            & f[np.clip(below, 0, ny - 1), index])
    out = followed.copy()
    out[:, cols] = f | (b & ends)
    return out


def _clipped_median(values):
    """Median after two rounds of 3-sigma (MAD) clipping."""
    for _ in range(2):
        med = np.median(values)
        sigma = 1.4826 * np.median(np.abs(values - med))
        if not sigma > 0:
            break
        values = values[np.abs(values - med) <= 3 * sigma]
    return float(np.median(values)), float(np.std(values)), values.size


class _Planes:
    """The frame with bad pixels as zero and as NaN, and the bad mask."""

    def __init__(self, image, bad):
        self.bad = bad
        self.filled = np.where(bad, 0.0, image)
        self.clean = np.where(bad, np.nan, image)
        self.bad_float = bad.astype(np.float32)


def _ring_background(image, ix, iy, inner, outer):
    """Clipped median in an annulus about each pixel (NaN do not count)."""
    from satphotutils.stamps.cutout import cut_stamps

    size = 2 * int(np.ceil(outer)) + 1
    stamps, inside = cut_stamps(image, ix, iy, size, dtype=float)
    stamps[~inside] = np.nan
    half = size // 2
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    r = np.hypot(yy, xx)
    ring = (r >= inner) & (r <= outer)
    return _clipped_rows(stamps[:, ring])


def _clipped_rows(values):
    """Clipped median, standard deviation and count of each row."""
    for _ in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', RuntimeWarning)
            med = np.nanmedian(values, axis=1)
            sigma = 1.4826 * np.nanmedian(np.abs(values - med[:, None]),
                                          axis=1)
        far = np.abs(values - med[:, None]) > 3 * sigma[:, None]
        values = np.where(far & (sigma[:, None] > 0), np.nan, values)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        return (np.nanmedian(values, axis=1), np.nanstd(values, axis=1),
                np.sum(np.isfinite(values), axis=1))


def _circle_sums(planes, error, x, y, radius, *, sky):
    """
    Exact circular-aperture sums less the background about them.

    photutils' exact apertures; bad pixels count at the background.
    ``planes`` are the frame's `_Planes`.
    Returns the flux, its pixel variance (from ``error``; NaN without),
    the background, its error term and the area.
    """
    from photutils.aperture import CircularAperture, aperture_photometry

    from satphotutils.stamps.cutout import cut_stamps

    n = len(x)
    ix = np.rint(x).astype(np.int64)
    iy = np.rint(y).astype(np.int64)
    bad = planes.bad
    # An annulus, as photutils' LocalBackground (7-10 px about a 2-px
    # aperture): a point has no trail to put columns beside.
    inner = radius + 5.0
    bkg, b_std, n_b = _ring_background(planes.clean, ix, iy, inner,
                                       inner + 3.0)
    few = ~(n_b >= _MIN_BACKGROUND_PIXELS)
    bkg[few], b_std[few], n_b[few] = sky, 0.0, 1
    aperture = CircularAperture(np.column_stack([x, y]), r=radius)
    reach = int(np.ceil(radius + 0.5))
    near_bad, _ = cut_stamps(bad, ix, iy, 2 * reach + 1, dtype=bool,
                             fill_value=True)
    has_bad = near_bad.any(axis=(1, 2))
    lost = np.zeros(n)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', AstropyUserWarning)
        phot = aperture_photometry(planes.filled, aperture, error=error)
        if has_bad.any():
            # The bad pixels' share of those apertures, to fill at the
            # background.
            lost[has_bad] = aperture_photometry(
                planes.bad_float, aperture[has_bad])['aperture_sum']
    has_bad = lost > 0
    area = aperture.area
    total = np.asarray(phot['aperture_sum'], float) + bkg * lost
    flux = total - bkg * area
    var = (np.asarray(phot['aperture_sum_err'], float) ** 2
           if error is not None else np.full(n, np.nan))
    bkg_var = (area * b_std) ** 2 * np.pi / 2 / np.maximum(n_b, 1)
    return flux, var, bkg, bkg_var, area, has_bad


def _trail_sums(image, mask, error, x, y, catalog, *, level, trail_level,
                margin, radius, gap, width, match_radius, sky, gain,
                read_noise):
    """
    Flux, its error, the local background and the flags per target.

    Also returns the aperture correction of the unsaturated targets and
    the number of stars it was measured on.
    """
    n = len(x)
    bad = ~np.isfinite(image)
    if mask is not None:
        bad |= mask
    with np.errstate(invalid='ignore'):
        saturated = (image >= level) & ~bad
        followed = _bridge((image >= trail_level) & ~bad, bad)
    # Hysteresis: the regions above the trail level that hold a
    # saturated pixel.
    labels, n_labels = ndimage.label(followed)
    keep = np.zeros(n_labels + 1, dtype=bool)
    keep[np.unique(labels[saturated])] = True
    keep[0] = False
    labels = np.where(keep[labels], labels, 0)
    saturated = labels > 0
    all_x = np.concatenate([x, catalog[:, 0]])
    all_y = np.concatenate([y, catalog[:, 1]])
    region = _region_of(labels, all_x, all_y, match_radius)
    owner, members, core = _owners(labels, n_labels, all_x, all_y, region)
    objects = ndimage.find_objects(labels, max_label=n_labels)

    flux = np.full(n, np.nan)
    var = np.full(n, np.nan)
    bkg = np.full(n, np.nan)
    flags = np.zeros(n, dtype=np.int64)
    placed = np.isfinite(x) & np.isfinite(y)
    trail = placed & (region[:n] > 0) & core[:n]
    for k in np.flatnonzero(placed & (region[:n] > 0)):
        if len(members[int(region[k])]) > 1:
            flags[k] |= SATPHOT_FLAGS.TRAIL_MERGED
    for k in np.flatnonzero(trail):
        flux[k], pix_var, bkg[k], bkg_var, area, flag = _one_trail(
            image, bad, saturated, error, owner, objects[region[k] - 1],
            k, margin=margin, gap=gap, width=width, sky=sky)
        flags[k] |= flag
        if error is None:
            # Poisson of star and sky (counts as electrons through the
            # gain) and read noise.
            pix_var = ((abs(flux[k]) + area * max(bkg[k], 0.0)) / gain
                       + area * (read_noise / gain) ** 2)
        var[k] = pix_var + bkg_var

    # The others: exact small apertures, put on the scale of the trail
    # apertures by the frame's aperture correction.
    point = np.flatnonzero(placed & ~trail)
    correction, n_cal = 1.0, 0
    if point.size:
        planes = _Planes(image, bad)
        f, v, b, b_var, area, has_bad = _circle_sums(
            planes, error, x[point], y[point], radius, sky=sky)
        correction, n_cal = _aperture_correction(
            planes, x[point], y[point], f, b_var, owner, point,
            radius=radius, margin=margin, sky=sky)
        if n_cal == 0 and radius != margin:
            # No correction to be had: the wide aperture itself, on the
            # trails' scale.
            f, v, b, b_var, area, has_bad = _circle_sums(
                planes, error, x[point], y[point], margin, sky=sky)
        if error is None:
            v = ((np.abs(f) + area * np.maximum(b, 0.0)) / gain
                 + area * (read_noise / gain) ** 2)
        flux[point] = f * correction
        var[point] = (v + b_var) * correction ** 2
        bkg[point] = b
        flags[point[has_bad]] |= SATPHOT_FLAGS.TRAIL_MASKED
    return flux, np.sqrt(var), bkg, flags, correction, n_cal


def _aperture_correction(planes, x, y, small, small_bkg_var, owner, index,
                         *, radius, margin, sky):
    """
    Measure the ratio of the wide to the small aperture sums on the frame.

    Measured on the targets that are bright (small-aperture flux 50 times
    its background error), unsaturated and alone within the margin (no
    other star's pixel): the median ratio and their number; 1 and 0 with
    fewer than 5 of them.
    """
    ny, nx = planes.bad.shape
    ix = np.rint(x).astype(np.int64)
    iy = np.rint(y).astype(np.int64)
    reach = int(np.ceil(margin)) + 1
    inner = (ix >= reach) & (ix < nx - reach) & (iy >= reach) \
        & (iy < ny - reach)
    bright = inner & (small > 50 * np.sqrt(small_bkg_var)) & (small > 0)
    candidates = np.flatnonzero(bright)
    # The brightest first; a few hundred are plenty for a median.
    candidates = candidates[np.argsort(-small[candidates])][:400]
    alone = []
    for c in candidates:
        box = owner[iy[c] - reach:iy[c] + reach + 1,
                    ix[c] - reach:ix[c] + reach + 1]
        if np.all((box == 0) | (box == index[c] + 1)):
            alone.append(c)
        if len(alone) >= 100:
            break
    if len(alone) < 5:
        return 1.0, 0
    alone = np.array(alone)
    big, _, _, _, _, has_bad = _circle_sums(
        planes, None, x[alone], y[alone], margin, sky=sky)
    ratio = big[~has_bad] / small[alone][~has_bad]
    if ratio.size < 5:
        return 1.0, 0
    return float(np.median(ratio)), int(ratio.size)


def _one_trail(image, bad, saturated, error, owner, objects, k, *, margin,
               gap, width, sky):
    """
    Sum one target's trail aperture.

    Returns the flux, the pixel variance from ``error`` (NaN without),
    the background, its variance term, the aperture's area and the
    flags.
    """
    ny, nx = image.shape
    flags = 0
    sy, sx = objects
    y0, y1, x0, x1 = sy.start, sy.stop, sx.start, sx.stop
    reach = int(np.ceil(margin))
    side = gap + width
    # Seeds up to two margins away compete for the aperture's pixels.
    by0, by1 = max(y0 - 2 * reach - 1, 0), min(y1 + 2 * reach + 1, ny)
    bx0 = max(x0 - 2 * reach - side - 1, 0)
    bx1 = min(x1 + 2 * reach + side + 1, nx)
    box = (slice(by0, by1), slice(bx0, bx1))
    own_seed = owner[box] == k + 1
    other_seed = (owner[box] != 0) & ~own_seed
    d_own = ndimage.distance_transform_edt(~own_seed)
    weight = d_own <= margin
    if other_seed.any():
        d_other = ndimage.distance_transform_edt(~other_seed)
        weight &= d_other >= d_own
        near_any = np.minimum(d_own, d_other) <= margin
    else:
        near_any = d_own <= margin
    if y0 == 0 or y1 == ny or x0 == 0 or x1 == nx:
        flags |= SATPHOT_FLAGS.TRAIL_EDGE
    bad_box = bad[box]
    touched = weight | ndimage.binary_dilation(own_seed)
    if (bad_box & touched).any():
        flags |= SATPHOT_FLAGS.TRAIL_MASKED

    # Background: the columns beside the aperture, over its rows.
    rows = np.flatnonzero(weight.any(axis=1))
    cols = np.flatnonzero(weight.any(axis=0))
    c_lo, c_hi = cols[0], cols[-1]
    band = np.zeros(weight.shape[1], dtype=bool)
    band[max(c_lo - side, 0):max(c_lo - gap, 0)] = True
    band[c_hi + gap + 1:c_hi + side + 1] = True
    usable = ~bad_box & ~saturated[box] & ~near_any
    usable[:rows[0]] = False
    usable[rows[-1] + 1:] = False
    usable[:, ~band] = False
    values = image[box][usable]
    if values.size >= _MIN_BACKGROUND_PIXELS:
        b, b_std, n_b = _clipped_median(values)
    else:
        b, b_std, n_b = float(sky), 0.0, 1
    data = image[box][weight]
    good = ~bad_box[weight]
    area = float(weight.sum())
    flux = float(np.sum(data[good])) + b * (~good).sum() - b * area
    var = np.nan
    if error is not None:
        e = np.asarray(error)[box][weight]
        var = float(np.sum(e[good] ** 2))
    # The background's own error, spread over the whole aperture (the
    # median's variance is pi/2 that of a mean).
    bkg_var = (area * b_std) ** 2 * np.pi / 2 / max(n_b, 1)
    return flux, var, b, bkg_var, area, flags
