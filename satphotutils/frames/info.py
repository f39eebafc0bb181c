# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""What a frame's header says: `FrameInfo`, read and validated once."""

import dataclasses
import logging
import math

import numpy as np
from astropy import units as u

from satphotutils.utils.exceptions import SatphotutilsError

from .keys import HeaderKeys

__all__ = ['FrameInfo', 'InvalidHeaderError', 'frame_info']

log = logging.getLogger(__name__)

# Zero points outside this range are taken as a wrong keyword or unit
# (counts per second give about 20-30, counts per exposure a few more).
_ZEROPOINT_RANGE = (5.0, 45.0)
# Time scales astropy knows; FITS TIMESYS values are their upper case.
_SCALES = ('utc', 'tai', 'tt', 'tdb', 'tcg', 'tcb', 'ut1')


class InvalidHeaderError(SatphotutilsError, ValueError):
    """A header keyword whose value cannot be used; names the keyword."""


@dataclasses.dataclass(frozen=True)
class FrameInfo:
    """
    The header values of one frame, each `None` when unknown.

    Build one with `frame_info` (from a header or an NDData) or get it
    from `~satphotutils.frames.read_frame`. Nothing is filled in with a
    default: a consumer that needs a value it does not have says so.

    Attributes
    ----------
    path : str or `None`
        The file, for messages.

    shape : tuple of int or `None`
        ``(ny, nx)`` of the image.

    wcs : `~astropy.wcs.WCS` or `None`
        The celestial WCS, `None` when the header has none.

    time : `~astropy.time.Time` or `None`
        Mid-exposure time.

    time_source : str or `None`
        The keyword(s) the time came from.

    exptime, zeropoint, transparency, sky, gain, read_noise : float or `None`
        As named by `~satphotutils.frames.HeaderKeys`.

    saturation_level : float or `None`
        Counts at which pixels saturate (the ``saturation`` keyword, else
        the ``saturation_fallback`` one).

    reference_grid : bool or `None`
        Whether the frame declares that it was resampled onto a reference
        grid whose WCS places the stars exactly (`None`: not said).

    corrected : bool or `None`
        Whether the pipeline corrected the saturated stars (replaced
        their bleed trails: ``True``) or left the trails in the frame
        (``False``); `None`: not said.

    camera, filter : str or `None`
        Camera and filter names.

    epoch : int or `None`
        Epoch number from the header.

    keys : `~satphotutils.frames.HeaderKeys`
        The keywords that were read.
    """

    path: str | None = None
    shape: tuple | None = None
    wcs: object = None
    time: object = None
    time_source: str | None = None
    exptime: float | None = None
    zeropoint: float | None = None
    transparency: float | None = None
    sky: float | None = None
    gain: float | None = None
    read_noise: float | None = None
    saturation_level: float | None = None
    reference_grid: bool | None = None
    corrected: bool | None = None
    camera: str | None = None
    filter: str | None = None
    epoch: int | None = None
    keys: HeaderKeys = dataclasses.field(default_factory=HeaderKeys)

    @property
    def camera_code(self):
        """``'camera/filter'`` (or the camera alone), `None` without one."""
        if self.camera is None:
            return None
        return self.camera if self.filter is None else \
            f'{self.camera}/{self.filter}'

    @property
    def mjd(self):
        """The mid-exposure time as an MJD, `None` without a time."""
        return None if self.time is None else float(self.time.mjd)

    def require(self, name, *, fix=None):
        """
        Return a value, or raise if the frame does not have it.

        Parameters
        ----------
        name : str
            Attribute name, e.g. ``'zeropoint'`` or ``'time'``.

        fix : str, optional
            What the user can do, appended to the message.

        Raises
        ------
        SatphotutilsError
            Naming the frame and the keyword(s) looked for.
        """
        value = getattr(self, name)
        if value is not None:
            return value
        keys = self.keys
        looked = {'time': [keys.mjd_mid, keys.date_mid, keys.mjd, keys.date,
                           keys.jd],
                  'saturation_level': [keys.saturation,
                                       keys.saturation_fallback]}.get(
                      name, [getattr(keys, name, None)])
        looked = [k for k in looked if k]
        what = f'no {" / ".join(looked)} keyword' if looked else \
            f'no {name} (its header key is switched off)'
        where = f' in {self.path}' if self.path else ''
        msg = f'{what}{where}'
        field = {'time': 'mjd', 'saturation_level': 'saturation'}.get(
            name, name)
        if field in keys.names():
            msg += (f'; name the keyword with --header-key {field}=KEYWORD '
                    '(header_keys=HeaderKeys(...) in Python)')
        if fix:
            msg += f'; {fix}'
        raise SatphotutilsError(msg)

    def to_meta(self):
        """Return the values as JSON-able data for table metadata."""
        out = {}
        for field in dataclasses.fields(self):
            if field.name in ('wcs', 'keys'):
                continue
            value = getattr(self, field.name)
            if field.name == 'time' and value is not None:
                value = {'mjd': float(value.mjd), 'scale': value.scale}
            elif field.name == 'shape' and value is not None:
                value = list(value)
            out[field.name] = value
        return out


