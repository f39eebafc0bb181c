# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
From photons to raw ADU: noise, blooming along columns and readout.

All functions are pure: arrays in, arrays out, randomness from a
`numpy.random.Generator` the caller passes.
"""

import numpy as np

__all__ = ['bleed_columns', 'expose', 'expose_and_read', 'read_out']


def _first_run(over):
    """
    Return the first saturated run of sorted indices ``over``.

    ``(start, stop, lone)``: the run is contiguous from ``over[0]`` to
    ``stop``; ``lone`` says it is the only one.
    """
    breaks = np.flatnonzero(np.diff(over) > 1)
    stop = over[breaks[0]] if breaks.size else over[-1]
    return over[0], stop, not breaks.size


def _bleed_one(column, full_well):
    """
    Spill the charge above ``full_well`` of one column to its neighbours.

    The excess of each saturated run moves outwards, alternately up and
    down, filling each pixel to the full well, until it is absorbed; runs
    that meet merge. Charge that reaches both ends of the column is lost
    (it would flow into the serial register). Returns the lost charge.
    """
    n = column.size
    lost = 0.0
    over = np.flatnonzero(column > full_well)
    while over.size:
        start, stop, lone = _first_run(over)
        excess = column[start:stop + 1].sum() - full_well * (stop - start + 1)
        column[start:stop + 1] = full_well
        # Pixels outward in the order the charge reaches them: one below,
        # one above, two below, ... Missing ones past an end are skipped.
        # A first guess of the reach avoids ordering the whole column.
        reach = max(start, n - 1 - stop)
        guess = min(reach, int(excess / full_well) + 16)
        while True:
            k = np.arange(1, guess + 1)
            order = np.column_stack([start - k, stop + k]).ravel()
            order = order[(order >= 0) & (order < n)]
            # Capacity may be negative where the spill meets another run:
            # that run's excess then joins this one.
            capacity = np.cumsum(full_well - column[order])
            last = np.searchsorted(capacity, excess)
            if last < order.size or guess == reach:
                break
            guess = reach
        if last >= order.size:
            column[order] = full_well
            lost += excess - (capacity[-1] if capacity.size else 0.0)
        else:
            before = capacity[last - 1] if last > 0 else 0.0
            column[order[:last]] = full_well
            column[order[last]] += excess - before
        if lone:
            # A lone run spills into pixels below the full well and leaves
            # none above it.
            return lost
        over = np.flatnonzero(column > full_well)
    return lost


def _drain(data, level):
    """Remove the charge above ``level`` (in place); return it."""
    over = data > level
    if not over.any():
        return 0.0
    drained = float(np.sum(data[over] - level, dtype=np.float64))
    data[over] = level
    return drained


def _bloom_sideways(data, full_well, fraction):
    """
    Spill part of the charge above the full well into the next columns.

    ``fraction`` of each pixel's excess goes, half each, to the pixels
    beside it along axis 1 of ``data`` (in place). Returns what spills
    off the sides.
    """
    over = data > full_well
    # Only the rows that hold an excess spill (few: a star's core).
    rows = np.flatnonzero(over.any(axis=1))
    if not rows.size:
        return 0.0
    part = data[rows]
    excess = np.where(over[rows], part - full_well, 0.0)
    spill = fraction * excess
    part -= spill.astype(data.dtype)
    half = 0.5 * spill
    part[:, 1:] += half[:, :-1].astype(data.dtype)
    part[:, :-1] += half[:, 1:].astype(data.dtype)
    data[rows] = part
    return float(half[:, 0].sum(dtype=np.float64)
                 + half[:, -1].sum(dtype=np.float64))


def _spill(pixels, amount, full_well, keep):
    """
    Spill ``amount`` of charge into ``pixels`` (a view, in flow order).

    Each pixel fills to the full well before the rest flows on; of what
    flows past a pixel, the fraction ``keep`` reaches the next one (the
    rest is lost on the way). Pixels above the full well (another run)
    add their excess to the flow. Returns the charge that flows past the
    last pixel and the charge lost on the way.
    """
    if amount <= 0 or pixels.size == 0:
        return amount, 0.0
    room = full_well - pixels
    # Inflow at the first pixel that fills the first j pixels: the room
    # of pixel j counts 1 / keep**j times.
    weight = keep ** -np.arange(pixels.size, dtype=float) if keep < 1 \
        else 1.0
    capacity = np.cumsum(room * weight)
    hit = capacity >= amount
    if hit.any():
        k = int(np.argmax(hit))
        arrive = (amount - (capacity[k - 1] if k else 0.0)) * keep**k
        stored = float(room[:k].sum()) + arrive
        pixels[:k] = full_well
        pixels[k] += arrive
        return 0.0, amount - stored
    out = (amount - capacity[-1]) * keep**pixels.size
    stored = float(room.sum())
    pixels[:] = full_well
    return out, amount - stored - out


def _bleed_split(column, full_well, up, loss):
    """
    `_bleed_one` with the excess split between the two directions.

    The share ``up`` of each run's excess flows towards higher indices,
    the rest towards lower ones, each filling pixels to the full well and
    losing the fraction ``loss`` of what flows on at every pixel it
    passes; what one side cannot hold goes to the other, and what neither
    can leaves the column. Returns the lost charge (both kinds).
    """
    keep = 1.0 - loss
    lost = 0.0
    over = np.flatnonzero(column > full_well)
    while over.size:
        start, stop, _ = _first_run(over)
        excess = column[start:stop + 1].sum() - full_well * (stop - start + 1)
        column[start:stop + 1] = full_well
        above = column[stop + 1:]
        below = column[start - 1::-1] if start > 0 else column[:0]
        rest_up, spent = _spill(above, up * excess, full_well, keep)
        lost += spent
        rest_down, spent = _spill(below, (1 - up) * excess + rest_up,
                                  full_well, keep)
        lost += spent
        if rest_down > 0 and rest_up == 0:
            rest_down, spent = _spill(above, rest_down, full_well, keep)
            lost += spent
        lost += rest_down
        over = np.flatnonzero(column > full_well)
    return lost


def bleed_columns(charge, full_well, *, axis=0, bloom_fraction=0.0,
                  antiblooming=None, up=0.5, loss=0.0):
    """
    Bloom saturated charge along the read direction, conserving charge.

    Charge is lost only where it leaves the array: off an end of a column
    (at the far end into the drain, at the near end into the serial
    register, which is flushed before readout), sideways off the first or
    last column, into the anti-blooming drain, or on the way along the
    trail (``loss``).

    Parameters
    ----------
    charge : `~numpy.ndarray`
        2-D charge image in electrons; modified in place.

    full_well : float
        Charge a pixel holds, in electrons.

    axis : int, optional
        The read direction (columns are along axis 0 by default).

    bloom_fraction : float, optional
        Fraction of each pixel's charge above the full well that first
        spills sideways, half into each neighbouring column (in the same
        row); the rest, and whatever the neighbours then hold above the
        full well, bleeds along the columns.

    antiblooming : float, optional
        Drain level (electrons): charge above it is removed before any
        blooming, so that with a level at or below the full well nothing
        bleeds.

    up : float, optional
        Share of the excess that bleeds towards higher indices along
        ``axis`` (up the column); 0.5 spills alternately one pixel each
        way.

    loss : float, optional
        Fraction of the bleeding charge lost at each pixel it flows past.

    Returns
    -------
    lost : float
        Charge that left the array (0 unless a trail reaches both ends of
        a column, blooms off a side, is drained or is lost on the way).

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.simulation.exposure import bleed_columns
    >>> column = np.array([[0.0], [0.0], [250.0], [0.0], [0.0]])
    >>> bleed_columns(column, 100.0)
    0.0
    >>> column.ravel()
    array([  0., 100., 100.,  50.,   0.])
    """
    data = np.moveaxis(charge, axis, 0)
    lost = 0.0
    if antiblooming is not None:
        lost += _drain(data, antiblooming)
    if bloom_fraction:
        lost += _bloom_sideways(data, full_well, bloom_fraction)
    over = data > full_well
    cols = np.flatnonzero(over.any(axis=0))
    if not cols.size:
        return lost
    if up != 0.5 or loss:
        for j in cols:
            column = data[:, j].astype(np.float64)
            lost += _bleed_split(column, full_well, up, loss)
            data[:, j] = column
        return lost
    # Columns with one saturated run (nearly all) bleed together; the
    # others, where runs may merge, one at a time.
    over = over[:, cols]
    runs = (over[1:] & ~over[:-1]).sum(axis=0) + over[0]
    lone = cols[runs == 1]
    for start in range(0, lone.size, _LONE_BATCH):
        part = lone[start:start + _LONE_BATCH]
        # Sums of many full wells need double precision, whatever the
        # image's dtype.
        block = data[:, part].astype(np.float64)
        lost += _bleed_lone(block, full_well)
        data[:, part] = block
    for j in cols[runs != 1]:
        column = data[:, j].astype(np.float64)
        lost += _bleed_one(column, full_well)
        data[:, j] = column
    return lost


# Columns bled together by `_bleed_lone` (bounds its memory).
_LONE_BATCH = 256


def _bleed_lone(block, full_well):
    """
    `_bleed_one` for columns (axis 1) that hold one saturated run each.

    The same spill in the same order, on all columns at once: outwards,
    alternately one pixel below and one above (only one side once the
    other reaches its end), filling each to the full well until the
    excess is absorbed. The capacity of the first ``L`` pixels of that
    order is a difference of prefix sums of the column's room below the
    full well, so the pixel that absorbs the excess is found by bisection
    in ``L``. Returns the lost charge.
    """
    n = block.shape[0]
    # Columns as contiguous rows.
    cols = np.ascontiguousarray(block.T)
    k = np.arange(len(cols))
    over = cols > full_well
    start = np.argmax(over, axis=1)
    stop = n - 1 - np.argmax(over[:, ::-1], axis=1)
    excess = np.where(over, cols, 0.0).sum(axis=1) \
        - full_well * (stop - start + 1)
    cols[over] = full_well
    prefix = np.zeros((len(cols), n + 1))
    np.cumsum(full_well - cols, axis=1, out=prefix[:, 1:])
    below, above = start, n - 1 - stop

    def capacity(length):
        """Room in the first ``length`` pixels of the order."""
        a = np.minimum((length + 1) // 2, below)
        b = np.minimum(length // 2, above)
        return ((prefix[k, start] - prefix[k, start - a])
                + (prefix[k, stop + 1 + b] - prefix[k, stop + 1]))

    end = 2 * np.maximum(below, above)
    total = capacity(end)
    enough = total >= excess
    # The smallest length whose capacity holds the excess.
    lo, hi = np.ones(len(cols), dtype=int), np.maximum(end, 1)
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        holds = capacity(mid) >= excess
        hi = np.where(holds, mid, hi)
        lo = np.where(holds, lo, mid + 1)
    length = np.where(enough, lo, end)
    # Every pixel before the last one of that length is full; the last
    # takes what is left (pixel m of the order: below if m is even).
    full = np.where(enough, length - 1, length)
    rows = np.arange(n)[None, :]
    first = start - np.minimum((full + 1) // 2, below)
    final = stop + np.minimum(full // 2, above)
    cols[(rows >= first[:, None]) & (rows <= final[:, None])] = full_well
    m = length[enough] - 1
    at = np.where(m % 2 == 0, start[enough] - m // 2 - 1,
                  stop[enough] + (m + 1) // 2)
    cols[k[enough], at] += (excess - capacity(length - 1))[enough]
    block[:] = cols.T
    return float(np.sum(excess[~enough] - total[~enough]))


def expose(expected_electrons, rng):
    """
    Draw the photo-electrons of an exposure (Poisson noise).

    Where 100 or more electrons are expected the Poisson distribution is
    drawn through its normal approximation (skewness below 0.1, variance
    exact), which is several times faster; below that, exactly.

    Parameters
    ----------
    expected_electrons : `~numpy.ndarray`
        Expected electrons per pixel (sky plus stars, through the flat).

    rng : `~numpy.random.Generator`
        Random generator.

    Returns
    -------
    electrons : `~numpy.ndarray` of float32
        Whole numbers of electrons (exact in float32 up to 2**24).

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.simulation import expose
    >>> electrons = expose(np.full((100, 100), 400.0),
    ...                    np.random.default_rng(3))
    >>> round(float(electrons.mean())), round(float(electrons.std()))
    (400, 20)
    """
    lam = np.clip(expected_electrons, 0, None).astype(np.float32)
    out = rng.standard_normal(lam.shape, dtype=np.float32)
    out *= np.sqrt(lam)
    out += lam
    low = lam < 100
    if low.any():
        out[low] = rng.poisson(lam[low])
    return np.rint(out, out=out)


def read_out(electrons, detector, rng):
    """
    Read out a charge image: serial register, noise, gain, bias and ADC.

    The register's capacity, read noise, non-linearity, gain, bias and
    ADC clipping are applied in that order.

    The three ceilings are distinct: the pixel's full well (charge above
    it has already bled, `bleed_columns`), the serial register's full
    well (``detector.register_full_well``: charge above it is lost here)
    and the ADC maximum (the digital value clips, the charge was there).

    Parameters
    ----------
    electrons : `~numpy.ndarray`
        Charge per pixel after blooming.

    detector : `~satphotutils.simulation.Detector`
        The detector.

    rng : `~numpy.random.Generator`
        Random generator.

    Returns
    -------
    raw : `~numpy.ndarray` of uint16
        The raw frame in ADU, clipped to ``[0, detector.adc_max]``.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.simulation import Detector, read_out
    >>> detector = Detector(shape=(50, 50))
    >>> adu = read_out(np.full((50, 50), 3000.0), detector,
    ...                np.random.default_rng(4))
    >>> bool(np.all(adu <= detector.adc_max))
    True
    """
    adu = rng.standard_normal(electrons.shape, dtype=np.float32)
    adu *= detector.read_noise
    adu += electrons
    return _digitise(adu, detector)


def _digitise(charge, detector):
    """Convert noisy charge (float32, modified in place) to raw ADU."""
    if detector.register_full_well is not None:
        # The serial register passes on no more than it holds.
        np.minimum(charge, detector.register_full_well, out=charge)
    if detector.nonlinearity:
        fill = np.clip(charge, 0, None) / detector.full_well
        charge *= 1 - detector.nonlinearity * fill * fill
    charge *= 1 / detector.gain
    charge += detector.bias
    np.rint(charge, out=charge)
    np.clip(charge, 0, detector.adc_max, out=charge)
    return charge.astype(np.uint16)


def expose_and_read(expected_electrons, detector, rng, *,
                    faint_pixels=False):
    """
    Expose, bloom and read out a stack of detector windows.

    Equivalent to `expose`, `bleed_columns` along axis 1 and `read_out`,
    but faster: a column that cannot reach the full well gets Poisson and
    read noise as one normal draw of variance ``lambda + read_noise**2``
    (the Poisson part is drawn through its normal approximation by
    `expose` too); only columns that may saturate, or that hold pixels
    expecting fewer than 100 electrons, are exposed, bloomed and read
    separately.

    Parameters
    ----------
    expected_electrons : `~numpy.ndarray`
        Expected electrons, shape ``(n, rows, cols)``.

    detector : `~satphotutils.simulation.Detector`
        The detector.

    rng : `~numpy.random.Generator`
        Random generator.

    faint_pixels : bool, optional
        Whether columns that cannot fill but hold pixels under 100
        electrons keep the one normal draw, with exact Poisson noise in
        those pixels only: the same distribution at a fraction of the
        cost for a faint sky, from a different random stream (which is
        why it is not the default: frames keep the stream they had).

    Returns
    -------
    raw : `~numpy.ndarray` of uint16
        The raw windows.

    lost : `~numpy.ndarray`
        Electrons per window that left the array: off the ends of the
        columns, sideways off its first or last column, or into the
        anti-blooming drain (not what the serial register spills at
        readout).

    full_ends : `~numpy.ndarray` of bool, shape ``(n, 2, cols)``
        Whether the first and the last row of each column hold a full well
        after blooming.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.simulation import Detector, expose_and_read
    >>> detector = Detector(shape=(50, 50))
    >>> raw, lost, full_ends = expose_and_read(np.full((2, 50, 50), 1e6),
    ...                                       detector,
    ...                                       np.random.default_rng(5))
    >>> raw.shape[0], int(raw.max()) <= detector.adc_max  # clipped
    (2, True)
    """
    lam = np.clip(expected_electrons, 0, None).astype(np.float32)
    n, _, cols = lam.shape
    full_ends = np.zeros((n, 2, cols), dtype=bool)
    lost = np.zeros(n)
    # Columns whose expected charge comes within 6 sigma of the full well
    # take the exact route.
    peak = lam.max(axis=1)
    may_fill = peak + 6 * np.sqrt(peak) > detector.pixel_capacity
    exact = may_fill.copy()
    if detector.bloom_fraction:
        # The columns beside a filling one receive its sideways spill.
        exact[:, 1:] |= may_fill[:, :-1]
        exact[:, :-1] |= may_fill[:, 1:]
    # Pixels with too few electrons for the normal approximation draw
    # their Poisson noise exactly: in their own columns, or alone.
    low = ~exact & (lam.min(axis=1) < 100)
    if not faint_pixels:
        exact |= low
        low[:] = False
    adu = rng.standard_normal(lam.shape, dtype=np.float32)
    adu *= np.sqrt(lam + detector.read_noise**2)
    adu += lam
    if low.any():
        item, col = np.nonzero(low)
        block = adu[item, :, col]
        few = lam[item, :, col] < 100
        block[few] = rng.poisson(lam[item, :, col][few]) \
            + detector.read_noise * rng.standard_normal(
                np.count_nonzero(few), dtype=np.float32)
        adu[item, :, col] = block
    if exact.any():
        item, col = np.nonzero(exact)
        charge = expose(lam[item, :, col].T, rng)
        before = charge.sum(axis=0, dtype=np.float64)
        if detector.antiblooming is not None:
            _drain(charge, detector.antiblooming)
        if detector.bloom_fraction:
            # Sideways spill needs the columns in their places.
            dense = np.zeros(lam.shape, dtype=np.float32)
            dense[item, :, col] = charge.T
            for i in np.unique(item):
                _bloom_sideways(dense[i], detector.full_well,
                                detector.bloom_fraction)
            charge = np.ascontiguousarray(dense[item, :, col].T)
        bleed_columns(charge, detector.full_well, up=detector.bleed_up,
                      loss=detector.bleed_loss)
        np.add.at(lost, item, before - charge.sum(axis=0, dtype=np.float64))
        full_ends[item, 0, col] = charge[0] >= detector.full_well
        full_ends[item, 1, col] = charge[-1] >= detector.full_well
        charge += detector.read_noise * rng.standard_normal(
            charge.shape, dtype=np.float32)
        adu[item, :, col] = charge.T
    return _digitise(adu, detector), lost, full_ends
