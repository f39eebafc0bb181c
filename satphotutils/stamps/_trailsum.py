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
# Stars for a frame's aperture corrections: fewer, none is measured; the
# pixel-phase terms need more; beyond the most, the brightest are enough.
_MIN_CORRECTION_STARS = 5
_MIN_PHASE_STARS = 20
_MAX_CORRECTION_STARS = 200
_MAX_TOTAL_STARS = 100
# Radii of the curve of growth from the margin to the total radius.
_GROWTH_RADII = 6
# Calibration stars nearest in pixel phase that scale a star measured
# beside another star's trail.
_PHASE_NEIGHBOURS = 25
# In margins (the default's: 2 FWHM), the circle of a star measured by
# its wings beside another star's trail, and the distance from the
# host's core within which it is not measured (the pixels beside a trail
# are few: a circle of 2 FWHM measured a g = 11 star beside a g = 7
# trail 0.19 mag off, one of 3 FWHM 0.01); and the margin where no
# aperture correction puts back the wings a narrow margin leaves out
# (frames with fewer than 5 bright isolated stars, and stamps): both 3
# FWHM, the former default margin.
WINGS_MARGIN = 1.5
FALLBACK_MARGIN = 1.5

#: ``BleedTrailPhotometry``'s defaults, for callers below the photometry
#: (a test holds the two together).
TRAIL_DEFAULTS = {'margin_fwhm': 2.0, 'radius_fwhm': 0.9,
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


def _owners(labels, n_labels, x, y, region, high, bright, match_radius):
    """
    Give every star's pixels its index + 1 (other regions: -label).

    ``x``, ``y`` are all the stars (targets first), ``region`` the region
    of each, ``high`` the pixels at the saturation level, ``bright``
    those well above the wings. A region whose
    stars have full-well cores of their own, apart at that level (trails
    that touch only through their wings), is first cut between those
    cores (`_split_at_full_well`). Of the stars in a region (or part),
    those on its wide rows are its cores (see `_cores`); those whose
    columns the first core's trail covers ride on it (`_off_the_trail`);
    the region is divided between the others (`_divide`). A star in no
    region owns its own pixel; one on another star's trail owns nothing
    (its light is in the trail, and is taken off the owner's sum once
    measured by its wings, `_beside_trail`).

    Returns the owner image, the region's stars by region label, whether
    each star is a core and whether its pixels hold another star's
    saturated charge that no star names (`_unnamed_pieces` of the
    pixels ``bright``: a saturated star in neither the targets nor the
    catalogue, whose charge its sum holds).
    """
    owner = -labels.astype(np.int64)
    ny, nx = labels.shape
    members = {}
    for k in np.flatnonzero(region > 0):
        members.setdefault(int(region[k]), []).append(k)
    objects = ndimage.find_objects(labels, max_label=n_labels)
    core = np.zeros(len(x), dtype=bool)
    unnamed = np.zeros(len(x), dtype=bool)
    for r, stars in members.items():
        sy, sx = objects[r - 1]
        region_pixels = labels[sy, sx] == r
        parts = [(region_pixels, np.array(stars))] if len(stars) == 1 \
            else _split_at_full_well(region_pixels, high[sy, sx], sy.start,
                                     sx.start, x, y, np.array(stars),
                                     match_radius)
        for mine, stars in parts:
            cores = stars if len(stars) == 1 else _cores(
                mine, sy.start, sx.start, x[stars], y[stars], stars)
            if len(cores) > 1:
                cores = _off_the_trail(mine, sy.start, sx.start, x, y,
                                       cores)
            if len(cores) > 1:
                yy, xx, which, cores = _divide(mine, sy.start, sx.start, x,
                                               y, cores)
                owner[yy, xx] = which + 1
            else:
                owner[sy, sx][mine] = cores[0] + 1
            core[cores] = True
        if len(stars) == 1 and _off_the_core(high[sy, sx] & region_pixels,
                                             y[stars[0]] - sy.start):
            # A star on a trail whose own star no list names: the sum
            # is that star's (review: a g = 13 star on a g = 6 star's
            # trail took it all, 5.7 mag too bright, unflagged).
            unnamed[stars] = True
        foreign = _unnamed_pieces(region_pixels, bright[sy, sx], sy.start,
                                  sx.start, x[stars], y[stars], match_radius)
        if foreign.any():
            held = owner[sy, sx][foreign]
            unnamed[np.unique(held[held > 0]) - 1] = True
    alone = np.flatnonzero((region == 0) & np.isfinite(x) & np.isfinite(y))
    ix = np.rint(x[alone]).astype(np.int64)
    iy = np.rint(y[alone]).astype(np.int64)
    inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    owner[iy[inside], ix[inside]] = alone[inside] + 1
    return owner, members, core, unnamed


def _off_the_core(full, row):
    """
    Say whether ``row`` is away from the core of a region's charge.

    ``full`` are the region's full-well pixels; its core is where they
    are widest (rows at least 80% of the widest row's width), centred on
    the star whose charge it is. A star farther from that centre than
    half the core's rows and 3 px more did not make the region: it lies
    on another star's trail.
    """
    width = full.sum(axis=1)
    if not width.any():
        return False
    core = np.flatnonzero(width >= 0.8 * width.max())
    centre = 0.5 * (core[0] + core[-1])
    return bool(abs(row - centre) > 0.5 * (core[-1] - core[0]) + 3)


def _unnamed_pieces(mine, bright, row0, col0, x, y, match_radius):
    """
    Return the region's bright pixels of stars that no star names.

    ``bright`` are the pixels well above the wings (half the level
    where a trail is followed from): a trail's columns and core, joined
    across a column whose full well is a little lower than the others'.
    A piece of them that holds none of the region's stars ``x``, ``y``
    (within ``match_radius``) and lies 3 px or more, by its median
    column, from every piece that holds one is another star's core or
    trail (a piece in a named piece's columns is a bit of that trail,
    broken by the noise). Measured (review): a g = 8.5 star 5 px beside
    a listed g = 7.5 star, itself in neither the targets nor the
    catalogue, made the listed star 0.13-0.31 mag too bright with no
    flag.
    """
    full = bright & mine
    pieces, n_pieces = ndimage.label(full)
    if n_pieces <= 1:
        return _side_by_side(full) if len(x) == 1 else \
            np.zeros(mine.shape, dtype=bool)
    piece = _region_of(pieces, x - col0, y - row0, match_radius)
    named = np.unique(piece[piece > 0])
    if not named.size:
        return np.zeros(mine.shape, dtype=bool)
    rows, cols = np.nonzero(pieces)
    column = np.atleast_1d(ndimage.median(cols, pieces[rows, cols],
                                          np.arange(1, n_pieces + 1)))
    far = np.ones(n_pieces + 1, dtype=bool)
    far[0] = False
    far[named] = False
    far[1:] &= np.min(np.abs(column[:, None] - column[named - 1][None, :]),
                      axis=1) >= 3
    out = far[pieces]
    if len(x) == 1:
        out |= _side_by_side(full & ~out)
    return out


def _side_by_side(full):
    """
    Return the bright pixels of rows that hold two trails side by side.

    One star's charge fills a run of adjacent columns in each row; rows
    (three or more) with two runs at least 2 px wide with a gap between
    them (pixels below ``bright``: the wings, not a column that
    saturates a little lower) hold a second star's trail too, joined to
    the first in other rows. Measured (review): a g = 7.5 star 5-7 px beside a
    listed one of the same brightness, in neither the targets nor the
    catalogue, made it 0.75 mag too bright with no flag.
    """
    runs, n_runs = ndimage.label(full, structure=[[0, 0, 0], [1, 1, 1],
                                                  [0, 0, 0]])
    if n_runs < 2:
        return np.zeros(full.shape, dtype=bool)
    wide = np.bincount(runs.ravel(), minlength=n_runs + 1) >= 2
    wide[0] = False
    # Each run lies in one row.
    row_of = np.zeros(n_runs + 1, dtype=np.int64)
    rr, cc = np.nonzero(runs)
    row_of[runs[rr, cc]] = rr
    per_row = np.bincount(row_of[np.flatnonzero(wide)],
                          minlength=full.shape[0])
    double = per_row >= 2
    if double.sum() < 3:
        return np.zeros(full.shape, dtype=bool)
    return full & double[:, None]


def _split_at_full_well(mine, high, row0, col0, x, y, stars, match_radius):
    """
    Cut a region between its stars' separate full-well cores.

    A region is followed down to a fraction of the saturation level, so
    the wings of a star beside a bright star's trail join the two even
    where their charge did not: at the full well, each star's own
    saturated pixels (its core and the trail its charge ran into) are
    apart. Each such piece holding a star (within ``match_radius``) is a
    part of its own; every other pixel of the region (the wings, and
    full-well pieces holding no star: bits of a trail broken by the
    noise) goes to the nearest of those pieces. Measured: with the
    region divided by the distance to each star instead, a g = 9 star
    6 px beside a g = 5 star's 500-row trail took the trail's rows
    nearer to it than to the bright star (4.9 mag too bright).

    Returns a list of (pixels, stars) pairs; one pair, the region whole,
    when at most one piece holds a star.
    """
    pieces, n_pieces = ndimage.label(high & mine)
    piece = _region_of(pieces, x[stars] - col0, y[stars] - row0,
                       match_radius)
    held = np.unique(piece[piece > 0])
    if len(held) <= 1:
        return [(mine, stars)]
    # Pieces in one column (their median columns within 3 px, as
    # `_divide` takes two stars) share the column's charge however it
    # broke at the level (a trail's end on a resampled frame reads below
    # it): they are one part, which `_divide` cuts between their trails.
    # The pieces' columns, not their stars': a faint star on one trail
    # would chain another trail's piece in (review).
    rows, cols = np.nonzero(pieces)
    column = np.atleast_1d(ndimage.median(cols, pieces[rows, cols], held))
    part_of = np.zeros(n_pieces + 1, dtype=np.int64)
    part_of[held] = held
    for a in range(len(held)):
        for b in range(a):
            if abs(column[a] - column[b]) < 3:
                part_of[part_of == part_of[held[a]]] = part_of[held[b]]
    parts = np.unique(part_of[held])
    if len(parts) <= 1:
        return [(mine, stars)]
    # Column runs of the region (along the read direction), and the part
    # of each run whose pieces, where it has any, are all of one part.
    runs, n_runs = ndimage.label(mine, structure=[[0, 1, 0], [0, 1, 0],
                                                  [0, 1, 0]])

    def run_parts(grouped):
        on = (grouped > 0) & (runs > 0)
        lo = np.full(n_runs + 1, np.iinfo(np.int64).max)
        hi = np.full(n_runs + 1, -1)
        np.minimum.at(lo, runs[on], grouped[on])
        np.maximum.at(hi, runs[on], grouped[on])
        return np.where((lo == hi) & (hi > 0), hi, 0), on

    # A full-well piece holding no star is a piece of a trail that broke
    # (its level dipped: noise, a masked pixel, a resampling): it is the
    # part's whose pieces share its columns' runs (review: by the
    # distance to each core, a trail cut below a bright star went to the
    # fainter star beside it, 2 mag too bright).
    for _ in range(3):
        grouped = part_of[pieces]
        orphan = (pieces > 0) & (grouped == 0)
        if not orphan.any():
            break
        run_part, _ = run_parts(grouped)
        votes = run_part[runs[orphan]]
        labs = pieces[orphan]
        changed = False
        for lab in np.unique(labs[votes > 0]):
            vals = votes[(labs == lab) & (votes > 0)]
            part_of[lab] = np.bincount(vals).argmax()
            changed = True
        if not changed:
            break
    grouped = part_of[pieces]
    distance = np.full(mine.shape, np.inf)
    nearest = np.zeros(mine.shape, dtype=np.int64)
    for i, p in enumerate(parts):
        d = ndimage.distance_transform_edt(grouped != p)
        closer = d < distance
        distance[closer], nearest[closer] = d[closer], i
    # Along a column the charge ran: a run whose pieces are all of one
    # part is that part's (a trail whose level dips is not cut by the
    # straight-line distance to another star's core); a run holding the
    # pieces of two parts is divided as two trails in one column are
    # (`_divide`: each star's trail reaching as far beyond it as on its
    # other side). Other pixels go to the nearest part.
    run_part, on = run_parts(grouped)
    rows = np.broadcast_to(np.arange(mine.shape[0])[:, None], mine.shape)
    loose = (grouped == 0) & (runs > 0)
    nearest = np.where(loose & (run_part[runs] > 0),
                       np.searchsorted(parts, run_part[runs]), nearest)
    star_part = np.zeros(len(stars), dtype=np.int64)
    star_part[piece > 0] = part_of[piece[piece > 0]]
    for r in np.unique(runs[on & (run_part[runs] == 0)]):
        in_run = runs == r
        cells = np.unique(grouped[in_run & on])
        if len(cells) != 2:
            continue
        col = int(np.flatnonzero(in_run.any(axis=0))[0])
        run_rows = np.flatnonzero(in_run[:, col])
        top, bottom = run_rows[0], run_rows[-1]
        mids = []
        for p in cells:
            # The part's star nearest the run's column.
            mine_stars = np.flatnonzero(star_part == p)
            if not mine_stars.size:
                break
            k = mine_stars[np.argmin(np.abs(x[stars[mine_stars]] - col0
                                            - col))]
            mids.append(y[stars[k]] - row0)
        if len(mids) != 2:
            continue
        (ya, pa), (yb, pb) = sorted(zip(mids, cells, strict=True))
        p_rows = rows[in_run & (grouped == pa)]
        q_rows = rows[in_run & (grouped == pb)]
        if not (p_rows.size and q_rows.size) or p_rows.max() >= q_rows.min():
            continue
        end = 0.5 * ((2 * ya - top) + (2 * yb - bottom))
        end = min(max(end, p_rows.max()), q_rows.min())
        cut = in_run & (grouped == 0)
        nearest = np.where(cut & (rows <= end), np.searchsorted(parts, pa),
                           np.where(cut, np.searchsorted(parts, pb),
                                    nearest))
    # A star on none of the pieces (on the wings) is in the part nearest
    # to it.
    ny, nx = mine.shape
    iy = np.clip(np.rint(y[stars]).astype(np.int64) - row0, 0, ny - 1)
    ix = np.clip(np.rint(x[stars]).astype(np.int64) - col0, 0, nx - 1)
    which = np.where(piece > 0, np.searchsorted(parts, part_of[piece]),
                     nearest[iy, ix])
    return [(mine & (nearest == i), stars[which == i])
            for i in range(len(parts))]


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


def _off_the_trail(mine, row0, col0, x, y, cores):
    """
    Keep the first core and the cores its trail does not run past.

    A star whose column lies within the trail's median width and 2 px of
    the first (widest) core's, and whose row the first core's trail
    passes (it reaches further on the star's side than the first core's
    trail does on the other, where no other star lengthens it), sits on
    that trail, a fainter star on a brighter one's: its charge joined
    the trail's, and no division of the pixels by distance can find it
    (the nearest-core rule gave a g = 10.5 star beside a g = 5.5 star's
    trail half of that trail, 4 mag too much, and left the bright star
    1.7 mag faint). It is measured by its wings beside the trail
    instead, and taken off the first core's sum (`_riders`). Stars the
    first core's trail does not reach past keep the division
    (`_divide`: two trails meeting).
    """
    profile = mine.sum(axis=1)
    reach = float(np.median(profile[profile > 0])) + 2.0
    first = cores[0]
    col = int(np.clip(np.rint(x[first]) - col0, 0, mine.shape[1] - 1))
    rows = np.flatnonzero(mine[:, max(col - 1, 0):col + 2].any(axis=1))
    top, bottom = rows.min() + row0, rows.max() + row0
    keep = [first]
    for c in cores[1:]:
        # The first core's trail on the side away from this star.
        length = bottom - y[first] if y[c] < y[first] else y[first] - top
        riding = (abs(x[c] - x[first]) <= reach
                  and abs(y[c] - y[first]) < length - 1)
        if not riding:
            keep.append(c)
    return np.array(keep)


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
                read_noise, total_radius=None, wings_margin=None):
    """
    Flux, its error, the local background and the flags per target.

    Also returns the unsaturated targets' aperture correction (the
    `~satphotutils.stamps.apertures.PixelPhaseCorrection`'s ``to_dict``,
    or value 1 and no stars) and the correction from the margin to
    ``total_radius`` (`_total_correction`; `None` without a radius).
    """
    n = len(x)
    bad = ~np.isfinite(image)
    if mask is not None:
        bad |= mask
    with np.errstate(invalid='ignore'):
        high = (image >= level) & ~bad
        followed = _bridge((image >= trail_level) & ~bad, bad)
    # Hysteresis: the regions above the trail level that hold a
    # saturated pixel.
    labels, n_labels = ndimage.label(followed)
    keep = np.zeros(n_labels + 1, dtype=bool)
    keep[np.unique(labels[high])] = True
    keep[0] = False
    labels = np.where(keep[labels], labels, 0)
    saturated = labels > 0
    all_x = np.concatenate([x, catalog[:, 0]])
    all_y = np.concatenate([y, catalog[:, 1]])
    region = _region_of(labels, all_x, all_y, match_radius)
    # Well above the wings: the geometric mean of the two levels.
    with np.errstate(invalid='ignore'):
        bright = _bridge((image >= np.sqrt(level * trail_level)) & ~bad,
                         bad)
    owner, members, core, unnamed = _owners(
        labels, n_labels, all_x, all_y, region, _bridge(high, bad), bright,
        match_radius)
    if wings_margin is None:
        wings_margin = WINGS_MARGIN * margin
    if total_radius is not None:
        wings_margin = min(wings_margin, total_radius)
    objects = ndimage.find_objects(labels, max_label=n_labels)
    # Each star's own part of its region (owner k + 1 is star k).
    parts = ndimage.find_objects(np.maximum(owner, 0), max_label=len(all_x))

    flux = np.full(n, np.nan)
    var = np.full(n, np.nan)
    bkg = np.full(n, np.nan)
    flags = np.zeros(n, dtype=np.int64)
    placed = np.isfinite(x) & np.isfinite(y)
    trail = placed & (region[:n] > 0) & core[:n]
    for k in np.flatnonzero(placed & (region[:n] > 0)):
        if len(members[int(region[k])]) > 1:
            flags[k] |= SATPHOT_FLAGS.TRAIL_MERGED
    flags[placed & unnamed[:n]] |= SATPHOT_FLAGS.TRAIL_MERGED
    for k in np.flatnonzero(trail):
        flux[k], pix_var, bkg[k], bkg_var, area, flag = _one_trail(
            image, bad, saturated, error, owner, objects[region[k] - 1],
            parts[k], k, margin=margin, gap=gap, width=width, sky=sky)
        flags[k] |= flag
        if error is None:
            # Poisson of star and sky (counts as electrons through the
            # gain) and read noise.
            pix_var = ((abs(flux[k]) + area * max(bkg[k], 0.0)) / gain
                       + area * (read_noise / gain) ** 2)
        var[k] = pix_var + bkg_var

    # The others: exact small apertures, put on the scale of the trail
    # apertures by the frame's aperture correction at each star's pixel
    # phase.
    point = np.flatnonzero(placed & ~trail)
    correction = {'value': 1.0, 'n_stars': 0}
    alone = np.empty(0, dtype=int)
    planes = None
    if point.size:
        planes = _Planes(image, bad)
        f, v, b, b_var, area, has_bad = _circle_sums(
            planes, error, x[point], y[point], radius, sky=sky)
        phase, alone = _aperture_correction(
            planes, x[point], y[point], f, b_var, owner, point,
            radius=radius, margin=margin, sky=sky)
        alone = point[alone]
        if phase is None and radius != margin:
            # No correction to be had: the wide aperture itself, on the
            # trails' scale.
            f, v, b, b_var, area, has_bad = _circle_sums(
                planes, error, x[point], y[point], margin, sky=sky)
        if error is None:
            v = ((np.abs(f) + area * np.maximum(b, 0.0)) / gain
                 + area * (read_noise / gain) ** 2)
        scale = 1.0
        if phase is not None:
            scale = phase(x[point] - np.rint(x[point]),
                          y[point] - np.rint(y[point]))
            correction = phase.to_dict()
        flux[point] = f * scale
        var[point] = (v + b_var) * scale ** 2
        bkg[point] = b
        flags[point[has_bad]] |= SATPHOT_FLAGS.TRAIL_MASKED
        # A circle that reaches another star's trail holds its charge
        # (review: a star 2.5 px beside a trail's edge, 1.5 mag bright).
        r_used = radius if phase is not None or radius == margin else margin
        flags[point[_reaches(saturated, x[point], y[point], r_used)]] |= \
            SATPHOT_FLAGS.TRAIL_MERGED
        _riders(planes, labels, owner, error, all_x, all_y, region, core,
                alone, flux, var, bkg, flags, trail, margin=wings_margin,
                host_margin=margin,
                radius=radius,
                sky=sky, gain=gain, read_noise=read_noise)
    total = _total_correction(planes, x[alone], y[alone], owner, alone,
                              margin=margin, total=total_radius, sky=sky)
    if total is not None:
        wings = (flags & SATPHOT_FLAGS.TRAIL_WINGS) != 0
        total['factor'] = _total_factors(total, labels, x, y, region[:n],
                                         trail, wings, margin, wings_margin)
    return flux, np.sqrt(var), bkg, flags, correction, total


