# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Light curves for other tools: lightkurve objects and Sky Patrol v2 CSV.

The package's light curves (`~satphotutils.lightcurves.LightCurvePipeline`,
``satphot lightcurve``) are astropy `~astropy.timeseries.TimeSeries` with
``time``, ``mag``, ``mag_err``, ``flux``, ``flux_err``, ``camera``,
``filter``, ``n_exposures``, ``n_rejected`` and ``flags``.
"""

import warnings

import numpy as np

from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.io import atomic_output

from .skypatrol import BAD_QUALITY_FLAGS, SP2WEB_COLUMNS

__all__ = ['to_lightkurve', 'write_skypatrol']

# lightkurve is an optional dependency (satphotutils[lightkurve]).
__doctest_requires__ = {'to_lightkurve': ['lightkurve']}

# AB zero point of the Sky Patrol flux column (mJy at magnitude 0).
_AB_MJY = 3631.0e3


def _values(column):
    return np.asarray(getattr(column, 'value', column), dtype=float)


def _require(lightcurve, names, what):
    missing = [n for n in names if n not in lightcurve.colnames]
    if missing:
        msg = (f'{what} needs a light curve with the columns '
               f'{", ".join(names)}; this one lacks {", ".join(missing)} '
               '(give a light curve of LightCurvePipeline or satphot '
               'lightcurve)')
        raise SatphotutilsError(msg)


def to_lightkurve(lightcurve):
    """
    Convert a light curve to a ``lightkurve.LightCurve``.

    Needs the optional ``lightkurve`` package (``pip install
    satphotutils[lightkurve]``). The result has lightkurve's ``flux`` and
    ``flux_err`` (the light curve's counts, in their unit), ``quality``
    (the satphotutils ``flags``; decode them with
    `~satphotutils.utils.flags.decode_flags`) and the other numeric
    columns (``mag``, ``mag_err``, ``n_exposures``, ``n_rejected``), so
    ``.fold()``, ``.bin()``, ``.remove_nans()`` and ``.plot()`` work on
    it. ``meta`` keeps the light curve's, with ``LABEL`` (the target's
    name, lightkurve's plot legend) and ``CAMERAS`` and ``FILTERS`` (the
    values of the text columns ``camera`` and ``filter``, which
    lightkurve cannot bin: select one before converting,
    ``to_lightkurve(ts[ts['camera'] == 'bi'])``, for one camera's light
    curve). Epochs without a value stay, as NaN, as in the light curve;
    drop them with ``.remove_nans()``.

    Parameters
    ----------
    lightcurve : `~astropy.timeseries.TimeSeries`
        A light curve of the package, with ``time``, ``flux``,
        ``flux_err`` and ``flags``.

    Returns
    -------
    lc : ``lightkurve.LightCurve``

    Raises
    ------
    ImportError
        Without lightkurve, saying how to install it.
    SatphotutilsError
        If a needed column is missing.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.time import Time
    >>> from astropy.timeseries import TimeSeries
    >>> from satphotutils.lightcurves import to_lightkurve
    >>> ts = TimeSeries(time=Time(59000 + np.arange(20.0), format='mjd'))
    >>> ts['flux'] = 1e5 * (1 + 0.1 * np.sin(np.arange(20.0)))
    >>> ts['flux_err'] = np.full(20, 100.0)
    >>> ts['mag'] = 25.0 - 2.5 * np.log10(ts['flux'])
    >>> ts['flags'] = np.zeros(20, int)
    >>> ts.meta['name'] = 'cep'
    >>> lc = to_lightkurve(ts)
    >>> len(lc.fold(period=6.28)), lc.meta['LABEL']
    (20, 'cep')
    """
    _require(lightcurve, ('time', 'flux', 'flux_err', 'flags'),
             'to_lightkurve')
    try:
        with warnings.catch_warnings():
            # lightkurve announces on import that an optional submodule
            # (tpfmodel, pixel-level modelling) is unavailable; light
            # curves do not use it.
            warnings.filterwarnings('ignore', message='.*tpfmodel',
                                    category=UserWarning)
            import lightkurve
    except ImportError:
        msg = ('to_lightkurve needs the optional lightkurve package: pip '
               'install "satphotutils[lightkurve]" (or pip install '
               'lightkurve)')
        raise ImportError(msg) from None
    # Text columns stay out: lightkurve's bin() averages every column and
    # fails on text. Their values are listed in the meta instead.
    numeric = [name for name in lightcurve.colnames
               if name not in ('time', 'flux', 'flux_err', 'flags')
               and np.asarray(lightcurve[name]).dtype.kind in 'biuf']
    extra = {name: lightcurve[name].copy() for name in numeric}
    meta = dict(lightcurve.meta or {})
    if 'name' in meta:
        meta.setdefault('LABEL', str(meta['name']))
    for name, key in (('camera', 'CAMERAS'), ('filter', 'FILTERS')):
        if name in lightcurve.colnames:
            meta[key] = sorted(set(np.asarray(lightcurve[name])
                                   .astype(str).tolist()))
    from astropy.time import Time

    # Copies: a TimeSeries' time column carries its table index, which
    # breaks lightkurve's bin().
    return lightkurve.LightCurve(
        time=Time(lightcurve['time']), flux=lightcurve['flux'].copy(),
        flux_err=lightcurve['flux_err'].copy(),
        data={'quality': np.asarray(lightcurve['flags'], dtype=np.int64),
              **extra},
        meta=meta)


def write_skypatrol(lightcurve, path, *, overwrite=False):
    """
    Write a light curve as a Sky Patrol v2 web CSV.

    The columns are those of an ASAS-SN Sky Patrol v2 export
    (``JD,Flux,Flux Error,Mag,Mag Error,Limit,FWHM,Filter,Quality,Camera``),
    so that tools written for Sky Patrol files read it, and so does
    `~satphotutils.intercalibration.read_lightcurve`. ``JD`` is the
    light curve's UTC time as a Julian date; ``Flux`` and ``Flux Error``
    are in mJy from the magnitude with the AB zero point (3631 Jy);
    ``Quality`` is ``B`` where a flag keeps the epoch out of the fits
    (``BAD_QUALITY_FLAGS``: the flags
    `~satphotutils.intercalibration.read_lightcurve` reads as bad
    quality), ``G`` elsewhere; ``Limit`` and ``FWHM`` are left empty
    (the photometry does not measure them). Epochs without a magnitude
    are left out, as Sky Patrol leaves out failed measurements; the
    header comment says how many.

    Parameters
    ----------
    lightcurve : `~astropy.timeseries.TimeSeries`
        A light curve of the package, with ``time``, ``mag``,
        ``mag_err``, ``camera``, ``filter`` and ``flags``.

    path : path-like
        The CSV file.

    overwrite : bool, optional
        Replace an existing file.

    Returns
    -------
    n_written : int
        Epochs written.

    Raises
    ------
    SatphotutilsError
        If a needed column is missing, or the file exists and not
        ``overwrite``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from astropy.time import Time
    >>> from astropy.timeseries import TimeSeries
    >>> from satphotutils.intercalibration import read_lightcurve
    >>> from satphotutils.lightcurves import write_skypatrol
    >>> ts = TimeSeries(time=Time(59000 + np.arange(3.0), format='mjd'))
    >>> ts['mag'] = [8.01, np.nan, 7.98]
    >>> ts['mag_err'] = [0.01, np.nan, 0.01]
    >>> ts['camera'] = ['bi', 'bi', 'bj']
    >>> ts['filter'] = ['g', 'g', 'g']
    >>> ts['flags'] = [0, 65536, 0]
    >>> path = Path(tempfile.mkdtemp()) / 'star.csv'
    >>> write_skypatrol(ts, path)
    2
    >>> back = read_lightcurve(path)
    >>> back.meta['format'], back['mag'].value.tolist()
    ('sp2web', [8.01, 7.98])
    """
    _require(lightcurve, ('time', 'mag', 'mag_err', 'camera', 'filter',
                          'flags'), 'write_skypatrol')
    mag = _values(lightcurve['mag'])
    err = _values(lightcurve['mag_err'])
    keep = np.isfinite(mag) & np.isfinite(err)
    jd = lightcurve['time'].utc.jd[keep]
    mag, err = mag[keep], err[keep]
    flux = _AB_MJY * 10 ** (-0.4 * mag)
    flux_err = flux * np.log(10) / 2.5 * err
    flags = np.asarray(lightcurve['flags'], dtype=np.int64)[keep]
    quality = np.where(flags & BAD_QUALITY_FLAGS, 'B', 'G')
    camera = np.asarray(lightcurve['camera']).astype(str)[keep]
    filt = np.asarray(lightcurve['filter']).astype(str)[keep]
    meta = lightcurve.meta or {}
    lines = ['# satphotutils light curve in the ASAS-SN Sky Patrol v2 '
             'web CSV layout']
    for key in ('name', 'ra', 'dec'):
        if key in meta:
            lines.append(f'# {key}: {meta[key]}')
    lines += [f'# epochs without a magnitude left out: '
              f'{int((~keep).sum())}',
              '# JD: UTC; Flux, Flux Error: mJy from Mag (AB zero point)',
              '', ','.join(SP2WEB_COLUMNS)]
    for row in zip(jd, flux, flux_err, mag, err, filt, quality, camera,
                   strict=True):
        t, f, fe, m, me, fi, q, c = row
        # Full precision: a file written and read back keeps the values.
        lines.append(f'{t:.8f},{f:.6g},{fe:.6g},{float(m)!r},'
                     f'{float(me)!r},,,{fi},{q},{c}')
    try:
        with atomic_output(path, overwrite=overwrite) as tmp, \
                open(tmp, 'w', encoding='utf-8', newline='\n') as out:
            out.write('\n'.join(lines) + '\n')
    except FileExistsError:
        msg = f'{path} exists; pass overwrite=True to replace it'
        raise SatphotutilsError(msg) from None
    return int(keep.sum())
