# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Preprocessing: stamps and metadata to the network's input features.

The network does not see raw counts, which span 10^2-10^8. Each stamp is
reduced to the 81 pixels within 5 px of its centre, its local background
(the median of an annulus, away from the bleed columns) is subtracted and
the pixels are divided by their sum ``A``; ``log10 A`` and a few other
scale-free summaries (PSF-weighted and small-aperture fluxes relative to
``A``, the peak) are appended, with the sub-pixel position, Z, S, the
pixels that are exactly 1 and an optional camera/filter encoding. The
network predicts ``log N - log10 A``: a correction to aperture
photometry, which for unsaturated stars is small and smooth, so that the
network starts from the classical answer and only has to improve on it.

Everything here is NumPy, free of I/O and of torch.
"""

import dataclasses
import functools

import numpy as np

__all__ = ['FEATURE_VERSION', 'StampFeatures']

#: Version of the feature definition; stored in model files.
FEATURE_VERSION = 1

# Names of the scalar features, in order, after the pixel blocks.
_SCALARS = ('log_flux', 'log_peak', 'psf_ratio', 'ap2_ratio', 'ap3_ratio',
            'core_ratio', 'local_bkg', 'sky', 'zeropoint', 'n_unity', 'dx',
            'dy', 'has_position')
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
    half = size // 2
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    return np.flatnonzero((xx**2 + yy**2 <= radius**2).ravel())


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
    >>> x = features(stamps, zeropoint=[25.5, 25.5], sky=[200.0, 200.0])
    >>> x['features'].shape, x['base'].round(3).tolist()
    ((2, 176), [4.0, 5.0])
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
        """Rebuild from `to_dict` output."""
        config = dict(config)
        version = config.pop('version', None)
        if version != FEATURE_VERSION:
            msg = (f'the model uses feature version {version}, this '
                   f'satphotutils computes version {FEATURE_VERSION}; '
                   'retrain the model or use a matching satphotutils')
            raise ValueError(msg)
        return cls(stamp_size=config['stamp_size'], radius=config['radius'],
                   annulus=tuple(config['annulus']),
                   psf_fwhm=config['psf_fwhm'],
                   cameras=tuple(config['cameras']))

    def classical_estimates(self, x):
        """
        Return classical log10 flux estimates from computed features.

        Parameters
        ----------
        x : dict
            Output of this object's `__call__`.

        Returns
        -------
        estimates : dict of `~numpy.ndarray`
            ``ap2``, ``ap3`` and ``ap5`` (pixel-centre apertures with the
            annulus background) and ``psf`` (Gaussian-weighted sum); NaN
            where the sum is not positive.
        """
        names = list(self.names)
        scale = 10 ** x['base']
        out = {'ap5': x['base']}
        for key, name in (('ap2', 'ap2_ratio'), ('ap3', 'ap3_ratio'),
                          ('psf', 'psf_ratio')):
            flux = x['features'][:, names.index(name)] * scale
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

    def __call__(self, stamps, *, zeropoint, sky, dx=None, dy=None,
                 camera=None):
        """
        Compute the features of a batch of stamps.

        Parameters
        ----------
        stamps : array-like, shape (N, stamp_size, stamp_size)
            The stamps, in counts (ADU) including the sky.

        zeropoint, sky : array-like, shape (N,)
            Zero point Z and sky level S of each stamp's frame.

        dx, dy : array-like, shape (N,), optional
            Offset of the target from the central pixel's centre.

        camera : array-like of str, shape (N,), optional
            ``'camera/filter'`` codes.

        Returns
        -------
        result : dict
            ``features`` (float32, shape (N, n_features)), ``base``
            (``log10 A``, the aperture-photometry estimate the network
            corrects, floored), ``aperture_sum`` (A itself, which can be
            zero or negative), ``local_bkg``, ``n_unity``, ``finite`` (all
            pixels finite) and ``known_camera``.
        """
        stamps = np.asarray(stamps, dtype=np.float32)
        size = self.stamp_size
        if stamps.ndim != 3 or stamps.shape[1:] != (size, size):
            msg = (f'stamps must have shape (N, {size}, {size}), got '
                   f'{stamps.shape}')
            raise ValueError(msg)
        n = len(stamps)
        flat = stamps.reshape(n, -1)
        finite = np.isfinite(flat).all(axis=1)
        if not finite.all():
            flat = np.where(np.isfinite(flat), flat, np.float32(0.0))
        circle, ring, cx, cy = _geometry(size, self.radius, self.annulus)
        # The (upper) median of the annulus, by one np.partition: no float64
        # copy and half the work of np.median on an even count.
        vals = flat[:, ring]
        k = vals.shape[1] // 2
        bkg = np.partition(vals, k, axis=1)[:, k]
        raw = flat[:, circle]
        pix = raw - bkg[:, None]
        unity = raw == 1.0
        total = pix.sum(axis=1, dtype=np.float64)
        scale = np.maximum(total, _FLOOR)
        has_position = 0.0 if dx is None or dy is None else 1.0
        dx = np.zeros(n, np.float32) if dx is None else \
            np.asarray(dx, dtype=np.float32)
        dy = np.zeros(n, np.float32) if dy is None else \
            np.asarray(dy, dtype=np.float32)
        d2 = (cx[None, :] - dx[:, None])**2 + (cy[None, :] - dy[:, None])**2
        sig2 = np.float32((self.psf_fwhm / 2.3548) ** 2)
        # Matched filter with a unit-flux Gaussian: the PSF-weighted flux.
        prof = np.exp(d2 * np.float32(-0.5 / sig2)) \
            * np.float32(1 / (2 * np.pi * sig2))
        psf = (prof * pix).sum(axis=1) / (prof * prof).sum(axis=1)
        ap2 = np.where(d2 <= 4, pix, 0).sum(axis=1)
        ap3 = np.where(d2 <= 9, pix, 0).sum(axis=1)
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
            np.asarray(zeropoint, dtype=float) - 25.0,
            n_unity / 10.0,
            dx, dy, np.full(n, has_position)]).astype(np.float32)
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
        return {'features': features, 'base': np.log10(scale),
                'aperture_sum': total,
                'local_bkg': bkg.astype(float), 'n_unity': n_unity,
                'finite': finite, 'known_camera': known}