def _aperture_correction(planes, x, y, small, small_bkg_var, owner, index,
                         *, radius, margin, sky):
    """
    Measure the ratio of the wide to the small aperture sums on the frame.

    Measured on the targets that are bright (small-aperture flux 50 times
    its background error), unsaturated and alone within the margin (no
    other star's pixel), as a function of where each falls in its pixel
    (`~satphotutils.stamps.apertures.PixelPhaseCorrection`: on an
    undersampled frame the small aperture's share of the light changes
    by a few per cent across a pixel). Returns the correction (`None`
    with fewer than 5 stars) and the stars it was measured on (indices
    into ``x``).
    """
    from satphotutils.stamps.apertures import PixelPhaseCorrection

    alone = _alone(x, y, small, small_bkg_var, owner, index,
                   reach=int(np.ceil(margin)) + 1)
    if len(alone) < _MIN_CORRECTION_STARS:
        return None, alone
    big, _, _, _, _, has_bad = _circle_sums(
        planes, None, x[alone], y[alone], margin, sky=sky)
    alone = alone[~has_bad]
    if len(alone) < _MIN_CORRECTION_STARS:
        return None, alone
    phase = PixelPhaseCorrection.fit(
        x[alone] - np.rint(x[alone]), y[alone] - np.rint(y[alone]),
        big[~has_bad] / small[alone], min_stars=_MIN_PHASE_STARS)
    return phase, alone


