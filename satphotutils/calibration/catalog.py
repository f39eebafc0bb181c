# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Gaia DR3 catalogue access: the Gaia archive (astroquery) or a local table.

Both backends answer the same cone and box searches with the same Gaia
DR3 column names, so code written against one runs on the other. The
archive backend pages large areas into tiles, retries failed queries
with exponential backoff, caches every answer on disk keyed by its ADQL
text, and in offline mode serves only that cache.
"""

import hashlib
import itertools
import logging
import time
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table, unique, vstack

from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.io import atomic_output

__all__ = ['GAIA_COLUMNS', 'GaiaArchive', 'LocalGaiaCatalog',
           'sample_per_magnitude_bin', 'select_non_variable']

log = logging.getLogger(__name__)

#: Gaia DR3 ``gaia_source`` columns the package uses.
GAIA_COLUMNS = ('source_id', 'ra', 'dec', 'phot_g_mean_mag',
                'phot_bp_mean_mag', 'phot_rp_mean_mag', 'bp_rp',
                'phot_variable_flag')


def _angle(value, name, unit=u.deg):
    if not isinstance(value, u.Quantity):
        msg = f'{name} must be an angle Quantity, e.g. 1 * u.arcmin'
        raise TypeError(msg)
    return value.to_value(unit)


def _center(center):
    if not isinstance(center, SkyCoord) or not center.isscalar:
        msg = 'center must be a scalar SkyCoord'
        raise TypeError(msg)
    icrs = center.icrs
    return icrs.ra.deg, icrs.dec.deg


def _ra_intervals(ra_lo, ra_hi):
    """Split an RA range that may wrap through 0 into [lo, hi) pieces."""
    if ra_hi - ra_lo >= 360:
        return [(0.0, 360.0)]
    lo, hi = ra_lo % 360, ra_hi % 360
    if lo < hi:
        return [(lo, hi)]
    return [(lo, 360.0), (0.0, hi)] if hi > 0 else [(lo, 360.0)]


def _box_bounds(ra0, dec0, width, height, *, circle=False):
    dec_lo, dec_hi = max(dec0 - height / 2, -90.0), min(dec0 + height / 2,
                                                        90.0)
    if dec_lo <= -90 or dec_hi >= 90:
        return [(0.0, 360.0)], dec_lo, dec_hi
    if circle:
        # The RA extent of a cap of radius r: asin(sin r / cos dec0).
        half = np.degrees(np.arcsin(np.sin(np.radians(width / 2))
                                    / np.cos(np.radians(dec0))))
    else:
        half = width / 2 / np.cos(np.radians(dec0))
    return _ra_intervals(ra0 - half, ra0 + half), dec_lo, dec_hi


class _GaiaCatalog:
    """The searches shared by both backends."""

    def cone(self, center, radius, *, g_max=None):
        """
        Return the sources within ``radius`` of ``center``.

        Parameters
        ----------
        center : `~astropy.coordinates.SkyCoord`
            Centre of the cone.

        radius : `~astropy.units.Quantity`
            Angular radius.

        g_max : float, optional
            Faintest Gaia G returned.

        Returns
        -------
        table : `~astropy.table.Table`
            The sources, with Gaia DR3 column names.
        """
        ra0, dec0 = _center(center)
        r = _angle(radius, 'radius')
        if r <= 0:
            msg = 'radius must be positive'
            raise ValueError(msg)
        return self._search(ra0, dec0, 2 * r, 2 * r, g_max=g_max,
                            circle=(ra0, dec0, r))

    def box(self, center, width, height, *, g_max=None):
        """
        Return the sources in an RA/Dec-aligned box.

        Parameters
        ----------
        center : `~astropy.coordinates.SkyCoord`
            Centre of the box.

        width, height : `~astropy.units.Quantity`
            Angular extent along RA (at the centre's declination) and
            along Dec.

        g_max : float, optional
            Faintest Gaia G returned.

        Returns
        -------
        table : `~astropy.table.Table`
            The sources, with Gaia DR3 column names.
        """
        ra0, dec0 = _center(center)
        w, h = _angle(width, 'width'), _angle(height, 'height')
        if w <= 0 or h <= 0:
            msg = 'width and height must be positive'
            raise ValueError(msg)
        return self._search(ra0, dec0, w, h, g_max=g_max)


class LocalGaiaCatalog(_GaiaCatalog):
    """
    Gaia searches on a local table.

    Parameters
    ----------
    table : `~astropy.table.Table` or path-like
        A table with Gaia DR3 column names (at least ``ra``, ``dec`` in
        degrees and ``phot_g_mean_mag``), or a FITS/ECSV/VOTable file
        readable by `~astropy.table.Table.read`.

    Raises
    ------
    ValueError
        If a required column is missing.

    Examples
    --------
    >>> from astropy import units as u
    >>> from astropy.coordinates import SkyCoord
    >>> from astropy.table import Table
    >>> from satphotutils.calibration import LocalGaiaCatalog
    >>> gaia = LocalGaiaCatalog(Table({
    ...     'source_id': [1, 2, 3], 'ra': [10.0, 10.01, 12.0],
    ...     'dec': [5.0, 5.0, 5.0], 'phot_g_mean_mag': [9.0, 15.0, 8.0]}))
    >>> near = gaia.cone(SkyCoord(10, 5, unit='deg'), 1 * u.arcmin)
    >>> near['source_id'].tolist()
    [1, 2]
    """

    def __init__(self, table):
        if not isinstance(table, Table):
            table = Table.read(table)
        missing = [c for c in ('ra', 'dec', 'phot_g_mean_mag')
                   if c not in table.colnames]
        if missing:
            msg = (f'the catalogue table lacks the Gaia DR3 column(s) '
                   f'{missing}; rename its columns to Gaia DR3 names')
            raise ValueError(msg)
        self.table = table
        self._coord = SkyCoord(np.asarray(table['ra'], dtype=float),
                               np.asarray(table['dec'], dtype=float),
                               unit='deg')

    def __repr__(self):
        return f'<LocalGaiaCatalog: {len(self.table)} sources>'

    def _search(self, ra0, dec0, width, height, *, g_max, circle=None):
        if circle is not None:
            center = SkyCoord(circle[0], circle[1], unit='deg')
            keep = self._coord.separation(center).deg <= circle[2]
        else:
            intervals, dec_lo, dec_hi = _box_bounds(ra0, dec0, width, height)
            ra, dec = self._coord.ra.deg, self._coord.dec.deg
            keep = (dec >= dec_lo) & (dec <= dec_hi)
            keep &= np.any([(ra >= lo) & (ra < hi) for lo, hi in intervals],
                           axis=0)
        if g_max is not None:
            keep &= np.ma.filled(np.ma.asarray(
                self.table['phot_g_mean_mag'], dtype=float), np.inf) < g_max
        return self.table[keep]


class GaiaArchive(_GaiaCatalog):
    """
    Gaia searches on the Gaia archive through astroquery, with a cache.

    Parameters
    ----------
    cache_dir : path-like, optional
        Directory of the on-disk cache; one ECSV file per query, named by
        the SHA-256 of its ADQL. No caching if `None` (not allowed with
        ``offline=True``).

    offline : bool, optional
        Serve only the cache; a query not in it raises an error that
        names it.

    retries : int, optional
        Further attempts after a failed query.

    backoff : float, optional
        Seconds before the first retry; doubled on each further one.

    tile_size : `~astropy.units.Quantity`, optional
        Largest Dec (and RA at the equator) extent of one query: larger
        areas are paged into tiles, each cached on its own.

    table : str, optional
        The archive table.

    columns : sequence of str, optional
        The columns fetched.

    service : object, optional
        The TAP service, with astroquery's ``launch_job_async(query)``
        returning a job with ``get_results()``; `astroquery.gaia.Gaia`
        if `None`.

    Raises
    ------
    ValueError
        If ``offline`` is set without a ``cache_dir``.

    Examples
    --------
    Offline, only what is cached can be read; the error names the query:

    >>> import tempfile
    >>> from astropy.coordinates import SkyCoord
    >>> from satphotutils.calibration import GaiaArchive
    >>> archive = GaiaArchive(cache_dir=tempfile.mkdtemp(), offline=True)
    >>> from astropy import units as u
    >>> try:
    ...     archive.cone(SkyCoord(10.0, 20.0, unit='deg'), 0.1 * u.deg)
    ... except Exception as exc:
    ...     print(type(exc).__name__)
    SatphotutilsError
    """

    def __init__(self, *, cache_dir=None, offline=False, retries=3,
                 backoff=2.0, tile_size=1 * u.deg,
                 table='gaiadr3.gaia_source', columns=GAIA_COLUMNS,
                 service=None):
        if offline and cache_dir is None:
            msg = 'offline=True needs a cache_dir to serve queries from'
            raise ValueError(msg)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.offline = bool(offline)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.tile_size = _angle(tile_size, 'tile_size')
        self.table = table
        self.columns = tuple(columns)
        self._service = service

    def __repr__(self):
        return (f'<GaiaArchive {self.table}: cache={self.cache_dir}, '
                f'offline={self.offline}>')

    @property
    def service(self):
        """The TAP service (`astroquery.gaia.Gaia` unless given)."""
        if self._service is None:
            from astroquery.gaia import Gaia

            self._service = Gaia
        return self._service

    def cache_path(self, adql):
        """Return the cache file of a query (whether or not it exists)."""
        key = hashlib.sha256(' '.join(adql.split()).encode()).hexdigest()
        return self.cache_dir / f'{key[:32]}.ecsv'

    def query(self, adql):
        """
        Run an ADQL query, from the cache when possible.

        Parameters
        ----------
        adql : str
            The query.

        Returns
        -------
        table : `~astropy.table.Table`
            The result; its ``meta['query']`` is the ADQL.

        Raises
        ------
        SatphotutilsError
            If offline and the query is not cached, or if it still fails
            after the retries.
        """
        path = None if self.cache_dir is None else self.cache_path(adql)
        if path is not None and path.exists():
            return Table.read(path, format='ascii.ecsv')
        if self.offline:
            msg = (f'offline mode: this Gaia query is not in the cache '
                   f'{self.cache_dir} (it would be {path.name}); run it '
                   f'once online: {adql}')
            raise SatphotutilsError(msg)
        result = self._launch(adql)
        result.meta['query'] = ' '.join(adql.split())
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(path, overwrite=True) as tmp:
                result.write(tmp, format='ascii.ecsv')
        return result

    def _launch(self, adql):
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return Table(self.service.launch_job_async(adql)
                             .get_results())
            except OSError as exc:  # requests' errors are OSErrors
                if attempt == self.retries:
                    msg = (f'the Gaia query failed after {attempt + 1} '
                           f'attempts ({exc}): {adql}')
                    raise SatphotutilsError(msg) from exc
                log.warning('Gaia query failed (%s); retrying in %.1f s',
                            exc, delay)
                time.sleep(delay)
                delay *= 2
        return None  # pragma: no cover

    def _adql(self, where):
        return (f'SELECT {", ".join(self.columns)} FROM {self.table} '
                f'WHERE {" AND ".join(where)}')

    def _search(self, ra0, dec0, width, height, *, g_max, circle=None):
        intervals, dec_lo, dec_hi = _box_bounds(
            ra0, dec0, width, height, circle=circle is not None)
        n_dec = max(1, int(np.ceil((dec_hi - dec_lo) / self.tile_size)))
        dec_edges = np.linspace(dec_lo, dec_hi, n_dec + 1)
        parts = []
        for d_lo, d_hi in itertools.pairwise(dec_edges):
            cos_dec = max(np.cos(np.radians(max(abs(d_lo), abs(d_hi)))),
                          1e-3)
            for lo, hi in intervals:
                n_ra = max(1, int(np.ceil((hi - lo) * cos_dec
                                          / self.tile_size)))
                ra_edges = np.linspace(lo, hi, n_ra + 1)
                for r_lo, r_hi in itertools.pairwise(ra_edges):
                    dec_op = '<=' if d_hi == dec_hi else '<'
                    where = [f'ra >= {r_lo:.8f}', f'ra < {r_hi:.8f}',
                             f'dec >= {d_lo:.8f}',
                             f'dec {dec_op} {d_hi:.8f}']
                    if circle is not None:
                        where.append(
                            "1 = CONTAINS(POINT('ICRS', ra, dec), "
                            f"CIRCLE('ICRS', {circle[0]:.8f}, "
                            f'{circle[1]:.8f}, {circle[2]:.8f}))')
                    if g_max is not None:
                        where.append(f'phot_g_mean_mag < {float(g_max)}')
                    parts.append(self.query(self._adql(where)))
        parts = [p for p in parts if len(p)]
        if not parts:
            return Table(names=self.columns[:0])
        table = vstack(parts, metadata_conflicts='silent')
        table.meta.pop('query', None)
        if 'source_id' in table.colnames and len(parts) > 1:
            table = unique(table, keys='source_id')
        return table


def select_non_variable(table):
    """
    Keep the sources Gaia DR3 does not flag as variable.

    Parameters
    ----------
    table : `~astropy.table.Table`
        With the ``phot_variable_flag`` column (``'VARIABLE'`` or
        ``'NOT_AVAILABLE'``).

    Returns
    -------
    table : `~astropy.table.Table`
        The rows not flagged ``'VARIABLE'``.

    Examples
    --------
    >>> from astropy.table import Table
    >>> from satphotutils.calibration import select_non_variable
    >>> t = Table({'source_id': [1, 2],
    ...            'phot_variable_flag': ['VARIABLE', 'NOT_AVAILABLE']})
    >>> select_non_variable(t)['source_id'].tolist()
    [2]
    """
    if 'phot_variable_flag' not in table.colnames:
        msg = ('the table has no phot_variable_flag column; fetch it from '
               'gaiadr3.gaia_source')
        raise ValueError(msg)
    flag = np.char.strip(np.asarray(
        np.ma.filled(np.ma.asarray(table['phot_variable_flag']), ''),
        dtype=str))
    return table[flag != 'VARIABLE']


def sample_per_magnitude_bin(table, n_per_bin, *, column='phot_g_mean_mag',
                             bin_width=1.0, start=2.0, stop=None, seed=None):
    """
    Draw up to ``n_per_bin`` random sources per magnitude bin.

    This gives a training set roughly uniform in magnitude (the paper drew
    40,000 stars per 1-mag bin of G from G = 2); bins with fewer sources
    keep them all.

    Parameters
    ----------
    table : `~astropy.table.Table`
        The sources.

    n_per_bin : int
        Sources drawn per bin.

    column : str, optional
        The magnitude column.

    bin_width : float, optional
        Bin width (mag).

    start, stop : float, optional
        Range of the bins; ``stop`` defaults to the faintest source.

    seed : int or `~numpy.random.Generator`, optional
        Random seed.

    Returns
    -------
    table : `~astropy.table.Table`
        The sample, in the order of the input table.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import Table
    >>> from satphotutils.calibration import sample_per_magnitude_bin
    >>> t = Table({'phot_g_mean_mag': np.linspace(2, 6, 400, endpoint=False)})
    >>> sample = sample_per_magnitude_bin(t, 30, seed=1)
    >>> np.histogram(sample['phot_g_mean_mag'], bins=[2, 3, 4, 5, 6])[0]
    array([30, 30, 30, 30])
    """
    if n_per_bin < 1:
        msg = 'n_per_bin must be at least 1'
        raise ValueError(msg)
    mag = np.ma.filled(np.ma.asarray(table[column], dtype=float), np.nan)
    rng = np.random.default_rng(seed)
    stop = np.nanmax(mag) if stop is None else stop
    index = np.floor((mag - start) / bin_width)
    index[~np.isfinite(mag) | (mag < start) | (mag > stop)] = -1
    chosen = []
    for b in np.unique(index[index >= 0]):
        members = np.flatnonzero(index == b)
        if len(members) > n_per_bin:
            members = rng.choice(members, n_per_bin, replace=False)
        chosen.append(members)
    rows = np.sort(np.concatenate(chosen)) if chosen else np.array([], int)
    return table[rows]
