# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The survey pipeline's reduction of an exposure, with its artefacts.

This reproduces what the ASAS-SN pipeline (inherited from ASAS) does to
saturated stars, as described by Winecki & Kochanek (2024):

1. bias subtraction and flat fielding (so the saturation level varies
   across the frame with the vignetting);
2. the saturation correction: each connected region of saturated pixels
   (core plus bleed trail) is replaced, row by row, by a linear
   interpolation between the adjacent unsaturated columns; the flux it
   held, estimated against that interpolation, is added back as a
   Gaussian with the image FWHM at the position of the star the
   reference catalogue places in the region;
3. interpolation of the exposure onto the reference image's pixel grid;
4. storage as 16-bit integers; in the exposures reduced after bias
   corrections were added, pixels that overflow are declared bad and
   set to exactly 1 (the "damaged cores").

The correction fails in two ways seen in real data: the flux is put on
a wrong, fainter catalogue star lying on the trail, or is never put back
because the star is taken for part of the trail.
"""

import numpy as np
from scipy import ndimage

from .psf import render_gaussian

__all__ = ['SurveyPipeline']

# Correction outcomes recorded per saturated region.
OK, MISPLACED, LOST, UNMATCHED = 'ok', 'misplaced', 'lost', 'unmatched'


class SurveyPipeline:
    """
    The survey's reduction of single exposures.

    Parameters
    ----------
    misplace_rate : float, optional
        Probability that the correction puts a region's flux on another,
        fainter catalogue star lying on the trail, when there is one.

    lost_rate : float, optional
        Probability that the star is taken for part of the trail and its
        flux is never put back.

    damage_fraction : float, optional
        Fraction of exposures stored with the integer-overflow damage.

    storage_max : int, optional
        Largest value of the integer storage of reduced frames.

    bleed_flux_scale : float or None, optional
        Factor applied to the saturated pixels' values when estimating the
        trail flux: the pipeline's calibration of how much charge a
        clipped pixel holds. `None` uses the detector's ratio of full
        well to ADC saturation (a pipeline tuned to its detector).

    resample_order : int, optional
        Spline order of the interpolation onto the reference grid
        (1 = bilinear).

    fwhm_factor : float, optional
        The FWHM the correction re-inserts the trail flux with, over the
        image's true FWHM: a pipeline whose seeing estimate is off.

    clip_storage : bool, optional
        Whether undamaged frames are clipped to ``[0, storage_max]`` as
        16-bit integer storage clips them; by default only the damaged
        exposures lose their overflowing pixels (to exactly 1) and the
        others keep every value, as in floating-point storage.

    correction : bool, optional
        Whether the saturation correction (step 2) runs. ``False`` is the
        pipeline of most other surveys and observers (ZTF, ATLAS, TESS,
        amateur cameras): the bleed trails stay in the frame, holding the
        saturated charge, and are only flagged; without corrected pixels
        there is no overflow damage either.

    Examples
    --------
    >>> from satphotutils.simulation import SurveyPipeline
    >>> pipeline = SurveyPipeline(misplace_rate=0.0, lost_rate=0.0)
    >>> pipeline.storage_max
    65535
    """

    def __init__(self, *, misplace_rate=0.05, lost_rate=0.03,
                 damage_fraction=0.2, storage_max=65535,
                 bleed_flux_scale=None, resample_order=1, fwhm_factor=1.0,
                 clip_storage=False, correction=True):
        for name, value in (('misplace_rate', misplace_rate),
                            ('lost_rate', lost_rate),
                            ('damage_fraction', damage_fraction)):
            if not 0 <= value <= 1:
                msg = f'{name} must be in [0, 1]'
                raise ValueError(msg)
        if resample_order not in (0, 1, 2, 3, 4, 5):
            msg = 'resample_order must be an integer from 0 to 5'
            raise ValueError(msg)
        self.misplace_rate = float(misplace_rate)
        self.lost_rate = float(lost_rate)
        self.damage_fraction = float(damage_fraction)
        self.storage_max = int(storage_max)
        self.bleed_flux_scale = bleed_flux_scale
        self.resample_order = int(resample_order)
        if not 0 < fwhm_factor < 10:
            msg = f'fwhm_factor must be in (0, 10), got {fwhm_factor!r}'
            raise ValueError(msg)
        self.fwhm_factor = float(fwhm_factor)
        self.clip_storage = bool(clip_storage)
        self.correction = bool(correction)

    def __repr__(self):
        return (f'<SurveyPipeline misplace_rate={self.misplace_rate} '
                f'lost_rate={self.lost_rate} '
                f'damage_fraction={self.damage_fraction} '
                f'fwhm_factor={self.fwhm_factor:.3f} '
                f'resample_order={self.resample_order} '
                f'clip_storage={self.clip_storage} '
                f'correction={self.correction}>')

    @staticmethod
    def saturation_threshold(detector):
        """
        Return the raw level (ADU) from which pixels count as saturated.

        The ADC maximum when the ADC clips first; otherwise 97% of the way
        from the bias to the full-well plateau, below its read noise and
        non-linear roll-off, as a ``SATURATE`` keyword is set a little
        below the plateau.
        """
        if detector.plateau_adu >= detector.adc_max:
            return detector.adc_max
        return detector.bias + 0.97 * detector.plateau_counts

    def calibrate(self, raw, flat, detector):
        """
        Subtract the bias and divide by the flat.

        Returns
        -------
        counts : `~numpy.ndarray`
            Flat-fielded counts.

        saturated : `~numpy.ndarray` of bool
            Pixels at or above ``saturation_threshold``.
        """
        saturated = raw >= self.saturation_threshold(detector)
        counts = raw.astype(np.float64)
        counts -= detector.bias
        counts /= flat
        return counts, saturated

    def correct_saturation(self, counts, saturated, *, detector, fwhm,
                           catalog_x, catalog_y, catalog_mag, rng,
                           catalog_item=None):
        """
        Apply the ASAS-style saturation correction in place on ``counts``.

        With ``correction=False`` nothing is changed and no region is
        returned.

        Parameters
        ----------
        counts : `~numpy.ndarray`
            Calibrated exposure (modified in place), or a stack of
            exposure windows of shape ``(n, ny, nx)``.

        saturated : `~numpy.ndarray` of bool
            Saturated pixels, shaped like ``counts``.

        detector : `~satphotutils.simulation.Detector`
            The detector.

        fwhm : float or array-like
            The image FWHM the pipeline measured, in pixels (one per image
            of a stack, or one for all).

        catalog_x, catalog_y : `~numpy.ndarray`
            Reference-catalogue positions in this exposure's pixels.

        catalog_mag : `~numpy.ndarray`
            Reference-catalogue magnitudes (to choose the brightest star
            in a region).

        rng : `~numpy.random.Generator`
            Random generator for the failure modes.

        catalog_item : `~numpy.ndarray` of int, optional
            For a stack, the image each catalogue star belongs to.

        Returns
        -------
        regions : dict of `~numpy.ndarray`
            Columns with one entry per saturated region (``Table(regions)``
            makes a table): ``item`` (image of the stack), ``n_pixels``,
            ``flux`` (the flux put back, or that should have been),
            ``star`` (the catalogue index of the brightest star in the
            region, -1 if none), ``assigned`` (where the flux went, -1 if
            nowhere), ``outcome`` (ok, misplaced, lost or unmatched),
            ``x``, ``y`` (where the flux was put back).
        """
        return self._correct(counts, saturated, detector=detector,
                             fwhm=fwhm, catalog_x=catalog_x,
                             catalog_y=catalog_y, catalog_mag=catalog_mag,
                             rng=rng, catalog_item=catalog_item)[0]

    def _correct(self, counts, saturated, *, detector, fwhm, catalog_x,
                 catalog_y, catalog_mag, rng, catalog_item=None):
        """
        Run `correct_saturation` and return more.

        Also returns the region labels and the pixels the correction
        changed (the regions and the put-back footprints).
        """
        stack = counts if counts.ndim == 3 else counts[None]
        sat = saturated if saturated.ndim == 3 else saturated[None]
        n_items, ny, nx = stack.shape
        fwhm = np.broadcast_to(np.asarray(fwhm, dtype=float), (n_items,))
        # Regions connect within an image (4-connectivity), never across
        # the images of a stack.
        structure = np.zeros((3, 3, 3), dtype=bool)
        structure[1] = ndimage.generate_binary_structure(2, 1)
        if not self.correction:
            # A raw pipeline: nothing is corrected, nothing recorded.
            labels = np.zeros(stack.shape, dtype=np.int32)
            return (_as_arrays({k: [] for k in _DTYPES}), labels,
                    labels > 0)
        labels, n_regions = ndimage.label(sat, structure)
        # A saturated pixel holds a full well whatever it reads.
        scale = (detector.full_well_counts / detector.plateau_counts
                 if self.bleed_flux_scale is None else self.bleed_flux_scale)
        rows = {'item': [], 'n_pixels': [], 'flux': [], 'star': [],
                'assigned': [], 'outcome': [], 'x': [], 'y': []}
        corrected = labels > 0
        if n_regions == 0:
            return _as_arrays(rows), labels, corrected
        catalog_item = (np.zeros(len(catalog_x), dtype=int)
                        if catalog_item is None
                        else np.asarray(catalog_item, dtype=int))
        cat_ix = np.rint(catalog_x).astype(int)
        cat_iy = np.rint(catalog_y).astype(int)
        on_image = ((cat_ix >= 0) & (cat_ix < nx) & (cat_iy >= 0)
                    & (cat_iy < ny))
        cat_label = np.zeros(len(catalog_x), dtype=int)
        cat_label[on_image] = labels[catalog_item[on_image],
                                     cat_iy[on_image], cat_ix[on_image]]
        # Catalogue stars of each region, brightest first.
        order = np.lexsort((catalog_mag, cat_label))
        order = order[cat_label[order] > 0]
        bounds = np.searchsorted(cat_label[order], np.arange(n_regions + 2))
        putback = []
        for k, (si, sy, sx) in enumerate(ndimage.find_objects(labels),
                                         start=1):
            it = si.start
            flux, n_pix = self._interpolate_region(stack[it], labels[it], k,
                                                   sy, sx, scale)
            members = order[bounds[k]:bounds[k + 1]]
            if members.size == 0:
                outcome, assigned = UNMATCHED, -1
            elif rng.random() < self.lost_rate:
                outcome, assigned = LOST, -1
            elif members.size > 1 and rng.random() < self.misplace_rate:
                outcome, assigned = MISPLACED, members[1]
            else:
                outcome, assigned = OK, members[0]
            px = py = np.nan
            if assigned >= 0 and flux > 0:
                px, py = catalog_x[assigned], catalog_y[assigned]
                putback.append((it, px, py, flux))
            for key, value in (('item', it), ('n_pixels', n_pix),
                               ('flux', flux),
                               ('star', members[0] if members.size else -1),
                               ('assigned', assigned), ('outcome', outcome),
                               ('x', px), ('y', py)):
                rows[key].append(value)
        for it, px, py, flux in putback:
            box = _add_gaussian(stack[it], px, py, flux, fwhm[it])
            if box is not None:
                corrected[it][box] = True
        return _as_arrays(rows), labels, corrected

    @staticmethod
    def _interpolate_region(counts, labels, k, sy, sx, scale):
        """Replace region ``k`` row by row; return its estimated flux."""
        nx = counts.shape[1]
        x0 = max(sx.start - 1, 0)
        x1 = min(sx.stop + 1, nx)
        box = counts[sy, x0:x1]
        member = labels[sy, x0:x1] == k
        width = x1 - x0
        cols = np.arange(width)
        has = member.any(axis=1)
        left = np.argmax(member, axis=1) - 1
        right = width - np.argmax(member[:, ::-1], axis=1)
        # At the image edge use the one neighbouring column there is.
        rows = np.arange(len(box))
        lval = np.where(left >= 0, box[rows, np.clip(left, 0, width - 1)],
                        np.nan)
        rval = np.where(right < width,
                        box[rows, np.clip(right, 0, width - 1)], np.nan)
        left_ok = np.isfinite(lval)
        right_ok = np.isfinite(rval)
        lval = np.where(left_ok, lval, rval)
        rval = np.where(right_ok, rval, lval)
        span = (cols[None, :] > left[:, None]) & (cols[None, :]
                                                  < right[:, None])
        span &= has[:, None]
        frac = (cols[None, :] - left[:, None]) / np.maximum(
            right - left, 1)[:, None]
        interp = lval[:, None] + frac * (rval - lval)[:, None]
        values = np.where(member, box * scale, box)
        flux = float(np.sum((values - interp)[span]))
        box[span] = interp[span]
        return flux, int(member.sum())

    def resample(self, image, shift):
        """
        Interpolate an exposure onto the reference grid.

        Parameters
        ----------
        image : `~numpy.ndarray`
            The exposure in its own pixels, or a stack ``(n, ny, nx)`` of
            windows of one exposure.

        shift : tuple of float
            ``(dy, dx)``: the exposure pixel that the reference pixel
            (0, 0) falls on (the dither offset).

        Returns
        -------
        resampled : `~numpy.ndarray`
            The image on the reference grid; pixels with no data are NaN.
        """
        dy, dx = shift
        missing = ~np.isfinite(image)
        # Splines would spread a NaN over the whole image: interpolate
        # zeros there, then blank every pixel the gap touches.
        out = shift_images(np.where(missing, 0.0, image), (-dy, -dx),
                           order=self.resample_order, cval=0.0)
        out[shift_images(missing, (-dy, -dx), order=1, cval=1.0) > 0] = \
            np.nan
        return out

    def store(self, image, *, damaged, corrected=None):
        """
        Store a reduced frame as integers, with the overflow damage.

        Parameters
        ----------
        image : `~numpy.ndarray`
            The reduced frame in counts.

        damaged : bool
            Whether this exposure went through the bias-correction
            pipeline whose 16-bit storage overflows.

        corrected : `~numpy.ndarray` of bool, optional
            Pixels the saturation correction changed. The overflow comes
            from processing corrected saturated stars, so only these
            pixels can be damaged; all pixels if `None`.

        Returns
        -------
        stored : `~numpy.ndarray` of float32
            Rounded values; overflowing corrected pixels are exactly 1
            when ``damaged``; with ``clip_storage`` the others are clipped
            to ``[0, storage_max]``.

        bad : `~numpy.ndarray` of bool
            The pixels set to 1.
        """
        stored = np.rint(image)
        bad = np.zeros(image.shape, dtype=bool)
        if damaged:
            bad = np.isfinite(stored) & (stored > self.storage_max)
            if corrected is not None:
                bad &= corrected
            stored[bad] = 1.0
        if self.clip_storage:
            np.clip(stored, 0, self.storage_max, out=stored)
        return stored.astype(np.float32), bad


_DTYPES = {'item': int, 'n_pixels': int, 'flux': float, 'star': int,
           'assigned': int, 'outcome': '<U9', 'x': float, 'y': float}


def shift_images(images, shift, *, order, cval):
    """
    Shift an image, or each image of a stack, by ``shift`` = (dy, dx).

    The images of a stack are shifted one by one: a 3-D shift would
    interpolate (and spline-filter) along the stack axis as well, which
    costs several times as much for the same result.
    """
    if images.dtype == bool:
        # A mask: the images without a pixel set all shift alike, the
        # edges taking ``cval``.
        images = images.astype(np.float32)
        if images.ndim == 3:
            empty = ~images.any(axis=(1, 2))
            if empty.any():
                out = np.empty_like(images)
                out[empty] = ndimage.shift(
                    np.zeros(images.shape[1:], np.float32), shift,
                    order=order, mode='constant', cval=cval)
                if not empty.all():
                    out[~empty] = shift_images(images[~empty], shift,
                                               order=order, cval=cval)
                return out
    if images.ndim == 2:
        return ndimage.shift(images, shift, order=order, mode='constant',
                             cval=cval)
    out = np.empty_like(images)
    for image, result in zip(images, out, strict=True):
        ndimage.shift(image, shift, output=result, order=order,
                      mode='constant', cval=cval)
    return out


def _as_arrays(rows):
    return {k: np.asarray(v, dtype=_DTYPES[k]) for k, v in rows.items()}


def _add_gaussian(counts, x, y, flux, fwhm):
    """Add a pixel-integrated Gaussian over its footprint only."""
    ny, nx = counts.shape
    half = int(np.ceil(3 * fwhm)) + 2
    ix, iy = int(np.rint(x)), int(np.rint(y))
    y0, y1 = max(iy - half, 0), min(iy + half + 1, ny)
    x0, x1 = max(ix - half, 0), min(ix + half + 1, nx)
    if y0 >= y1 or x0 >= x1:
        return None
    counts[y0:y1, x0:x1] += render_gaussian((y1 - y0, x1 - x0), x - x0,
                                            y - y0, flux, fwhm)
    return slice(y0, y1), slice(x0, x1)