def _alone(x, y, small, small_bkg_var, owner, index, *, reach,
           limit=_MAX_CORRECTION_STARS):
    """
    Return the bright targets no other star's pixel comes near.

    Bright: small-aperture flux 50 times its background error; near:
    within ``reach`` pixels (a square). The brightest first, at most
    ``limit``; a few hundred are plenty for a correction.
    """
    bright = (small > 50 * np.sqrt(small_bkg_var)) & (small > 0)
    candidates = np.flatnonzero(bright)
    candidates = candidates[np.argsort(-small[candidates])][:4 * limit]
    alone = []
    for c in candidates:
        if _no_other_star(owner, x[c], y[c], index[c], reach):
            alone.append(c)
        if len(alone) >= limit:
            break
    return np.array(alone, dtype=int)


def _no_other_star(owner, x, y, own, reach):
    """
    Say whether no other star's pixel lies near a position.

    Near: within ``reach`` pixels (a square, on the frame) of the pixel
    nearest ``x``, ``y``; ``own`` is the star's own index.
    """
    ny, nx = owner.shape
    ix, iy = int(np.rint(x)), int(np.rint(y))
    if not (reach <= ix < nx - reach and reach <= iy < ny - reach):
        return False
    box = owner[iy - reach:iy + reach + 1, ix - reach:ix + reach + 1]
    return bool(np.all((box == 0) | (box == own + 1)))


