# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Crowding terms from Gaia neighbours at survey scale."""

import time

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table

from benchmarks import Metric, Result, benchmark


def _field(n_targets, per_target, rng):
    """Targets all over the sky, each with neighbours in its 1' disc."""
    ra = rng.uniform(0, 360, n_targets)
    dec = np.degrees(np.arcsin(rng.uniform(-0.99, 0.99, n_targets)))
    sep = np.radians(1 / 60) * np.sqrt(rng.uniform(0, 1, (n_targets,
                                                          per_target)))
    pa = rng.uniform(0, 2 * np.pi, (n_targets, per_target))
    d0 = np.radians(dec)[:, None]
    nb_dec = d0 + sep * np.cos(pa)
    nb_ra = np.radians(ra)[:, None] + sep * np.sin(pa) / np.cos(d0)
    n = n_targets * per_target
    neighbours = Table({
        'ra': np.degrees(nb_ra).ravel() % 360,
        'dec': np.degrees(nb_dec).ravel(),
        'phot_g_mean_mag': rng.uniform(10, 20, n),
        'bp_rp': rng.uniform(-0.2, 3.5, n)})
    return SkyCoord(ra, dec, unit='deg'), rng.uniform(4, 14, n_targets), \
        neighbours


@benchmark('gaia_crowding', description=(
    'f_c and b_c (Eq. 2) for 10^5 targets with 10^7 Gaia neighbours '
    '(100 within 1 arcmin of each, a Galactic-plane density), 32 random '
    'background regions per target; against a brute-force separation '
    'computation of f_c on a subset, in the same run.'))
def gaia_crowding_benchmark(ctx):
    import matplotlib.pyplot as plt

    from satphotutils.calibration import gaia_crowding, neighbour_flux

    rng = np.random.default_rng(1)
    sizes = [1_000, 10_000] + ([] if ctx.quick else [100_000])
    times = []
    for n in sizes:
        targets, mag, neighbours = _field(n, 100, rng)
        start = time.perf_counter()
        result = gaia_crowding(targets, mag, neighbours, seed=2)
        times.append(time.perf_counter() - start)

    # Brute force (every pair's separation) on 10 targets of the last
    # field, for the speed ratio and as a check of the answer.
    n_brute = 10
    sub = slice(0, n_brute)
    nb = SkyCoord(neighbours['ra'], neighbours['dec'], unit='deg')
    start = time.perf_counter()
    flux, _ = neighbour_flux(neighbours)
    brute = np.array([
        flux[t.separation(nb) < 8 * u.arcsec].sum()
        for t in targets[sub]]) / 10 ** (-0.4 * mag[sub])
    brute_time = (time.perf_counter() - start) / n_brute
    error = float(np.max(np.abs(brute - result['f_c'][sub])
                         / np.maximum(brute, 1e-12)))

    fig, ax = plt.subplots(figsize=(5, 3.5), layout='constrained')
    ax.loglog(sizes, times, 'o-', label='gaia_crowding (KD-tree)')
    ax.loglog(sizes, np.array(sizes) * brute_time, 'k--',
              label='brute force (extrapolated)')
    ax.axhline(60, color='r', lw=0.8, label='target 60 s')
    ax.set_xlabel('targets (100 neighbours each)')
    ax.set_ylabel('wall time [s]')
    ax.legend()
    path = ctx.figure_path('gaia_crowding')
    fig.savefig(path, dpi=100)
    plt.close(fig)

    n, t = sizes[-1], times[-1]
    metrics = [Metric(f'{s:,} targets x {100 * s:,} neighbours', v, 's')
               for s, v in zip(sizes, times, strict=True)]
    metrics += [
        Metric('brute force per target', brute_time, 's'),
        Metric('speed-up over brute force', brute_time * n / t),
        Metric('max relative f_c difference from brute force', error, '',
               '< 1e-9', error < 1e-9)]
    if not ctx.quick:
        metrics.append(Metric('10^5 x 10^7 wall time', t, 's', '<= 60',
                              t <= 60))
    return Result(metrics=metrics, figures=[path])
