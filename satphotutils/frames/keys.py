# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The names of the header keywords satphotutils reads."""

import dataclasses

from satphotutils.utils.exceptions import SatphotutilsError

__all__ = ['HeaderKeys']


@dataclasses.dataclass(frozen=True)
class HeaderKeys:
    """
    The header keyword of each quantity satphotutils reads from a frame.

    One instance is shared by photometry, the stamp builder and the
    light-curve pipeline, so a camera's keywords are configured once
    (on the command line with ``--header-key NAME=KEYWORD``). A field
    set to `None` is never read.

    Parameters
    ----------
    mjd_mid, date_mid : str or `None`, optional
        Mid-exposure time as an MJD or an ISO date (the FITS standard's
        ``MJD-AVG`` and ``DATE-AVG``).

    mjd, date, jd : str or `None`, optional
        Exposure time as an MJD, an ISO date or a Julian date. By the
        FITS standard ``MJD-OBS`` and ``DATE-OBS`` mark the start of the
        exposure; see ``times_mark``.

    times_mark : {'start', 'mid'}, optional
        What ``mjd``, ``date`` and ``jd`` mark. With ``'start'`` half of
        the exposure time (``exptime``) is added; without an exposure
        time the start is used, with a warning in the log and
        ``FrameInfo.time_source`` saying so.

    exptime : str or `None`, optional
        Exposure time (s).

    timesys : str or `None`, optional
        The time scale (``UTC`` when absent).

    zeropoint : str or `None`, optional
        Zero point Z of the reference image (magnitude of one count).

    transparency : str or `None`, optional
        Transparency factor t of the exposure relative to the reference.

    sky : str or `None`, optional
        Sky level (counts per pixel).

    gain, read_noise : str or `None`, optional
        Gain (e-/ADU) and read noise (e-).

    saturation : str or `None`, optional
        Counts at which pixels saturate.

    saturation_fallback : str or `None`, optional
        Read for the saturation level when ``saturation`` is absent
        (``SATLEVEL``, which some pipelines write instead).

    reference_grid : str or `None`, optional
        A boolean keyword a pipeline sets on frames it resampled onto a
        reference grid whose WCS places the stars exactly (the
        simulator's survey frames carry it): photometry then measures
        at the given positions instead of re-centring
        (``recentre='auto'``). A frame whose WCS was changed must not
        carry it.

    corrected : str or `None`, optional
        A boolean keyword saying whether the pipeline corrected the
        saturated stars, replacing their bleed trails (``T``, as
        ASAS-SN does), or left the trails in the frame (``F``; the
        simulator's frames carry it). Without it photometry measures
        which the frame is (`~satphotutils.frames.bleed_trails`).

    camera, filter : str or `None`, optional
        Camera and filter names.

    epoch : str or `None`, optional
        An integer numbering the epochs, used instead of a time window.

    Examples
    --------
    >>> from satphotutils.frames import HeaderKeys
    >>> keys = HeaderKeys.parse(['zeropoint=MAGZP', 'camera=INSTRUME'])
    >>> keys.zeropoint, keys.camera, keys.mjd
    ('MAGZP', 'INSTRUME', 'MJD-OBS')
    """

    mjd_mid: str | None = 'MJD-AVG'
    date_mid: str | None = 'DATE-AVG'
    mjd: str | None = 'MJD-OBS'
    date: str | None = 'DATE-OBS'
    jd: str | None = 'JD'
    times_mark: str = 'start'
    exptime: str | None = 'EXPTIME'
    timesys: str | None = 'TIMESYS'
    zeropoint: str | None = 'ZP'
    transparency: str | None = 'TRANSP'
    sky: str | None = 'SKY'
    gain: str | None = 'GAIN'
    read_noise: str | None = 'RDNOISE'
    saturation: str | None = 'SATURATE'
    saturation_fallback: str | None = 'SATLEVEL'
    reference_grid: str | None = 'REFGRID'
    corrected: str | None = 'SATCORR'
    camera: str | None = 'CAMERA'
    filter: str | None = 'FILTER'
    epoch: str | None = None

    def __post_init__(self):
        if self.times_mark not in ('start', 'mid'):
            msg = ("times_mark must be 'start' or 'mid', got "
                   f'{self.times_mark!r}')
            raise ValueError(msg)
        for field in dataclasses.fields(self):
            if field.name == 'times_mark':
                continue
            value = getattr(self, field.name)
            if value is not None and (not isinstance(value, str)
                                      or not value.strip()):
                msg = (f'header key {field.name} must be a keyword name or '
                       f'None, got {value!r}')
                raise ValueError(msg)
            if value is not None:
                object.__setattr__(self, field.name, value.strip().upper())

    @classmethod
    def names(cls):
        """Return the names of the quantities (the fields)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes):
        """Return a copy with some keywords changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """Return the keywords as a dict (for table and file metadata)."""
        return dataclasses.asdict(self)

    @classmethod
    def parse(cls, items, *, base=None):
        """
        Build from ``NAME=KEYWORD`` strings (``--header-key``).

        Parameters
        ----------
        items : iterable of str
            ``NAME=KEYWORD`` pairs; an empty keyword (``NAME=``) turns
            the quantity off.

        base : `HeaderKeys`, optional
            The keywords to start from (the defaults if `None`).

        Returns
        -------
        keys : `HeaderKeys`

        Raises
        ------
        SatphotutilsError
            For an item that is not ``NAME=KEYWORD`` or names an unknown
            quantity; the message lists the known ones.
        """
        base = cls() if base is None else base
        changes = {}
        for item in items or ():
            name, sep, keyword = str(item).partition('=')
            name = name.strip().lower().replace('-', '_')
            if not sep or name not in cls.names():
                msg = (f'--header-key {item!r}: give NAME=KEYWORD with NAME '
                       f'one of {", ".join(cls.names())}')
                raise SatphotutilsError(msg)
            keyword = keyword.strip()
            changes[name] = keyword if name == 'times_mark' else \
                (keyword or None)
        try:
            return base.replace(**changes)
        except ValueError as exc:
            msg = f'--header-key: {exc}'
            raise SatphotutilsError(msg) from None
