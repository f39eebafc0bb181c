# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Registering frames without a WCS to a reference frame by their stars.

A night of a small telescope drifts and rotates across the sky and is
rarely plate-solved. Each frame is tied to a reference frame of the same
camera by the pattern of its stars: `find_stars` detects the brightest
unsaturated stars (photutils ``find_peaks``, centroids by
`~satphotutils.photometry.recentre`), `register_stars` matches triangles
of neighbouring stars by their shape (two side ratios, which neither a
shift, a rotation nor a change of scale alters), takes the
transformation that the most stars agree with and refits it to all of
them by least squares.

The transformation is a similarity (shift, rotation, one scale): one
camera on one night changes nothing else, and four parameters fitted to
tens of stars leave the positions of the targets better known than a
six-parameter affine fit would.

Written here rather than taken from ``astroalign`` (which does the same
with scikit-image's RANSAC): the package needs nothing new, and the
matching works on star lists, which the light-curve pipeline keeps for
the reference frame, so the reference is detected once per run.
"""

import dataclasses
import itertools

import numpy as np

from satphotutils.utils.exceptions import SatphotutilsError

__all__ = ['RegistrationError', 'SimilarityTransform', 'find_stars',
           'register_stars']

# Side of the box within which a detected peak is the local maximum, and
# the margin kept from the edges (pixels).
_BOX = 7
# Neighbours of each star that form its triangles: C(k, 2) triangles.
_NEIGHBOURS = 5
# Brightest stars whose triangles are matched (the rest only vote).
_TRIANGLE_STARS = 30
# Distance in the invariant space (side ratios) of matching triangles.
_INVARIANT_TOLERANCE = 0.01
# Scale changes taken as plausible for one camera between two frames.
_SCALE_RANGE = (0.8, 1.25)


class RegistrationError(SatphotutilsError):
    """A frame whose stars cannot be matched to the reference frame's."""


@dataclasses.dataclass(frozen=True)
class SimilarityTransform:
    """
    A shift, rotation and scale from reference pixels to frame pixels.

    A reference pixel ``(x, y)`` falls on the frame at
    ``scale * R(rotation) (x, y) + (x_shift, y_shift)``, with ``R`` the
    counter-clockwise rotation (in pixel coordinates, x to the right and
    y up).

    Attributes
    ----------
    scale : float
        Frame pixels per reference pixel.

    rotation : float
        Rotation angle (degrees).

    x_shift, y_shift : float
        Where the reference pixel (0, 0) falls on the frame.

    residual : float
        Root-mean-square distance (pixels) between the matched stars of
        the frame and the transformed reference stars: the centroid
        noise of both frames, not the error of the transform, which is
        smaller by about the square root of ``n_matched``.

    n_matched : int
        Stars matched and fitted.

    Examples
    --------
    >>> from satphotutils.frames import SimilarityTransform
    >>> t = SimilarityTransform(scale=1.0, rotation=90.0, x_shift=10.0,
    ...                         y_shift=0.0)
    >>> [round(float(v), 6) for v in t(1.0, 0.0)]
    [10.0, 1.0]
    >>> [round(float(v), 6) for v in t.inverse(*t(3.0, 4.0))]
    [3.0, 4.0]
    """

    scale: float = 1.0
    rotation: float = 0.0
    x_shift: float = 0.0
    y_shift: float = 0.0
    residual: float = 0.0
    n_matched: int = 0

    @classmethod
    def from_parameters(cls, a, b, x_shift, y_shift, **kwargs):
        """Build one from ``a = s cos(theta)``, ``b = s sin(theta)``."""
        return cls(scale=float(np.hypot(a, b)),
                   rotation=float(np.degrees(np.arctan2(b, a))),
                   x_shift=float(x_shift), y_shift=float(y_shift), **kwargs)

    def _ab(self):
        theta = np.radians(self.rotation)
        return self.scale * np.cos(theta), self.scale * np.sin(theta)

    def __call__(self, x, y):
        """Return the frame positions of reference pixels ``x, y``."""
        a, b = self._ab()
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        return a * x - b * y + self.x_shift, b * x + a * y + self.y_shift

    def inverse(self, x, y):
        """Return the reference positions of frame pixels ``x, y``."""
        a, b = self._ab()
        x = np.asarray(x, dtype=float) - self.x_shift
        y = np.asarray(y, dtype=float) - self.y_shift
        s2 = a * a + b * b
        return (a * x + b * y) / s2, (-b * x + a * y) / s2

    def to_dict(self):
        """Return the values as a JSON-able dict."""
        return dataclasses.asdict(self)


def find_stars(image, *, mask=None, n_stars=100, snr=10.0,
               saturation=None):
    """
    Detect the brightest unsaturated stars of a frame.

    Local maxima (photutils `~photutils.detection.find_peaks`, in
    7 x 7 px boxes) higher than ``snr`` times the background noise above
    the sigma-clipped background are centred on their light
    (`~satphotutils.photometry.recentre` with each star's own centroid).
    Peaks that reach ``saturation`` are left out: a clipped core and its
    bleed trail move the centroid along the column.

    Parameters
    ----------
    image : 2D array-like
        The frame (counts, sky included).

    mask : 2D bool array-like, optional
        Bad pixels.

    n_stars : int, optional
        Most stars returned.

    snr : float, optional
        Least peak height in units of the background noise.

    saturation : float, optional
        Counts (sky included) at which pixels saturate; without it, no
        peak is excluded as saturated.

    Returns
    -------
    x, y, peak : `~numpy.ndarray`
        Centroids and peak heights above the background, brightest
        first.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.frames import find_stars
    >>> yy, xx = np.mgrid[:100, :100]
    >>> image = 100.0 + 5000.0 * np.exp(-((xx - 30.3) ** 2
    ...                                   + (yy - 60.6) ** 2) / 2.0)
    >>> x, y, peak = find_stars(image)
    >>> print(f'{x[0]:.1f} {y[0]:.1f}')
    30.3 60.6
    """
    from satphotutils.photometry.centroids import recentre

    from .descriptors import _local_maxima, frame_background

    image = np.asarray(image, dtype=float)
    bad = ~np.isfinite(image)
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)
    # The frame's one background measurement, and frame_fwhm's peaks
    # (photutils' find_peaks, on the pixels above the threshold only).
    sky, std = frame_background(image, mask=bad)
    if not np.isfinite(sky):
        return np.empty(0), np.empty(0), np.empty(0)
    # Bad pixels at the sky level: they neither are nor hide peaks.
    iy, ix = _local_maxima(np.where(bad, sky, image),
                           sky + snr * max(std, 1e-12), _BOX, bad)
    x, y = ix.astype(float), iy.astype(float)
    peak = image[iy, ix] - sky
    if saturation is not None:
        keep = peak + sky < saturation
        x, y, peak = x[keep], y[keep], peak[keep]
    order = np.argsort(-peak)[:int(n_stars)]
    x, y, peak = x[order], y[order], peak[order]
    xc, yc, _, _, _ = recentre(image, x, y, sky=sky, mask=bad,
                               max_shift=2.0, common=False)
    return xc, yc, peak


