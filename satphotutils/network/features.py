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

A tall stamp (``ny > nx`` rows along the read direction, for frames whose
bleed trails were left in place) has the circle drawn out along its
central column into a stadium: ``A`` is then the sum of the trail, the
core and the wings, which on such frames holds the star's charge, and
the background annulus the columns beside the trail. For a star without
a trail on a uniform sky, a tall stamp's features are those of its
central ``nx x nx`` square, the extra pixels of its pixel blocks aside
(zero): the apertures, the matched filter and the core are all centred
on the target.

The zero point is not an input (since feature version 2): the counts on
a frame do not depend on the calibration that turns them into magnitudes,
and version 1's zero-point input was constant in training, so any other
value only shifted the prediction.

Feature version 3 is camera-invariant: no input is an absolute number of
counts. What saturation does to a star depends on its flux relative to
the level at which pixels stop responding, so the flux, the peak and the
sky are given relative to the frame's saturation level (``SATURATE`` or
the measured plateau) above the local background, and the frame's FWHM,
measured from its unsaturated stars, is an input and sets the width of
the matched filter. Multiplying a stamp, its sky and its saturation level
by any factor (another gain, exposure time or zero point) leaves the
features unchanged and multiplies the predicted counts by that factor.
Version 3 has no camera encoding unless ``cameras`` are given, so that a
camera-agnostic model has no input that is constant in training.

