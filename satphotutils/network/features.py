# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Preprocessing: stamps and metadata to the network's input features.

The network does not see raw counts, which span 10^2-10^8. Each stamp is
reduced to the 81 pixels within 5 px of its centre, its local background
(the median of an annulus, away from the bleed columns) is subtracted and
the pixels are divided by their sum ``A``; ``log10 A`` and a few other
scale-free summaries (PSF-weighted and small-aperture fluxes relative to
``A``, the peak) are appended, with the sub-pixel position, the sky S,
the pixels that are exactly 1 and an optional camera/filter encoding.
The network predicts ``log N - log10 A``: a correction to aperture
photometry, which for unsaturated stars is small and smooth, so that the
network starts from the classical answer and only has to improve on it.

The zero point is not an input (feature version 2): the counts on a
frame do not depend on the calibration that turns them into magnitudes,
and version 1's zero-point input was constant in training, so any other
value only shifted the prediction.

Everything here is NumPy, free of I/O and of torch.
"""

import dataclasses
import functools
import numbers

import numpy as np

from satphotutils.stamps.apertures import center_sums, circle_index

__all__ = ['FEATURE_VERSION', 'Prepared', 'StampFeatures']

#: Version of the feature definition; stored in model files. Version 2
#: dropped version 1's ``zeropoint`` and ``has_position`` inputs (see
#: `~satphotutils.network.convert_v1_model`).
FEATURE_VERSION = 2

# Names of the scalar features, in order, after the pixel blocks.
_SCALARS = ('log_flux', 'log_peak', 'psf_ratio', 'ap2_ratio', 'ap3_ratio',
            'core_ratio', 'local_bkg', 'sky', 'n_unity', 'dx', 'dy')
_FLOOR = 30.0  # counts: the smallest aperture sum taken at face value
_UNKNOWN = '<unknown>'


@functools.lru_cache(maxsize=8)
def _geometry(size, radius, annulus):
    """Circle and annulus pixel indices and the circle's coordinates."""
    half = size // 2
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    r = np.hypot(xx, yy).ravel()
    circle = _circle_index(size, radius)
    # The annulus leaves out the bleed columns, where the pipeline's
    # interpolation leaves residuals.
    ring = np.flatnonzero((r >= annulus[0]) & (r <= annulus[1])
                          & (np.abs(xx.ravel()) > 2))
    cx = xx.ravel()[circle].astype(np.float32)
    cy = yy.ravel()[circle].astype(np.float32)
    return circle, ring, cx, cy


def _circle_index(size, radius):
    return circle_index((size, size), radius)