def _riders(planes, labels, owner, error, all_x, all_y, region, core,
            alone, flux, var, bkg, flags, trail, *, host_margin, **kwargs):
    """
    Measure the stars on other stars' trails; take them off the trails.

    Every star (targets and catalogue stars) in a saturated region that
    is not one of its cores is measured by its wings (`_beside_trail`);
    the targets' values replace their small-aperture sums (which hold
    the trail), and each star's flux is taken off the sum of the core
    whose pixels it lies on, whose aperture held it. Needs the frame's
    calibration stars (``alone``; 5 or more), else nothing changes. A
    star within ``margin`` (the wings' margin, also their circle's
    radius) of its host's core is not measured (NaN): its wings there
    are the host's. Updates ``flux``, ``var``, ``bkg`` and ``flags``
    (``trail_wings``) in place. What is taken off the host is the share
    of each star's light within ``host_margin`` (the host's aperture
    reaches that far about the trail the star lies on), measured on the
    calibration stars.
    """
    n = len(flux)
    finite = np.isfinite(all_x) & np.isfinite(all_y)
    riders = np.flatnonzero(finite & (region > 0) & ~core)
    if not riders.size or len(alone) < _MIN_CORRECTION_STARS:
        return
    ny, nx = owner.shape
    iy = np.clip(np.rint(all_y[riders]).astype(np.int64), 0, ny - 1)
    ix = np.clip(np.rint(all_x[riders]).astype(np.int64), 0, nx - 1)
    host = owner[iy, ix] - 1
    # Near its host's core a star's "wings" are the host's own: its
    # light stays in the host's sum, and it is not measured (review:
    # a g = 13 star 6 px from a g = 5.5 core took 10% of it).
    near = np.zeros(riders.size, dtype=bool)
    for j in np.flatnonzero(host >= 0):
        h = host[j]
        hy = int(np.clip(np.rint(all_y[h]), 0, ny - 1))
        hx = int(np.clip(np.rint(all_x[h]), 0, nx - 1))
        half = 0.5 * np.sum(labels[hy] == labels[hy, hx])
        near[j] = np.hypot(all_x[riders[j]] - all_x[h],
                           all_y[riders[j]] - all_y[h]) \
            < half + kwargs['margin']
    # The calibration stars' backgrounds are those of their small
    # apertures, measured already.
    f, v, b = _beside_trail(planes, labels > 0, error, all_x[riders],
                            all_y[riders], all_x[alone], all_y[alone],
                            bkg[alone].copy(), **kwargs)
    f[near] = np.nan
    v[near] = np.nan
    mine = riders < n
    flux[riders[mine]], var[riders[mine]], bkg[riders[mine]] = \
        f[mine], v[mine], b[mine]
    flags[riders[mine]] |= SATPHOT_FLAGS.TRAIL_WINGS
    held = _held_within(planes, all_x[alone], all_y[alone], host_margin,
                        kwargs['margin'], sky=kwargs['sky'])
    for k in np.flatnonzero((host >= 0) & (host < n) & np.isfinite(f)):
        if trail[host[k]]:
            flux[host[k]] -= held * f[k]
            var[host[k]] += held ** 2 * v[k]