def _triangles(xy):
    """Triangles of each star and its neighbours: vertices, invariants."""
    from scipy.spatial import cKDTree

    n = len(xy)
    k = min(_NEIGHBOURS, n - 1)
    if k < 2:
        return np.empty((0, 3), dtype=int), np.empty((0, 2))
    _, near = cKDTree(xy).query(xy, k=k + 1)
    found = set()
    for row in near:
        for pair in itertools.combinations(row[1:], 2):
            found.add(tuple(sorted((row[0], *pair))))
    tri = np.array(sorted(found), dtype=int)
    p = xy[tri]  # (n, 3, 2)
    # Side opposite each vertex.
    side = np.stack([np.hypot(*(p[:, 1] - p[:, 2]).T),
                     np.hypot(*(p[:, 2] - p[:, 0]).T),
                     np.hypot(*(p[:, 0] - p[:, 1]).T)], axis=1)
    # Vertices in the order of their opposite sides, shortest first: the
    # same star is the same vertex in both frames.
    order = np.argsort(side, axis=1)
    tri = np.take_along_axis(tri, order, axis=1)
    side = np.take_along_axis(side, order, axis=1)
    with np.errstate(invalid='ignore', divide='ignore'):
        inv = side[:, :2] / side[:, 2:]
    ok = np.isfinite(inv).all(axis=1) & (side[:, 0] > 0)
    return tri[ok], inv[ok]


def _fit(ref, xy):
    """Least-squares similarity ``xy = [[a, -b], [b, a]] ref + t``."""
    n = len(ref)
    design = np.zeros((2 * n, 4))
    design[0::2] = np.column_stack([ref[:, 0], -ref[:, 1], np.ones(n),
                                    np.zeros(n)])
    design[1::2] = np.column_stack([ref[:, 1], ref[:, 0], np.zeros(n),
                                    np.ones(n)])
    params, *_ = np.linalg.lstsq(design, xy.ravel(), rcond=None)
    return params


def _apply(params, ref):
    a, b, tx, ty = params
    return np.column_stack([a * ref[:, 0] - b * ref[:, 1] + tx,
                            b * ref[:, 0] + a * ref[:, 1] + ty])


def _pairs(params, ref, tree, tolerance):
    """Return the pairs: reference stars with a frame star near them."""
    dist, idx = tree.query(_apply(params, ref),
                           distance_upper_bound=tolerance)
    ok = np.isfinite(dist)
    # One frame star for one reference star: the nearest claim wins.
    best = {}
    for i in np.flatnonzero(ok):
        j = idx[i]
        if j not in best or dist[i] < dist[best[j]]:
            best[j] = i
    ref_i = np.array(sorted(best.values()), dtype=int)
    return ref_i, idx[ref_i]