class _RowsMixin:
    """Row selection and joining for dataclasses of equal-length arrays."""

    def __len__(self):
        return len(getattr(self, dataclasses.fields(self)[0].name))

    def __getitem__(self, rows):
        """Return the rows ``rows`` (a slice, index or boolean array)."""
        return type(self)(**{f.name: getattr(self, f.name)[rows]
                             for f in dataclasses.fields(self)})

    @classmethod
    def concatenate(cls, parts):
        """Join batches row-wise."""
        parts = list(parts)
        return cls(**{f.name: np.concatenate([getattr(p, f.name)
                                              for p in parts])
                      for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class Prepared(_RowsMixin):
    """
    A batch of stamps turned into network inputs, with what goes around.

    Made by `~satphotutils.network.StampFeatures` (``__call__``); read by
    `~satphotutils.network.SaturatedStarModel.predict_prepared`, the
    trainer and the photometry. All fields are arrays of length N.

    Attributes
    ----------
    features : `~numpy.ndarray`, float32, shape (N, n_features)
        The inputs, in the order of ``StampFeatures.names``, before
        standardisation.

    base : `~numpy.ndarray`
        ``log10 A``: the aperture-photometry estimate the network
        corrects (``A`` floored at 30 counts).

    aperture_sum : `~numpy.ndarray`
        ``A`` itself, the background-subtracted sum within the radius,
        which can be zero or negative.

    local_bkg : `~numpy.ndarray`
        The annulus background (counts per pixel).

    n_unity : `~numpy.ndarray` of int
        Pixels within the radius exactly equal to 1.

    finite : `~numpy.ndarray` of bool
        Every pixel the features read (within the radius and in the
        background annulus) that is not masked is finite.

    known_camera : `~numpy.ndarray` of bool
        The camera/filter code has its own encoding.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.network import StampFeatures
    >>> stamps = np.full((3, 21, 21), 100.0)
    >>> x = StampFeatures()(stamps, sky=np.full(3, 100.0), dx=np.zeros(3),
    ...                     dy=np.zeros(3))
    >>> len(x), len(x[1:]), x[[0, 2]].features.shape
    (3, 2, (2, 174))
    """

    features: np.ndarray
    base: np.ndarray
    aperture_sum: np.ndarray
    local_bkg: np.ndarray
    n_unity: np.ndarray
    finite: np.ndarray
    known_camera: np.ndarray


def _check_number(config, name, *, positive=False):
    value = config.get(name)
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and np.isfinite(value) and (value > 0 or not positive)
    if not ok:
        what = 'a positive finite number' if positive else 'a finite number'
        msg = f'features.{name} must be {what}, got {value!r}'
        raise ValueError(msg)
    return float(value)


@dataclasses.dataclass(frozen=True)
class StampFeatures:
    """
    Turn stamps and metadata into network inputs.

    Parameters
    ----------
    stamp_size : int, optional
        Size of the (square) stamps.

    radius : float, optional
        Radius of the circle of pixels used (the paper's 5 px: 81
        pixels).

    annulus : tuple of float, optional
        Inner and outer radius of the local-background annulus.

    psf_fwhm : float, optional
        FWHM (px) of the Gaussian weight of the PSF-weighted flux.

    cameras : tuple of str, optional
        ``'camera/filter'`` codes with their own encoding; any other
        (or a missing camera column) uses the camera-agnostic encoding
        and is flagged. Empty for a camera-agnostic model.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.network import StampFeatures
    >>> features = StampFeatures()
    >>> stamps = np.full((2, 21, 21), 200.0, dtype=np.float32)
    >>> stamps[:, 10, 10] += [1e4, 1e5]
    >>> x = features(stamps, sky=[200.0, 200.0], dx=[0.0, 0.0],
    ...              dy=[0.0, 0.0])
    >>> x.features.shape, x.base.round(3).tolist()
    ((2, 174), [4.0, 5.0])
    """

    stamp_size: int = 21
    radius: float = 5.0
    annulus: tuple = (7.0, 10.0)
    psf_fwhm: float = 1.8
    cameras: tuple = ()

    def __post_init__(self):
        if self.stamp_size % 2 == 0:
            msg = 'stamp_size must be odd'
            raise ValueError(msg)
        if not 0 < self.radius < self.annulus[0] < self.annulus[1] \
                <= self.stamp_size // 2 * np.sqrt(2):
            msg = 'need 0 < radius < annulus[0] < annulus[1] within the stamp'
            raise ValueError(msg)

    @property
    def n_pixels(self):
        """Number of pixels in the circle."""
        return len(_circle_index(self.stamp_size, self.radius))

    @property
    def pixel_offsets(self):
        """
        Integer ``(dy, dx)`` of each circle pixel from the central pixel.

        In the order of the ``pixel_*`` and ``unity_*`` features, so
        that an architecture can put them back on a grid.
        """
        _, _, cx, cy = _geometry(self.stamp_size, self.radius, self.annulus)
        return cy.astype(int), cx.astype(int)

    @property
    def names(self):
        """Names of the features, in order."""
        pixels = [f'pixel_{i}' for i in range(self.n_pixels)]
        unity = [f'unity_{i}' for i in range(self.n_pixels)]
        cams = [f'camera_{c}' for c in (*self.cameras, _UNKNOWN)]
        return (*pixels, *unity, *_SCALARS, *cams)

    @property
    def n_features(self):
        """Number of features."""
        return len(self.names)

    def to_dict(self):
        """Return the configuration as JSON-serialisable data."""
        return {'version': FEATURE_VERSION, 'stamp_size': self.stamp_size,
                'radius': self.radius, 'annulus': list(self.annulus),
                'psf_fwhm': self.psf_fwhm, 'cameras': list(self.cameras)}

    @classmethod
    def from_dict(cls, config):
        """
        Rebuild from `to_dict` output, checking every field.

        Raises
        ------
        ValueError
            For another feature version or a field of the wrong type or
            range; the message names the field (``features.<name>``).
        """
        if not isinstance(config, dict):
            msg = f'features must be a JSON object, got {config!r}'
            raise ValueError(msg)
        version = config.get('version')
        if version != FEATURE_VERSION:
            msg = (f'the model uses feature version {version}, this '
                   f'satphotutils computes version {FEATURE_VERSION}; '
                   'retrain the model or use a matching satphotutils')
            raise ValueError(msg)
        size = config.get('stamp_size')
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) \
                or not 3 <= size <= 255 or size % 2 == 0:
            msg = f'features.stamp_size must be an odd integer, got {size!r}'
            raise ValueError(msg)
        annulus = config.get('annulus')
        if not isinstance(annulus, (list, tuple)) or len(annulus) != 2:
            msg = ('features.annulus must be two numbers (inner and outer '
                   f'radius), got {annulus!r}')
            raise ValueError(msg)
        annulus = tuple(_check_number({'annulus': a}, 'annulus',
                                      positive=True) for a in annulus)
        cameras = config.get('cameras')
        if not isinstance(cameras, (list, tuple)) or not all(
                isinstance(c, str) for c in cameras):
            msg = ('features.cameras must be a list of strings, got '
                   f'{cameras!r}')
            raise ValueError(msg)
        radius = _check_number(config, 'radius', positive=True)
        psf_fwhm = _check_number(config, 'psf_fwhm', positive=True)
        try:
            return cls(stamp_size=int(size), radius=radius, annulus=annulus,
                       psf_fwhm=psf_fwhm, cameras=tuple(cameras))
        except ValueError as exc:
            msg = f'features: {exc}'
            raise ValueError(msg) from None

    def classical_estimates(self, x):
        """
        Return classical log10 flux estimates from computed features.

        Parameters
        ----------
        x : `~satphotutils.network.Prepared`
            Output of this object's `__call__`.

        Returns
        -------
        estimates : dict of `~numpy.ndarray`
            ``ap2``, ``ap3`` and ``ap5`` (pixel-centre apertures with the
            annulus background) and ``psf`` (Gaussian-weighted sum); NaN
            where the sum is not positive.
        """
        names = list(self.names)
        scale = 10 ** x.base
        out = {'ap5': x.base}
        for key, name in (('ap2', 'ap2_ratio'), ('ap3', 'ap3_ratio'),
                          ('psf', 'psf_ratio')):
            flux = x.features[:, names.index(name)] * scale
            out[key] = np.log10(np.where(flux > 0, flux, np.nan))
        return out

    def reflections(self):
        """
        Return the pixel permutations of the four reflections.

        Returns
        -------
        perms : `~numpy.ndarray`, shape (4, n_features)
            Index arrays: identity, left-right, up-down, both. They
            permute the pixel and unity blocks and negate nothing; the
            sign of ``dx``/``dy`` flips through `reflection_signs`.
        """
        size = self.stamp_size
        idx = _circle_index(size, self.radius)
        grid = np.full(size * size, -1)
        grid[idx] = np.arange(len(idx))
        grid = grid.reshape(size, size)
        n, m = len(idx), self.n_features
        perms = []
        for flip in ((), (1,), (0,), (0, 1)):
            g = np.flip(grid, axis=flip) if flip else grid
            order = g.ravel()[idx]
            perm = np.arange(m)
            perm[:n] = order
            perm[n:2 * n] = n + order
            perms.append(perm)
        return np.array(perms)

    def reflection_signs(self):
        """Signs to multiply the features by for each reflection."""
        signs = np.ones((4, self.n_features), dtype=np.float32)
        dx = 2 * self.n_pixels + _SCALARS.index('dx')
        dy = 2 * self.n_pixels + _SCALARS.index('dy')
        signs[1, dx] = signs[3, dx] = -1
        signs[2, dy] = signs[3, dy] = -1
        return signs

    def __call__(self, stamps, *, sky, dx, dy, camera=None, mask=None):
        """
        Compute the features of a batch of stamps.

        Parameters
        ----------
        stamps : array-like, shape (N, stamp_size, stamp_size)
            The stamps, in counts (ADU) including the sky.

        sky : array-like, shape (N,)
            Sky level S of each stamp's frame.

        dx, dy : array-like, shape (N,)
            Offset of the target from the central pixel's centre
            (``x - round(x)``). Required: the network was trained with
            the true offsets and measures unsaturated stars about 0.2 mag
            too faint without them.

        camera : array-like of str, shape (N,), optional
            ``'camera/filter'`` codes.

        mask : array-like of bool, shape (N, stamp_size, stamp_size), optional
            Pixels that are not data (masked by the caller, or off the
            image): like non-finite pixels they are left out of the
            background and count as background within the radius, but
            they do not make ``Prepared.finite`` false.

        Returns
        -------
        prepared : `~satphotutils.network.Prepared`
            The features and the quantities that go with them.
        """
        stamps = np.asarray(stamps, dtype=np.float32)
        size = self.stamp_size
        if stamps.ndim != 3 or stamps.shape[1:] != (size, size):
            msg = (f'stamps must have shape (N, {size}, {size}), got '
                   f'{stamps.shape}')
            raise ValueError(msg)
        n = len(stamps)
        if dx is None or dy is None:
            msg = ('dx and dy (the offsets of the targets from the central '
                   "pixel's centre) are required: the network was trained "
                   'with them')
            raise ValueError(msg)
        dx = np.broadcast_to(np.asarray(dx, dtype=np.float32), (n,))
        dy = np.broadcast_to(np.asarray(dy, dtype=np.float32), (n,))
        flat = stamps.reshape(n, -1)
        circle, ring, cx, cy = _geometry(size, self.radius, self.annulus)
        bad = ~np.isfinite(flat)
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != stamps.shape:
                msg = (f'mask must have the shape of the stamps, '
                       f'{stamps.shape}, got {mask.shape}')
                raise ValueError(msg)
            mask = mask.reshape(n, -1)
            missing = bad | mask
            # Only unmasked non-finite pixels the features read count.
            bad &= ~mask
        else:
            missing = bad
        # Most stamps miss nothing: only the others are looked at closely.
        rows = np.flatnonzero(missing.any(axis=1))
        finite = np.ones(n, dtype=bool)
        raw = flat[:, circle]
        vals = flat[:, ring]
        if rows.size:
            finite[rows] = ~(bad[rows][:, circle].any(axis=1)
                             | bad[rows][:, ring].any(axis=1))
            hole = missing[rows][:, circle]
            bkg = _ring_median(vals, missing[rows][:, ring], rows)
            # A missing pixel within the radius is taken at the
            # background: it adds nothing to A.
            raw[rows] = np.where(hole, bkg[rows, None], raw[rows])
            unity = raw == 1.0
            unity[rows] &= ~hole
        else:
            bkg = _ring_median(vals, None, rows)
            unity = raw == 1.0
        pix = raw - bkg[:, None]
        total = pix.sum(axis=1, dtype=np.float64)
        scale = np.maximum(total, _FLOOR)
        d2 = (cx[None, :] - dx[:, None])**2 + (cy[None, :] - dy[:, None])**2
        sig2 = np.float32((self.psf_fwhm / 2.3548) ** 2)
        # Matched filter with a unit-flux Gaussian: the PSF-weighted flux.
        prof = np.exp(d2 * np.float32(-0.5 / sig2)) \
            * np.float32(1 / (2 * np.pi * sig2))
        psf = (prof * pix).sum(axis=1) / (prof * prof).sum(axis=1)
        # The pixel-centre sums of the one aperture module (identical to
        # the sums the bundled model was trained on).
        ap2, ap3 = center_sums(pix, (2.0, 3.0), dx=dx, dy=dy,
                               shape=(size, size), index=circle)
        core_mask = (np.abs(cx) <= 1) & (np.abs(cy) <= 1)
        core = pix[:, core_mask].sum(axis=1)
        peak = pix.max(axis=1)
        n_unity = unity.sum(axis=1)
        scalars = np.column_stack([
            (np.log10(scale) - 5.0) / 2.0,
            (np.log10(np.maximum(peak, 1.0)) - 4.0) / 2.0,
            np.clip(psf / scale, -2, 3),
            np.clip(ap2 / scale, -2, 3),
            np.clip(ap3 / scale, -2, 3),
            np.clip(core / scale, -2, 3),
            np.clip(bkg / 1000.0, -5, 50),
            np.asarray(sky, dtype=float) / 1000.0,
            n_unity / 10.0,
            dx, dy]).astype(np.float32)
        cameras = len(self.cameras)
        if camera is None:
            slot = np.full(n, cameras)
            known = np.zeros(n, dtype=bool)
        else:
            codes, inverse = np.unique(np.asarray(camera, dtype=str),
                                       return_inverse=True)
            lookup = {c: i for i, c in enumerate(self.cameras)}
            slot = np.array([lookup.get(c, cameras) for c in codes])[
                inverse.ravel()]
            known = slot < cameras
        features = np.empty((n, self.n_features), dtype=np.float32)
        npx = len(circle)
        np.clip(pix / scale[:, None].astype(np.float32), -5, 5,
                out=features[:, :npx])
        features[:, npx:2 * npx] = unity
        features[:, 2 * npx:2 * npx + len(_SCALARS)] = scalars
        features[:, 2 * npx + len(_SCALARS):] = 0.0
        features[np.arange(n), 2 * npx + len(_SCALARS) + slot] = 1.0
        return Prepared(features=features, base=np.log10(scale),
                        aperture_sum=total, local_bkg=bkg.astype(float),
                        n_unity=n_unity, finite=finite, known_camera=known)


def _ring_median(vals, missing, rows):
    """
    Return the upper median of each row's usable annulus pixels.

    ``vals`` is a copy that is overwritten; ``missing`` says which pixels
    of the rows ``rows`` are not usable. One in-place partition for the
    rows without missing pixels (no float64 copy, half the work of
    np.median on an even count); a sort of the few others. A row with no
    usable pixel gets 0.
    """
    n_ring = vals.shape[1]
    k = n_ring // 2
    if rows.size:
        sub = np.where(missing, np.float32(np.inf), vals[rows])
        sub.sort(axis=1)
        count = (~missing).sum(axis=1)
        picked = np.where(count > 0, sub[np.arange(rows.size), np.minimum(
            count // 2, n_ring - 1)], np.float32(0.0))
        vals[rows] = 0.0
    vals.partition(k, axis=1)
    bkg = vals[:, k].copy()
    if rows.size:
        bkg[rows] = picked
    return bkg
