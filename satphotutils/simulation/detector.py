# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The detector and camera models.

Defaults describe an ASAS-SN unit: a 2048 x 2048 back-illuminated CCD
(FLI ProLine PL230, e2v CCD230-42) behind a 14-cm telephoto lens, 8.0
arcsec pixels, raw saturation near 60,000 counts, about 50% vignetting
in the corners. The gain, read noise, bias and full well are not
published; the defaults are typical of that sensor and are chosen so
that the analogue-to-digital converter (ADC) clips before the pixel's
full well is reached: stars saturate digitally at g ~ 11.5 and only
begin to bleed about a magnitude brighter, as on ASAS-SN frames.
"""

import numpy as np
from astropy import units as u
from astropy.wcs import WCS

__all__ = ['Camera', 'Detector']


class Detector:
    """
    A CCD detector.

    Parameters
    ----------
    shape : tuple of int, optional
        ``(ny, nx)`` pixels. Columns (axis 0) are the read direction, along
        which saturated charge bleeds.

    pixel_scale : `~astropy.units.Quantity`, optional
        Angular size of a pixel.

    gain : float, optional
        Electrons per ADU.

    read_noise : float, optional
        Read noise in electrons.

    bias : float, optional
        Bias level in ADU.

    full_well : float, optional
        Charge a pixel holds before the excess bleeds along its column,
        in electrons.

    adc_max : int, optional
        The largest value the ADC (and 16-bit raw storage) records.

    corner_throughput : float, optional
        Relative throughput in the extreme corners (vignetting); the flat
        field falls quadratically with radius from 1 at the centre to
        this value in the corners.

    nonlinearity : float, optional
        Fractional loss of response at the full well: a pixel holding
        ``q`` electrons reads ``q (1 - nonlinearity (q / full_well)**2)``,
        the quadratic roll-off of CCDs nearing saturation.

    bloom_fraction : float, optional
        Fraction of the charge above the full well that spills sideways,
        half into each neighbouring column, before the rest bleeds along
        its own column (the channel stops hold the rest); what spills off
        the first or last column is lost. 0 confines blooming to the
        column.

    antiblooming : float or None, optional
        Level in electrons (at most ``full_well``) above which an
        anti-blooming gate drains the charge during the exposure: pixels
        stop filling there and nothing bleeds. `None`: no gate.

    bleed_up : float, optional
        Share of the charge above the full well that bleeds up the column
        (towards higher rows); the rest bleeds down. 0.5 is symmetric; a
        barrier phase lower on one side than the other makes trails
        longer on that side.

    bleed_loss : float, optional
        Fraction of the bleeding charge lost at each pixel it flows past
        (captured on the way instead of stored), so that a trail holds
        less than the star's excess, the less the longer it is.

    register_full_well : float or None, optional
        Electrons a pixel of the serial register holds; at readout the
        charge of a pixel above it is lost (spilled out of the register)
        before the ADC sees it, a third ceiling besides the pixel's full
        well and the ADC maximum. `None`: the register holds whatever a
        pixel brings.

    Examples
    --------
    >>> from astropy.coordinates import SkyCoord
    >>> from satphotutils.simulation import Detector
    >>> detector = Detector(shape=(200, 300), gain=1.5)
    >>> wcs = detector.wcs(SkyCoord(10.0, -20.0, unit='deg'))
    >>> [round(float(v), 1) for v in wcs.world_to_pixel(
    ...     SkyCoord(10.0, -20.0, unit='deg'))]
    [149.5, 99.5]
    """

    def __init__(self, *, shape=(2048, 2048), pixel_scale=8.0 * u.arcsec,
                 gain=1.5, read_noise=12.0, bias=3000.0, full_well=130000.0,
                 adc_max=65535, corner_throughput=0.5, nonlinearity=0.0,
                 bloom_fraction=0.0, antiblooming=None,
                 register_full_well=None, bleed_up=0.5, bleed_loss=0.0):
        shape = tuple(int(n) for n in np.atleast_1d(shape))
        if len(shape) != 2 or min(shape) < 8:
            msg = 'shape must be two integers >= 8, (ny, nx)'
            raise ValueError(msg)
        pixel_scale = u.Quantity(pixel_scale, u.arcsec)
        if not pixel_scale.value > 0:
            msg = 'pixel_scale must be positive'
            raise ValueError(msg)
        for name, value in (('gain', gain), ('full_well', full_well),
                            ('adc_max', adc_max)):
            if not value > 0:
                msg = f'{name} must be positive'
                raise ValueError(msg)
        if read_noise < 0 or bias < 0:
            msg = 'read_noise and bias must be non-negative'
            raise ValueError(msg)
        if not 0 < corner_throughput <= 1:
            msg = 'corner_throughput must be in (0, 1]'
            raise ValueError(msg)
        if not 0 <= nonlinearity < 0.5:
            msg = f'nonlinearity must be in [0, 0.5), got {nonlinearity!r}'
            raise ValueError(msg)
        if bias >= adc_max:
            msg = 'bias must be below adc_max'
            raise ValueError(msg)
        if not 0 <= bloom_fraction <= 1:
            msg = f'bloom_fraction must be in [0, 1], got {bloom_fraction!r}'
            raise ValueError(msg)
        if not 0 <= bleed_up <= 1:
            msg = f'bleed_up must be in [0, 1], got {bleed_up!r}'
            raise ValueError(msg)
        if not 0 <= bleed_loss < 1:
            msg = f'bleed_loss must be in [0, 1), got {bleed_loss!r}'
            raise ValueError(msg)
        if antiblooming is not None and not 0 < antiblooming <= full_well:
            msg = (f'antiblooming must be None or a level in (0, full_well] '
                   f'electrons, got {antiblooming!r}')
            raise ValueError(msg)
        if register_full_well is not None and not register_full_well > 0:
            msg = ('register_full_well must be None or a positive number '
                   f'of electrons, got {register_full_well!r}')
            raise ValueError(msg)
        self.shape = shape
        self.pixel_scale = pixel_scale
        self.gain = float(gain)
        self.read_noise = float(read_noise)
        self.bias = float(bias)
        self.full_well = float(full_well)
        self.adc_max = int(adc_max)
        self.corner_throughput = float(corner_throughput)
        self.nonlinearity = float(nonlinearity)
        self.bloom_fraction = float(bloom_fraction)
        self.bleed_up = float(bleed_up)
        self.bleed_loss = float(bleed_loss)
        self.antiblooming = (None if antiblooming is None
                             else float(antiblooming))
        self.register_full_well = (None if register_full_well is None
                                   else float(register_full_well))

    @property
    def pixel_capacity(self):
        """Electrons a pixel holds: the full well, or the drain level."""
        if self.antiblooming is None:
            return self.full_well
        return self.antiblooming

    def __repr__(self):
        return (f'<Detector {self.shape[1]}x{self.shape[0]}, '
                f'{self.pixel_scale:.2f}/px, gain {self.gain} e-/ADU, '
                f'full well {self.full_well:.0f} e-, ADC max '
                f'{self.adc_max}>')

    @property
    def saturation_counts(self):
        """Bias-subtracted counts at which the ADC clips (flat = 1)."""
        return self.adc_max - self.bias

    @property
    def plateau_adu(self):
        """
        Raw ADU at which a pixel stops responding.

        The ADC maximum, or the most charge a pixel can bring (its full
        well, the anti-blooming level or the serial register's full well,
        whichever is least) read out after the non-linearity, if that
        comes first.
        """
        charge = self.pixel_capacity
        if self.register_full_well is not None:
            charge = min(charge, self.register_full_well)
        fill = charge / self.full_well
        well = self.bias + charge * (1 - self.nonlinearity * fill * fill) \
            / self.gain
        return min(float(self.adc_max), well)

    @property
    def plateau_counts(self):
        """`plateau_adu` above the bias (flat = 1)."""
        return self.plateau_adu - self.bias

    @property
    def full_well_counts(self):
        """The full well in counts (ADU above bias)."""
        return self.full_well / self.gain

    def flat(self, y, x):
        """
        Relative throughput (the flat field) at detector pixels ``(y, x)``.

        Parameters
        ----------
        y, x : array-like
            Detector pixel coordinates (0-based, pixel centres at integers).

        Returns
        -------
        flat : `~numpy.ndarray`
            1 at the centre, ``corner_throughput`` in the corners.
        """
        ny, nx = self.shape
        cy, cx = (ny - 1) / 2, (nx - 1) / 2
        k = (1.0 - self.corner_throughput) / (cy**2 + cx**2)
        # Separable in y and x: broadcasting the two terms costs one pass.
        return (0.5 - k * (np.asarray(y) - cy) ** 2) \
            + (0.5 - k * (np.asarray(x) - cx) ** 2)

    def wcs(self, center, *, rotation=0.0 * u.deg):
        """
        Make a gnomonic (TAN) WCS for this detector pointed at ``center``.

        Parameters
        ----------
        center : `~astropy.coordinates.SkyCoord`
            The sky position of the detector centre.

        rotation : `~astropy.units.Quantity`, optional
            Position angle of the detector's y axis east of north.

        Returns
        -------
        wcs : `~astropy.wcs.WCS`
        """
        icrs = center.icrs
        scale = self.pixel_scale.to_value(u.deg)
        theta = u.Quantity(rotation, u.deg).to_value(u.rad)
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ['RA---TAN', 'DEC--TAN']
        wcs.wcs.cunit = ['deg', 'deg']
        wcs.wcs.crval = [icrs.ra.deg, icrs.dec.deg]
        wcs.wcs.crpix = [(self.shape[1] + 1) / 2, (self.shape[0] + 1) / 2]
        cos, sin = np.cos(theta), np.sin(theta)
        wcs.wcs.cd = scale * np.array([[-cos, sin], [sin, cos]])
        wcs.wcs.radesys = 'ICRS'
        wcs.pixel_shape = self.shape[::-1]
        return wcs


class Camera:
    """
    One camera: a detector with a filter and its photometric offsets.

    Parameters
    ----------
    name : str
        Camera code, e.g. ``'bi'``. Case matters (``'ba'`` and ``'bA'``
        are different camera/filter combinations of ASAS-SN).

    filter : {'g', 'V'}, optional
        The filter.

    zeropoint_offset : float, optional
        Throughput difference to the reference camera, in magnitudes
        (added to the zero point).

    colour_term : float, optional
        Colour term in magnitudes per magnitude of Gaia BP - RP, relative
        to a star with ``BP - RP = 1``; it is part of the true counts but
        not of the frame's zero point, as for a real camera.

    detector : `Detector`, optional
        The detector; a default `Detector` if `None`.

    Examples
    --------
    >>> from satphotutils.simulation import Camera, Detector
    >>> camera = Camera('bj', filter='V', detector=Detector(shape=(512, 512)))
    >>> camera.name, camera.filter, camera.detector.shape
    ('bj', 'V', (512, 512))
    """

    def __init__(self, name='bi', *, filter='g', zeropoint_offset=0.0,
                 colour_term=0.0, detector=None):
        if filter not in ('g', 'V'):
            msg = f"filter must be 'g' or 'V', got {filter!r}"
            raise ValueError(msg)
        self.name = str(name)
        self.filter = filter
        self.zeropoint_offset = float(zeropoint_offset)
        self.colour_term = float(colour_term)
        self.detector = Detector() if detector is None else detector

    def __repr__(self):
        return (f'<Camera {self.name} ({self.filter}), zero-point offset '
                f'{self.zeropoint_offset:+.3f}, colour term '
                f'{self.colour_term:+.3f}>')
