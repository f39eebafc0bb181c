import numpy as np
from astropy.table import QTable
from astropy.time import Time

OFFSETS = {'bi/g': 0.0, 'bj/g': 0.12, 'bm/g': -0.07, 'ba/V': 0.35,
           'bE/g': 0.03}


def simulate_drw(rng, *, n=2500, sigma=0.2, tau=150.0, years=6,
                 ratio=None, scale=None, trend=0.0, outliers=0.0):
    """
    A DRW light curve with ASAS-SN-like seasons and five groups.

    ``ratio``: {band: amplitude of the DRW}; ``scale``: {group: factor by
    which its stated errors understate the noise}; ``trend``: mag per
    1000 days; ``outliers``: fraction of points moved by 0.2-1 mag. The
    table holds the DRW drawn (``signal``, g's amplitude) and which
    points are outliers.
    """
    t = np.sort(rng.uniform(0, 365 * years, 4 * n))
    t = t[np.cos(2 * np.pi * t / 365) > -0.3][:n]  # seasonal gaps
    y = np.empty(len(t))
    y[0] = rng.normal(0, sigma)
    for i in range(1, len(t)):
        a = np.exp(-(t[i] - t[i - 1]) / tau)
        y[i] = a * y[i - 1] + rng.normal(0, sigma * np.sqrt(1 - a**2))
    groups = np.array(list(OFFSETS))[rng.integers(0, 5, len(t))]
    cam, filt = np.array([g.split('/') for g in groups]).T
    amplitude = np.array([(ratio or {}).get(f, 1.0) for f in filt])
    factor = np.array([(scale or {}).get(g, 1.0) for g in groups])
    err = rng.uniform(0.01, 0.03, len(t))
    mag = 11.0 + amplitude * y + np.array([OFFSETS[g] for g in groups]) \
        + trend * (t - t.mean()) / 1000 + rng.normal(0, err * factor)
    bad = rng.uniform(size=len(t)) < outliers
    mag[bad] += rng.choice([-1, 1], bad.sum()) * rng.uniform(0.2, 1.0,
                                                              bad.sum())
    return QTable({'time': Time(2458000 + t, format='jd'), 'mag': mag,
                   'mag_err': err, 'camera': cam, 'filter': filt,
                   'outlier': bad, 'signal': y})