def _where(path):
    return f' of {path}' if path else ''


def _get(header, key, path):
    # A damaged card fails when its value is parsed (astropy's VerifyError
    # or ValueError), not when the header is read.
    from astropy.io.fits.verify import VerifyError

    try:
        return header[key]
    except (VerifyError, ValueError, UnicodeError) as exc:
        msg = (f'the {key} header keyword{_where(path)} cannot be read: '
               f'{exc}')
        raise InvalidHeaderError(msg) from None


def _number(header, key, path, *, positive=False, nonnegative=False,
            bounds=None):
    """Return a finite number from the header (`None` if absent)."""
    if not key or key not in header:
        return None
    value = _get(header, key, path)
    # FITS booleans are Python bools, which float() would take as 0/1.
    if isinstance(value, (bool, np.bool_)) or value is None:
        msg = (f'the {key} header keyword{_where(path)} must be a number, '
               f'got {value!r}')
        raise InvalidHeaderError(msg)
    try:
        number = float(value)
    except (TypeError, ValueError):
        msg = (f'the {key} header keyword{_where(path)} must be a number, '
               f'got {value!r}')
        raise InvalidHeaderError(msg) from None
    if not math.isfinite(number):
        msg = (f'the {key} header keyword{_where(path)} must be finite, got '
               f'{value!r}')
        raise InvalidHeaderError(msg)
    if positive and number <= 0:
        msg = (f'the {key} header keyword{_where(path)} must be positive, '
               f'got {value!r}')
        raise InvalidHeaderError(msg)
    if nonnegative and number < 0:
        msg = (f'the {key} header keyword{_where(path)} must not be '
               f'negative, got {value!r}')
        raise InvalidHeaderError(msg)
    if bounds is not None and not bounds[0] <= number <= bounds[1]:
        msg = (f'the {key} header keyword{_where(path)} is {value!r}, '
               f'outside the plausible range {bounds[0]:g}-{bounds[1]:g}; '
               'is it the right keyword (--header-key)?')
        raise InvalidHeaderError(msg)
    return number


def _flag(header, key, path):
    """Return a FITS boolean from the header (`None` if absent)."""
    if not key or key not in header:
        return None
    value = _get(header, key, path)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    # Some writers store logicals as text or 0/1.
    text = str(value).strip().upper()
    if text in ('T', 'TRUE', '1', '1.0'):
        return True
    if text in ('F', 'FALSE', '0', '0.0'):
        return False
    msg = (f'the {key} header keyword{_where(path)} must be a FITS boolean '
           f'(T or F), got {value!r}')
    raise InvalidHeaderError(msg)


def _text(header, key, path=None):
    if not key or key not in header:
        return None
    value = _get(header, key, path)
    if value is None or isinstance(value, (bool, np.bool_)):
        return None
    value = str(value).strip()
    return value or None


def _saturation(header, keys, path):
    """Return the saturation level: the keyword, else its fallback."""
    level = _number(header, keys.saturation, path, positive=True)
    if level is None:
        level = _number(header, keys.saturation_fallback, path,
                        positive=True)
    return level


