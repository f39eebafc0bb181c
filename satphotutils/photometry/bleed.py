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

from satphotutils.stamps._trailsum import (
    _MIN_CORRECTION_STARS,
    FALLBACK_MARGIN,
    WINGS_MARGIN,
    _trail_sums,
    stamp_trail_sums,
    trail_reaches_end,
)
from satphotutils.utils._parameters import as_finite, as_positive
from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.flags import SATPHOT_FLAGS

from .core import _Photometry

__all__ = ['BleedTrailPhotometry', 'trail_reaches_end']


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
    background. Targets without a saturated region of their own are
    measured in a small exact circle (``radius``) with an annulus
    background, put on the same scale by the frame's aperture correction
    (see ``radius``): the best aperture for faint stars.

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
        A wider margin holds more of the wings (what it leaves out, the
        frame's measured ``aperture_correction`` puts back) but also
        more of the stars no list names, all along the trail: on
        simulated raw frames (stars to g = 16, targets to 14.5, the
        profile's FWHM given), saturated g 7.5-11.5 stars scattered by
        0.0098 / 0.0127 mag at 2 / 3 FWHM on a sparse field, 0.0164 /
        0.0211 in 3.5-px seeing, 0.0365 / 0.0370 on a crowded one, 0.0090
        / 0.0105 on the ``bleed_trails`` frames (1.5 and 2.5 FWHM: more
        than 2 there). The
        FWHM-relative defaults (this one, ``radius_fwhm``,
        ``total_radius_fwhm``) suit a FWHM of the profile itself; the
        one `~satphotutils.frames.frame_fwhm` measures when none is
        given (a Gaussian fit) is 30-40% wider on an undersampled frame,
        and widens every aperture alike (on the ``bleed_trails`` frames
        saturated stars then scatter by 0.012 instead of 0.009 mag,
        unsaturated ones by 0.021 instead of 0.014). Where the aperture
        correction cannot be measured (fewer than 5 bright isolated
        stars: ``meta['aperture_correction']`` says so, with
        ``aperture_correction='measured'``), the margin is 1.5 times
        this (3 FWHM by default), which loses less of the light nothing
        puts back; ``meta['margin']`` has the margin used. Stars
        measured by their wings beside another star's trail use a circle
        of 1.5 times this margin (at most the total radius). A
        ``margin`` in pixels is used as given.

    radius : float, optional
        Radius (pixels) of the exact circular aperture of the targets
        without a saturated region of their own (and of those on another
        star's trail); by default ``radius_fwhm`` times the FWHM (or,
        with ``margin`` given and no FWHM, the margin times
        ``radius_fwhm / margin_fwhm``). Their sums are put on the scale
        of the wide apertures by the frame's aperture correction: the
        median ratio of the sums within ``margin`` and within ``radius``
        of bright unsaturated targets with no other star within the
        margin, as a function of where each star falls in its pixel (on
        an undersampled frame a small aperture's share of the light
        changes by a few per cent across a pixel:
        `~satphotutils.stamps.PixelPhaseCorrection`, with its periodic
        terms from 20 such stars, the median ratio alone from 5). With
        fewer than 5, these targets are measured within ``margin``
        instead. ``meta['point_correction']`` has the correction (its
        median ``value``, ``phase_terms``) and the number of stars it
        was measured on (0 then).

    radius_fwhm : float, optional
        The radius in units of the FWHM.

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

    aperture_correction : 'measured' or float, optional
        The light outside the apertures. ``'measured'`` (default): on
        each frame, the median ratio of the sums within
        ``total_radius_fwhm`` FWHM and within the margin of the bright
        targets measured in small apertures that no other star comes
        near (at least 5 of them; otherwise none, and the meta says so),
        so that ``flux`` is a star's total light, as the network's is,
        whatever the PSF's wings. A number: magnitudes added (0 for the
        aperture sums themselves). ``meta['aperture_correction']`` has
        the value (magnitudes), its error, the radius and the stars.

    total_radius_fwhm : float, optional
        The radius (in FWHM) taken to hold a star's total light for the
        measured ``aperture_correction``; with ``margin`` given and no
        FWHM, the margin times ``total_radius_fwhm / margin_fwhm``.
        Wider holds more of the wings but also the fainter stars no list
        names, which a background median leaves in: on simulated frames
        of 3,000-5,000 targets, 6 FWHM put the stars 0.02-0.03 mag too
        bright, 4 FWHM within 0.012 mag of their true light (a Moffat
        profile of index 2.5 holds 1.2% beyond 4 FWHM).

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
    >>> (table['mag'] - truth['mag']).value.round(2).tolist()
    [0.0, 0.01]
    >>> table['n_saturated'].tolist()
    [18, 5]
    """

    method = 'bleed_trail'

    def __init__(self, *, margin=None, margin_fwhm=2.0, radius=None,
                 radius_fwhm=0.9, fwhm=None,
                 background_width=6, background_gap=2, match_radius=2.0,
                 catalog=None, read_axis=0, aperture_correction='measured',
                 total_radius_fwhm=4.0, level_fraction=0.9,
                 trail_fraction=0.25, **kwargs):
        super().__init__(**kwargs)
        self.margin = None if margin is None else as_positive(margin,
                                                              'margin')
        self.margin_fwhm = as_positive(margin_fwhm, 'margin_fwhm')
        self.radius = None if radius is None else as_positive(radius,
                                                              'radius')
        self.radius_fwhm = as_positive(radius_fwhm, 'radius_fwhm')
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
        if isinstance(aperture_correction, str):
            if aperture_correction != 'measured':
                msg = ("aperture_correction must be 'measured' or a number "
                       f'of magnitudes, got {aperture_correction!r}')
                raise ValueError(msg)
            self.aperture_correction = aperture_correction
        else:
            self.aperture_correction = as_finite(aperture_correction,
                                                 'aperture_correction')
        self.total_radius_fwhm = as_positive(total_radius_fwhm,
                                             'total_radius_fwhm')
        if not self.total_radius_fwhm > self.margin_fwhm:
            msg = ('total_radius_fwhm must be larger than margin_fwhm, got '
                   f'{total_radius_fwhm!r} and {margin_fwhm!r}')
            raise ValueError(msg)
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
            'radius': self.radius, 'radius_fwhm': self.radius_fwhm,
            'fwhm': self.fwhm, 'background_width': self.background_width,
            'background_gap': self.background_gap,
            'match_radius': self.match_radius, 'read_axis': self.read_axis,
            'aperture_correction': self.aperture_correction,
            'total_radius_fwhm': self.total_radius_fwhm,
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

    def measure_stamps(self, stamps, *, sky, saturation, fwhm, dx=0.0,
                       dy=0.0):
        """
        Measure the central target of each stamp as on a frame of its own.

        The trail sum of `__call__` (the same code), run on each stamp
        with no other star given: what the model training compares the
        network with on its validation stamps
        (``metadata['trail_validation']`` of a model trained on
        uncorrected frames). A trail that reaches the stamp's edge is
        cut there and flagged ``trail_edge``; the catalogue, the
        re-centring and the frame's aperture correction do not apply,
        so the margin is that of a frame without a correction (1.5
        times ``margin_fwhm``; a target without a saturated region is
        measured within it).

        Parameters
        ----------
        stamps : array-like, shape (N, ny, nx)
            Stamps in counts, sky included, the rows along the read
            direction, each target at its central pixel.

        sky, saturation, fwhm : array-like, shape (N,)
            Each stamp's frame's sky level, saturation level (counts,
            sky included) and PSF FWHM (pixels; used unless ``margin``
            and ``radius`` were given).

        dx, dy : array-like, shape (N,), optional
            Offsets of the targets from the central pixels' centres.

        Returns
        -------
        log_counts, flags : `~numpy.ndarray`
            The log10 counts (NaN without signal) and the flags of
            `__call__`.

        Examples
        --------
        >>> import numpy as np
        >>> from satphotutils.photometry import BleedTrailPhotometry
        >>> stamp = np.full((1, 41, 21), 100.0)
        >>> stamp[0, 14:27, 10] = 6e4  # a 13-px trail, 6e4 counts each
        >>> log_counts, flags = BleedTrailPhotometry().measure_stamps(
        ...     stamp, sky=[100.0], saturation=[6e4], fwhm=[2.0])
        >>> round(float(10 ** log_counts[0])), int(flags[0])
        (778700, 0)
        """
        stamps = np.asarray(stamps, dtype=float)
        if stamps.ndim != 3:
            msg = f'stamps must have shape (N, ny, nx), got {stamps.shape}'
            raise ValueError(msg)
        n = len(stamps)
        sky, saturation, fwhm, dx, dy = (
            np.broadcast_to(np.asarray(v, dtype=float), (n,))
            for v in (sky, saturation, fwhm, dx, dy))
        # A stamp holds no other star to measure the aperture
        # correction on: the margin of a frame without one.
        margin = np.full(n, self.margin) if self.margin is not None \
            else FALLBACK_MARGIN * self.margin_fwhm * fwhm
        radius = np.full(n, self.radius) if self.radius is not None \
            else self.radius_fwhm * fwhm
        log_counts, flags = stamp_trail_sums(
            stamps, sky=sky, saturation=saturation, margin=margin,
            radius=radius, level_fraction=self.level_fraction,
            trail_fraction=self.trail_fraction, gap=self.background_gap,
            width=self.background_width, match_radius=self.match_radius,
            dx=dx, dy=dy)
        if not isinstance(self.aperture_correction, str):
            # A stamp holds no other star to measure the correction on.
            log_counts = log_counts + 0.4 * self.aperture_correction
        return log_counts, flags

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
        """Return the margin, the point-aperture and total radii (px)."""
        fwhm = self.fwhm
        if self.margin is not None:
            radius = self.radius
            if radius is None:
                radius = (self.radius_fwhm * fwhm if fwhm is not None
                          else self.margin * self.radius_fwhm
                          / self.margin_fwhm)
            total = (self.total_radius_fwhm * fwhm if fwhm is not None
                     else self.margin * self.total_radius_fwhm
                     / self.margin_fwhm)
            return self.margin, radius, max(total, self.margin)
        if fwhm is None:
            from satphotutils.frames import frame_fwhm

            fwhm = frame_fwhm(image, saturation=level, mask=mask)
            if not np.isfinite(fwhm):
                msg = ("the frame's PSF FWHM could not be measured (fewer "
                       'than 3 isolated, unsaturated stars well above the '
                       'noise): give fwhm= or margin= (pixels)')
                raise SatphotutilsError(msg)
        radius = self.radius if self.radius is not None else \
            self.radius_fwhm * float(fwhm)
        return (self.margin_fwhm * float(fwhm), radius,
                self.total_radius_fwhm * float(fwhm))

    def _measure(self, image, mask, error, x, y, stamps, frame, missing):
        level = frame['saturation_level']
        if level is None:
            key = self.header_keys.saturation
            msg = ('BleedTrailPhotometry needs the saturation level: no '
                   f'{key} keyword (name another with header_keys / '
                   '--header-key saturation=KEYWORD), no saturation_level= '
                   'given, and the pixels show no plateau')
            raise SatphotutilsError(msg)
        margin, radius, total = self._margin(image, mask, level)
        frame['margin'] = margin
        frame['radius'] = radius
        measured = isinstance(self.aperture_correction, str)
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
        # The wings' circle is the same on a frame whose margin widens.
        wings_margin = WINGS_MARGIN * margin

        def trail_sums(margin):
            return _trail_sums(
                image, mask, error, x, y, catalog,
                level=self.level_fraction * level,
                trail_level=self.trail_fraction * level, margin=margin,
                radius=radius,
                gap=self.background_gap, width=self.background_width,
                match_radius=self.match_radius, sky=frame['sky'],
                gain=gain, read_noise=read_noise,
                total_radius=total if measured else None,
                wings_margin=wings_margin)

        flux, ferr, bkg, flags, correction, wings = trail_sums(margin)
        if (measured and self.margin is None
                and wings['n_stars'] < _MIN_CORRECTION_STARS
                and FALLBACK_MARGIN * margin < total):
            # Nothing on this frame puts back the wings a narrow margin
            # leaves out: the wider one loses less of them.
            margin = FALLBACK_MARGIN * margin
            frame['margin'] = margin
            flux, ferr, bkg, flags, correction, wings = trail_sums(margin)
        frame['point_correction'] = correction
        if measured:
            scale = wings['factor']
            frame['aperture_correction'] = {
                'value': 2.5 * np.log10(wings['value']),
                'error': 1.0857 * wings['error'] / wings['value'],
                'unit': 'mag', 'radius': wings['radius'],
                'n_stars': wings['n_stars'], 'source': (
                    'measured: the light beyond the margin out to the '
                    'radius, median over the bright isolated targets (a '
                    "trail's aperture, which reaches further, gets what "
                    'lies beyond its own reach on the same curve of '
                    'growth)' if wings['n_stars'] >= 5 else
                    'not measured: fewer than 5 bright isolated '
                    'unsaturated targets (none applied)')}
        else:
            scale = 10 ** (0.4 * self.aperture_correction)
            frame['aperture_correction'] = {
                'value': self.aperture_correction, 'error': 0.0,
                'unit': 'mag', 'radius': None, 'n_stars': 0,
                'source': 'argument'}
        flux *= scale
        ferr *= scale
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
        table.meta['radius'] = frame.get('radius')
        table.meta['point_correction'] = frame.get('point_correction')
        table.meta['aperture_correction'] = frame.get('aperture_correction')
        return table