def _reaches(saturated, x, y, radius):
    """
    Say which circles about ``x``, ``y`` overlap a ``saturated`` pixel.

    A pixel counts if its centre is within ``radius`` + 0.5.
    """
    from satphotutils.stamps.apertures import center_sums
    from satphotutils.stamps.cutout import cut_stamps

    reach = int(np.ceil(radius + 0.5))
    ix = np.rint(x).astype(np.int64)
    iy = np.rint(y).astype(np.int64)
    near, _ = cut_stamps(saturated, ix, iy, 2 * reach + 1, dtype=bool,
                         fill_value=False)
    return center_sums(near.astype(np.float64), radius + 0.5, dx=x - ix,
                       dy=y - iy) > 0


def _held_within(planes, x, y, inner, outer, *, sky):
    """
    Return the median share within ``inner`` of the light in ``outer``.

    Both sums are on the background of the annulus beyond ``outer``; 1
    if ``inner`` is not smaller, or with fewer than 5 stars.
    """
    if not inner < outer:
        return 1.0
    wide, _, b_wide, _, _, _ = _circle_sums(planes, None, x, y, outer,
                                            sky=sky)
    small, _, b_small, _, area, _ = _circle_sums(planes, None, x, y, inner,
                                                 sky=sky)
    small = small + (b_small - b_wide) * area
    ok = (wide > 0) & (small > 0)
    if ok.sum() < _MIN_CORRECTION_STARS:
        return 1.0
    return float(np.median(small[ok] / wide[ok]))