Everything here is NumPy, free of I/O and of torch.
"""

import dataclasses
import functools
import numbers

import numpy as np

from satphotutils.stamps.apertures import center_sums, circle_index
from satphotutils.utils._parameters import stamp_shape

__all__ = ['FEATURE_VERSION', 'Prepared', 'StampFeatures']

#: Version of the feature definition new models use; stored in model
#: files. Version 2 dropped version 1's ``zeropoint`` and ``has_position``
#: inputs (see `~satphotutils.network.convert_v1_model`); version 3 gives
#: every count relative to the saturation level and adds the frame's FWHM.
FEATURE_VERSION = 3

#: Feature versions this satphotutils computes (and so reads models of).
FEATURE_VERSIONS = (2, 3)

# Names of the scalar features, in order, after the pixel blocks.
_SCALARS = {
    2: ('log_flux', 'log_peak', 'psf_ratio', 'ap2_ratio', 'ap3_ratio',
        'core_ratio', 'local_bkg', 'sky', 'n_unity', 'dx', 'dy'),
    3: ('log_flux_sat', 'log_peak_sat', 'psf_ratio', 'ap2_ratio',
        'ap3_ratio', 'core_ratio', 'bkg_excess', 'log_sky_sat',
        'sky_contrast', 'fwhm', 'n_unity', 'dx', 'dy'),
}
# The frame descriptors each version needs besides the stamps.
_NEEDS = {2: ('sky', 'dx', 'dy'), 3: ('sky', 'dx', 'dy', 'saturation',
                                      'fwhm')}
_FLOOR = 30.0  # counts: the smallest aperture sum taken at face value
_UNKNOWN = '<unknown>'


@functools.lru_cache(maxsize=8)
def _geometry(shape, radius, annulus):
    """
    Return the signal region's and annulus's indices, the region's offsets.

    Distances are taken from the target's column segment: the central
    pixel for a square stamp (the region is the paper's circle), the
    ``ny - nx + 1`` central pixels of the central column for a tall one
    (the region is a stadium that holds the bleed trail, the annulus
    the columns beside it).
    """
    yy, xx = _stamp_offsets(shape)
    along = _along(shape, yy)
    r = np.hypot(xx, along).ravel()
    region = _region_index(shape, radius)
    # The annulus leaves out the bleed columns, where the pipeline's
    # interpolation leaves residuals.
    ring = np.flatnonzero((r >= annulus[0]) & (r <= annulus[1])
                          & (np.abs(xx.ravel()) > 2))
    cx = xx.ravel()[region].astype(np.float32)
    cy = yy.ravel()[region].astype(np.float32)
    return region, ring, cx, cy


def _stamp_offsets(shape):
    ny, nx = shape
    return np.mgrid[-(ny // 2):ny // 2 + 1, -(nx // 2):nx // 2 + 1]


def _along(shape, yy):
    """Row distance from the central column segment (0 on it)."""
    reach = (shape[0] - shape[1]) // 2
    return np.maximum(np.abs(yy) - reach, 0)


@functools.lru_cache(maxsize=8)
def _region_index(shape, radius):
    if shape[0] == shape[1]:
        # The one circle of the aperture module (as the bundled model
        # was trained).
        return circle_index(shape, radius)
    yy, xx = _stamp_offsets(shape)
    index = np.flatnonzero(
        (xx**2 + _along(shape, yy)**2 <= radius**2).ravel())
    index.flags.writeable = False
    return index


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

    log_headroom : `~numpy.ndarray`
        ``log10`` of the saturation level above the local background
        (counts): where saturation sets in for this frame. NaN for
        feature version 2, which does not know it.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.network import StampFeatures
    >>> stamps = np.full((3, 21, 21), 100.0)
    >>> x = StampFeatures()(stamps, sky=np.full(3, 100.0), dx=np.zeros(3),
    ...                     dy=np.zeros(3), saturation=6e4, fwhm=2.0)
    >>> len(x), len(x[1:]), x[[0, 2]].features.shape
    (3, 2, (2, 175))
    """

    features: np.ndarray
    base: np.ndarray
    aperture_sum: np.ndarray
    local_bkg: np.ndarray
    n_unity: np.ndarray
    finite: np.ndarray
    known_camera: np.ndarray
    log_headroom: np.ndarray


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
    stamp_size : int or tuple of int, optional
        Size of square stamps, or their shape ``(ny, nx)``: odd sizes,
        ``ny >= nx``, the rows along the read (bleed) direction
        (`~satphotutils.stamps.stamp_shape`).

    radius : float, optional
        Radius of the signal region (the paper's 5 px: a circle of 81
        pixels on a square stamp). On a tall stamp the region is every
        pixel within ``radius`` of the central column's ``ny - nx + 1``
        central pixels: the circle drawn out along the column into a
        stadium that holds the bleed trail (741 pixels on 81 x 21).

    annulus : tuple of float, optional
        Inner and outer radius of the local-background annulus, its
        distances taken as the region's: on a tall stamp the columns
        beside the trail, its whole length.

    psf_fwhm : float, optional
        FWHM (px) of the Gaussian weight of the PSF-weighted flux in
        version 2; version 3 uses each frame's own FWHM.

    cameras : tuple of str, optional
        ``'camera/filter'`` codes with their own encoding; any other
        (or a missing camera column) uses the camera-agnostic encoding
        and is flagged. Empty for a camera-agnostic model (which in
        version 3 has no camera inputs at all).

    version : {3, 2}, optional
        The feature definition (``FEATURE_VERSION`` for new models; a model
        file says which one it was trained with). Version 3 needs the
        frame's ``saturation`` level and ``fwhm`` in `__call__`.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.network import StampFeatures
    >>> features = StampFeatures()
    >>> stamps = np.full((2, 21, 21), 200.0, dtype=np.float32)
    >>> stamps[:, 10, 10] += [1e4, 1e5]
    >>> x = features(stamps, sky=[200.0, 200.0], dx=[0.0, 0.0],
    ...              dy=[0.0, 0.0], saturation=[6e4, 6e4], fwhm=[1.8, 1.8])
    >>> x.features.shape, x.base.round(3).tolist()
    ((2, 175), [4.0, 5.0])

    Counts scaled by any factor (another gain or exposure time) give the
    same features:

    >>> y = features(10 * stamps, sky=[2e3, 2e3], dx=[0.0, 0.0],
    ...              dy=[0.0, 0.0], saturation=[6e5, 6e5], fwhm=[1.8, 1.8])
    >>> bool(np.allclose(x.features, y.features, atol=1e-5))
    True

    Tall stamps (rows along the bleed direction) for uncorrected frames,
    whose signal region follows the trail:

    >>> tall = StampFeatures(stamp_size=(81, 21))
    >>> tall.stamp_shape, tall.n_pixels, tall.n_features
    ((81, 21), 741, 1495)
    """

    stamp_size: int | tuple = 21
    radius: float = 5.0
    annulus: tuple = (7.0, 10.0)
    psf_fwhm: float = 1.8
    cameras: tuple = ()
    version: int = FEATURE_VERSION

    def __post_init__(self):
        if self.version not in FEATURE_VERSIONS:
            msg = (f'feature version {self.version!r} is not one this '
                   f'satphotutils computes ({FEATURE_VERSIONS})')
            raise ValueError(msg)
        ny, nx = stamp_shape(self.stamp_size, name='stamp_size', minimum=3)
        # One value per shape: an int for a square (as model files and
        # equality have always had it), the pair for a tall stamp.
        object.__setattr__(self, 'stamp_size',
                           nx if ny == nx else (ny, nx))
        if not 0 < self.radius < self.annulus[0] < self.annulus[1] \
                <= nx // 2 * np.sqrt(2):
            msg = 'need 0 < radius < annulus[0] < annulus[1] within the stamp'
            raise ValueError(msg)

    @property
    def stamp_shape(self):
        """The stamp shape ``(ny, nx)``."""
        size = self.stamp_size
        return (size, size) if isinstance(size, int) else tuple(size)

    @property
    def signal_mask(self):
        """
        The signal region as a boolean mask of the stamp shape (read-only).

        The pixels the network sees: the circle of ``radius`` on a square
        stamp, the stadium along the trail on a tall one.
        """
        mask = np.zeros(self.stamp_shape, dtype=bool)
        mask.ravel()[_region_index(self.stamp_shape, self.radius)] = True
        mask.flags.writeable = False
        return mask

    @property
    def n_pixels(self):
        """Number of pixels in the signal region."""
        return len(_region_index(self.stamp_shape, self.radius))

    @property
    def pixel_offsets(self):
        """
        Integer ``(dy, dx)`` of each region pixel from the central pixel.

        In the order of the ``pixel_*`` and ``unity_*`` features, so
        that an architecture can put them back on a grid.
        """
        _, _, cx, cy = _geometry(self.stamp_shape, self.radius,
                                 self.annulus)
        return cy.astype(int), cx.astype(int)

    @property
    def names(self):
        """Names of the features, in order."""
        pixels = [f'pixel_{i}' for i in range(self.n_pixels)]
        unity = [f'unity_{i}' for i in range(self.n_pixels)]
        return (*pixels, *unity, *self.scalar_names, *self._camera_names)

    @property
    def scalar_names(self):
        """Names of the scalar features (after the pixel blocks)."""
        return _SCALARS[self.version]

    @property
    def needs(self):
        """The per-row inputs `__call__` needs besides the stamps."""
        return _NEEDS[self.version]

    @property
    def _camera_names(self):
        if self.version >= 3 and not self.cameras:
            return ()
        return tuple(f'camera_{c}' for c in (*self.cameras, _UNKNOWN))

    @property
    def n_features(self):
        """Number of features."""
        return len(self.names)

    def to_dict(self):
        """Return the configuration as JSON-serialisable data."""
        size = self.stamp_size
        return {'version': self.version,
                'stamp_size': size if isinstance(size, int) else list(size),
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
        if isinstance(version, bool) or version not in FEATURE_VERSIONS:
            msg = (f'the model uses feature version {version}, this '
                   f'satphotutils computes versions {FEATURE_VERSIONS}; '
                   'retrain the model or use a matching satphotutils')
            raise ValueError(msg)
        size = config.get('stamp_size')
        # An int (square) or [ny, nx]; a satphotutils from before tall
        # stamps refuses the pair rather than reading it as a square.
        sizes = size if isinstance(size, list) else [size]
        if not 1 <= len(sizes) <= 2 or any(
                isinstance(n, bool) or not isinstance(n, numbers.Integral)
                or not 3 <= n <= 1023 or n % 2 == 0 for n in sizes) \
                or sizes[0] < sizes[-1]:
            msg = ('features.stamp_size must be an odd integer or [ny, nx] '
                   f'(odd, ny >= nx), got {size!r}')
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
            return cls(stamp_size=tuple(int(n) for n in sizes),
                       radius=radius, annulus=annulus,
                       psf_fwhm=psf_fwhm, cameras=tuple(cameras),
                       version=int(version))
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
        shape = self.stamp_shape
        idx = _region_index(shape, self.radius)
        grid = np.full(shape[0] * shape[1], -1)
        grid[idx] = np.arange(len(idx))
        # Flips only: a transpose would turn a tall stamp's trail across
        # the read direction, which no detector does.
        grid = grid.reshape(shape)
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
        dx = 2 * self.n_pixels + self.scalar_names.index('dx')
        dy = 2 * self.n_pixels + self.scalar_names.index('dy')
        signs[1, dx] = signs[3, dx] = -1
        signs[2, dy] = signs[3, dy] = -1
        return signs

    def __call__(self, stamps, *, sky, dx, dy, camera=None, mask=None,
                 saturation=None, fwhm=None):
        """
        Compute the features of a batch of stamps.

        Parameters
        ----------
        stamps : array-like, shape (N, ny, nx)
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

        mask : array-like of bool, shape (N, ny, nx), optional
            Pixels that are not data (masked by the caller, or off the
            image): like non-finite pixels they are left out of the
            background and count as background within the radius, but
            they do not make ``Prepared.finite`` false.

        saturation : array-like, shape (N,)
            Version 3: the level (in the stamps' counts, sky included) at
            which the frame's pixels stop responding - ``SATURATE`` or
            the measured plateau. Ignored by version 2.

        fwhm : array-like, shape (N,)
            Version 3: the frame's PSF FWHM in pixels, measured from its
            unsaturated stars (`~satphotutils.frames.frame_fwhm`).
            Ignored by version 2.

        Returns
        -------
        prepared : `~satphotutils.network.Prepared`
            The features and the quantities that go with them.
        """
        stamps = np.asarray(stamps, dtype=np.float32)
        shape = self.stamp_shape
        if stamps.ndim != 3 or stamps.shape[1:] != shape:
            msg = (f'stamps must have shape (N, {shape[0]}, {shape[1]}) '
                   f'(features.stamp_size), got {stamps.shape}: cut them '
                   'at that shape, the rows along the bleed direction')
            raise ValueError(msg)
        n = len(stamps)
        if dx is None or dy is None:
            msg = ('dx and dy (the offsets of the targets from the central '
                   "pixel's centre) are required: the network was trained "
                   'with them')
            raise ValueError(msg)
        dx = np.broadcast_to(np.asarray(dx, dtype=np.float32), (n,))
        dy = np.broadcast_to(np.asarray(dy, dtype=np.float32), (n,))
        sky = np.broadcast_to(np.asarray(sky, dtype=float), (n,))
        if self.version >= 3:
            saturation, fwhm = _frame_descriptors(saturation, fwhm, sky, n)
        flat = stamps.reshape(n, -1)
        circle, ring, cx, cy = _geometry(shape, self.radius, self.annulus)
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
        if self.version >= 3:
            sig2 = ((fwhm / 2.3548) ** 2).astype(np.float32)[:, None]
        else:
            sig2 = np.float32((self.psf_fwhm / 2.3548) ** 2)
        # Matched filter with a unit-flux Gaussian: the PSF-weighted flux.
        prof = np.exp(d2 * np.float32(-0.5 / sig2)) \
            * np.float32(1 / (2 * np.pi * sig2))
        psf = (prof * pix).sum(axis=1) / (prof * prof).sum(axis=1)
        # The pixel-centre sums of the one aperture module (identical to
        # the sums the bundled model was trained on).
        ap2, ap3 = center_sums(pix, (2.0, 3.0), dx=dx, dy=dy,
                               shape=shape, index=circle)
        core_mask = (np.abs(cx) <= 1) & (np.abs(cy) <= 1)
        core = pix[:, core_mask].sum(axis=1)
        peak = pix.max(axis=1)
        n_unity = unity.sum(axis=1)
        if self.version >= 3:
            scalars = _scalars_v3(scale, peak, psf, ap2, ap3, core, bkg, sky,
                                  saturation, fwhm, n_unity, dx, dy,
                                  len(circle))
        else:
            scalars = np.column_stack([
                (np.log10(scale) - 5.0) / 2.0,
                (np.log10(np.maximum(peak, 1.0)) - 4.0) / 2.0,
                np.clip(psf / scale, -2, 3),
                np.clip(ap2 / scale, -2, 3),
                np.clip(ap3 / scale, -2, 3),
                np.clip(core / scale, -2, 3),
                np.clip(bkg / 1000.0, -5, 50),
                sky / 1000.0,
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
        n_scalars = len(self.scalar_names)
        np.clip(pix / scale[:, None].astype(np.float32), -5, 5,
                out=features[:, :npx])
        features[:, npx:2 * npx] = unity
        features[:, 2 * npx:2 * npx + n_scalars] = scalars
        if self._camera_names:
            features[:, 2 * npx + n_scalars:] = 0.0
            features[np.arange(n), 2 * npx + n_scalars + slot] = 1.0
        headroom = np.log10(np.maximum(saturation - bkg, 1.0)) \
            if self.version >= 3 else np.full(n, np.nan)
        return Prepared(features=features, base=np.log10(scale),
                        aperture_sum=total, local_bkg=bkg.astype(float),
                        n_unity=n_unity, finite=finite, known_camera=known,
                        log_headroom=headroom)


def _frame_descriptors(saturation, fwhm, sky, n):
    """Check version 3's per-frame inputs; no default stands in for one."""
    out = []
    for name, value, fix in (
            ('saturation', saturation,
             "the frame's SATURATE keyword, its measured plateau "
             '(satphotutils.frames.saturation_level) or a saturation '
             'column in the stamp table'),
            ('fwhm', fwhm,
             "the FWHM measured from the frame's unsaturated stars "
             '(satphotutils.frames.frame_fwhm) or an fwhm column')):
        if value is None:
            msg = (f'{name} is required by feature version 3 (the model '
                   f'reads it): give {fix}')
            raise ValueError(msg)
        value = np.broadcast_to(np.asarray(value, dtype=float), (n,))
        if not np.all(np.isfinite(value) & (value > 0)):
            bad = value[~(np.isfinite(value) & (value > 0))][0]
            msg = (f'{name} must be finite and positive for every stamp, '
                   f'got {bad!r}: give {fix}')
            raise ValueError(msg)
        out.append(value)
    saturation, fwhm = out
    if np.any(saturation <= sky):
        bad = int(np.flatnonzero(saturation <= sky)[0])
        msg = (f'saturation ({saturation[bad]:g}) must lie above the sky '
               f'({sky[bad]:g}): it is the level, sky included, at which a '
               'pixel stops responding, in the counts of the stamps')
        raise ValueError(msg)
    return saturation, fwhm


def _scalars_v3(scale, peak, psf, ap2, ap3, core, bkg, sky, saturation,
                fwhm, n_unity, dx, dy, n_pixels):
    """Version 3's scalar features: no absolute number of counts."""
    # The headroom: how far above the local background a pixel can rise.
    headroom = np.maximum(saturation - bkg, 1.0)
    sky_pos = np.maximum(sky, 1.0)
    return np.column_stack([
        np.clip((np.log10(scale / headroom) - 0.5) / 2.0, -4, 4),
        np.clip(np.log10(np.maximum(peak, 1.0) / headroom) + 1.0, -4, 2),
        np.clip(psf / scale, -2, 3),
        np.clip(ap2 / scale, -2, 3),
        np.clip(ap3 / scale, -2, 3),
        np.clip(core / scale, -2, 3),
        np.clip((bkg - sky) / sky_pos, -1, 10),
        np.clip(np.log10(sky_pos / saturation) + 2.0, -4, 2),
        np.clip(np.log10(sky_pos * n_pixels / scale) / 2.0, -4, 4),
        np.clip((fwhm - 2.0) / 1.0, -2, 6),
        n_unity / 10.0,
        dx, dy]).astype(np.float32)


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
