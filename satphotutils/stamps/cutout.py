# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Cutting stamps out of an image: many targets in one call.

The stamps of the network, the baselines and the stamp builder all come
from `cut_stamps`: a strided view of the image for the stamps that lie
on it (one row copy per stamp row, about 10x faster than gathering pixel
by pixel or `~astropy.nddata.Cutout2D` per target) and a clipped gather
for those cut by the edge.
"""

import numpy as np

__all__ = ['cut_stamps']


def cut_stamps(array, x, y, shape, *, dtype=None, fill_value=None):
    """
    Cut stamps centred on the pixels nearest the given positions.

    Parameters
    ----------
    array : 2D array-like
        The image (or a mask).

    x, y : array-like, shape (N,)
        Pixel positions (0-based, pixel centres at integers), rounded to
        the nearest pixel with `numpy.rint` (half to even). A non-finite
        position gives a stamp entirely off the image.

    shape : int or tuple of int
        Stamp shape ``(ny, nx)``, odd sizes; an int for a square.

    dtype : data-type, optional
        Type of the stamps; that of ``array`` if `None`.

    fill_value : scalar, optional
        Value of the cells off the image; if `None` they hold the
        nearest edge pixel's value (blank them with ``~inside``).

    Returns
    -------
    stamps : `~numpy.ndarray`, shape (N, ny, nx)
        The stamps; ``stamps[k, ny // 2, nx // 2]`` is the pixel nearest
        target k.

    inside : `~numpy.ndarray` of bool, shape (N, ny, nx)
        Which cells lie on the image.

    Raises
    ------
    ValueError
        If ``array`` is not 2D, a size is even, or ``x`` and ``y`` differ
        in length.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.stamps.cutout import cut_stamps
    >>> image = np.arange(30.0).reshape(5, 6)
    >>> stamps, inside = cut_stamps(image, [2.2, 0.4], [2.0, 0.0], (3, 3),
    ...                             fill_value=np.nan)
    >>> stamps[0]
    array([[ 7.,  8.,  9.],
           [13., 14., 15.],
           [19., 20., 21.]])
    >>> stamps[1]
    array([[nan, nan, nan],
           [nan,  0.,  1.],
           [nan,  6.,  7.]])
    >>> int(inside[1].sum())
    4
    """
    array = np.asarray(array)
    if array.ndim != 2:
        msg = f'array must be a 2D image, got shape {array.shape}'
        raise ValueError(msg)
    sy, sx = (int(shape), int(shape)) if np.ndim(shape) == 0 else \
        (int(shape[0]), int(shape[1]))
    if sy < 1 or sx < 1 or sy % 2 == 0 or sx % 2 == 0:
        msg = (f'shape must be two odd sizes (ny, nx), got {shape}: the '
               'stamps are centred on a pixel')
        raise ValueError(msg)
    x = np.atleast_1d(np.asarray(x, dtype=float))
    y = np.atleast_1d(np.asarray(y, dtype=float))
    if x.shape != y.shape or x.ndim != 1:
        msg = (f'x and y must be 1D and of the same length, got shapes '
               f'{x.shape} and {y.shape}')
        raise ValueError(msg)
    ny, nx = array.shape
    hy, hx = sy // 2, sx // 2
    # Non-finite positions go where no stamp can reach the image.
    placed = np.isfinite(x) & np.isfinite(y)
    ix = np.where(placed, np.rint(np.where(placed, x, 0)), -sx - 1).astype(
        np.int64)
    iy = np.where(placed, np.rint(np.where(placed, y, 0)), -sy - 1).astype(
        np.int64)
    out = np.empty((len(x), sy, sx), dtype=array.dtype if dtype is None
                   else dtype)
    inside = np.ones((len(x), sy, sx), dtype=bool)
    interior = ((ix >= hx) & (ix < nx - hx) & (iy >= hy) & (iy < ny - hy))
    if interior.any():
        # A strided view of all windows: each stamp is copied row by row
        # instead of gathered pixel by pixel.
        windows = np.lib.stride_tricks.sliding_window_view(array, (sy, sx))
        out[interior] = windows[iy[interior] - hy, ix[interior] - hx]
    edge = np.flatnonzero(~interior)
    if len(edge):
        rows = iy[edge, None] + np.arange(-hy, hy + 1)[None, :]
        cols = ix[edge, None] + np.arange(-hx, hx + 1)[None, :]
        inside[edge] = (((rows >= 0) & (rows < ny))[:, :, None]
                        & ((cols >= 0) & (cols < nx))[:, None, :])
        out[edge] = array[np.clip(rows, 0, ny - 1)[:, :, None],
                          np.clip(cols, 0, nx - 1)[:, None, :]]
        if fill_value is not None:
            out[edge] = np.where(inside[edge], out[edge], fill_value)
    return out, inside
