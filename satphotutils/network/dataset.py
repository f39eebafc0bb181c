# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Stamp tables to feature arrays, chunk by chunk; star-grouped splits."""

import numpy as np
from astropy.table import Table

from satphotutils.stamps.table import iter_stamp_table
from satphotutils.utils.exceptions import SatphotutilsError

from .features import Prepared

__all__ = ['camera_codes', 'load_features', 'split_by_star']

SPLIT_NAMES = ('train', 'test', 'validation')


def camera_codes(table):
    """
    Return the ``'camera/filter'`` code of each row, or `None`.

    Parameters
    ----------
    table : `~astropy.table.Table`
        A stamp table (chunk).

    Returns
    -------
    codes : `~numpy.ndarray` of str or None
        `None` when the table has no ``camera`` column.

    Examples
    --------
    >>> from astropy.table import Table
    >>> from satphotutils.network import camera_codes
    >>> camera_codes(Table({'camera': ['bi', 'bj'], 'filter': ['g', 'V']})
    ...              ).tolist()
    ['bi/g', 'bj/V']
    """
    if 'camera' not in table.colnames:
        return None
    camera = np.char.strip(np.asarray(table['camera'], dtype=str))
    if 'filter' in table.colnames:
        filt = np.char.strip(np.asarray(table['filter'], dtype=str))
        return np.char.add(np.char.add(camera, '/'), filt)
    return camera


def features_of(table, features, *, fwhm_scatter=0.0, rng=None):
    """
    Compute `StampFeatures` for one table (chunk) of stamps.

    Parameters
    ----------
    table : `~astropy.table.Table`
        Stamp-table rows with ``stamp`` and the columns named by
        ``features.needs`` (``sky``, ``dx``, ``dy``; version 3 also
        ``saturation`` and ``fwhm``), ``camera`` and ``filter`` when
        present.

    features : `~satphotutils.network.StampFeatures`
        The preprocessing.

    fwhm_scatter : float, optional
        Training only: the ``fwhm`` column is multiplied by a log-normal
        factor of this scatter (natural log), so that a network cannot
        lean on the width more closely than a frame's measurement of it
        can be trusted (`~satphotutils.frames.frame_fwhm` differs from a
        fit to the model PSF by 10-20% for undersampled stars).

    rng : `~numpy.random.Generator`, optional
        Random generator of the scatter.

    Returns
    -------
    prepared : `~satphotutils.network.Prepared`

    Raises
    ------
    SatphotutilsError
        If a column the network needs is missing.
    """
    needed = ('stamp', *features.needs)
    missing = [c for c in needed if c not in table.colnames]
    if missing:
        msg = (f'the stamp table has no {", ".join(missing)} column(s); '
               f'feature version {features.version} needs '
               f'{", ".join(needed)}: {_COLUMN_HELP}')
        raise SatphotutilsError(msg)
    extra = {name: np.asarray(table[name]) for name in features.needs
             if name not in ('sky', 'dx', 'dy')}
    if fwhm_scatter and 'fwhm' in extra:
        extra['fwhm'] = extra['fwhm'] * np.exp(
            rng.normal(0.0, fwhm_scatter, len(extra['fwhm'])))
    try:
        return features(np.asarray(table['stamp']),
                        sky=np.asarray(table['sky']),
                        dx=np.asarray(table['dx']),
                        dy=np.asarray(table['dy']),
                        camera=camera_codes(table), **extra)
    except ValueError as exc:
        msg = f'stamp table: {exc}'
        raise SatphotutilsError(msg) from None


_COLUMN_HELP = (
    'the stamps, the sky level S, the offsets dx, dy of each target from '
    "the central pixel's centre (x - round(x), y - round(y)), and for "
    'version 3 the saturation level of the frame (counts, sky included: '
    "its SATURATE keyword or plateau) and the FWHM (px) of the frame's "
    'unsaturated stars; satphot stamps writes them all')


