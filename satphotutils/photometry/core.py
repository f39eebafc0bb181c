# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Photometry of saturated stars on images, and classical baselines.

All three classes share one call pattern (photutils' ``PSFPhotometry``):
configure in ``__init__``, call on an image with target positions, get a
`~astropy.table.QTable` in photutils' ``AperturePhotometry.to_table()``
layout with satphotutils columns after ``flags``.
"""

import logging
import warnings

import numpy as np
from astropy import units as u
from astropy.coordinates import Angle, SkyCoord
from astropy.nddata import NDData, StdDevUncertainty
from astropy.table import QTable
from astropy.utils.exceptions import AstropyUserWarning

from satphotutils.frames import (
    FrameInfo,
    HeaderKeys,
    frame_background,
    frame_info,
)
from satphotutils.frames.info import _ZEROPOINT_RANGE
from satphotutils.frames.trails import runs_along
from satphotutils.stamps.apertures import aperture_sums, circle_mask
from satphotutils.stamps.cutout import cut_stamps
from satphotutils.utils._misc import get_meta
from satphotutils.utils._parameters import (
    as_finite,
    as_integer,
    as_positive,
    stamp_shape,
)
from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.flags import SATPHOT_FLAGS

__all__ = ['AperturePhotometryBaseline', 'PSFWingPhotometry',
           'SaturatedStarPhotometry']

log = logging.getLogger(__name__)

_CHUNK = 65536  # targets measured at a time
# Targets the hybrid leaves to the network whatever the aperture says.
_NOT_FOR_HYBRID = (SATPHOT_FLAGS.DAMAGED_CORE
                   | SATPHOT_FLAGS.OUTSIDE_TRAINING_RANGE)
_HYBRID_MARGIN = 0.3  # dex below the model's saturation boundary
# Fraction of the saturation level a pixel of the signal region may reach
# for the hybrid: below it the response is linear on every camera the
# simulation docs justify (non-linearity sets in near the full well).
_HYBRID_PEAK = 0.8
# Unsaturated targets that put the PSF-wing fits on the frame's scale.
_WING_CALIBRATION_STARS = 30
#: Radius (px) of PSFWingPhotometry's filled aperture sums.
FILLED_RADIUS = 5.0
# How SaturatedStarPhotometry measures the saturated targets of frames
# that kept their bleed trails.
_TRAILS = ('auto', 'network', 'bleed-trail')
_VALIDATED_RULE = (
    'saturated targets (a saturated pixel in the signal region) whose '
    "trail reaches the stamp's end: BleedTrailPhotometry on the frame; the "
    "others: BleedTrailPhotometry where, in the bin of the network's "
    'saturation coordinate, the trail sum repeated better from image to '
    "image of a star on the model's validation stamps, its median offset "
    "from the labels within the model's bias_tolerance (a version-1 "
    'record, or a bin without repeated stars: where its error, hypot of '
    "bias and scatter against the labels, was smaller; the model's "
    'trail_validation), else the network')
_X_ALIASES = ('x_init', 'xinit', 'x', 'x_0', 'x0', 'xcentroid',
              'x_centroid', 'x_center', 'xcen', 'x_cen', 'xpos', 'x_pos')
_Y_ALIASES = tuple(a.replace('x', 'y', 1) for a in _X_ALIASES)


class _Photometry:
    """Input handling and output layout shared by the photometry classes."""

    method = ''

    def __init__(self, *, stamp_size=21, header_keys=None,
                 saturation_level=None, recentre='auto', max_shift=2.0):
        if isinstance(stamp_size, str) or not isinstance(
                stamp_size, (tuple, list, np.ndarray)):
            as_integer(stamp_size, 'stamp_size')
        self.stamp_shape = stamp_shape(stamp_size, name='stamp_size',
                                       minimum=11)
        ny, nx = self.stamp_shape
        # As given: an int for a square, (ny, nx) for a tall stamp.
        self.stamp_size = nx if ny == nx else self.stamp_shape
        if header_keys is None:
            header_keys = HeaderKeys()
        elif not isinstance(header_keys, HeaderKeys):
            msg = ('header_keys must be a satphotutils.frames.HeaderKeys, '
                   f'got {type(header_keys).__name__}')
            raise TypeError(msg)
        self.header_keys = header_keys
        if saturation_level is not None:
            saturation_level = as_finite(saturation_level,
                                              'saturation_level')
            if saturation_level <= 0:
                msg = ('saturation_level must be positive, got '
                       f'{saturation_level}')
                raise ValueError(msg)
        self.saturation_level = saturation_level
        if not (isinstance(recentre, (bool, np.bool_))
                or (isinstance(recentre, str) and recentre == 'auto')):
            msg = f"recentre must be 'auto', True or False, got {recentre!r}"
            raise TypeError(msg)
        self.recentre = recentre if isinstance(recentre, str) else \
            bool(recentre)
        self.max_shift = as_positive(max_shift, 'max_shift')

    #: Radius (pixels) of the circle whose pixels count in ``n_saturated``,
    #: ``n_unity`` and the pixel flags; the network's own for the network.
    signal_radius = 5.0

    def _config(self):
        return {'stamp_size': self.stamp_size if np.ndim(self.stamp_size)
                == 0 else list(self.stamp_size),
                'header_keys': self.header_keys.to_dict(),
                'saturation_level': self.saturation_level,
                'recentre': self.recentre, 'max_shift': self.max_shift}

    def __call__(self, data, *, positions=None, skycoord=None,
                 init_params=None, mask=None, error=None, wcs=None,
                 zeropoint=None, frame_info=None):
        """
        Measure the targets on an image.

        Parameters
        ----------
        data : 2D array, `~astropy.units.Quantity` or `~astropy.nddata.NDData`
            The image in counts (ADU), sky included. An NDData (or
            `~astropy.nddata.CCDData`) brings its own ``mask``,
            ``uncertainty``, ``wcs``, ``unit`` and ``meta`` (the header,
            read through ``header_keys``).
            A ``numpy.ma.MaskedArray``'s mask is honoured as ``mask`` is
            (joined to it), as photutils does.

        positions : array-like, shape (N, 2), optional
            Pixel positions ``(x, y)`` of the targets.

        skycoord : `~astropy.coordinates.SkyCoord`, optional
            Sky positions of the targets (needs a WCS).

        init_params : `~astropy.table.Table`, optional
            A table with photutils' position columns (``x_init``,
            ``x``, ``xcentroid``, ... and the same for y) or a
            ``sky_center``/``skycoord`` column. Give exactly one of
            ``positions``, ``skycoord`` and ``init_params``.

        mask : 2D bool array, optional
            Bad pixels (`True`); not with an NDData.

        error : 2D array, optional
            1-sigma errors of ``data``; not with an NDData. Propagated
            into ``flux_err`` (for the network: added in quadrature to
            the model's own uncertainty).

        wcs : WCS, optional
            The image's WCS, unless ``data`` carries one.

        zeropoint : float, optional
            Zero point Z of the reference image; otherwise from the
            header. Without one, no magnitudes are given. It never
            changes the measured counts.

        frame_info : `~satphotutils.frames.FrameInfo`, optional
            The header values of ``data`` when already read (as
            `~satphotutils.frames.read_frame` returns them); read from
            ``data.meta`` otherwise.

        Returns
        -------
        table : `~astropy.table.QTable`
            ``id``, ``x_center``, ``y_center``, ``sky_center`` (with a
            WCS), ``local_bkg``, ``flux``, ``flux_err``, ``flags``,
            ``log_counts``, ``log_counts_err``, ``mag``, ``mag_err``
            (with a zero point), ``n_saturated``, ``n_unity``,
            ``method``, ``x_centroid``, ``y_centroid`` (where measured,
            when the frame was re-centred); ``meta`` holds the date,
            versions, the configuration, the frame's header values and
            the meaning of every flag bit. Decode ``flags`` with
            `~satphotutils.utils.flags.decode_flags`.

        Raises
        ------
        ValueError
            For NDData with an explicit ``mask`` or ``error``, for
            inconsistent positions, for shapes that do not match, or for
            a header value that cannot be used (the message names the
            keyword).
        astropy.units.UnitsError
            If ``data`` has a unit other than counts (``adu``, ``ct``).
        """
        image, unit, mask, error, wcs, meta = _unpack(data, mask, error,
                                                      wcs)
        if frame_info is None:
            frame_info = _frame_info(meta, self.header_keys)
        x, y, sky_center = _positions(positions, skycoord, init_params, wcs)
        frame = self._frame_values(image, mask, frame_info, zeropoint)
        return self._measure_positions(image, mask, error, x, y, sky_center,
                                       unit, frame)

    def _measure_placed(self, data, frame_info, x, y, sky_center):
        # For the light-curve pipeline, which has placed the targets with
        # the frame's WCS already: nothing is converted twice.
        image, unit, mask, error, _, _ = _unpack(data, None, None, None)
        frame = self._frame_values(image, mask, frame_info, None)
        return self._measure_positions(
            image, mask, error, np.asarray(x, float), np.asarray(y, float),
            sky_center, unit, frame)

    def _measure_positions(self, image, mask, error, x, y, sky_center, unit,
                           frame):
        # Positions a WCS cannot place (e.g. the far side of the sky of a
        # TAN projection) or given as NaN are measured nowhere.
        placed = np.isfinite(x) & np.isfinite(y)
        x0, y0 = x, y
        rejected = None
        if frame['recentred']:
            from .centroids import recentre

            x, y, _, _, rejected = recentre(image, x, y, sky=frame['sky'],
                                            mask=mask,
                                            max_shift=self.max_shift)
        # Targets in chunks: the stamps of one chunk at a time bound the
        # memory whatever the number of targets.
        parts = []
        for start in range(0, max(len(x), 1), _CHUNK):
            sl = slice(start, start + _CHUNK)
            far = -10.0 * max(self.stamp_shape)
            xs = np.where(placed[sl], x[sl], far)
            ys = np.where(placed[sl], y[sl], far)
            stamps, stamp_flags, n_sat, missing = self._stamps(
                image, mask, xs, ys, frame['saturation_level'])
            result = self._measure(image, mask, error, xs, ys, stamps,
                                   frame, missing)
            flags = result['flags'] | stamp_flags
            # photutils gives no value where there is no data.
            nothing = (flags & SATPHOT_FLAGS.NO_OVERLAP) != 0
            flags[nothing] &= SATPHOT_FLAGS.NO_OVERLAP
            for name in ('log_counts', 'log_counts_err', 'local_bkg'):
                result[name] = np.where(nothing, np.nan, result[name])
            if rejected is not None:
                flags[rejected[sl] & ~nothing] |= \
                    SATPHOT_FLAGS.RECENTRE_REJECTED
            result['flags'] = flags
            result['n_saturated'] = n_sat
            parts.append(result)
        result = {k: (np.ma.concatenate if np.ma.isMaskedArray(parts[0][k])
                      else np.concatenate)([p[k] for p in parts])
                  for k in parts[0]}
        table = self._table(x0, y0, sky_center, unit, result,
                            result['flags'], result['n_saturated'], frame)
        if frame['recentred']:
            # Named as photutils' ApertureStats names a measured centre.
            table['x_centroid'] = x
            table['y_centroid'] = y
        return table

    # -- steps --------------------------------------------------------------

    def _frame_values(self, image, mask, info, zeropoint):
        """Collect the frame's values for the measurement, one source each."""
        sky, sky_source = info.sky, 'header'
        if sky is None:
            sky, _ = frame_background(image, mask=mask)
            sky_source = 'measured (sigma-clipped median of the image)'
        zp, zp_source = info.zeropoint, 'header'
        if zeropoint is not None:
            zp, zp_source = as_finite(zeropoint, 'zeropoint'), 'argument'
            lo, hi = _ZEROPOINT_RANGE
            if not lo <= zp <= hi:
                # The header's range: -25 (a sign) or 1.0 (ZP = T) is a
                # mistake, not a calibration.
                msg = (f'zeropoint is {zeropoint!r}, outside the plausible '
                       f'range {lo:g}-{hi:g} (the magnitude of one count); '
                       'check its sign and unit')
                raise ValueError(msg)
        elif zp is None:
            zp_source = None
        level = self.saturation_level
        level_source = 'argument'
        if level is None and info.saturation_level is not None:
            level, level_source = info.saturation_level, 'header'
        elif level is None:
            from satphotutils.frames import saturation_level

            # Without a keyword, the frame's own plateau (pixels that all
            # stopped at one value), if it shows one.
            level = saturation_level(np.where(mask, np.nan, image)
                                     if mask is not None else image)
            level_source = None if level is None else 'plateau'
        recentred, recentre_source = self.recentre, 'argument'
        if self.recentre == 'auto':
            # A frame resampled onto its reference grid has the stars
            # where its WCS says; centroids there only add their noise.
            recentred = info.reference_grid is not True
            key = self.header_keys.reference_grid
            recentre_source = (
                f'auto: the {key} keyword says the frame is on its '
                'reference grid' if not recentred else
                f'auto: no {key} keyword saying the frame is on its '
                'reference grid' if key else
                'auto: the reference_grid header key is switched off')
        return {'sky': float(sky), 'sky_source': sky_source,
                'recentred': recentred, 'recentre_source': recentre_source,
                'gain': info.gain, 'read_noise': info.read_noise,
                'zeropoint': zp, 'zeropoint_source': zp_source,
                # Without a transparency keyword the zero point is the
                # frame's own (t = 1 by Eq. 1's definition).
                'transparency': info.transparency,
                'saturation_level': level,
                'saturation_level_source': level_source,
                'camera': info.camera_code, 'info': info}

    def _stamps(self, image, mask, x, y, level):
        """Cut stamps centred on the rounded positions (NaN off the image)."""
        shape = self.stamp_shape
        hy, hx = shape[0] // 2, shape[1] // 2
        ny, nx = image.shape
        ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
        stamps, inside = cut_stamps(image, ix, iy, shape, dtype=np.float32)
        stamps[~inside] = np.nan
        flags = np.zeros(len(x), dtype=np.int64)
        partial = ~inside.all(axis=(1, 2))
        none = ~inside.any(axis=(1, 2))
        flags[partial] |= SATPHOT_FLAGS.PARTIAL_OVERLAP
        flags[none] |= SATPHOT_FLAGS.NO_OVERLAP
        circle = self._signal_mask()[None]
        nonfinite = ~np.isfinite(stamps) & inside
        flags[(nonfinite & circle).any(axis=(1, 2))] |= \
            SATPHOT_FLAGS.NON_FINITE_DATA
        missing = ~inside
        if mask is not None:
            masked, _ = cut_stamps(mask, ix, iy, shape, dtype=bool)
            masked &= inside
            flags[(masked & circle).any(axis=(1, 2))] |= \
                SATPHOT_FLAGS.MASKED_PIXELS
            stamps[masked] = np.nan
            missing |= masked
        near = ((x < hx) | (y < hy) | (x > nx - 1 - hx)
                | (y > ny - 1 - hy))
        flags[near] |= SATPHOT_FLAGS.NEAR_EDGE
        if level is None:
            # Unknown, not zero: a masked value.
            n_sat = np.ma.masked_all(len(x), dtype=int)
        else:
            n_sat = np.count_nonzero((stamps >= level) & circle, axis=(1, 2))
        return stamps, flags, n_sat, missing

    def _signal_mask(self):
        """Return the stamp pixels of ``n_saturated`` and the pixel flags."""
        return circle_mask(self.stamp_shape, self.signal_radius)

    def _table(self, x, y, sky_center, unit, result, flags, n_sat, frame):
        table = QTable()
        table['id'] = np.arange(1, len(x) + 1)
        table['x_center'] = x
        table['y_center'] = y
        if sky_center is not None:
            table['sky_center'] = sky_center
        unit = u.dimensionless_unscaled if unit is None else unit
        log_counts = result['log_counts']
        err = result['log_counts_err']
        flux = 10 ** log_counts
        table['local_bkg'] = result['local_bkg'] * unit
        table['flux'] = flux * unit
        table['flux_err'] = flux * np.log(10) * err * unit
        table['flags'] = flags.astype(np.int64)
        table['log_counts'] = log_counts
        table['log_counts_err'] = err
        if frame['zeropoint'] is not None:
            from satphotutils.calibration.counts import counts_to_magnitude

            transparency = frame['transparency']
            mag, mag_err = counts_to_magnitude(
                log_counts, frame['zeropoint'],
                1.0 if transparency is None else transparency,
                log_counts_err=err)
            table['mag'] = mag * u.mag
            table['mag_err'] = mag_err * u.mag
        table['n_saturated'] = n_sat
        table['n_unity'] = result['n_unity']
        table['method'] = result['method']
        frame_meta = frame['info'].to_meta()
        frame_meta.update({k: v for k, v in frame.items()
                           if k.endswith('_source')
                           or k in ('sky', 'recentred', 'saturation_level')})
        table.meta.update(get_meta(photometry=type(self).__name__,
                                   config=self._config(), frame=frame_meta))
        return table


class SaturatedStarPhotometry(_Photometry):
    """
    Photometry of saturated (and unsaturated) stars with the network.

    Parameters
    ----------
    model : `~satphotutils.network.SaturatedStarModel` or path-like, optional
        The trained model or its directory; the bundled default if
        `None`.

    local_bkg_estimator : callable, optional
        A photutils ``LocalBackground``-like callable ``(data, x, y,
        mask=)`` whose value is reported as ``local_bkg``; the network
        uses its own annulus (part of its preprocessing), which is
        reported if `None`.

    header_keys : `~satphotutils.frames.HeaderKeys`, optional
        The header keywords of the zero point, transparency, sky, gain,
        read noise, saturation level, camera and filter (read from an
        NDData's ``meta``); the defaults if `None`. The gain and read
        noise enter only the hybrid's aperture uncertainties (counts are
        taken as electrons without them).

    saturation_level : float, optional
        Counts at and above which a pixel counts as saturated in
        ``n_saturated`` (and keeps a star out of the hybrid); the
        header's saturation keyword if `None`, else the frame's plateau
        (`~satphotutils.frames.saturation_level`). Without any,
        ``n_saturated`` is masked.

    recentre : {'auto', True, False}, optional
        Move the targets to their stars before measuring them
        (`~satphotutils.photometry.recentre`: the median shift of the
        targets' centroids, as a WCS error moves them all): a WCS off by
        a pixel or two costs the network most of a star's flux.
        ``x_center``/``y_center`` stay the given positions and
        ``x_centroid``/``y_centroid`` say where each star was measured.
        ``'auto'`` re-centres unless the frame's header declares that it
        is on its reference grid (the ``reference_grid`` header key,
        ``REFGRID = T``, which the simulator's survey frames carry),
        where the WCS is exact and the centroids would only add their
        noise; ``True`` and ``False`` force it. The table's
        ``meta['frame']`` says whether (``recentred``) and why
        (``recentre_source``).

    max_shift : float, optional
        Largest accepted shift (pixels): beyond it, or for a target whose
        own centroid lies further from its shifted position, the target
        is flagged ``recentre_rejected`` (measured at the given position
        if the frame's shift is the one beyond it).

    hybrid : bool, optional
        For unsaturated stars, use an exact 2-px aperture sum where it
        agrees with the network, put on the network's scale by an offset
        surface fitted across the image (flagged ``hybrid_classical``,
        ``method`` ``'ap2'``); see Notes. Needs at least 20 such stars on the
        image; otherwise the network's values are kept.

    hybrid_tolerance : float, optional
        Largest difference (mag) between the calibrated aperture and the
        network for the aperture value to be used.

    ensemble : bool, optional
        Average all ensemble members (their spread adds to the
        uncertainty); a per-image call is cheap, so this is the default.

    reflections : bool, optional
        Average the four reflections of each stamp.

    batch_size : int, optional
        Stamps per forward pass (bounds the memory).

    device : str, optional
        Torch device the model runs on (``'cpu'``, ``'cuda'``,
        ``'mps'``); the model is moved there. `None` leaves it where it
        is (the CPU for a model read from a file).

    fwhm : float, optional
        The PSF FWHM (pixels) of every frame, for a camera-agnostic
        model (feature version 3), which reads it. By default it is
        measured on each frame (`~satphotutils.frames.frame_fwhm`, the
        same measurement its training stamps were labelled with); a
        frame on which it cannot be measured (fewer than 3 isolated
        unsaturated stars) is an error naming this argument.

    trails : {'auto', 'network', 'bleed-trail'}, optional
        How the saturated targets of an uncorrected frame (one whose
        pipeline left the bleed trails in place) are measured; see
        Notes. ``'auto'``: by `~satphotutils.photometry.BleedTrailPhotometry`
        if the model was trained on corrected frames
        (`~satphotutils.network.SaturatedStarModel.training_frames`);
        if it was trained on uncorrected ones, per target by whichever
        did better on the model's validation stamps at the target's
        saturation coordinate (the validated hybrid, see Notes);
        ``'network'`` and ``'bleed-trail'`` force one (the network on
        frames unlike its training frames with a warning).

    Notes
    -----
    Corrected and uncorrected frames: a model trained on frames whose
    pipeline replaced the bleed trails (ASAS-SN's; the bundled model) has
    never seen a trail, and on a frame that kept them it would miss the
    charge that ran along the columns. Each frame is classified by its
    header's ``corrected`` keyword (``SATCORR``; ``--header-key
    corrected=KEYWORD``), else by its pixels
    (`~satphotutils.frames.bleed_trails`: the saturated regions are
    elongated along the read direction when the trails stayed). On an
    uncorrected frame, with such a model, the targets with a saturated
    pixel within the signal radius are measured by
    `~satphotutils.photometry.BleedTrailPhotometry` (``method``
    ``'bleed_trail'``, its flags, ``ood_score`` NaN), the others by the
    network. A camera whose ADC clips before the full well (a 12-bit
    CMOS; ``meta['frame_kind']['saturated_pixels']`` ``'clipped'``: round,
    flat saturated cores, `~satphotutils.frames.bleed_trails`) loses the
    charge above the plateau instead of spreading it along the column,
    so there the targets whose saturated pixels do not run along the
    columns (`~satphotutils.frames.runs_along`), and those whose
    peak is within 20% of the level, are fitted by their unsaturated
    wings with the frame's empirical PSF
    (`~satphotutils.photometry.PSFWingPhotometry`) and measured as the
    sum within 5 px with the clipped pixels filled from that fit
    (``method`` ``'psf_filled'``: the fit's errors weigh only as much as
    the light it supplies), put on the table's scale by the same sums on
    its brightest unsaturated targets (``psf_wings_offset``,
    ``n_psf_wings`` and ``psf_stars`` in the meta); the ones that bled
    still go to the trail sum. With a model trained on
    uncorrected frames, ``'auto'`` is
    the validated hybrid (``saturated_targets`` ``'validated'``): a
    target whose trail runs past the model's stamp
    (`~satphotutils.photometry.trail_reaches_end`) cannot be measured by
    the network and goes to `~satphotutils.photometry.BleedTrailPhotometry`;
    any other target with a saturated pixel goes to it where, in the bin
    of the network's saturation coordinate, the trail sum repeated better
    from image to image of a star on the model's validation stamps and
    its median offset from the labels stayed within the record's
    ``bias_tolerance``
    (`~satphotutils.network.SaturatedStarModel.prefers_trail_sum`); the
    rest to the network. Repeatability, not the error against the labels:
    a stamp has no catalogue to split a neighbour off the trail and no
    aperture correction, which the frame's trail sum has; on frames of a
    raw camera the rule took single exposures at g 7.5-11.5 from 0.0178
    to 0.0160 mag (0.021 to 0.009 at g 8-9.5). ``meta['frame_kind']``
    says what the frame is, how that was found, what the model was
    trained on and how many targets each path measured (and for the
    validated hybrid the rule, the validation figures and how many
    targets each reason sent to the trail sum). A frame the pixels
    cannot classify (no saturated region of 6 pixels) is measured by the
    network.

    A camera-agnostic model (feature version 3) also reads each frame's
    saturation level: ``saturation_level``, else the header's saturation
    keyword, else the frame's plateau
    (`~satphotutils.frames.saturation_level`); with none of them the
    frame is refused with an error that says so. The table's meta records
    both and where they came from (``frame_fwhm``,
    ``frame_saturation``).

    The hybrid: an isolated unsaturated star is measured with less noise
    by a small aperture than by the network, while a star with a
    neighbour in the aperture is measured better by the network, which
    learned to discount neighbours. Where the aperture, calibrated
    against the network on the same image (a quadratic surface in x and
    y through the differences of the stars that agree: the aperture
    correction, which changes with the seeing and across the field),
    agrees with the network within ``hybrid_tolerance``, no neighbour is
    likely to be in it and its value is used. On simulated
    frames this was better than both the network and the aperture alone
    on sparse and intermediate fields, and equal to the network on a
    crowded one (``photometry_frames`` benchmark).

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.photometry import SaturatedStarPhotometry
    >>> from satphotutils.simulation import (Camera, Detector,
    ...                                      FrameSimulator, Scene)
    >>> from astropy.coordinates import Angle, SkyCoord
    >>> from astropy import units as u
    >>> centre = SkyCoord(150, -40, unit='deg')
    >>> scene = Scene(centre.directional_offset_by([0, 90] * u.deg,
    ...               [1, 3] * u.arcmin), [7.0, 10.0], [1.0, 1.0])
    >>> camera = Camera(detector=Detector(shape=(200, 200)))
    >>> frame, truth = FrameSimulator(camera=camera, pointing=centre)(
    ...     scene, mjd=59000.0, seed=2)
    >>> # Two stars are too few to measure the frame's FWHM on: give it.
    >>> phot = SaturatedStarPhotometry(fwhm=2.0)
    >>> table = phot(frame, skycoord=scene.coord)
    >>> table['mag'].round(1).value.tolist()
    [7.0, 10.0]
    """

    method = 'network'

    def __init__(self, model=None, *, local_bkg_estimator=None,
                 header_keys=None, saturation_level=None, recentre='auto',
                 max_shift=2.0, hybrid=True, hybrid_tolerance=0.03,
                 ensemble=True, reflections=False, batch_size=65536,
                 device=None, fwhm=None, trails='auto'):
        from satphotutils.network import SaturatedStarModel

        if model is None:
            model = SaturatedStarModel.default()
        elif not isinstance(model, SaturatedStarModel):
            model = SaturatedStarModel.read(model)
        # The stamp shape and the signal region are the model's: a model
        # trained on other stamps is another model.
        super().__init__(stamp_size=model.features.stamp_shape,
                         header_keys=header_keys,
                         saturation_level=saturation_level,
                         recentre=recentre, max_shift=max_shift)
        hybrid_tolerance = as_finite(hybrid_tolerance,
                                          'hybrid_tolerance')
        if not hybrid_tolerance > 0:
            msg = ('hybrid_tolerance must be a positive number of '
                   f'magnitudes, got {hybrid_tolerance}')
            raise ValueError(msg)
        self.hybrid_tolerance = hybrid_tolerance
        if device is not None:
            model.to(device)
        self.model = model
        self.fwhm = None if fwhm is None else as_positive(fwhm, 'fwhm')
        features = model.features
        self.radius = features.radius
        self.signal_radius = features.radius
        self.local_bkg_estimator = local_bkg_estimator
        self.hybrid = hybrid
        self.ensemble = ensemble
        self.reflections = reflections
        self.batch_size = as_integer(batch_size, 'batch_size', minimum=1)
        self.device = device
        if trails not in _TRAILS:
            msg = f'trails must be one of {_TRAILS}, got {trails!r}'
            raise ValueError(msg)
        self.trails = trails

    def __repr__(self):
        return f'<SaturatedStarPhotometry {self.model!r}>'

    def _signal_mask(self):
        # The pixels the network reads: its circle, or on a tall stamp
        # the stadium along the trail.
        return self.model.features.signal_mask

    def _table(self, x, y, sky_center, unit, result, flags, n_sat, frame):
        from .check import frame_check

        table = super()._table(x, y, sky_center, unit, result, flags,
                               n_sat, frame)
        table['ood_score'] = result['ood_score']
        guard = self.model.guard
        table.meta['ood_guard'] = (
            'unavailable: the model has no out-of-distribution guard, '
            'ood_score is NaN and out_of_distribution is never set'
            if guard is None else
            f'available: ood_score > 1 is out_of_distribution (set on '
            f'{guard.false_positive_rate:.0%} of validation stamps)')
        if 'frame_kind' in frame:
            kind = dict(frame['frame_kind'])
            kind['n_bleed_trail'] = int(np.sum(result['method']
                                               == 'bleed_trail'))
            kind['n_psf_wings'] = int(np.sum(result['method']
                                             == 'psf_filled'))
            if kind['n_psf_wings']:
                kind['psf_stars'] = frame['wings_frame']['psf_stars']
                shift, shift_err, n = frame['wing_offsets'][-1]
                kind['psf_wings_offset'] = {
                    'value': shift, 'error': shift_err, 'n_stars': n,
                    'unit': 'dex', 'note': (
                        'median (wing fit - this table) over the brightest '
                        'unsaturated targets, taken off the wing fits'
                        if n >= 5 else 'fewer than 5 unsaturated targets: '
                        'not applied')}
            bleed = frame.get('bleed_frame', {})
            for key in ('margin', 'radius', 'point_correction',
                        'aperture_correction'):
                if key in bleed:
                    kind[f'bleed_trail_{key}'] = bleed[key]
            kind.update(frame.get('trail_counts', {}))
            table.meta['frame_kind'] = kind
        for key in ('frame_fwhm', 'frame_saturation'):
            if key in frame:
                table.meta[key] = {'value': frame[key],
                                   'source': frame[f'{key}_source']}
        check = frame.get('frame_check')
        if check is None:
            check = frame_check(x, y, result['check_residual'])
        check = dict(check, wings=frame.get('check_wings'))
        table.meta['frame_check'] = check
        if check['status'] == 'mismatch':
            log.warning('%s', check['message'])
        else:
            log.info('%s', check['message'])
        return table

    def _config(self):
        config = super()._config()
        config.update({'radius': self.radius, 'hybrid': self.hybrid,
                       'trails': self.trails,
                       'hybrid_tolerance': self.hybrid_tolerance,
                       'ensemble': self.ensemble,
                       'reflections': self.reflections,
                       'batch_size': self.batch_size,
                       'model': {k: self.model.metadata.get(k) for k in
                                 ('created', 'format_version')}})
        config['model']['training_command'] = self.model.metadata.get(
            'training', {}).get('command')
        return config

    def _measure(self, image, mask, error, x, y, stamps, frame, missing):
        n = len(x)
        dx = x - np.rint(x)
        dy = y - np.rint(y)
        camera = None if frame['camera'] is None else \
            np.full(n, frame['camera'])
        descriptors = {}
        if 'saturation' in self.model.features.needs:
            level, fwhm = self._descriptors(image, mask, frame)
            descriptors = {'saturation': np.full(n, level),
                           'fwhm': np.full(n, fwhm)}
        x_feat = self.model.features(
            stamps, sky=np.full(n, frame['sky']), dx=dx, dy=dy,
            camera=camera, mask=missing, **descriptors)
        frame['x_feat'] = x_feat
        pred = self.model.predict_prepared(
            x_feat, ensemble=self.ensemble, reflections=self.reflections,
            hybrid=False, batch_size=self.batch_size)
        flags = pred.flags
        log_counts = pred.log_counts
        err = pred.log_counts_err
        method = pred.method
        from .check import frame_check

        # The targets safely unsaturated: judged once, for the check and
        # the hybrid alike.
        unsat = self._unsaturated(stamps, pred, flags, frame)
        check = self._check_inputs(stamps, x, y, dx, dy, pred, unsat, frame)
        verdict = frame_check(x, y, check['check_residual'])
        if verdict['status'] == 'mismatch':
            # Before warning: the light the classical aperture and
            # annulus miss, from the frame's own wings (a broad, low-beta
            # PSF misses 5-10%), fitted only here, where it can matter.
            check = self._check_inputs(stamps, x, y, dx, dy, pred, unsat,
                                       frame, wings=True)
            verdict = frame_check(x, y, check['check_residual'])
        frame['frame_check'] = verdict
        if self.hybrid:
            log_counts, err = self._hybrid(
                stamps, x, y, dx, dy, pred, flags, method, frame, unsat,
                pred.log_counts - check['check_residual'])
        if error is not None:
            err = np.hypot(err, self._pixel_error(error, x, y, log_counts))
        no_signal = ~(x_feat.aperture_sum > 0)
        flags[no_signal] |= SATPHOT_FLAGS.NO_SIGNAL
        log_counts = np.where(no_signal, np.nan, log_counts)
        err = np.where(no_signal, np.nan, err)
        local_bkg = pred.local_bkg
        ood_score = pred.ood_score
        trail = self._trail_targets(image, mask, stamps, frame, pred)
        if trail.any():
            # All the targets, as BleedTrailPhotometry alone would measure
            # them: they split each other's apertures, and the unsaturated
            # ones set its aperture correction.
            bleed = self._bleed_trail(frame)._measure(
                image, mask, error, x, y, stamps, frame['bleed_frame'],
                missing)
            log_counts[trail] = bleed['log_counts'][trail]
            err[trail] = bleed['log_counts_err'][trail]
            flags[trail] = bleed['flags'][trail]
            local_bkg = local_bkg.copy()
            local_bkg[trail] = bleed['local_bkg'][trail]
            method = method.astype('<U11')
            method[trail] = bleed['method'][trail]
            ood_score = np.where(trail, np.nan, ood_score)
        wings = frame.pop('wing_targets')
        if wings.any():
            # The wing fits are put on the frame's scale through the
            # brightest unsaturated targets, fitted the same way: a
            # frame's empirical PSF is normalised to within a percent,
            # and that percent would otherwise differ from frame to frame.
            calib = unsat & ~wings & np.isfinite(log_counts)
            calib[calib] = np.argsort(np.argsort(-log_counts[calib])) \
                < _WING_CALIBRATION_STARS
            both = wings | calib
            fitted = self._psf_wings(frame)._measure(
                image, mask, error, x[both], y[both], stamps[both],
                frame['wings_frame'], missing[both])
            on = wings[both]
            # The PSF's own error, measured: its fits of the unsaturated
            # targets against the table's values.
            residual = fitted['log_counts'][~on] - log_counts[calib]
            residual = residual[np.isfinite(residual)]
            psf_scatter = 1.4826 * float(np.median(np.abs(
                residual - np.median(residual)))) if len(residual) >= 5 \
                else float('nan')
            fitted = self._filled(fitted, frame, psf_scatter)
            offset = fitted['log_counts'][~on] - log_counts[calib]
            offset = offset[np.isfinite(offset)]
            shift, shift_err = (float(np.median(offset)), 1.2533 * float(
                np.std(offset)) / np.sqrt(len(offset))) \
                if len(offset) >= 5 else (0.0, float('nan'))
            frame.setdefault('wing_offsets', []).append(
                (shift, shift_err, len(offset)))
            fitted = {k: v[on] for k, v in fitted.items()}
            log_counts[wings] = fitted['log_counts'] - shift
            err[wings] = fitted['log_counts_err'] if len(offset) < 5 else \
                np.hypot(fitted['log_counts_err'], shift_err)
            flags[wings] = fitted['flags']
            local_bkg = local_bkg.copy()
            local_bkg[wings] = fitted['local_bkg']
            method = method.astype('<U11')
            method[wings] = fitted['method']
            ood_score = np.where(wings, np.nan, ood_score)
        if self.local_bkg_estimator is not None:
            local_bkg = np.asarray(self.local_bkg_estimator(
                image, x, y, mask=mask), dtype=float)
        return {'log_counts': log_counts, 'log_counts_err': err,
                'flags': flags,
                'local_bkg': local_bkg, 'n_unity': pred.n_unity,
                'method': method, 'ood_score': ood_score, **check}

    def _frame_kind(self, image, mask, frame):
        """Classify the frame (corrected or not) and choose the paths."""
        if 'frame_kind' in frame:
            return frame['frame_kind']
        from satphotutils.frames import bleed_trails

        info, key = frame['info'], self.header_keys.corrected
        corrected = info.corrected
        source = f'header ({key})'
        level = frame.get('frame_saturation', frame['saturation_level'])
        # The pixels are read even when the header says: they tell a
        # camera that clips before its full well (round plateaus, no
        # trail) from one whose charge ran along the columns.
        trails, found = (None, {'kind': None}) if level is None else \
            bleed_trails(image, level, mask=mask)
        if corrected is None:
            corrected = None if trails is None else not trails
            source = ('measured: no saturation level' if level is None
                      else f'measured (bleed_trails: {found["n_regions"]} '
                      f'saturated regions, median elongation '
                      f'{found["elongation"]:.2f}, flat tops '
                      f'{found["flat_tops"]:.2f})')
        model_frames = self.model.training_frames
        route = 'network'
        if corrected is False and (
                self.trails == 'bleed-trail'
                or (self.trails == 'auto' and model_frames == 'corrected')):
            route = 'bleed-trail'
        elif corrected is False and self.trails == 'auto':
            # A model that has seen trails: per target, as its
            # validation stamps say.
            route = 'validated'
        bleed = route != 'network'
        kind = {'corrected': corrected, 'source': source,
                'model_frames': model_frames, 'saturated_targets': route,
                'saturated_pixels': found['kind']}
        if found['kind'] == 'clipped':
            # The plateaus the frame shows: a nominal keyword (the ADC's
            # 4095 on a bias-subtracted frame at 3995) would leave every
            # clipped pixel unmasked.
            from satphotutils.frames import saturation_level

            plateau = saturation_level(np.where(mask, np.nan, image)
                                       if mask is not None else image)
            kind['clip_level'] = float(level if plateau is None
                                       else min(level, plateau))
        if route == 'validated':
            record = self.model.metadata.get('trail_validation')
            kind['rule'] = _VALIDATED_RULE + (
                '' if record else ' (the model has no trail_validation '
                'record: every other target by the network)')
            kind['trail_validation'] = None if record is None else \
                record['bins']
        unlike = (corrected is False and model_frames == 'corrected') or \
            (corrected is True and model_frames == 'uncorrected')
        if unlike and not bleed:
            what = 'uncorrected' if corrected is False else 'corrected'
            log.warning(
                'the network measures the saturated stars of an %s frame '
                '(%s) and was trained on %s frames: it has not seen what '
                'saturation looks like here%s', what, source, model_frames,
                " (trails='network' was asked for)" if corrected is False
                else '')
            kind['warning'] = 'model trained on the other kind of frame'
        frame['frame_kind'] = kind
        return kind

    def _trail_targets(self, image, mask, stamps, frame, pred):
        """Return which targets BleedTrailPhotometry measures."""
        from .bleed import trail_reaches_end

        kind = self._frame_kind(image, mask, frame)
        level = frame.get('frame_saturation', frame['saturation_level'])
        frame['wing_targets'] = np.zeros(len(stamps), dtype=bool)
        if kind['saturated_targets'] == 'network' or level is None:
            return frame['wing_targets']
        if kind['saturated_targets'] == 'bleed-trail' and \
                kind['saturated_pixels'] == 'clipped':
            return self._clipped_targets(image, mask, stamps, frame, kind)
        # A saturated pixel of the target's own: its charge ran along the
        # column, which only the trail sum recovers.
        own = ((stamps >= level) & self._signal_mask()).any(axis=(1, 2))
        if kind['saturated_targets'] == 'bleed-trail':
            return own
        # Past the stamp's ends the network sees only part of the trail.
        beyond = own & trail_reaches_end(stamps, np.full(len(stamps),
                                                         level),
                                         columns=self.radius)
        better = own & ~beyond & self.model.prefers_trail_sum(
            frame['x_feat'], pred.log_counts)
        counts = frame.setdefault('trail_counts', {
            'n_trail_leaves_stamp': 0, 'n_trail_by_validation': 0})
        counts['n_trail_leaves_stamp'] += int(beyond.sum())
        counts['n_trail_by_validation'] += int(better.sum())
        return beyond | better

    def _bleed_trail(self, frame):
        """Return the trail photometry of this frame."""
        from .bleed import BleedTrailPhotometry

        if 'bleed_frame' not in frame:
            frame['bleed_frame'] = dict(frame, saturation_level=frame.get(
                'frame_saturation', frame['saturation_level']))
        return BleedTrailPhotometry(header_keys=self.header_keys,
                                    fwhm=frame.get('frame_fwhm', self.fwhm),
                                    recentre=False)

    def _clipped_targets(self, image, mask, stamps, frame, kind):
        """
        Return the trail targets of a clipping camera's frame.

        An ADC that clips before the full well: a round plateau held more
        charge than it reads and none ran along the column, so the trail
        sum misses it; its wings are intact. A star bright enough to
        reach the full well still bleeds, and goes to the trail sum. The
        stars just below the level go to the wings too (those the hybrid
        leaves to the network): one star, one method, whether the seeing
        clipped a pixel of it or not. Sets ``frame['wing_targets']``.
        """
        level = kind['clip_level']
        saturated = stamps >= level
        own = (saturated & self._signal_mask()).any(axis=(1, 2))
        trail = runs_along(saturated.any(axis=2).sum(axis=1),
                           saturated.any(axis=1).sum(axis=1),
                           height=stamps.shape[1])
        wings = (own | (self._signal_peaks(stamps) >= _HYBRID_PEAK * level)) \
            & ~trail
        if wings.any() and self._wing_psf(image, mask, frame) is None:
            # Too few stars for the frame's PSF: the trail sum, as for
            # any uncorrected frame, and the meta says why.
            kind['psf_wings'] = (
                f"no empirical PSF ({frame['wings_frame']['psf_stars']} "
                'isolated unsaturated stars, fewer than 5): the trail sum')
            return own
        frame['wing_targets'] = wings
        return own & ~wings

    def _signal_peaks(self, stamps):
        """Return each stamp's brightest pixel within the signal circle."""
        return np.where(self._signal_mask()[None], stamps,
                        -np.inf).max(axis=(1, 2))

    def _wing_psf(self, image, mask, frame):
        """Return the frame's empirical PSF, `None` if it has none."""
        from satphotutils.frames import frame_background

        self._psf_wings(frame)
        wings_frame = frame['wings_frame']
        if 'background' not in wings_frame:
            wings_frame['background'] = frame_background(image, mask=mask)
        if 'psf_image' not in wings_frame:
            PSFWingPhotometry._empirical_psf(
                image, mask, wings_frame['saturation_level'], wings_frame,
                required=False, background=wings_frame['background'])
        return wings_frame['psf_image']

    @staticmethod
    def _filled(fitted, frame, psf_scatter):
        """
        Make the wing fit's filled aperture sums the measurement.

        Their error: the photon noise of the pixels that read what they
        hold and the frame's pixel noise (its background scatter, which
        holds the read noise whatever the units), and, in proportion to
        the light the fit supplies, the fit's error and the PSF's own
        (``psf_scatter``, dex: its fits of unsaturated stars against the
        table; NaN, and then the fit's error twice, with too few).
        """
        total, model = fitted['filled_sum'], fitted['filled_model']
        gain, _ = _noise_model(frame)
        pixel_noise = frame['wings_frame']['background'][1]
        area = np.pi * FILLED_RADIUS ** 2
        with np.errstate(invalid='ignore', divide='ignore'):
            measured = np.clip(total - model, 0.0, None)
            noise = np.sqrt(measured / gain + area * pixel_noise ** 2) \
                / total / np.log(10)
            share = model / total
            psf = psf_scatter if np.isfinite(psf_scatter) else \
                fitted['log_counts_err']
            fitted = dict(fitted, log_counts=np.where(
                total > 0, np.log10(total), np.nan))
            fitted['log_counts_err'] = np.sqrt(
                noise ** 2 + (fitted['log_counts_err'] * share) ** 2
                + (psf * share) ** 2)
        fitted['method'] = np.full(len(total), 'psf_filled')
        return fitted

    def _psf_wings(self, frame):
        """Return the PSF-wing photometry of this frame."""
        if 'wings_frame' not in frame:
            frame['wings_frame'] = dict(
                frame, saturation_level=frame['frame_kind']['clip_level'])
        return PSFWingPhotometry(header_keys=self.header_keys,
                                 annulus=None)

    def _descriptors(self, image, mask, frame):
        """Return the frame's saturation level and FWHM (feature v3)."""
        from satphotutils.frames import frame_fwhm, saturation_level

        if 'frame_fwhm' in frame:
            return frame['frame_saturation'], frame['frame_fwhm']
        level, source = frame['saturation_level'], \
            frame['saturation_level_source']
        if level is None:
            level = saturation_level(np.where(mask, np.nan, image)
                                     if mask is not None else image)
            source = 'plateau'
        if level is None:
            key = self.header_keys.saturation
            msg = ('the model reads the saturation level of the frame, and '
                   f'this one has none: no {key} keyword (name another with '
                   'header_keys / --header-key saturation=KEYWORD), no '
                   'saturation_level= given, and its pixels show no '
                   'plateau')
            raise SatphotutilsError(msg)
        fwhm, fwhm_source = self.fwhm, 'argument'
        if fwhm is None:
            fwhm = frame_fwhm(image, saturation=level, mask=mask)
            fwhm_source = 'measured (frame_fwhm)'
        if not np.isfinite(fwhm):
            msg = ("the model reads the frame's PSF FWHM, and it could not "
                   'be measured on this frame (fewer than 3 isolated, '
                   'unsaturated stars well above the noise): give fwhm= '
                   '(pixels)')
            raise SatphotutilsError(msg)
        frame.update({'frame_saturation': float(level),
                      'frame_saturation_source': source,
                      'frame_fwhm': float(fwhm),
                      'frame_fwhm_source': fwhm_source})
        return float(level), float(fwhm)

    def _unsaturated(self, stamps, pred, flags, frame):
        """Targets safely below saturation, with undamaged stamps."""
        log_counts = pred.log_counts
        unsat = np.isfinite(log_counts) & ((flags & _NOT_FOR_HYBRID) == 0)
        level = frame.get('frame_saturation', frame['saturation_level'])
        if level is not None:
            peak = self._signal_peaks(stamps)
            unsat &= peak < _HYBRID_PEAK * level
            expected = _expected_peaks(peak, pred.local_bkg, log_counts,
                                       unsat, level)
            if expected is not None:
                # A survey correction replaces saturated cores, so the
                # pixels alone would pass a corrected bright star: its
                # counts say how high its peak would be. On a camera that
                # saturates low (a 12-bit ADC) most well-measured stars
                # lie within any fixed margin of the model's boundary,
                # and only this keeps them for the aperture.
                return unsat & (expected < _HYBRID_PEAK * level)
        # The model's saturation boundary, where most stars saturate; in
        # good seeing a star up to twice fainter still has a saturated
        # peak, which an aperture would miss by a little.
        return unsat & ~self.model.is_saturated(
            frame['x_feat'], log_counts, margin=_HYBRID_MARGIN)

    def _check_inputs(self, stamps, x, y, dx, dy, pred, unsat, frame, *,
                      wings=False):
        """Per-target inputs of the frame-level check (see `frame_check`)."""
        from .check import check_inputs

        extra = {'annulus': self.model.features.annulus, 'x': x, 'y': y} \
            if wings else {}
        check = check_inputs(stamps, pred.log_counts, pred.local_bkg, unsat,
                             dx, dy, radius=self.radius,
                             outer_radius=self.model.features.annulus[0],
                             **extra)
        # A frame's value, not a target's: kept with the frame.
        frame['check_wings'] = check.pop('check_wings')
        return check

    def _pixel_error(self, error, x, y, log_counts):
        """Propagate the pixel errors of the signal circle, in dex."""
        errs, inside = cut_stamps(np.asarray(error, dtype=float),
                                  np.rint(x).astype(int),
                                  np.rint(y).astype(int), self.stamp_shape,
                                  dtype=float)
        circle = self._signal_mask()[None]
        var = np.where(inside & circle, errs, 0.0) ** 2
        with np.errstate(invalid='ignore', divide='ignore', over='ignore'):
            return np.sqrt(var.sum(axis=(1, 2))) / 10 ** log_counts \
                / np.log(10)

    def _hybrid(self, stamps, x, y, dx, dy, pred, flags, method, frame,
                unsat, reference):
        from .hybrid import frame_hybrid

        log_counts = pred.log_counts
        sums = np.full(len(log_counts), np.nan)
        area = np.full(len(log_counts), np.nan)
        if unsat.any():
            sums[unsat], area[unsat], _ = aperture_sums(
                stamps[unsat], 2.0, dx=dx[unsat], dy=dy[unsat])
        gain, read_noise = _noise_model(frame)
        use, log_counts, err, _ = frame_hybrid(
            log_counts, pred.log_counts_err, sums, area,
            pred.local_bkg, unsat, x, y, tolerance=self.hybrid_tolerance,
            gain=gain, read_noise=read_noise,
            out_of_distribution=(flags
                                 & SATPHOT_FLAGS.OUT_OF_DISTRIBUTION) != 0,
            reference=reference)
        flags[use] |= SATPHOT_FLAGS.HYBRID_CLASSICAL
        method[use] = 'ap2'
        return log_counts, err


def _expected_peaks(peak, local_bkg, log_counts, candidates, level, *,
                    min_stars=10, quantile=0.9):
    """
    Return each target's peak pixel as its counts predict (None if unknown).

    The peak-to-counts ratio is measured on the frame's clearly
    unsaturated candidates (peak 5-50% of the level above the
    background: well measured, whatever the units), whose upper
    ``quantile`` covers a star centred on a pixel; ``log_counts`` may
    be off by a common factor (a model that does not know the camera),
    which the ratio absorbs.
    """
    with np.errstate(invalid='ignore', over='ignore'):
        counts = 10.0 ** log_counts
        height = peak - local_bkg
        faint = (candidates & (peak < 0.5 * level) & np.isfinite(height)
                 & (height > 0.05 * (level - local_bkg)) & (counts > 0))
        if faint.sum() < min_stars:
            return None
        ratio = np.quantile(height[faint] / counts[faint], quantile)
        return local_bkg + ratio * counts


class AperturePhotometryBaseline(_Photometry):
    """
    Classical aperture photometry with a local background (photutils).

    ``radius=2`` is the survey-style aperture. Parameters not listed are
    as for `~satphotutils.photometry.SaturatedStarPhotometry`.

    Parameters
    ----------
    radius : float, optional
        Aperture radius (pixels).

    annulus : tuple of float, optional
        Inner and outer radius of the background annulus (sigma-clipped
        median, photutils ``LocalBackground``).

    aperture_correction : float, optional
        Magnitudes added for the light outside the aperture (a constant,
        as a survey would determine it from bright unsaturated stars).

    Examples
    --------
    >>> from satphotutils.photometry import AperturePhotometryBaseline
    >>> import numpy as np
    >>> image = np.full((50, 50), 100.0)
    >>> image[25, 25] += 5000.0
    >>> table = AperturePhotometryBaseline(radius=2.0)(image,
    ...                                               positions=[[25, 25]])
    >>> round(float(table['flux'][0]))
    5000
    """

    method = 'aperture'

    def __init__(self, *, radius=2.0, annulus=(7.0, 10.0),
                 aperture_correction=0.0, **kwargs):
        super().__init__(**kwargs)
        self.radius = float(radius)
        self.annulus = tuple(annulus)
        self.aperture_correction = float(aperture_correction)

    def _config(self):
        return super()._config() | {'radius': self.radius,
                                    'annulus': self.annulus}

    def _measure(self, image, mask, error, x, y, stamps, frame,
                 missing):
        from photutils.aperture import CircularAperture, aperture_photometry
        from photutils.background import LocalBackground

        bkg = LocalBackground(*self.annulus)(image, x, y, mask=mask)
        aperture = CircularAperture(np.column_stack([x, y]), r=self.radius)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', AstropyUserWarning)
            phot = aperture_photometry(image, aperture, mask=mask,
                                       error=error)
        flux = np.asarray(phot['aperture_sum'], dtype=float) \
            - bkg * aperture.area
        flux *= 10 ** (0.4 * self.aperture_correction)
        with np.errstate(invalid='ignore', divide='ignore'):
            log_counts = np.where(flux > 0, np.log10(np.abs(flux)), np.nan)
            if error is not None:
                ferr = np.asarray(phot['aperture_sum_err'], dtype=float)
            else:
                # Poisson of the star plus the sky, read noise unknown.
                ferr = np.sqrt(np.abs(flux) + aperture.area
                               * np.maximum(bkg, 0))
            err = ferr / np.abs(flux) / np.log(10)
        flags = np.zeros(len(x), dtype=np.int64)
        flags[~np.isfinite(log_counts)] |= SATPHOT_FLAGS.NO_SIGNAL
        unity = (stamps == 1.0).sum(axis=(1, 2))
        return {'log_counts': log_counts, 'log_counts_err': err,
                'flags': flags, 'local_bkg': bkg, 'n_unity': unity,
                'method': np.full(len(x), f'ap{self.radius:g}')}


class PSFWingPhotometry(_Photometry):
    """
    PSF fitting of the unsaturated wings (photutils ``PSFPhotometry``).

    Pixels at or above ``saturation_level`` are masked, and where they
    run along the columns (a bleed trail,
    `~satphotutils.frames.runs_along`) the whole columns within
    the fit box and one column either side (blooming); the position is
    held at the target's, and only the flux is fitted. Parameters not
    listed are as for `~satphotutils.photometry.SaturatedStarPhotometry`.

    Parameters
    ----------
    psf_model : {'empirical', 'gaussian'} or model, optional
        ``'empirical'`` (default) builds each frame's PSF from its own
        isolated unsaturated stars (`~satphotutils.frames.frame_psf`,
        photutils' ``EPSFBuilder``), which is what a series of frames of
        changing seeing needs, and the only model whose wings are right
        whatever the optics: the fit of a saturated star rests on its
        wings. ``'gaussian'`` (or `None`) fits a circular Gaussian PRF of
        the frame's FWHM (`~satphotutils.frames.frame_fwhm`), cheaper and
        10-30% off in the wings of a Moffat-like PSF. Or a photutils PSF
        model with ``x_0``, ``y_0`` and ``flux``, used on every frame.

    fit_shape : int, optional
        Size of the fit box (odd).

    saturation_level : float, optional
        Counts from which pixels are masked; by default each frame's, as
        for the other classes (its saturation keyword, else the plateau
        of its pixels).

    core_radius : float, optional
        Pixels within this radius of the target are masked as well (the
        survey pipeline rewrites saturated cores).

    annulus : tuple of float or `None`, optional
        Local-background annulus; `None` subtracts the frame's sky (its
        ``SKY`` keyword, else `~satphotutils.frames.frame_background`)
        instead: a bright star's wings reach far past any annulus that
        fits between its neighbours (with a beta-2.5 Moffat PSF the 7-10
        px annulus takes 0.015-0.06 dex off a clipped star's flux), which
        is what `~satphotutils.photometry.SaturatedStarPhotometry` uses.

    Examples
    --------
    >>> import numpy as np
    >>> from photutils.psf import CircularGaussianPRF
    >>> from satphotutils.photometry import PSFWingPhotometry
    >>> yy, xx = np.mgrid[:41, :41]
    >>> star = CircularGaussianPRF(flux=2e5, x_0=20, y_0=20, fwhm=2.0)
    >>> image = 100.0 + np.minimum(star(xx, yy), 30000.0)  # a saturated core
    >>> wings = PSFWingPhotometry(CircularGaussianPRF(fwhm=2.0),
    ...                           saturation_level=30000.0)
    >>> table = wings(image, positions=[[20, 20]])
    >>> bool(abs(table['flux'][0] / 2e5 - 1) < 0.02)
    True
    """

    method = 'psf_wings'

    def __init__(self, psf_model='empirical', *, fit_shape=15,
                 saturation_level=None, core_radius=0.0,
                 annulus=(7.0, 10.0), **kwargs):
        super().__init__(saturation_level=saturation_level, **kwargs)
        if fit_shape % 2 == 0:
            msg = 'fit_shape must be odd'
            raise ValueError(msg)
        if psf_model is None:
            psf_model = 'gaussian'
        if isinstance(psf_model, str) and psf_model not in ('empirical',
                                                            'gaussian'):
            msg = (f"psf_model must be 'empirical', 'gaussian' or a "
                   f'photutils PSF model, got {psf_model!r}')
            raise ValueError(msg)
        self.psf_model = psf_model
        self.fit_shape = int(fit_shape)
        self.core_radius = float(core_radius)
        self.annulus = None if annulus is None else tuple(annulus)

    def _config(self):
        return super()._config() | {
            'fit_shape': self.fit_shape, 'core_radius': self.core_radius,
            'psf_model': self.psf_model if isinstance(self.psf_model, str)
            else type(self.psf_model).__name__}

    def _measure(self, image, mask, error, x, y, stamps, frame,
                 missing):
        from photutils.background import LocalBackground
        from photutils.psf import PSFPhotometry
        from scipy import ndimage

        level = frame['saturation_level']
        if level is None:
            msg = ('PSF-wing photometry masks the saturated pixels, and this '
                   'frame has no saturation level: no saturation keyword, '
                   'no plateau in its pixels; give saturation_level= '
                   '(--saturation-level)')
            raise SatphotutilsError(msg)
        model = self._psf(image, mask, level, frame).copy()
        model.x_0.fixed = True
        model.y_0.fixed = True
        saturated = image >= level
        bad = ~np.isfinite(image) | saturated
        half = self.fit_shape // 2
        ny, nx = image.shape
        for xi, yi in zip(np.rint(x).astype(int), np.rint(y).astype(int),
                          strict=True):
            y0, y1 = max(yi - half, 0), min(yi + half + 1, ny)
            x0, x1 = max(xi - half, 0), min(xi + half + 1, nx)
            box = bad[y0:y1, x0:x1]
            cols = saturated[y0:y1, x0:x1].any(axis=0)
            # A trail's charge runs along its columns to wherever it
            # stopped, and blooms into the next ones: they hold no PSF.
            # A round plateau is only clipped: the pixels below it read
            # what they hold.
            if runs_along(saturated[y0:y1, x0:x1].any(axis=1).sum(),
                          cols.sum(), height=y1 - y0):
                box[:, ndimage.binary_dilation(cols)] = True
            if self.core_radius > 0:
                yy, xx = np.mgrid[y0:y1, x0:x1]
                box |= np.hypot(xx - xi, yy - yi) <= self.core_radius
        if mask is not None:
            bad |= mask
        init = QTable({'x': x, 'y': y})
        sky = 0.0
        if self.annulus is None:
            # A bright star's wings reach far past any annulus that fits
            # between neighbours: the frame's sky instead.
            sky = frame['sky']
        phot = PSFPhotometry(model, self.fit_shape, aperture_radius=3,
                             local_bkg_estimator=None if self.annulus is None
                             else LocalBackground(*self.annulus))
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', AstropyUserWarning)
            res = phot(np.where(bad, 0.0, image - sky), mask=bad,
                       error=error, init_params=init)
        flux = np.asarray(res['flux_fit'], dtype=float)
        with np.errstate(invalid='ignore', divide='ignore'):
            log_counts = np.where(flux > 0, np.log10(np.abs(flux)), np.nan)
            err = np.asarray(res['flux_err'], dtype=float) / np.abs(flux) \
                / np.log(10)
        flags = _from_psf_flags(np.asarray(res['flags'], dtype=np.int64))
        unity = (stamps == 1.0).sum(axis=(1, 2))
        bkg = np.asarray(res['local_bkg'], dtype=float) + sky
        return {'log_counts': log_counts, 'log_counts_err': err,
                'flags': flags, 'local_bkg': bkg, 'n_unity': unity,
                'method': np.full(len(x), 'psf_wings'),
                **dict(zip(('filled_sum', 'filled_model'),
                           self._filled_sums(image, bad, model, flux, x, y,
                                             bkg), strict=True))}

    def _filled_sums(self, image, bad, model, flux, x, y, bkg):
        """
        Return sums within `FILLED_RADIUS`, masked pixels from the fit.

        A star clipped in a pixel or two keeps nearly all its light in
        pixels that read what they hold; only the clipped ones need the
        fitted PSF, whose errors then weigh only as much as they hold.
        Returns the sums and the part of them the fitted PSF supplied,
        NaN where the fit failed.
        """
        radius = FILLED_RADIUS
        size = 2 * int(np.ceil(radius)) + 3
        ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
        data, inside = cut_stamps(np.asarray(image, dtype=float), ix, iy,
                                  (size, size), dtype=float)
        masked, _ = cut_stamps(bad, ix, iy, (size, size), fill_value=True)
        half = size // 2
        yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
        filled = np.empty_like(data)
        for k in range(len(x)):
            star = model.copy()
            star.x_0, star.y_0 = x[k] - ix[k], y[k] - iy[k]
            star.flux = flux[k] if np.isfinite(flux[k]) else 0.0
            filled[k] = np.where(masked[k] | ~inside[k], star(xx, yy),
                                 data[k] - bkg[k])
        sums = aperture_sums(filled, radius, dx=x - ix, dy=y - iy).sum
        model_only = np.where(masked | ~inside, filled, 0.0)
        supplied = aperture_sums(model_only, radius, dx=x - ix,
                                 dy=y - iy).sum
        failed = ~(np.isfinite(flux) & (flux > 0))
        return np.where(failed, np.nan, sums), \
            np.where(failed, np.nan, supplied)

    def _psf(self, image, mask, level, frame):
        if not isinstance(self.psf_model, str):
            return self.psf_model
        if self.psf_model == 'empirical':
            return self._empirical_psf(image, mask, level, frame)
        from photutils.psf import CircularGaussianPRF

        from satphotutils.frames import frame_fwhm

        # Measured once per frame, not per chunk of targets.
        if 'psf_fwhm' not in frame:
            frame['psf_fwhm'] = frame_fwhm(image, saturation=level,
                                           mask=mask)
        fwhm = frame['psf_fwhm']
        if not np.isfinite(fwhm):
            msg = ("the frame's PSF FWHM could not be measured (fewer than 3 "
                   'isolated, unsaturated stars well above the noise), and '
                   'PSF-wing photometry without a psf_model fits a Gaussian '
                   'of that width; give psf_model=')
            raise SatphotutilsError(msg)
        return CircularGaussianPRF(fwhm=fwhm)

    @staticmethod
    def _empirical_psf(image, mask, level, frame, *, required=True,
                       background=None):
        from satphotutils.frames import frame_psf

        # Built once per frame, not per chunk of targets.
        if 'psf_image' not in frame:
            psf, n = frame_psf(image, saturation=level, mask=mask,
                               background=background)
            frame['psf_image'], frame['psf_stars'] = psf, n
        if frame['psf_image'] is None and required:
            msg = (f"the frame's PSF could not be built: "
                   f"{frame['psf_stars']} isolated unsaturated stars well "
                   'above the noise, fewer than 5 (frame_psf); give '
                   "psf_model='gaussian' (a Gaussian of the frame's FWHM) "
                   'or a photutils PSF model')
            raise SatphotutilsError(msg)
        return frame['psf_image']


def _noise_model(frame):
    """
    Return the frame's gain and read noise for the noise of its sums.

    Without the keywords counts are taken as electrons (gain 1, no read
    noise); the table's meta says so (``frame.gain`` is `None`).
    """
    gain = 1.0 if frame['gain'] is None else frame['gain']
    read_noise = 0.0 if frame['read_noise'] is None else frame['read_noise']
    return gain, read_noise


# Units the network's counts can be in: the model learned ADU.
_COUNT_UNITS = (u.adu, u.ct, u.dimensionless_unscaled)


def _frame_info(meta, header_keys):
    # Header values of an in-memory image; bad values are user errors of
    # the data, named by keyword.
    return frame_info(meta, header_keys=header_keys) if meta else \
        FrameInfo(keys=header_keys)


def _check_unit(unit):
    if unit is None or any(unit == c for c in _COUNT_UNITS):
        return
    msg = (f'data must be in counts (adu), got unit {unit!r}: the network '
           'learned the detector in ADU; convert the image (for electrons, '
           'divide by the gain) or pass plain numbers')
    raise u.UnitsError(msg)


def _from_psf_flags(psf):
    """
    Translate photutils ``PSFPhotometry`` flags into satphotutils bits.

    PSFPhotometry's bits mean other things than the aperture bits our
    low bits follow (its 1 is "fewer pixels than the fit box", which a
    wing fit always has). Overlap, masks and non-finite pixels are
    derived from the stamps for every method; the fit's own problems map
    to ``no_signal`` and ``fit_problem``.
    """
    flags = np.zeros_like(psf)
    flags[(psf & (4 | 128 | 256)) != 0] |= SATPHOT_FLAGS.NO_SIGNAL
    flags[(psf & (8 | 16 | 32 | 512 | 1024 | 2048)) != 0] |= \
        SATPHOT_FLAGS.FIT_PROBLEM
    return flags


def _unpack(data, mask, error, wcs):
    meta = {}
    unit = None
    if isinstance(data, NDData):
        if mask is not None or error is not None:
            msg = ('The mask and error keywords must be None when data is '
                   'an NDData instance. Define the mask and uncertainty in '
                   'the NDData object instead.')
            raise ValueError(msg)
        mask = None if data.mask is None else np.asarray(data.mask, bool)
        if data.uncertainty is not None:
            error = np.asarray(
                data.uncertainty.represent_as(StdDevUncertainty).array)
        wcs = data.wcs if wcs is None else wcs
        unit = data.unit
        meta = dict(data.meta) if data.meta is not None else {}
        image = np.asarray(data.data)
    elif isinstance(data, u.Quantity):
        unit = data.unit
        image = np.asarray(data.value)
    else:
        image = data
    if np.ma.isMaskedArray(image):
        # As photutils does: the array's own mask is a mask (np.asarray
        # would drop it and measure the bad pixels' values), joined to
        # an explicit one.
        own = np.ma.getmaskarray(image)
        mask = own if mask is None or np.shape(mask) != own.shape else \
            own | np.asarray(mask, dtype=bool)
        image = np.ma.getdata(image)
    image = np.asarray(image)
    # Floating-point images are used as they are (a float64 copy of a
    # 2048x2048 frame costs more than cutting all its stamps); integers
    # are converted once.
    if image.dtype.kind != 'f':
        image = image.astype(float)
    if image.ndim != 2:
        msg = f'data must be a 2D image, got shape {image.shape}'
        raise ValueError(msg)
    _check_unit(unit)
    for name, value in (('mask', mask), ('error', error)):
        if value is not None and np.shape(value) != image.shape:
            msg = (f'{name} must have the shape of data {image.shape}, '
                   f'got {np.shape(value)}')
            raise ValueError(msg)
    if isinstance(error, u.Quantity):
        error = error.to_value(unit) if unit is not None else error.value
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
    return image, unit, mask, error, wcs, meta


def _sky_from_columns(ra, dec):
    """
    Sky positions from ``ra`` and ``dec`` columns, for every target table.

    An angle unit is kept; plain numbers and numeric text are degrees;
    other text is sexagesimal (hours of right ascension, degrees of
    declination), as catalogues write it; anything else is a ValueError
    naming the column.
    """
    unit = getattr(ra, 'unit', None), getattr(dec, 'unit', None)
    if all(isinstance(u_, u.UnitBase) for u_ in unit):
        return SkyCoord(u.Quantity(ra), u.Quantity(dec))
    ra, dec = np.atleast_1d(np.asarray(ra)), np.atleast_1d(np.asarray(dec))
    if ra.dtype.kind not in 'US' and dec.dtype.kind not in 'US':
        return SkyCoord(np.asarray(ra, float) * u.deg,
                        np.asarray(dec, float) * u.deg)

    def angles(values, text_unit, name):
        out = np.empty(len(values))
        for k, value in enumerate(values):
            value = str(value).strip()
            try:
                out[k] = float(value)  # decimal degrees, as numbers are
            except ValueError:
                try:
                    out[k] = Angle(value, unit=text_unit).deg
                except (ValueError, u.UnitsError):
                    msg = (f'the {name} column holds {value!r}, neither '
                           'decimal degrees nor sexagesimal '
                           f'({"hh:mm:ss" if name == "ra" else "dd:mm:ss"})')
                    raise ValueError(msg) from None
        return out

    return SkyCoord(angles(ra, u.hourangle, 'ra') * u.deg,
                    angles(dec, u.deg, 'dec') * u.deg)


def _positions(positions, skycoord, init_params, wcs):
    given = [p is not None for p in (positions, skycoord, init_params)]
    if sum(given) != 1:
        msg = 'give exactly one of positions, skycoord and init_params'
        raise ValueError(msg)
    if init_params is not None:
        cols = init_params.colnames
        xname = next((c for c in _X_ALIASES if c in cols), None)
        yname = next((c for c in _Y_ALIASES if c in cols), None)
        sky = [c for c in ('sky_center', 'skycoord', 'ra', 'dec')
               if c in cols]
        if xname and yname and sky and wcs is not None:
            # Two positions for each target, which may disagree: x/y
            # winning silently measured other stars. A table that agrees
            # with itself (a photometry result fed back) is fine.
            if 'ra' in sky and 'dec' in sky and not any(
                    c in cols for c in ('sky_center', 'skycoord')):
                coords = _sky_from_columns(init_params['ra'],
                                           init_params['dec'])
            else:
                coords = SkyCoord(init_params['sky_center' if 'sky_center'
                                              in cols else 'skycoord'])
            sx, sy = wcs.world_to_pixel(coords.reshape(-1))
            apart = np.hypot(np.asarray(sx) - np.asarray(
                init_params[xname], float), np.asarray(sy) - np.asarray(
                    init_params[yname], float))
            if not np.all(apart < 1.0):
                n_apart = int(np.sum(~(apart < 1.0)))
                msg = (f'init_params has both pixel ({xname}, {yname}) and '
                       f'sky ({", ".join(sky)}) positions, and they differ '
                       f'by more than 1 px for {n_apart} of {len(apart)} '
                       f'targets (up to {np.nanmax(apart):.1f} px); remove '
                       'one set (or pass positions= or skycoord=)')
                raise ValueError(msg)
        if xname and yname:
            positions = np.column_stack([np.asarray(init_params[xname],
                                                    float),
                                         np.asarray(init_params[yname],
                                                    float)])
        elif any(c in cols for c in ('sky_center', 'skycoord')):
            skycoord = init_params['sky_center' if 'sky_center' in cols
                                   else 'skycoord']
        elif 'ra' in cols and 'dec' in cols:
            skycoord = _sky_from_columns(init_params['ra'],
                                        init_params['dec'])
        else:
            msg = ('init_params needs x/y columns (x_init, x, xcentroid, '
                   '...), a sky_center column, or ra and dec')
            raise ValueError(msg)
    if skycoord is not None:
        if wcs is None:
            msg = 'skycoord needs a WCS: pass wcs= or data with a wcs'
            raise ValueError(msg)
        skycoord = SkyCoord(skycoord).reshape(-1)
        if len(skycoord) == 0:
            msg = 'no targets: skycoord is empty'
            raise ValueError(msg)
        x, y = wcs.world_to_pixel(skycoord)
        return np.asarray(x, float), np.asarray(y, float), skycoord
    positions = np.asarray(positions, dtype=float)
    if positions.size == 0:
        msg = 'no targets: positions is empty'
        raise ValueError(msg)
    positions = np.atleast_2d(positions)
    if positions.ndim != 2 or positions.shape[1] != 2:
        msg = 'positions must have shape (N, 2): x, y'
        raise ValueError(msg)
    x, y = positions[:, 0], positions[:, 1]
    sky = None if wcs is None else wcs.pixel_to_world(x, y)
    return x, y, sky
