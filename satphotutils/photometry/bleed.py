# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Photometry of saturated stars from their bleed trails (uncorrected frames).

On a frame whose pipeline leaves the bleed trails in place (most surveys
and observers other than ASAS-SN: ZTF, ATLAS, TESS-like and amateur CCD
and CMOS cameras), a saturated star's charge is conserved along its
column: what a saturated pixel cannot hold moves to the next pixels of
the column, so the trail holds the star's flux. `BleedTrailPhotometry`
sums it: the whole connected saturated region of each target, whatever
its length, plus a margin for the unsaturated wings.
"""

import threading

import numpy as np
from astropy.coordinates import SkyCoord
from scipy import ndimage

from satphotutils.utils._parameters import as_finite, as_positive
from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.flags import SATPHOT_FLAGS

from .core import _Photometry

__all__ = ['BleedTrailPhotometry']

_MIN_BACKGROUND_PIXELS = 10


class BleedTrailPhotometry(_Photometry):
    """
    Sum each target's bleed trail, core and wings (charge conservation).

    For a frame whose bleed trails were left in place (the FITS keyword
    ``SATCORR = F`` of the simulator's raw frames; not ASAS-SN's, whose
    pipeline replaces the trails). Each target's saturated region, the
    pixels at or above the saturation level connected to it (4-connected,
    so the region follows the read direction to both ends of the trail
    whatever its length), is found on the frame; the aperture is every
    pixel within ``margin`` of the region (for a target with no saturated
    pixel, the exact circle of radius ``margin`` about it: an aperture
    sum). The local background is the clipped median of the columns beside
    the aperture, over its rows. The flux is the aperture's sum less that
    background.

    Neighbours are split off: each pixel belongs to the nearest star (the
    targets, ``catalog`` stars and saturated regions of stars in neither;
    a region holding several of them is divided between them, each pixel
    to the nearest), and a target's aperture holds only its own pixels.

    Parameters not listed are as for
    `~satphotutils.photometry.SaturatedStarPhotometry`.

    Parameters
    ----------
    margin : float, optional
        Pixels around the saturated region (or radius about an
        unsaturated target) that belong to the aperture. By default
        ``margin_fwhm`` times the FWHM.

    margin_fwhm : float, optional
        The margin in units of the PSF FWHM when ``margin`` is not given.

    fwhm : float, optional
        The PSF FWHM (pixels) for the default margin; measured on each
        frame (`~satphotutils.frames.frame_fwhm`) if `None`.

    background_width : int, optional
        Width (pixels) of the background band on each side of the
        aperture.

    background_gap : int, optional
        Pixels between the aperture and its background bands.

    match_radius : float, optional
        A target whose own pixel is not saturated belongs to the saturated
        region with a pixel within this distance (pixels), if any.

    catalog : `~astropy.coordinates.SkyCoord` or array-like, optional
        Other stars (sky positions, or pixel positions ``(x, y)`` of shape
        (M, 2)) to split off the targets' apertures; not measured.

    read_axis : {0, 1}, optional
        The image axis along which charge bleeds (0: along the columns,
        as the simulator's frames).

    aperture_correction : float, optional
        Magnitudes added for the light outside the aperture (a constant).

    level_fraction : float, optional
        A pixel is saturated from this fraction of the saturation level:
        the pixels of a trail hold a full well each but read it with read
        noise and the non-linear roll-off, and a ``SATURATE`` keyword
        states where pixels stop responding, so at the level itself a
        trail would break into pieces.

    trail_fraction : float, optional
        The trail is followed through pixels from this fraction of the
        saturation level, connected to a saturated one: on a frame
        resampled onto a reference grid, a trail one column wide that
        falls between two columns reads half the level in each.

    saturation_level : float, optional
        Counts (sky included) from which a pixel is saturated; the
        header's saturation keyword if `None`, else the frame's plateau.
        A frame with neither is refused.

    Notes
    -----
    Flags (besides those of the stamps): ``trail_edge`` (the target's
    saturated region touches the image edge, where the charge that ran
    off is lost), ``trail_merged`` (its region also holds another target
    or catalogue star; the region was divided), ``trail_masked`` (masked
    or non-finite pixels in the aperture or beside the region: charge
    there is missing).

    The charge is conserved along the trail in electrons; a flat-fielded
    frame divides each trail pixel by the flat where it was read, not
    where the light fell, so on a strongly vignetted frame a long trail's
    sum is off by the flat's change along it.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy import units as u
    >>> from astropy.coordinates import SkyCoord
    >>> from satphotutils.photometry import BleedTrailPhotometry
    >>> from satphotutils.simulation import (Camera, Detector,
    ...     FrameSimulator, Scene, SurveyPipeline)
    >>> centre = SkyCoord(150, -40, unit='deg')
    >>> camera = Camera(detector=Detector(shape=(400, 200),
    ...                                   full_well=80000.0,
    ...                                   corner_throughput=1.0))
    >>> raw = SurveyPipeline(correction=False)
    >>> scene = Scene(centre.directional_offset_by([0, 90] * u.deg,
    ...               [1, 6] * u.arcmin), [7.0, 10.0], [1.0, 1.0])
    >>> frame, truth = FrameSimulator(camera=camera, pipeline=raw,
    ...                               pointing=centre)(scene, mjd=59000.0,
    ...                                                seed=2)
    >>> table = BleedTrailPhotometry(fwhm=1.8)(frame, skycoord=scene.coord)
    >>> bool(np.all(np.abs(table['mag'] - truth['mag']).value < 0.005))
    True
    >>> table['n_saturated'].tolist()
    [18, 5]
    """

    method = 'bleed_trail'

    def __init__(self, *, margin=None, margin_fwhm=5.0, fwhm=None,
                 background_width=6, background_gap=2, match_radius=2.0,
                 catalog=None, read_axis=0, aperture_correction=0.0,
                 level_fraction=0.9, trail_fraction=0.25, **kwargs):
        super().__init__(**kwargs)
        self.margin = None if margin is None else as_positive(margin,
                                                              'margin')
        self.margin_fwhm = as_positive(margin_fwhm, 'margin_fwhm')
        self.fwhm = None if fwhm is None else as_positive(fwhm, 'fwhm')
        for name, value, least in (('background_width', background_width, 1),
                                   ('background_gap', background_gap, 0)):
            if int(value) != value or value < least:
                msg = f'{name} must be an integer >= {least}, got {value!r}'
                raise ValueError(msg)
        self.background_width = int(background_width)
        self.background_gap = int(background_gap)
        self.match_radius = as_positive(match_radius, 'match_radius')
        if read_axis not in (0, 1):
            msg = f'read_axis must be 0 or 1, got {read_axis!r}'
            raise ValueError(msg)
        self.read_axis = int(read_axis)
        self.aperture_correction = as_finite(aperture_correction,
                                             'aperture_correction')
        if catalog is not None and not isinstance(catalog, SkyCoord):
            catalog = np.atleast_2d(np.asarray(catalog, dtype=float))
            if catalog.ndim != 2 or catalog.shape[1] != 2:
                msg = ('catalog must be a SkyCoord or pixel positions of '
                       f'shape (M, 2), got shape {catalog.shape}')
                raise ValueError(msg)
        self.catalog = catalog
        self.level_fraction = as_positive(level_fraction, 'level_fraction')
        self.trail_fraction = as_positive(trail_fraction, 'trail_fraction')
        if not self.trail_fraction <= self.level_fraction <= 1:
            msg = ('need 0 < trail_fraction <= level_fraction <= 1, got '
                   f'{trail_fraction!r} and {level_fraction!r}')
            raise ValueError(msg)
        self._local = threading.local()

    def __repr__(self):
        margin = (f'margin={self.margin:g}' if self.margin is not None
                  else f'margin={self.margin_fwhm:g} FWHM')
        return f'<BleedTrailPhotometry {margin}>'

    def _config(self):
        return super()._config() | {
            'margin': self.margin, 'margin_fwhm': self.margin_fwhm,
            'fwhm': self.fwhm, 'background_width': self.background_width,
            'background_gap': self.background_gap,
            'match_radius': self.match_radius, 'read_axis': self.read_axis,
            'aperture_correction': self.aperture_correction,
            'level_fraction': self.level_fraction,
            'trail_fraction': self.trail_fraction,
            'catalog': None if self.catalog is None else len(self.catalog)}

    def __call__(self, data, *, wcs=None, **kwargs):
        """
        Measure the targets on an image (see `SaturatedStarPhotometry`).

        The parameters and the table are those of every satphotutils
        photometry class; ``catalog`` stars given as sky positions are
        placed with the image's WCS.
        """
        # A sky catalogue is placed with the call's WCS; the pixels live
        # for this call only (and this thread: calls may run in parallel).
        if isinstance(self.catalog, SkyCoord):
            frame_wcs = wcs if wcs is not None else getattr(data, 'wcs',
                                                            None)
            if frame_wcs is None:
                msg = ('catalog is a SkyCoord and the image has no WCS: '
                       'pass wcs= or give the catalogue in pixels')
                raise ValueError(msg)
            cx, cy = frame_wcs.world_to_pixel(self.catalog.reshape(-1))
            self._local.catalog = np.column_stack([cx, cy])
        try:
            return super().__call__(data, wcs=wcs, **kwargs)
        finally:
            self._local.catalog = None

    def _catalog_pixels(self):
        if isinstance(self.catalog, SkyCoord):
            xy = getattr(self._local, 'catalog', None)
            if xy is None:
                msg = ('catalog is a SkyCoord: call the photometry on an '
                       'image with a WCS (the light-curve pipeline takes '
                       'pixel positions only)')
                raise SatphotutilsError(msg)
            return xy
        if self.catalog is None:
            return np.empty((0, 2))
        return self.catalog

    def _margin(self, image, mask, level):
        if self.margin is not None:
            return self.margin
        fwhm = self.fwhm
        if fwhm is None:
            from satphotutils.frames import frame_fwhm

            fwhm = frame_fwhm(image, saturation=level, mask=mask)
            if not np.isfinite(fwhm):
                msg = ("the frame's PSF FWHM could not be measured (fewer "
                       'than 3 isolated, unsaturated stars well above the '
                       'noise): give fwhm= or margin= (pixels)')
                raise SatphotutilsError(msg)
        return self.margin_fwhm * float(fwhm)

    def _measure(self, image, mask, error, x, y, stamps, frame, missing):
        level = frame['saturation_level']
        if level is None:
            key = self.header_keys.saturation
            msg = ('BleedTrailPhotometry needs the saturation level: no '
                   f'{key} keyword (name another with header_keys / '
                   '--header-key saturation=KEYWORD), no saturation_level= '
                   'given, and the pixels show no plateau')
            raise SatphotutilsError(msg)
        margin = self._margin(image, mask, level)
        frame['margin'] = margin
        catalog = self._catalog_pixels()
        if self.read_axis == 1:
            image = image.T
            mask = None if mask is None else mask.T
            error = None if error is None else np.asarray(error).T
            x, y = y, x
            catalog = catalog[:, ::-1]
        gain = 1.0 if frame['gain'] is None else frame['gain']
        read_noise = 0.0 if frame['read_noise'] is None else \
            frame['read_noise']
        flux, ferr, bkg, flags = _trail_sums(
            image, mask, error, x, y, catalog,
            level=self.level_fraction * level,
            trail_level=self.trail_fraction * level, margin=margin,
            gap=self.background_gap, width=self.background_width,
            match_radius=self.match_radius, sky=frame['sky'], gain=gain,
            read_noise=read_noise)
        flux *= 10 ** (0.4 * self.aperture_correction)
        ferr *= 10 ** (0.4 * self.aperture_correction)
        with np.errstate(invalid='ignore', divide='ignore'):
            log_counts = np.where(flux > 0, np.log10(np.abs(flux)), np.nan)
            err = ferr / np.abs(flux) / np.log(10)
        flags[~np.isfinite(log_counts)] |= SATPHOT_FLAGS.NO_SIGNAL
        err = np.where(np.isfinite(log_counts), err, np.nan)
        unity = (stamps == 1.0).sum(axis=(1, 2))
        return {'log_counts': log_counts, 'log_counts_err': err,
                'flags': flags, 'local_bkg': bkg, 'n_unity': unity,
                'method': np.full(len(x), self.method)}

    def _table(self, x, y, sky_center, unit, result, flags, n_sat, frame):
        table = super()._table(x, y, sky_center, unit, result, flags, n_sat,
                               frame)
        table.meta['margin'] = frame.get('margin')
        return table


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
    of each. A region holding several stars is divided, each pixel to
    the nearest of them; a star in no region owns its own pixel.
    """
    owner = -labels.astype(np.int64)
    ny, nx = labels.shape
    members = {}
    for k in np.flatnonzero(region > 0):
        members.setdefault(int(region[k]), []).append(k)
    objects = ndimage.find_objects(labels, max_label=n_labels)
    for r, stars in members.items():
        sy, sx = objects[r - 1]
        mine = labels[sy, sx] == r
        if len(stars) == 1:
            owner[sy, sx][mine] = stars[0] + 1
            continue
        yy, xx = np.nonzero(mine)
        yy = yy + sy.start
        xx = xx + sx.start
        stars = np.array(stars)
        d2 = ((yy[:, None] - y[None, stars]) ** 2
              + (xx[:, None] - x[None, stars]) ** 2)
        owner[yy, xx] = stars[np.argmin(d2, axis=1)] + 1
    alone = np.flatnonzero((region == 0) & np.isfinite(x) & np.isfinite(y))
    ix = np.rint(x[alone]).astype(np.int64)
    iy = np.rint(y[alone]).astype(np.int64)
    inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    owner[iy[inside], ix[inside]] = alone[inside] + 1
    return owner, members


def _bridge(followed, bad):
    """
    Follow trails through masked pixels along the read direction.

    A run of bad pixels in a column joins the trail when the pixels just
    above and below it are followed (a bad column segment across a
    trail does not cut it in two).
    """
    if not bad.any():
        return followed
    ny = followed.shape[0]
    rows = np.arange(ny)[:, None]
    cols = np.arange(followed.shape[1])[None, :]
    above = np.maximum.accumulate(np.where(bad, -1, rows), axis=0)
    below = np.minimum.accumulate(np.where(bad, ny, rows)[::-1],
                                  axis=0)[::-1]
    ends = ((above >= 0) & (below < ny)
            & followed[np.clip(above, 0, ny - 1), cols]
            & followed[np.clip(below, 0, ny - 1), cols])
    return followed | (bad & ends)


def _circle_weights(shape, x, y, radius):
    """Exact overlap of a circle with the pixels of a box (photutils)."""
    from photutils.geometry import circular_overlap_grid

    ny, nx = shape
    return circular_overlap_grid(-0.5 - x, nx - 0.5 - x, -0.5 - y,
                                 ny - 0.5 - y, nx, ny, radius, 1, 1)


def _clipped_median(values):
    """Median after two rounds of 3-sigma (MAD) clipping."""
    for _ in range(2):
        med = np.median(values)
        sigma = 1.4826 * np.median(np.abs(values - med))
        if not sigma > 0:
            break
        values = values[np.abs(values - med) <= 3 * sigma]
    return float(np.median(values)), float(np.std(values)), values.size


def _trail_sums(image, mask, error, x, y, catalog, *, level, trail_level,
                margin, gap, width, match_radius, sky, gain, read_noise):
    """Flux, its error, the local background and the flags per target."""
    ny, nx = image.shape
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
    owner, members = _owners(labels, n_labels, all_x, all_y, region)
    objects = ndimage.find_objects(labels, max_label=n_labels)

    flux = np.full(n, np.nan)
    ferr = np.full(n, np.nan)
    bkg = np.full(n, np.nan)
    flags = np.zeros(n, dtype=np.int64)
    reach = int(np.ceil(margin))
    side = gap + width
    for k in range(n):
        if not (np.isfinite(x[k]) and np.isfinite(y[k])):
            continue
        ix, iy = round(x[k]), round(y[k])
        r = int(region[k])
        if r:
            sy, sx = objects[r - 1]
            y0, y1, x0, x1 = sy.start, sy.stop, sx.start, sx.stop
        else:
            y0, y1, x0, x1 = iy, iy + 1, ix, ix + 1
        # Seeds up to two margins away compete for the aperture's pixels.
        by0, by1 = max(y0 - 2 * reach - 1, 0), min(y1 + 2 * reach + 1, ny)
        bx0 = max(x0 - 2 * reach - side - 1, 0)
        bx1 = min(x1 + 2 * reach + side + 1, nx)
        if by0 >= by1 or bx0 >= bx1:
            continue
        box = (slice(by0, by1), slice(bx0, bx1))
        own_seed = owner[box] == k + 1
        other_seed = (owner[box] != 0) & ~own_seed
        if r:
            if not own_seed.any():
                continue
            d_own = ndimage.distance_transform_edt(~own_seed)
            weight = (d_own <= margin).astype(float)
        else:
            yy, xx = np.ogrid[by0:by1, bx0:bx1]
            d_own = np.hypot(yy - y[k], xx - x[k])
            weight = _circle_weights(d_own.shape, x[k] - bx0, y[k] - by0,
                                     margin)
        if other_seed.any():
            d_other = ndimage.distance_transform_edt(~other_seed)
            weight[d_other < d_own] = 0.0
            near_any = np.minimum(d_own, d_other) <= margin
        else:
            near_any = d_own <= margin
        if not weight.any():
            continue
        if r:
            if y0 == 0 or y1 == ny or x0 == 0 or x1 == nx:
                flags[k] |= SATPHOT_FLAGS.TRAIL_EDGE
            if len(members[r]) > 1:
                flags[k] |= SATPHOT_FLAGS.TRAIL_MERGED
        bad_box = bad[box]
        touched = weight > 0
        if r:
            touched = touched | ndimage.binary_dilation(own_seed)
        if (bad_box & touched).any():
            flags[k] |= SATPHOT_FLAGS.TRAIL_MASKED

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
        data = np.where(bad_box, b, image[box])
        area = weight.sum()
        total = float(np.sum(weight * data))
        flux[k] = total - b * area
        bkg[k] = b
        if error is not None:
            e = np.where(bad_box, 0.0, np.asarray(error)[box])
            var = float(np.sum((weight * e) ** 2))
        else:
            # Poisson of star and sky (counts as electrons through the
            # gain) and read noise.
            var = ((abs(flux[k]) + area * max(b, 0.0)) / gain
                   + area * (read_noise / gain) ** 2)
        # The background's own error, spread over the whole aperture.
        var += (area * b_std) ** 2 * np.pi / 2 / max(n_b, 1)
        ferr[k] = np.sqrt(var)
    return flux, ferr, bkg, flags