def load_features(source, features, *, chunk_size=50_000,
                  extra_columns=('log_counts', 'star_id', 'saturated',
                                 'epoch', 'g'), fwhm_scatter=0.0, seed=0):
    """
    Compute the features of every row of a stamp table, chunk by chunk.

    Only the features (about 0.7 kB per row) are held in memory, never
    all the stamps.

    Parameters
    ----------
    source : path-like, `~astropy.table.Table`, or a list of them
        The stamp table(s). With several, ``star_id`` values are offset
        per table so that stars of different tables stay distinct.

    features : `~satphotutils.network.StampFeatures`
        The preprocessing.

    chunk_size : int, optional
        Rows read at a time.

    extra_columns : tuple of str, optional
        Columns to return as well, when present.

    fwhm_scatter : float, optional
        Scatter of the training-time jitter of the ``fwhm`` column (see
        ``features_of``); 0 for evaluation.

    seed : int, optional
        Random seed of the jitter.

    Returns
    -------
    prepared : `~satphotutils.network.Prepared`
        The output of `StampFeatures` for all rows.

    columns : dict of `~numpy.ndarray`
        The extra columns present in the table(s).

    Examples
    --------
    >>> from satphotutils.network import StampFeatures, load_features
    >>> from satphotutils.simulation import StampSimulator
    >>> stamps = StampSimulator(images_per_star=2)(5, seed=1)
    >>> prepared, columns = load_features(stamps, StampFeatures())
    >>> len(prepared), 'log_counts' in columns
    (10, True)
    """
    sources = source if isinstance(source, (list, tuple)) else [source]
    parts, extras = [], []
    offset = 0
    rng = np.random.default_rng(seed)
    for src in sources:
        if isinstance(src, Table):
            chunks = (src[i:i + chunk_size]
                      for i in range(0, len(src), chunk_size))
        else:
            chunks = iter_stamp_table(src, chunk_size=chunk_size)
        largest = -1
        for chunk in chunks:
            parts.append(features_of(chunk, features,
                                     fwhm_scatter=fwhm_scatter, rng=rng))
            extra = {name: np.asarray(chunk[name]) for name in extra_columns
                     if name in chunk.colnames}
            if 'star_id' in extra:
                extra['star_id'] = extra['star_id'].astype(np.int64) + offset
                largest = max(largest, int(extra['star_id'].max()))
            extras.append(extra)
        offset = largest + 1
    if not parts:
        msg = 'the stamp table has no rows'
        raise ValueError(msg)
    common = set.intersection(*(set(e) for e in extras))
    columns = {key: np.concatenate([e[key] for e in extras])
               for key in extras[0] if key in common}
    return Prepared.concatenate(parts), columns


def split_by_star(star_id, *, fractions=(0.6, 0.2, 0.2), seed=0):
    """
    Split rows into training, test and validation sets by star.

    All exposures of a star fall into the same set, so that a network
    cannot be validated on a star whose surroundings it memorised.

    Parameters
    ----------
    star_id : array-like
        The grouping key of each row.

    fractions : tuple of float, optional
        Fractions of the *stars* in the training, test and validation
        sets.

    seed : int, optional
        Random seed.

    Returns
    -------
    subset : `~numpy.ndarray` of int
        0 (train), 1 (test) or 2 (validation) per row.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.network import split_by_star
    >>> subset = split_by_star(np.repeat(np.arange(1000), 4), seed=1)
    >>> np.bincount(subset) // 4
    array([600, 200, 200])
    """
    fractions = np.asarray(fractions, dtype=float)
    if fractions.shape != (3,) or np.any(fractions < 0) or \
            not np.isclose(fractions.sum(), 1):
        msg = 'fractions must be three non-negative numbers summing to 1'
        raise ValueError(msg)
    stars, inverse = np.unique(np.asarray(star_id), return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(stars))
    edges = np.rint(np.cumsum(fractions) * len(stars)).astype(int)
    assign = np.empty(len(stars), dtype=np.int8)
    rank = np.empty(len(stars), dtype=int)
    rank[order] = np.arange(len(stars))
    assign[:] = np.searchsorted(edges, rank, side='right')
    return np.minimum(assign, 2)[inverse]
