"""
Interrupted work: runs killed with SIGKILL, then resumed.

Each test starts a real ``satphot`` process, kills it in the middle of
its work (a small wrapper slows each unit of work down so that the kill
lands mid-way, not after the end), reruns the same command and compares
with an uninterrupted run.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from numpy.testing import assert_allclose

pytestmark = pytest.mark.skipif(sys.platform == 'win32',
                                reason='needs POSIX signals')

# Runs `satphot ARGS` with one unit of work slowed down: measure_frame
# for light curves, the optimiser step for training.
_SLOW = """
import os, sys, time
os.cpu_count = lambda: 2  # local Dask schedulers: rounds of two tasks
import torch
import satphotutils.lightcurves.pipeline as pipeline
from satphotutils.cli import main

measure = pipeline.LightCurvePipeline.measure_frame
def slow_measure(self, *args, **kwargs):
    time.sleep(0.25)
    return measure(self, *args, **kwargs)
pipeline.LightCurvePipeline.measure_frame = slow_measure

step = torch.optim.AdamW.step
def slow_step(self, *args, **kwargs):
    time.sleep(0.02)
    return step(self, *args, **kwargs)
torch.optim.AdamW.step = slow_step

sys.exit(main(sys.argv[1:]))
"""


def _satphot(args, *, slow=False, **kwargs):
    code = _SLOW if slow else \
        'import sys; from satphotutils.cli import main; sys.exit(main())'
    env = dict(os.environ, MPLBACKEND='agg')
    return subprocess.Popen([sys.executable, '-c', code, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, **kwargs)


def _kill_when(process, condition, *, timeout=120):
    start = time.monotonic()
    while not condition():
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f'finished before the kill: {err.decode()[-2000:]}')
        if time.monotonic() - start > timeout:
            process.kill()
            pytest.fail('the condition for the kill never came')
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()  # reaps it and closes the pipes
    assert process.returncode == -signal.SIGKILL


def _finish(process):
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err.decode()[-3000:]
    return out.decode()


@pytest.fixture(scope='module')
def field(tmp_path_factory):
    from satphotutils.simulation import (
        Camera,
        Detector,
        FrameSimulator,
        Scene,
        simulate_field,
    )

    directory = tmp_path_factory.mktemp('frames')
    centre = SkyCoord(80.0, -40.0, unit='deg')
    detector = Detector(shape=(400, 200))
    coords = detector.wcs(centre).pixel_to_world([60.0, 140.0],
                                                 [200.0, 210.0])
    scene = Scene.random(centre, radius=0.8 * u.deg, g_max=14.0, seed=3)
    scene.add(coords, [7.0, 9.5], [1.0, 1.0], name=['a', 'b'])
    sim = FrameSimulator(camera=Camera(detector=detector), pointing=centre)
    simulate_field(directory, scene, [sim], n_epochs=8,
                   exposures_per_epoch=2, cadence=1.0, seed=4)
    targets = Table({'name': ['a', 'b'], 'ra': coords.ra.deg,
                     'dec': coords.dec.deg})
    targets.write(directory / 'targets.ecsv')
    return directory


@pytest.mark.parametrize('scheduler', [None, 'threads'])
def test_light_curve_run_killed_mid_way_resumes(field, tmp_path, scheduler):
    frames = sorted(field.glob('*.fits'))
    assert len(frames) == 16
    out = tmp_path / 'killed'
    args = ['lightcurve', *frames, '--targets', field / 'targets.ecsv',
            '-o', out]
    if scheduler is not None:
        args += ['--scheduler', scheduler]
    process = _satphot(args, slow=True)

    def finished_frames():
        # Not atomic_output's temporaries (dot files), which glob matches.
        return [p for p in (out / 'frames').glob('*.fits.*.ecsv')
                if not p.name.startswith('.')]

    _kill_when(process, lambda: len(finished_frames()) >= 4)
    done = len(finished_frames())
    assert 4 <= done < len(frames)
    assert not (out / 'report.json').exists()
    # What was written is complete: every state file reads.
    for state in finished_frames():
        Table.read(state, format='ascii.ecsv')

    text = _finish(_satphot([*args, '--resume']))
    assert f'{done} resumed' in text
    report = json.loads((out / 'report.json').read_text())
    assert report['frames_resumed'] == done
    assert report['frames_measured'] == len(frames) - done
    # No stray temporary files survive the resumed run.
    assert not [p for p in (out / 'frames').iterdir()
                if p.name.startswith('.')]

    fresh = tmp_path / 'fresh'
    _finish(_satphot(['lightcurve', *frames, '--targets',
                      field / 'targets.ecsv', '-o', fresh]))
    for name in ('a', 'b'):
        resumed = Table.read(out / f'{name}.ecsv')
        full = Table.read(fresh / f'{name}.ecsv')
        assert len(resumed) == len(full) >= 6
        assert_allclose(resumed['mag'], full['mag'])
        assert_allclose(resumed['time'].mjd, full['time'].mjd)
        assert list(resumed['n_exposures']) == list(full['n_exposures'])


@pytest.fixture(scope='module')
def stamp_file(tmp_path_factory):
    from satphotutils.simulation import StampSimulator
    from satphotutils.stamps import StampTableWriter

    stamps = StampSimulator(images_per_star=6, exposures_per_epoch=2,
                            exposures_per_chunk=24)(150, seed=8)
    path = tmp_path_factory.mktemp('stamps') / 'stamps.fits'
    with StampTableWriter(path) as writer:
        writer.write({name: np.asarray(stamps[name])
                      for name in stamps.colnames})
    return path


def test_training_killed_mid_epoch_resumes(stamp_file, tmp_path):
    from satphotutils.network import SaturatedStarModel
    from satphotutils.stamps import read_stamp_table

    common = ['--epochs', 4, '--batch-size', 32, '--seeds', 1, '--seed', 3]
    killed = tmp_path / 'killed'
    args = ['train', stamp_file, '-o', killed, *common]
    process = _satphot(args, slow=True)
    state = killed / 'checkpoints' / 'seed0.json'

    def after_first_epoch():
        # The first checkpoint is complete, plus a few steps of the next.
        if not state.exists():
            return False
        time.sleep(0.15)
        return True

    _kill_when(process, after_first_epoch)
    saved = json.loads(state.read_text())
    assert saved['epoch'] == 1
    assert not (killed / 'model.json').exists()

    text = _finish(_satphot(args))
    assert 'resumed from checkpoints: seed 0 after epoch 1' in text
    full = tmp_path / 'full'
    _finish(_satphot(['train', stamp_file, '-o', full, *common]))

    table = read_stamp_table(stamp_file)[:50]
    kwargs = {'sky': table['sky'], 'dx': table['dx'], 'dy': table['dy'],
              'saturation': table['saturation'], 'fwhm': table['fwhm']}
    resumed = SaturatedStarModel.read(killed)(np.asarray(table['stamp']),
                                              **kwargs)
    uninterrupted = SaturatedStarModel.read(full)(np.asarray(table['stamp']),
                                                  **kwargs)
    assert_allclose(resumed.log_counts, uninterrupted.log_counts,
                    atol=1e-5)
    # Only the last checkpoint's files are kept.
    files = sorted(p.name for p in (killed / 'checkpoints').iterdir())
    assert [f for f in files if '.epoch' in f] == sorted(
        json.loads(state.read_text())['files'])


def test_atomic_output_leaves_the_old_file_when_killed(tmp_path):
    # A writer killed half-way through leaves the previous file intact.
    target = tmp_path / 'out.txt'
    target.write_text('old')
    code = ('import os, sys, time\n'
            'from satphotutils.utils import atomic_output\n'
            'with atomic_output(sys.argv[1], overwrite=True) as tmp:\n'
            '    fh = open(tmp, "w")\n'
            '    fh.write("half"); fh.flush()\n'
            '    print("writing", flush=True)\n'
            '    time.sleep(60)\n')
    process = subprocess.Popen([sys.executable, '-c', code, str(target)],
                               stdout=subprocess.PIPE)
    assert process.stdout.readline().strip() == b'writing'
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert target.read_text() == 'old'
