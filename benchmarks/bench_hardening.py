# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Fuzzing the file readers with mutated real files."""

import collections
import warnings
from pathlib import Path

import numpy as np

from benchmarks import Metric, Result, benchmark

DATA = Path(__file__).parents[1] / 'tests' / 'data' / 'asassn_lc'


def _mutate(raw, rng):
    raw = bytearray(raw)
    for _ in range(rng.integers(1, 9)):
        at = int(rng.integers(0, max(len(raw), 1)))
        kind = rng.integers(3)
        if kind == 0 and raw:
            raw[at] = int(rng.integers(256))
        elif kind == 1:
            del raw[at:at + int(rng.integers(1, 200))]
        else:
            raw[at:at] = rng.bytes(int(rng.integers(1, 20)))
    return bytes(raw)


def _fits_frame(path):
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.io import fits

    from satphotutils.simulation import Camera, Detector, FrameSimulator, Scene

    centre = SkyCoord(30.0, -20.0, unit='deg')
    scene = Scene.random(centre, radius=0.5 * u.deg, g_max=13.0, seed=1)
    frame, _ = FrameSimulator(camera=Camera(detector=Detector(
        shape=(64, 64))), pointing=centre)(scene, mjd=59000.0, seed=1)
    frame.write(path, overwrite=True)
    compressed = path.with_suffix('.fits.fz')
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(
        np.nan_to_num(frame.data).astype(np.int32),
        header=frame.to_hdu()[0].header)]).writeto(compressed,
                                                   overwrite=True)
    return [path, compressed]


@benchmark('fuzz_readers', description=(
    'Random byte mutations (flips, cuts, insertions) of the four real Sky '
    'Patrol files and of a simulated FITS frame (plain and tile-'
    'compressed), read with read_lightcurve and read_frame. Every '
    'outcome must be a table/frame or a SatphotutilsError naming the '
    'file; any other exception is a failure. 5,000 mutations per reader '
    '(500 with --quick).'))
def fuzz_readers(ctx):
    from satphotutils.frames import read_frame
    from satphotutils.intercalibration import read_lightcurve
    from satphotutils.utils.exceptions import SatphotutilsError

    n = 500 if ctx.quick else 5000
    rng = np.random.default_rng(2026)
    work = ctx.output / 'data' / 'fuzz'
    work.mkdir(parents=True, exist_ok=True)
    sources = {'read_lightcurve': (read_lightcurve, sorted(
        DATA.glob('*.csv'))),
               'read_frame': (read_frame, _fits_frame(work / 'frame.fits'))}
    metrics = []
    for name, (reader, files) in sources.items():
        outcomes = collections.Counter()
        others = []
        for i in range(n):
            source = files[i % len(files)]
            path = work / f'mutant{"".join(source.suffixes)}'
            path.write_bytes(_mutate(source.read_bytes(), rng))
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                try:
                    reader(path)
                    outcomes['read'] += 1
                except SatphotutilsError:
                    outcomes['clean error'] += 1
                except Exception as exc:  # the failures being counted
                    outcomes['other exception'] += 1
                    others.append(f'{type(exc).__name__}: {exc}'[:200])
        metrics += [
            Metric(f'{name}: mutants read', outcomes['read']),
            Metric(f'{name}: mutants refused with SatphotutilsError',
                   outcomes['clean error']),
            Metric(f'{name}: any other exception', outcomes[
                'other exception'], '', '0',
                outcomes['other exception'] == 0)]
        for text in sorted(set(others))[:5]:
            metrics.append(Metric(f'{name}: example failure', text))
    return Result(metrics=metrics)
