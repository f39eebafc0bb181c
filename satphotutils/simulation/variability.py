# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Light-curve models: magnitude offsets as a function of time.

Each model is configured in ``__init__`` and called with times (MJD,
days) to return the change in magnitude from the star's mean; a model
is deterministic once built, so all exposures of a star share one light
curve.
"""

import numpy as np

__all__ = ['Constant', 'DampedRandomWalk', 'EclipsingBinary',
           'PulsatingStar']


class Constant:
    """
    A constant star.

    Examples
    --------
    >>> from satphotutils.simulation import Constant
    >>> float(Constant()(59000.0))
    0.0
    """

    kind = 'constant'

    def __call__(self, t):
        """Return zeros shaped like ``t``."""
        return np.zeros(np.shape(t))

    def __repr__(self):
        return '<Constant>'


class PulsatingStar:
    """
    A periodic pulsator with a skewed, non-sinusoidal light curve.

    Parameters
    ----------
    period : float
        Period in days.

    amplitude : float
        Peak-to-peak amplitude in magnitudes.

    rise_fraction : float, optional
        Fraction of the cycle spent brightening (0.5 is symmetric; about
        0.3 for Cepheids and 0.4 for Miras).

    t0 : float, optional
        Epoch of maximum light (MJD).

    Examples
    --------
    >>> from satphotutils.simulation.variability import PulsatingStar
    >>> cepheid = PulsatingStar(period=5.37, amplitude=0.8, t0=0.0)
    >>> print(round(float(cepheid(0.0)), 3), round(float(cepheid(5.37)), 3))
    -0.4 -0.4
    """

    kind = 'pulsating'

    def __init__(self, *, period, amplitude, rise_fraction=0.3, t0=0.0):
        if not period > 0 or not amplitude >= 0:
            msg = 'period must be positive and amplitude non-negative'
            raise ValueError(msg)
        if not 0 < rise_fraction < 1:
            msg = 'rise_fraction must be in (0, 1)'
            raise ValueError(msg)
        self.period = float(period)
        self.amplitude = float(amplitude)
        self.rise_fraction = float(rise_fraction)
        self.t0 = float(t0)

    @classmethod
    def cepheid(cls, *, period=5.4, amplitude=0.8, t0=0.0):
        """Make a classical-Cepheid-like star (fast rise, slow decline)."""
        return cls(period=period, amplitude=amplitude, rise_fraction=0.3,
                   t0=t0)

    @classmethod
    def mira(cls, *, period=330.0, amplitude=5.0, t0=0.0):
        """Make a Mira-like star: long period, amplitude of several mag."""
        return cls(period=period, amplitude=amplitude, rise_fraction=0.4,
                   t0=t0)

    def __call__(self, t):
        """Magnitude offset at times ``t``: -amplitude/2 at maximum."""
        phase = np.mod((np.asarray(t, dtype=float) - self.t0)
                       / self.period, 1.0)
        f = self.rise_fraction
        # Warp the phase so the rise takes f of the cycle, then a cosine:
        # maximum light at phase 0 (and 1), minimum at phase 1 - f.
        warped = np.where(phase < 1 - f, 0.5 * phase / (1 - f),
                          0.5 + 0.5 * (phase - (1 - f)) / f)
        return -0.5 * self.amplitude * np.cos(2 * np.pi * warped)

    def __repr__(self):
        return (f'<PulsatingStar period={self.period} '
                f'amplitude={self.amplitude}>')


class EclipsingBinary:
    """
    A detached eclipsing binary with narrow eclipses.

    Parameters
    ----------
    period : float
        Orbital period in days.

    primary_depth, secondary_depth : float
        Eclipse depths in magnitudes.

    width : float, optional
        Eclipse duration as a fraction of the period.

    t0 : float, optional
        Mid-time of a primary eclipse (MJD).

    Examples
    --------
    >>> from satphotutils.simulation import EclipsingBinary
    >>> eb = EclipsingBinary(period=2.0, primary_depth=0.7, t0=0.0)
    >>> round(float(eb(0.0)), 2), round(float(eb(0.5)), 2)
    (0.7, 0.0)
    """

    kind = 'eclipsing'

    def __init__(self, *, period, primary_depth, secondary_depth=0.0,
                 width=0.08, t0=0.0):
        if not period > 0 or not 0 < width < 0.5:
            msg = 'period must be positive and width in (0, 0.5)'
            raise ValueError(msg)
        self.period = float(period)
        self.primary_depth = float(primary_depth)
        self.secondary_depth = float(secondary_depth)
        self.width = float(width)
        self.t0 = float(t0)

    def __call__(self, t):
        """Magnitude offset (positive = fainter) at times ``t``."""
        phase = np.mod((np.asarray(t, dtype=float) - self.t0)
                       / self.period + 0.5, 1.0) - 0.5
        out = np.zeros(phase.shape)
        half = self.width / 2
        for centre, depth in ((0.0, self.primary_depth),
                              (0.5, self.secondary_depth)):
            d = np.abs(np.mod(phase - centre + 0.5, 1.0) - 0.5) / half
            inside = d < 1
            # A smooth, flat-bottomed dip (limb-darkened-like shape).
            out[inside] += depth * (1 - d[inside] ** 2) ** 0.5
        return out

    def __repr__(self):
        return (f'<EclipsingBinary period={self.period} '
                f'depths=({self.primary_depth}, {self.secondary_depth})>')


class DampedRandomWalk:
    """
    A damped random walk (Ornstein-Uhlenbeck process) in magnitude.

    The covariance is ``sigma**2 * exp(-|dt| / tau)``. The realisation
    is drawn exactly (no time step) and fixed by ``seed`` on a dense
    grid, so every call returns the same light curve.

    Parameters
    ----------
    sigma : float
        Long-term standard deviation in magnitudes.

    tau : float
        Damping time in days.

    t_start, t_stop : float, optional
        Time span covered (MJD).

    seed : int, optional
        Seed of the realisation.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.simulation import DampedRandomWalk
    >>> drw = DampedRandomWalk(sigma=0.2, tau=100.0, seed=1)
    >>> dm = np.array([drw(t) for t in np.linspace(57000, 60000, 500)])
    >>> bool(0.05 < dm.std() < 0.5)
    True
    """

    kind = 'drw'

    def __init__(self, *, sigma, tau, t_start=57000.0, t_stop=61000.0,
                 seed=0):
        if not sigma >= 0 or not tau > 0 or not t_stop > t_start:
            msg = 'sigma must be >= 0, tau > 0 and t_stop > t_start'
            raise ValueError(msg)
        self.sigma = float(sigma)
        self.tau = float(tau)
        rng = np.random.default_rng(seed)
        step = min(tau / 20, 0.5)
        self._t = np.arange(t_start, t_stop + step, step)
        decay = np.exp(-step / tau)
        shocks = rng.normal(0, sigma * np.sqrt(1 - decay**2), self._t.size)
        shocks[0] = rng.normal(0, sigma)
        y = np.empty(self._t.size)
        y[0] = shocks[0]
        for i in range(1, y.size):
            y[i] = decay * y[i - 1] + shocks[i]
        self._y = y

    def __call__(self, t):
        """Magnitude offset at times ``t`` (interpolated on the grid)."""
        return np.interp(t, self._t, self._y)

    def __repr__(self):
        return f'<DampedRandomWalk sigma={self.sigma} tau={self.tau}>'
