# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Randomised camera families: complete cameras and pipelines to train on.

A network trained on one simulated camera learns that camera. A
`CameraFamily` draws whole cameras instead, each a detector, a filter, a
survey pipeline and the range of conditions its exposures see, with the
physical choices that matter for saturated stars spread over what real
cameras do, and labelled on named axes so that a family can be held out
of training and tested on (leave-one-family-out).

The ranges and their justification are on the simulation page of the
documentation (:ref:`simulation`); ``RANGES`` holds them.
"""

import dataclasses

import numpy as np
from astropy import units as u

from .detector import Camera, Detector
from .observation import ExposureConditions
from .pipeline import SurveyPipeline

__all__ = ['AXES', 'OPT_IN', 'RANGES', 'CameraDraw', 'CameraFamily',
           'ConditionsSampler']

#: The family axes and their names.
AXES = {
    'psf': ('gaussian', 'moffat', 'core_halo'),
    'correction': ('asas', 'asas_misset'),
    'saturation': ('full_well', 'adc'),
    'storage': ('uint16', 'float'),
    'filter': ('g', 'V'),
    'bleed': ('symmetric', 'asymmetric'),
}

#: Families drawn only where ``only`` names them: ``'raw'`` is a pipeline
#: without the saturation correction (trails left in the frame). Adding
#: them to ``AXES`` would change what every default family draws (the
#: bundled model's training cameras), so they are opt-in.
OPT_IN = {
    'correction': ('raw',),
}

#: The ranges every draw stays within (see the simulation docs page).
RANGES = {
    'fwhm': (1.2, 4.0),  # px, per exposure at the detector centre
    'fwhm_gradient': (0.0, 0.3),  # fractional FWHM growth to the corners
    'beta': (1.5, 6.0),  # Moffat index (of the halo for core_halo)
    'ellipticity': (0.0, 0.25),  # per exposure, at the centre
    'ellipticity_gradient': (0.0, 0.15),  # added in the corners
    'halo_fraction': (0.03, 0.2),  # core_halo only
    'halo_scale': (3.0, 8.0),  # halo FWHM / core FWHM
    'sky': (50.0, 5000.0),  # counts per pixel
    'transparency': (0.3, 1.3),
    'zeropoint': (20.0, 28.0),
    'saturation_magnitude': (8.0, 13.0),  # at reference conditions
    'gain': (0.5, 4.0),  # e-/ADU
    'read_noise': (3.0, 20.0),  # e-
    'bias': (100.0, 5000.0),  # ADU
    'adc_bits': (14, 16),
    'full_well_ratio': (0.4, 2.5),  # full well / ADC range, in electrons
    'nonlinearity': (0.0, 0.05),  # response lost at the full well
    'corner_throughput': (0.4, 1.0),  # vignetting
    'pixel_scale': (2.0, 16.0),  # arcsec
    'crowding': (0.5, 2.0),  # star density / the Gaia-like model
    'misplace_rate': (0.0, 0.15),
    'lost_rate': (0.0, 0.15),
    'fwhm_factor': (0.7, 1.3),  # correction FWHM / true FWHM
    'damage_fraction': (0.0, 0.4),
    # Bleeding: the share of the excess on the favoured side of an
    # asymmetric camera, the charge lost per pixel of the trail and the
    # share spilled into the neighbouring columns.
    'bleed_share': (0.55, 0.8),
    'bleed_loss': (0.0, 5e-4),
    'bloom_fraction': (0.02, 0.15),
    # Raw cameras only: an anti-blooming drain level and a serial
    # register smaller than a pixel's well, as fractions of the full well.
    'antiblooming': (0.5, 0.9),
    'register_full_well': (0.7, 1.0),
}

# Drawn cameras with no blooming into the neighbouring columns, without
# charge loss along the trail, and raw cameras with each of the two
# extra ceilings.
_NO_BLOOM = 0.5
_NO_LOSS = 0.5
_ANTIBLOOMING = 0.3
_REGISTER = 0.3

# full_well / ADC range of the two saturation classes.
_FULL_WELL_FIRST = (0.4, 0.92)
_ADC_FIRST = (1.05, 2.5)
# The sky stays below this fraction of the saturation level.
_SKY_CEILING = 0.1


def _log_uniform(rng, lo, hi):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


@dataclasses.dataclass(frozen=True)
class ConditionsSampler:
    """
    Draw the exposures of one drawn camera.

    Per-exposure conditions are drawn within the camera's own ranges.

    Attributes
    ----------
    psf_family : {'gaussian', 'moffat', 'core_halo'}
        The profile of every exposure.
    zeropoint : float
        The camera's zero point Z.
    fwhm : tuple of float
        Range of the FWHM at the detector centre (px), drawn log-uniform.
    beta : tuple of float
        Range of the Moffat index (that of the halo for core_halo).
    ellipticity_max : float
        Ellipticities are uniform up to this.
    ellipticity_gradient, fwhm_gradient : float
        Growth towards the corners (the camera's optics).
    halo_fraction, halo_scale : float
        The halo of a core_halo PSF.
    sky : tuple of float
        Range of the sky (counts per pixel), drawn log-uniform.
    transparency : tuple of float
        Range of the transparency, drawn log-uniform.
    damage_fraction : float
        Probability that an exposure carries the overflow damage.
    max_dither : float
        Largest dither offset (px) along each axis.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.simulation import CameraFamily
    >>> draw = CameraFamily(only={'psf': 'gaussian'})(
    ...     np.random.default_rng(1))
    >>> cond = draw.conditions(np.random.default_rng(2), mjd=59000.0)
    >>> cond.psf_family, draw.conditions.fwhm[0] <= cond.fwhm
    ('gaussian', True)
    """

    psf_family: str
    zeropoint: float
    fwhm: tuple
    beta: tuple
    ellipticity_max: float
    ellipticity_gradient: float
    fwhm_gradient: float
    halo_fraction: float
    halo_scale: float
    sky: tuple
    transparency: tuple
    damage_fraction: float
    max_dither: float = 12.0

    def __call__(self, rng, *, mjd):
        """
        Draw the conditions of one exposure.

        Parameters
        ----------
        rng : `~numpy.random.Generator`
            Random generator.

        mjd : float
            Exposure time (MJD).

        Returns
        -------
        conditions : `~satphotutils.simulation.ExposureConditions`
        """
        return ExposureConditions(
            mjd=float(mjd), zeropoint=self.zeropoint,
            transparency=_log_uniform(rng, *self.transparency),
            sky=_log_uniform(rng, *self.sky),
            fwhm=_log_uniform(rng, *self.fwhm),
            beta=float(rng.uniform(*self.beta)),
            ellipticity=float(rng.uniform(0, self.ellipticity_max)),
            theta=float(rng.uniform(0, np.pi)),
            fwhm_gradient=self.fwhm_gradient,
            dither=tuple(rng.uniform(-self.max_dither, self.max_dither, 2)),
            damaged=bool(rng.random() < self.damage_fraction),
            psf_family=self.psf_family, halo_fraction=self.halo_fraction,
            halo_scale=self.halo_scale,
            ellipticity_gradient=self.ellipticity_gradient)


@dataclasses.dataclass(frozen=True)
class CameraDraw:
    """
    One camera drawn by a `CameraFamily`.

    Attributes
    ----------
    code : str
        A code unique to this draw (the stamp table's ``camera``).
    labels : dict
        The family of each axis of ``AXES``, e.g. ``{'psf': 'moffat', ...}``.
    camera : `~satphotutils.simulation.Camera`
        The camera and its `~satphotutils.simulation.Detector`.
    pipeline : `~satphotutils.simulation.SurveyPipeline`
        Its reduction.
    conditions : `ConditionsSampler`
        Draws the conditions of its exposures:
        ``draw.conditions(rng, mjd=...)``.
    saturation_magnitude : float
        Magnitude (in the camera's filter) of a star whose peak pixel just
        reaches the saturation level at the median FWHM and sky, unit
        transparency and the centre of the field.
    crowding : float
        Star density relative to the Gaia-like model.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.simulation import CameraFamily
    >>> draw = CameraFamily()(np.random.default_rng(3))
    >>> sorted(draw.labels)
    ['bleed', 'correction', 'filter', 'psf', 'saturation', 'storage']
    >>> bool(8 <= draw.saturation_magnitude <= 13)
    True
    """

    code: str
    labels: dict
    camera: Camera
    pipeline: SurveyPipeline
    conditions: ConditionsSampler
    saturation_magnitude: float
    crowding: float

    def __repr__(self):
        det = self.camera.detector
        labels = ' '.join(f'{k}={v}' for k, v in self.labels.items())
        cond = self.conditions
        return (f'<CameraDraw {self.code} {labels} Z={cond.zeropoint:.2f} '
                f'g_sat={self.saturation_magnitude:.2f} '
                f'plateau={det.plateau_counts:.0f} counts '
                f'gain={det.gain:.2f} read_noise={det.read_noise:.1f} '
                f'full_well={det.full_well:.0f} adc_max={det.adc_max} '
                f'fwhm={cond.fwhm[0]:.2f}-{cond.fwhm[1]:.2f} '
                f'sky={cond.sky[0]:.0f}-{cond.sky[1]:.0f} '
                f'pixel_scale={det.pixel_scale:.1f} '
                f'bleed_up={det.bleed_up:.2f} bleed_loss={det.bleed_loss:.1e} '
                f'bloom_fraction={det.bloom_fraction:.2f} {self.pipeline!r}>')

    @property
    def psf_family(self):
        """The PSF family (``labels['psf']``)."""
        return self.labels['psf']


class CameraFamily:
    """
    Draw complete cameras and pipelines from randomised families.

    Each draw is a camera on the named axes of ``AXES`` (PSF family,
    saturation-correction variant, saturation class, storage, filter,
    bleeding),
    with its detector, pipeline and per-exposure conditions drawn within
    ``RANGES``, jointly so that it is a plausible camera: its zero point is
    set so that stars saturate between g ~ 8 and 13, and its sky stays
    well below its saturation level.

    Parameters
    ----------
    exclude : dict, optional
        Axis name to a family name or a set of names never drawn, e.g.
        ``{'psf': 'gaussian'}`` (train without a family).

    only : dict, optional
        Axis name to the family name or names that are drawn, e.g.
        ``{'psf': 'gaussian'}`` (test on it). The opt-in families of
        ``OPT_IN`` are drawn only when named here, e.g.
        ``{'correction': ('asas', 'asas_misset', 'raw')}`` adds cameras
        whose frames keep their bleed trails.

    shapes : sequence of tuple, optional
        Detector shapes to choose from.

    Raises
    ------
    ValueError
        An unknown axis or family name, or restrictions that leave an
        axis without a family.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.simulation import CameraFamily
    >>> family = CameraFamily(exclude={'psf': 'gaussian'})
    >>> rng = np.random.default_rng(0)
    >>> draws = [family(rng) for _ in range(20)]
    >>> 'gaussian' in {d.labels['psf'] for d in draws}
    False
    >>> family.choices['psf']
    ('moffat', 'core_halo')
    """

    def __init__(self, *, exclude=None, only=None,
                 shapes=((1024, 1024), (2048, 2048))):
        choices = dict(AXES)
        for argument, spec in (('only', only), ('exclude', exclude)):
            for axis, names in _normalise(argument, spec).items():
                if argument == 'only':
                    choices[axis] = tuple(n for n in _names(axis)
                                          if n in names)
                else:
                    choices[axis] = tuple(n for n in choices[axis]
                                          if n not in names)
                if not choices[axis]:
                    msg = (f'exclude={exclude!r} and only={only!r} leave no '
                           f'{axis!r} family; keep at least one of '
                           f'{_names(axis)}')
                    raise ValueError(msg)
        self.choices = choices
        self.shapes = tuple(tuple(int(n) for n in s) for s in shapes)
        if not self.shapes:
            msg = 'shapes must hold at least one (ny, nx)'
            raise ValueError(msg)

    def __repr__(self):
        restricted = {k: v for k, v in self.choices.items() if v != AXES[k]}
        return f'<CameraFamily {restricted or "all families"}>'

    def __call__(self, rng):
        """
        Draw one camera.

        Parameters
        ----------
        rng : `~numpy.random.Generator`
            Random generator.

        Returns
        -------
        draw : `CameraDraw`
        """
        labels = {axis: names[int(rng.integers(len(names)))]
                  for axis, names in self.choices.items()
                  if axis not in _OWN_STREAM}
        code = f'c{int(rng.integers(2**48)):012x}'
        # The bleeding is drawn from a stream of its own, seeded by the
        # code: the draws of a seed made before it existed stay as they
        # were, and it is as reproducible.
        bleed = np.random.default_rng(int(code[1:], 16))
        labels.update({axis: self.choices[axis][int(bleed.integers(
            len(self.choices[axis])))] for axis in _OWN_STREAM})
        knobs = _bleeding(bleed, labels)
        while True:
            draw = self._try(rng, labels, code, knobs)
            if draw is not None:
                return draw

    draw = __call__

    def _try(self, rng, labels, code, knobs):
        """One joint draw; `None` if its zero point cannot be in range."""
        r = RANGES
        # Detector. 14-bit ADCs are the DSLR and CMOS cameras.
        bits = 14 if rng.random() < 0.25 else 16
        adc_max = 2**bits - 1
        bias = _log_uniform(rng, r['bias'][0],
                            min(r['bias'][1], 0.08 * adc_max))
        gain = _log_uniform(rng, *r['gain'])
        ratio = rng.uniform(*(_FULL_WELL_FIRST
                              if labels['saturation'] == 'full_well'
                              else _ADC_FIRST))
        full_well = ratio * (adc_max - bias) * gain
        ceilings = {key: None if knobs[key] is None
                    else knobs[key] * full_well
                    for key in ('antiblooming', 'register_full_well')}
        detector = Detector(
            shape=self.shapes[int(rng.integers(len(self.shapes)))],
            pixel_scale=_log_uniform(rng, *r['pixel_scale']) * u.arcsec,
            gain=gain, read_noise=_log_uniform(rng, *r['read_noise']),
            bias=bias, full_well=full_well, adc_max=adc_max,
            corner_throughput=rng.uniform(*r['corner_throughput']),
            nonlinearity=rng.uniform(*r['nonlinearity']),
            bleed_up=knobs['bleed_up'], bleed_loss=knobs['bleed_loss'],
            bloom_fraction=knobs['bloom_fraction'], **ceilings)
        camera = Camera(code, filter=labels['filter'], detector=detector)

        # Pipeline.
        storage = labels['storage']
        if labels['correction'] == 'asas':
            correction = {'misplace_rate': rng.uniform(0, 0.05),
                          'lost_rate': rng.uniform(0, 0.03)}
        elif labels['correction'] == 'raw':
            correction = {'correction': False, 'misplace_rate': 0.0,
                          'lost_rate': 0.0}
        else:
            sign = 1 if rng.random() < 0.5 else -1
            correction = {
                'misplace_rate': rng.uniform(0.03, r['misplace_rate'][1]),
                'lost_rate': rng.uniform(0.03, r['lost_rate'][1]),
                'fwhm_factor': 1 + sign * rng.uniform(0.1, 0.3),
                'resample_order': (0, 3)[int(rng.integers(2))]}
        # The overflow damage comes from corrected pixels; raw frames
        # have none.
        damage = (rng.uniform(*r['damage_fraction'])
                  if storage == 'uint16' and labels['correction'] != 'raw'
                  else 0.0)
        pipeline = SurveyPipeline(damage_fraction=damage,
                                  clip_storage=storage == 'uint16',
                                  **correction)

        # Conditions: the camera's own ranges within the global ones.
        lo, hi = r['fwhm']
        median = rng.uniform(lo + 0.1, hi - 0.5)
        fwhm = (max(lo, median / 1.25), min(hi, median * 1.25))
        b_lo, b_hi = r['beta']
        beta_c = rng.uniform(b_lo, b_hi)
        beta = (max(b_lo, beta_c - 0.3), min(b_hi, beta_c + 0.3))
        if labels['psf'] == 'core_halo':
            # Scattered-light halos are broad, heavy-winged profiles.
            halo_beta = rng.uniform(b_lo, 2.7)
            beta = (halo_beta, halo_beta + 0.3)
        plateau = detector.plateau_counts
        s_lo, s_hi = r['sky']
        s_hi = min(s_hi, _SKY_CEILING * plateau)
        sky_c = _log_uniform(rng, s_lo, max(s_lo * 1.5, s_hi / 1.5))
        sky = (max(s_lo, sky_c / 1.5), min(max(s_hi, s_lo * 1.5),
                                            sky_c * 1.5))
        t_lo, t_hi = r['transparency']
        transparency = (rng.uniform(t_lo, 1.0), rng.uniform(1.0, t_hi))
        halo = (rng.uniform(*r['halo_fraction']),
                rng.uniform(*r['halo_scale']))

        # The zero point puts the saturation magnitude (median FWHM and
        # sky, t = 1, field centre) in range: a star of that magnitude
        # fills its peak pixel to the plateau.
        probe = ExposureConditions(
            mjd=0.0, zeropoint=0.0, fwhm=float(np.sqrt(fwhm[0] * fwhm[1])),
            beta=float(np.mean(beta)), ellipticity=0.0,
            psf_family=labels['psf'], halo_fraction=halo[0],
            halo_scale=halo[1])
        peak = float(probe.psf(detector).integrate(0.0, 0.0))
        sky_mid = float(np.sqrt(sky[0] * sky[1]))
        k = 2.5 * np.log10((plateau - sky_mid) / peak)
        z_lo, z_hi = r['zeropoint']
        m_lo = max(r['saturation_magnitude'][0], z_lo - k)
        m_hi = min(r['saturation_magnitude'][1], z_hi - k)
        if m_lo > m_hi:
            return None
        g_sat = rng.uniform(m_lo, m_hi)
        conditions = ConditionsSampler(
            psf_family=labels['psf'], zeropoint=float(g_sat + k),
            fwhm=tuple(float(v) for v in fwhm),
            beta=tuple(float(v) for v in beta),
            ellipticity_max=float(rng.uniform(*r['ellipticity'])),
            ellipticity_gradient=float(
                rng.uniform(*r['ellipticity_gradient'])),
            fwhm_gradient=float(rng.uniform(*r['fwhm_gradient'])),
            halo_fraction=float(halo[0]), halo_scale=float(halo[1]),
            sky=tuple(float(v) for v in sky),
            transparency=tuple(float(v) for v in transparency),
            damage_fraction=float(damage))
        return CameraDraw(code=code, labels=labels, camera=camera,
                          pipeline=pipeline, conditions=conditions,
                          saturation_magnitude=float(g_sat),
                          crowding=_log_uniform(rng, *r['crowding']))


# Axes drawn from the bleeding's own stream (see `CameraFamily.__call__`).
_OWN_STREAM = ('bleed',)


def _bleeding(rng, labels):
    """
    Draw a camera's bleeding: the knobs of `Detector` it sets.

    ``antiblooming`` and ``register_full_well`` are fractions of the full
    well, or `None`.
    """
    r = RANGES
    up = 0.5
    if labels['bleed'] == 'asymmetric':
        share = rng.uniform(*r['bleed_share'])
        # Either side may be the favoured one.
        up = share if rng.random() < 0.5 else 1 - share
    loss = 0.0 if rng.random() < _NO_LOSS else rng.uniform(*r['bleed_loss'])
    bloom = 0.0 if rng.random() < _NO_BLOOM \
        else rng.uniform(*r['bloom_fraction'])
    raw = labels['correction'] == 'raw'
    drain = rng.uniform(*r['antiblooming']) \
        if raw and rng.random() < _ANTIBLOOMING else None
    register = rng.uniform(*r['register_full_well']) \
        if raw and rng.random() < _REGISTER else None
    return {'bleed_up': float(up), 'bleed_loss': float(loss),
            'bloom_fraction': float(bloom), 'antiblooming': drain,
            'register_full_well': register}


def _names(axis):
    """Every family of an axis, the opt-in ones last."""
    return AXES[axis] + OPT_IN.get(axis, ())


def _normalise(argument, spec):
    """``{axis: name or names}`` as ``{axis: set of names}``, checked."""
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        msg = (f'{argument} must be a dict of axis to family name(s), e.g. '
               f"{{'psf': 'gaussian'}}, got {spec!r}")
        raise TypeError(msg)
    out = {}
    for axis, names in spec.items():
        if axis not in AXES:
            msg = (f'{argument}: unknown axis {axis!r}; the axes are '
                   f'{", ".join(AXES)}')
            raise ValueError(msg)
        names = {names} if isinstance(names, str) else set(names)
        unknown = names - set(_names(axis))
        if unknown:
            msg = (f'{argument}: unknown {axis!r} famil'
                   f'{"ies" if len(unknown) > 1 else "y"} '
                   f'{", ".join(sorted(unknown))}; choose from '
                   f'{", ".join(_names(axis))}')
            raise ValueError(msg)
        out[axis] = names
    return out