def _time(header, keys, path, exptime):
    """Return the mid-exposure time and where it came from."""
    from astropy.time import Time

    scale = _text(header, keys.timesys, path)
    scale = 'utc' if scale is None else scale.lower()
    if scale not in _SCALES:
        msg = (f'the {keys.timesys} header keyword{_where(path)} is '
               f'{scale.upper()!r}, not a time scale astropy knows '
               f'({", ".join(s.upper() for s in _SCALES)})')
        raise InvalidHeaderError(msg)
    candidates = ((keys.mjd_mid, 'mjd', 'mid'), (keys.date_mid, 'isot',
                                                  'mid'),
                  (keys.mjd, 'mjd', keys.times_mark),
                  (keys.date, 'isot', keys.times_mark),
                  (keys.jd, 'jd', keys.times_mark))
    for key, fmt, marks in candidates:
        if not key or key not in header:
            continue
        if fmt == 'isot':
            value = _text(header, key, path)
            try:
                time = Time(value, scale=scale)
            except (TypeError, ValueError):
                msg = (f'the {key} header keyword{_where(path)} is '
                       f'{value!r}, not an ISO date and time')
                raise InvalidHeaderError(msg) from None
        else:
            value = _number(header, key, path)
            time = Time(value, format=fmt, scale=scale)
        if marks == 'mid':
            return time, key
        if exptime is None:
            # Half an exposure (seconds to minutes) matters to a transit,
            # not to a light curve of days: used, and said where.
            log.warning('%s: the %s header keyword marks the start of the '
                        'exposure and there is no %s keyword; the start '
                        'time is used (--header-key exptime=KEYWORD or '
                        'times_mark=mid to change this)', path or 'frame',
                        key, keys.exptime)
            return time, f'{key} (start; no {keys.exptime})'
        return time + exptime / 2 * u.s, f'{key} + {keys.exptime}/2'
    return None, None


def frame_info(source, *, header_keys=None, path=None):
    """
    Read and validate the header values of a frame.

    Parameters
    ----------
    source : `~astropy.io.fits.Header`, dict or `~astropy.nddata.NDData`
        A header, or an NDData (such as `~astropy.nddata.CCDData`) whose
        ``meta`` is the header; its ``wcs`` and shape are used.

    header_keys : `~satphotutils.frames.HeaderKeys`, optional
        The keywords to read (the defaults if `None`).

    path : str, optional
        The file, named in messages.

    Returns
    -------
    info : `~satphotutils.frames.FrameInfo`

    Raises
    ------
    InvalidHeaderError
        If a keyword is present with a value that cannot be used (not a
        number, not finite, out of range, a start time without an
        exposure time); the message names the keyword.

    Examples
    --------
    >>> from astropy.io import fits
    >>> from satphotutils.frames import frame_info
    >>> header = fits.Header({'DATE-OBS': '2024-03-01T02:00:00',
    ...                       'EXPTIME': 90.0, 'FILTER': 'g'})
    >>> info = frame_info(header)
    >>> info.time.isot, info.time_source, info.zeropoint, info.filter
    ('2024-03-01T02:00:45.000', 'DATE-OBS + EXPTIME/2', None, 'g')
    """
    from astropy.nddata import NDData

    keys = HeaderKeys() if header_keys is None else header_keys
    if not isinstance(keys, HeaderKeys):
        msg = f'header_keys must be a HeaderKeys, got {type(keys).__name__}'
        raise TypeError(msg)
    wcs = shape = None
    if isinstance(source, NDData):
        header = source.meta if source.meta is not None else {}
        wcs = source.wcs
        shape = tuple(np.shape(source.data))
    else:
        header = source if source is not None else {}
    if wcs is not None and not getattr(wcs, 'has_celestial', True):
        wcs = None
    exptime = _number(header, keys.exptime, path, nonnegative=True)
    time, time_source = _time(header, keys, path, exptime)
    epoch = None
    if keys.epoch and keys.epoch in header:
        value = _number(header, keys.epoch, path)
        if value != int(value):
            msg = (f'the {keys.epoch} header keyword{_where(path)} must be '
                   f'an integer epoch number, got {value!r}')
            raise InvalidHeaderError(msg)
        epoch = int(value)
    return FrameInfo(
        path=None if path is None else str(path), shape=shape, wcs=wcs,
        time=time, time_source=time_source, exptime=exptime,
        zeropoint=_number(header, keys.zeropoint, path,
                          bounds=_ZEROPOINT_RANGE),
        transparency=_number(header, keys.transparency, path, positive=True),
        sky=_number(header, keys.sky, path),
        gain=_number(header, keys.gain, path, positive=True),
        read_noise=_number(header, keys.read_noise, path, nonnegative=True),
        saturation_level=_saturation(header, keys, path),
        reference_grid=_flag(header, keys.reference_grid, path),
        corrected=_flag(header, keys.corrected, path),
        camera=_text(header, keys.camera, path),
        filter=_text(header, keys.filter, path),
        epoch=epoch, keys=keys)