def _beside_trail(planes, trails, error, x, y, cal_x, cal_y, cal_b, *,
                  margin, radius, sky, gain, read_noise):
    """
    Measure stars that lie on another star's bleed trail by their wings.

    A star on a trail has no trail of its own: its charge joined the
    other star's. What of its light falls outside the trail's columns
    (and one pixel either side, where blooming spills) is its own; the
    sum of those pixels within ``margin`` is scaled by the share the same
    pixels hold on the frame's bright isolated stars (``cal_x``,
    ``cal_y``, their backgrounds ``cal_b``) that fall at the nearest
    pixel phases, so that it is on
    the margin's scale as every other sum. The background is the clipped
    median of an annulus with the trails left out.

    Returns the flux, its variance (the pixels used, from ``error`` or
    Poisson and read noise, the background's and the share's errors) and
    the background.
    """
    from satphotutils.stamps.cutout import cut_stamps

    reach = int(np.ceil(margin))
    size = 2 * reach + 1
    yy, xx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    circle = np.hypot(yy, xx) <= margin
    blocked = ndimage.binary_dilation(trails, structure=np.ones((1, 3),
                                                                dtype=bool))
    clean = np.where(blocked, np.nan, planes.clean)
    ix = np.rint(x).astype(np.int64)
    iy = np.rint(y).astype(np.int64)
    bkg, b_std, n_b = _ring_background(clean, ix, iy, radius + 5.0,
                                       radius + 8.0)
    few = ~(n_b >= _MIN_BACKGROUND_PIXELS)
    bkg[few], b_std[few], n_b[few] = sky, 0.0, 1
    stamps, inside = cut_stamps(planes.clean, x, y, size, dtype=float)
    masks, _ = cut_stamps(blocked, x, y, size, dtype=bool, fill_value=True)
    use = circle[None] & ~masks & inside & np.isfinite(stamps)
    own = np.where(use, stamps - bkg[:, None, None], 0.0).sum(axis=(1, 2))
    n_pix = use.sum(axis=(1, 2))
    if error is None:
        pix_var = ((np.abs(own) + n_pix * np.maximum(bkg, 0.0)) / gain
                   + n_pix * (read_noise / gain) ** 2)
    else:
        err, _ = cut_stamps(np.asarray(error, dtype=float), x, y, size,
                            dtype=float)
        pix_var = np.where(use, err ** 2, 0.0).sum(axis=(1, 2))
    pix_var = pix_var + (n_pix * b_std) ** 2 * np.pi / 2 / np.maximum(n_b,
                                                                      1)
    # The calibration stars, less the backgrounds of their small
    # apertures (the annulus about each).
    cal, cal_in = cut_stamps(planes.clean, cal_x, cal_y, size, dtype=float)
    cal = np.where(cal_in & np.isfinite(cal), cal - cal_b[:, None, None],
                   0.0)
    whole = np.where(circle[None], cal, 0.0).sum(axis=(1, 2))
    phase = np.column_stack([x - ix, y - iy])
    cal_phase = np.column_stack([cal_x - np.rint(cal_x),
                                 cal_y - np.rint(cal_y)])
    # A third of the stars at most, so that they are the nearest in phase
    # even on a frame with few.
    n_near = max(_MIN_CORRECTION_STARS, min(len(cal_x) // 3,
                                            _PHASE_NEIGHBOURS))
    flux = np.full(len(x), np.nan)
    var = np.full(len(x), np.nan)
    for k in range(len(x)):
        if n_pix[k] == 0:
            continue
        # Signed offsets, no wrap: the mask is drawn about the rounded
        # pixel, and phases +0.45 and -0.45 put a star nearly a pixel
        # apart relative to it.
        d = cal_phase - phase[k]
        near = np.argsort(np.hypot(d[:, 0], d[:, 1]), kind='stable')[:n_near]
        part = np.where(use[k], cal[near], 0.0).sum(axis=(1, 2))
        with np.errstate(invalid='ignore', divide='ignore'):
            share = part / whole[near]
        share = share[np.isfinite(share) & (share > 0)]
        if share.size < _MIN_CORRECTION_STARS:
            continue
        s_med = float(np.median(share))
        # The share's spread over those stars, not its standard error:
        # they fall at other phases than the star's, and the share of
        # a few pixels beside a trail changes fast with the phase.
        s_err = 1.4826 * float(np.median(np.abs(share - s_med)))
        flux[k] = own[k] / s_med
        var[k] = pix_var[k] / s_med ** 2 + (flux[k] * s_err / s_med) ** 2
    return flux, var, bkg