def register_stars(x, y, x_ref, y_ref, *, tolerance=2.0, min_matches=6):
    """
    Find the similarity transform from reference stars to a frame's.

    Triangles of each star and its nearest neighbours among the
    brightest 30 of each list are matched by their two side ratios;
    each matched triangle proposes a transform (its three vertex pairs),
    which is scored by the number of reference stars it puts within
    ``tolerance`` pixels of a frame star. The best proposal is refitted
    to its matched stars by least squares, and the matching and fit are
    repeated with the tolerance narrowed to three times the residual
    (not below 0.5 px), so that a star matched by chance drops out.

    Parameters
    ----------
    x, y : array-like
        The frame's stars, brightest first (as `find_stars` returns).

    x_ref, y_ref : array-like
        The reference frame's stars, brightest first.

    tolerance : float, optional
        Largest distance (pixels) of a matched pair for a proposal.

    min_matches : int, optional
        Fewest matched stars for a registration.

    Returns
    -------
    transform : `SimilarityTransform`
        From reference pixels to frame pixels.

    Raises
    ------
    RegistrationError
        If no proposal matches ``min_matches`` stars (too few stars, a
        frame of another field, clouds).

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.frames import SimilarityTransform, register_stars
    >>> rng = np.random.default_rng(0)
    >>> x_ref, y_ref = rng.uniform(0, 500, (2, 40))
    >>> true = SimilarityTransform(rotation=2.0, x_shift=120.0,
    ...                            y_shift=-35.0)
    >>> x, y = true(x_ref, y_ref)
    >>> fit = register_stars(x[::-1], y[::-1], x_ref, y_ref)
    >>> round(fit.rotation, 3), round(fit.x_shift, 2), fit.n_matched
    (2.0, 120.0, 40)
    """
    from scipy.spatial import cKDTree

    frame = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
    ref = np.column_stack([np.asarray(x_ref, float),
                           np.asarray(y_ref, float)])
    frame = frame[np.isfinite(frame).all(axis=1)]
    ref = ref[np.isfinite(ref).all(axis=1)]
    if min(len(frame), len(ref)) < max(min_matches, 3):
        msg = (f'{len(frame)} stars found on the frame and {len(ref)} on '
               f'the reference, fewer than the {max(min_matches, 3)} '
               'needed to register it; is it cloudy, out of focus or of '
               'another field?')
        raise RegistrationError(msg)
    tri, inv = _triangles(frame[:_TRIANGLE_STARS])
    tri_ref, inv_ref = _triangles(ref[:_TRIANGLE_STARS])
    tree = cKDTree(frame)
    best, best_n = None, 0
    if len(tri) and len(tri_ref):
        candidates = cKDTree(inv).query_ball_point(
            inv_ref, r=_INVARIANT_TOLERANCE)
        tried = set()
        for k, matches in enumerate(candidates):
            for m in matches:
                params = _fit(ref[tri_ref[k]], frame[tri[m]])
                scale = np.hypot(params[0], params[1])
                if not _SCALE_RANGE[0] <= scale <= _SCALE_RANGE[1]:
                    continue
                key = tuple(np.round(params, 1))
                if key in tried:
                    continue
                tried.add(key)
                ref_i, _ = _pairs(params, ref, tree, tolerance)
                if len(ref_i) > best_n:
                    best, best_n = params, len(ref_i)
    if best is None or best_n < min_matches:
        msg = (f'no star pattern of the frame matches the reference: at '
               f'most {best_n} of {len(ref)} reference stars matched, '
               f'fewer than {min_matches}; is it cloudy, out of focus or '
               'of another field?')
        raise RegistrationError(msg)
    width = tolerance
    for _ in range(3):
        ref_i, frame_i = _pairs(best, ref, tree, width)
        if len(ref_i) < min_matches:
            break
        best = _fit(ref[ref_i], frame[frame_i])
        offsets = _apply(best, ref[ref_i]) - frame[frame_i]
        rms = float(np.sqrt(np.mean(np.sum(offsets**2, axis=1))))
        width = max(3.0 * rms, 0.5)
    ref_i, frame_i = _pairs(best, ref, tree, width)
    if len(ref_i) < min_matches:
        msg = (f'the star pattern matched {len(ref_i)} stars after the '
               f'fit, fewer than {min_matches}')
        raise RegistrationError(msg)
    best = _fit(ref[ref_i], frame[frame_i])
    offsets = _apply(best, ref[ref_i]) - frame[frame_i]
    rms = float(np.sqrt(np.mean(np.sum(offsets**2, axis=1))))
    return SimilarityTransform.from_parameters(
        *best, residual=rms, n_matched=len(ref_i))