def _total_correction(planes, x, y, owner, index, *, margin, total, sky):
    """
    Measure the light beyond the margin on bright isolated stars.

    The curve of growth from ``margin`` to ``total``: the median over the
    stars of each one's sums within radii between the two over its sum
    within ``margin``, all less the background of the annulus beyond
    ``total`` (one background for the whole curve). ``x``,
    ``y`` are the stars `_aperture_correction` used (brightest first),
    of which those alone within the wide aperture and its annulus count.
    The curve never falls (light cannot be negative). Returns `None`
    without ``total``, else a dictionary with the ratio at ``total``
    (``value``), its error, the number of stars (value 1 with fewer than
    5) and the curve (``radii``, ``growth``).
    """
    if total is None:
        return None
    out = {'radius': float(total), 'value': 1.0, 'error': float('nan'),
           'n_stars': 0}
    if len(x) == 0 or total <= margin:
        return out
    reach = int(np.ceil(total + 8.0)) + 1
    keep = np.array([k for k in range(len(x)) if _no_other_star(
        owner, x[k], y[k], index[k], reach)], dtype=int)[:_MAX_TOTAL_STARS]
    if len(keep) < _MIN_CORRECTION_STARS:
        out['n_stars'] = len(keep)
        return out
    # The curve of growth from the margin out, on the background of the
    # annulus beyond the widest aperture.
    radii = np.linspace(margin, total, _GROWTH_RADII)
    sums, bad = [], np.zeros(len(keep), dtype=bool)
    b_wide = None
    for r in radii[::-1]:
        f, _, b, _, area, has_bad = _circle_sums(planes, None, x[keep],
                                                 y[keep], r, sky=sky)
        if b_wide is None:
            b_wide = b
        sums.append(f + (b - b_wide) * area)
        bad |= has_bad
    sums = np.array(sums[::-1])
    with np.errstate(invalid='ignore', divide='ignore'):
        ratio = sums / sums[0]
    ok = ~bad & (sums[0] > 0) & np.isfinite(ratio).all(axis=0)
    ratio = ratio[:, ok]
    out['n_stars'] = int(ratio.shape[1])
    if ratio.shape[1] < _MIN_CORRECTION_STARS:
        return out
    # Light cannot be negative: the curve never falls.
    growth = np.maximum.accumulate(np.maximum(np.median(ratio, axis=1),
                                              1.0))
    value = float(growth[-1])
    out['value'] = value
    out['error'] = float(1.2533 * 1.4826 * np.median(np.abs(
        ratio[-1] - np.median(ratio[-1]))) / np.sqrt(ratio.shape[1]))
    out['radii'] = radii
    out['growth'] = growth
    return out


def _total_factors(total, labels, x, y, region, trail, wings, margin,
                   wings_margin):
    """
    Return each target's factor to its total light (1 without a curve).

    A point target's aperture reaches the margin; a trail's reaches the
    margin beyond the saturated core's half-width, where the curve of
    growth has already gained part of what lies beyond the margin
    (review: a point source's correction put isolated saturated stars
    0.5-1.3% too bright); a star measured by its wings (``wings``) is on
    the scale of its circle, ``wings_margin``.
    """
    factors = np.ones(len(x))
    if total is None or 'growth' not in total:
        return factors
    factors[:] = total['value']
    factors[wings] = total['value'] / np.interp(
        wings_margin, total['radii'], total['growth'])
    ny = labels.shape[0]
    for k in np.flatnonzero(trail):
        iy = int(np.clip(np.rint(y[k]), 0, ny - 1))
        half = 0.5 * np.sum(labels[iy] == region[k])
        reached = np.interp(margin + half, total['radii'], total['growth'])
        factors[k] = total['value'] / reached
    return factors


def _one_trail(image, bad, saturated, error, owner, objects, own, k, *,
               margin, gap, width, sky):
    """
    Sum one target's trail aperture.

    ``objects`` are the slices of the target's region, ``own`` those of
    the part of it the target owns (`None` when it owns none). Returns
    the flux, the pixel variance from ``error`` (NaN without), the
    background, its variance term, the aperture's area and the flags.
    """
    ny, nx = image.shape
    flags = 0
    sy, sx = objects
    y0, y1, x0, x1 = sy.start, sy.stop, sx.start, sx.stop
    if own is None:
        # The region was divided and none of it fell to this target
        # (another star's core took all of it): nothing to sum; a
        # flagged NaN, not an exception that loses the frame's rows.
        return (np.nan, np.nan, np.nan, np.nan, 0.0,
                flags | SATPHOT_FLAGS.TRAIL_MERGED)
    reach = int(np.ceil(margin))
    side = gap + width
    # Seeds up to two margins from the target's own part compete for
    # its aperture's pixels; farther ones cannot. The box is drawn about
    # that part, not the whole region: a region of many stars would
    # otherwise cost each of them the whole region's distance transforms.
    oy, ox = own
    by0 = max(oy.start - 2 * reach - 1, 0)
    by1 = min(oy.stop + 2 * reach + 1, ny)
    bx0 = max(ox.start - 2 * reach - side - 1, 0)
    bx1 = min(ox.stop + 2 * reach + side + 1, nx)
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
