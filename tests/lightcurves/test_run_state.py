"""
The state of a light-curve run in its output directory, and its inputs.

Saved per-frame results, their fingerprint, the lock, the temporaries
and the target file names (issue 25, items 1, 2, 4, 6 and 7); numeric
options and runs that can measure nothing (items 9 and 25).
"""

import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import QTable, Table
from astropy.timeseries import TimeSeries
from numpy.testing import assert_allclose

import satphotutils.lightcurves.pipeline as pipeline_module
from satphotutils.lightcurves import LightCurvePipeline
from satphotutils.photometry import AperturePhotometryBaseline
from satphotutils.utils.exceptions import SatphotutilsError

CENTRE = SkyCoord(120.0, -35.0, unit='deg')
MAGS = [7.0, 9.0]


@pytest.fixture(scope='module', name='field')
def fixture_field(tmp_path_factory):
    from satphotutils.simulation import (
        Camera,
        Detector,
        FrameSimulator,
        Scene,
        simulate_field,
    )

    directory = tmp_path_factory.mktemp('state_field')
    detector = Detector(shape=(200, 200))
    coords = detector.wcs(CENTRE).pixel_to_world([70.0, 130.0],
                                                 [100.0, 105.0])
    scene = Scene.random(CENTRE, radius=0.5 * u.deg, g_max=13.0, seed=5)
    scene.add(coords, MAGS, [1.0, 1.0], name=['a', 'b'])
    sim = FrameSimulator(camera=Camera(detector=detector), pointing=CENTRE)
    simulate_field(directory, scene, [sim], n_epochs=4,
                   exposures_per_epoch=1, cadence=1.0, seed=6)
    targets = Table({'name': ['a', 'b'], 'ra': coords.ra.deg,
                     'dec': coords.dec.deg})
    return sorted(directory.glob('*.fits')), targets


@pytest.fixture(scope='module', name='pipeline')
def fixture_pipeline():
    # The aperture baseline: fast, and the pipeline's logic is the same.
    return LightCurvePipeline(AperturePhotometryBaseline(), epoch_window=0.1)


def _night(frames, directory, shift):
    """Copies of the frames, same names, observed ``shift`` days later."""
    directory.mkdir()
    for path in frames:
        with fits.open(path) as hdul:
            hdul[0].header['MJD-OBS'] += shift
            for key in ('DATE-OBS', 'MJD-AVG', 'DATE-AVG'):
                hdul[0].header.remove(key, ignore_missing=True)
            hdul.writeto(directory / path.name)
    return sorted(directory.glob('*.fits'))


def _states(out):
    return sorted(p for p in (out / 'frames').glob('*.ecsv'))


# -- item 1: frames of one name in two directories ----------------------------

def test_same_named_frames_in_two_directories_keep_two_states(
        field, pipeline, tmp_path):
    frames, targets = field
    one = _night(frames[:2], tmp_path / 'n1', 0.0)
    two = _night(frames[:2], tmp_path / 'n2', 10.0)
    assert [p.name for p in one] == [p.name for p in two]
    out = tmp_path / 'out'
    fresh = pipeline([*one, *two], targets, out)
    assert len(_states(out)) == 4
    resumed = pipeline([*one, *two], targets, out, resume=True)
    assert resumed.frames_resumed == 4
    assert resumed.frames_measured == 0
    # Four exposures, two nights apart, each counted once.
    for name in ('a', 'b'):
        lc = resumed.lightcurves[name]
        assert len(lc) == 4
        assert list(lc['n_exposures']) == [1, 1, 1, 1]
        times = np.sort(lc['time'].mjd)
        assert times[2] - times[0] == pytest.approx(10.0, abs=1e-6)
        assert_allclose(lc['mag'].value,
                        fresh.lightcurves[name]['mag'].value)


def test_resume_picks_each_frames_own_state_after_a_partial_run(
        field, pipeline, tmp_path):
    frames, targets = field
    one = _night(frames[:2], tmp_path / 'n1', 0.0)
    two = _night(frames[:2], tmp_path / 'n2', 10.0)
    out = tmp_path / 'out'
    pipeline(one, targets, out)
    resumed = pipeline([*one, *two], targets, out, resume=True)
    # The second night's frames share names with the first's, but are
    # not theirs: measured, not resumed.
    assert resumed.frames_resumed == 2
    assert resumed.frames_measured == 2
    assert len(resumed.lightcurves['a']) == 4


def test_old_style_states_are_measured_again_and_said(field, pipeline,
                                                      tmp_path, caplog):
    frames, targets = field
    out = tmp_path / 'out'
    (out / 'frames').mkdir(parents=True)
    # A state of an earlier version: named by the frame alone, and wrong.
    QTable({'target': [0], 'time': [1.0], 'mag': [99.0]}).write(
        out / 'frames' / f'{frames[0].name}.ecsv')
    with caplog.at_level(logging.WARNING, logger=pipeline_module.__name__):
        run = pipeline(frames, targets, out, resume=True)
    assert 'earlier satphotutils version' in caplog.text
    assert run.frames_resumed == 0
    assert run.frames_measured == len(frames)
    assert np.nanmax(run.lightcurves['a']['mag'].value) < 20


# -- item 2: resume with other inputs -----------------------------------------

@pytest.mark.parametrize('change', ['reorder', 'add', 'remove', 'move',
                                    'photometry', 'radius'])
def test_resume_with_other_inputs_is_refused(field, pipeline, tmp_path,
                                             change):
    frames, targets = field
    out = tmp_path / 'out'
    pipeline(frames[:2], targets, out)
    other, words = pipeline, 'the target table'
    if change == 'reorder':
        targets = targets[::-1]
    elif change == 'add':
        targets = Table(targets)
        targets.add_row(['c', targets['ra'][0] + 0.01, targets['dec'][0]])
    elif change == 'remove':
        targets = targets[1:]
    elif change == 'move':
        targets = Table(targets)
        targets['ra'][0] += 1e-4
    elif change == 'photometry':
        other, words = LightCurvePipeline(), 'the photometry'
    else:
        other = LightCurvePipeline(AperturePhotometryBaseline(radius=6.0))
        words = 'photometry configuration (radius)'
    with pytest.raises(SatphotutilsError, match='other inputs') as info:
        other(frames, targets, out, resume=True)
    assert words in str(info.value)
    assert 'without --resume' in str(info.value)
    # Nothing was changed: the same run still resumes.
    assert pipeline(frames, field[1], out, resume=True).frames_resumed == 2


def test_resume_with_another_epoch_window_is_right(field, pipeline,
                                                   tmp_path):
    # Epochs are combined from all saved rows on every run: another
    # window changes nothing saved, so the resume is allowed and right.
    frames, targets = field
    out = tmp_path / 'out'
    pipeline(frames, targets, out)
    wide = LightCurvePipeline(AperturePhotometryBaseline(),
                              epoch_window=5.0)
    resumed = wide(frames, targets, out, resume=True)
    fresh = wide(frames, targets, tmp_path / 'fresh')
    assert resumed.frames_resumed == len(frames)
    assert len(resumed.lightcurves['a']) == len(fresh.lightcurves['a']) == 1


def test_a_run_without_resume_starts_afresh(field, pipeline, tmp_path):
    frames, targets = field
    out = tmp_path / 'out'
    pipeline(frames, targets, out)
    other = LightCurvePipeline(AperturePhotometryBaseline(radius=6.0))
    other(frames[:1], targets, out)
    # The first run's states of the other frames are gone, so a resume
    # of the second configuration cannot pick them up.
    assert len(_states(out)) == 1
    run = other(frames, targets, out, resume=True)
    assert run.frames_resumed == 1
    assert run.frames_measured == len(frames) - 1


# -- item 4: target names and file names --------------------------------------

def test_target_names_get_unique_safe_bounded_file_names(field, pipeline,
                                                         tmp_path):
    frames, targets = field
    ra, dec = targets['ra'], targets['dec']
    names = ['all', 'statistics', 'report', 'a/b', 'a_b', '', '.hidden',
             'x' * 300, 'Star', 'star', '..']
    n = len(names)
    many = Table({'name': names, 'ra': np.resize(ra, n),
                  'dec': np.resize(dec, n)})
    out = tmp_path / 'out'
    run = pipeline(frames, many, out)
    assert set(run.lightcurves) == set(names)
    files = run.files
    assert sorted(files) == sorted(names)
    lowered = [f.casefold() for f in files.values()]
    assert len(set(lowered)) == n
    assert files['a_b'] == 'a_b.ecsv'
    for name, file in files.items():
        assert not file.startswith('.'), file
        assert len(file.encode()) <= 120
        assert '/' not in file
        assert file not in ('all.ecsv', 'statistics.ecsv', 'report.json')
        # Each file holds its own target's light curve.
        ts = TimeSeries.read(out / file, format='ascii.ecsv')
        assert ts.meta['name'] == name
        assert len(ts) == len(frames)
    # The run's own files are the run's.
    everything = QTable.read(out / 'all.ecsv', format='ascii.ecsv')
    # (ECSV reads an empty string back as masked.)
    column = _filled(everything['name'])
    assert set(column) == set(names)
    for name in names:
        rows = everything[column == name]
        assert set(rows['file']) == {files[name]}
    report = json.loads((out / 'report.json').read_text())
    assert report['files'] == files
    stats = QTable.read(out / 'statistics.ecsv', format='ascii.ecsv')
    assert dict(zip(_filled(stats['name']), stats['file'],
                    strict=True)) == files
    # The names' file names do not change from run to run.
    again = pipeline(frames, many, tmp_path / 'again')
    assert again.files == files


def _filled(column):
    return np.asarray(column.filled('') if hasattr(column, 'filled')
                      else column, dtype=str)


# -- item 6: temporaries ------------------------------------------------------

def test_only_the_packages_temporaries_are_removed(field, pipeline,
                                                   tmp_path):
    frames, targets = field
    out = tmp_path / 'out'
    pipeline(frames[:2], targets, out)
    mine = [out / '.notes.ecsv.bak', out / '.a.ecsv.draft',
            out / 'frames' / '.keep.ecsv.1']
    for path in mine:
        path.write_text("the user's")
    # What a run killed while writing FITS light curves leaves.
    stale = [out / '.satphot-tmp-a.fits.k3j2.fits',
             out / 'frames' / '.satphot-tmp-x.fits.1a2b.ecsv.ecsv']
    for path in stale:
        path.write_text('half')
    pipeline(frames, targets, out, resume=True, output_format='fits')
    for path in mine:
        assert path.read_text() == "the user's"
    for path in stale:
        assert not path.exists()
    assert not [p for d in (out, out / 'frames') for p in d.iterdir()
                if p.name.startswith('.satphot')]


def test_atomic_output_temporaries_carry_the_prefix(tmp_path):
    from satphotutils.utils.io import TEMPORARY_PREFIX, atomic_output

    with atomic_output(tmp_path / 'a.fits') as tmp:
        assert tmp.name.startswith(f'{TEMPORARY_PREFIX}a.fits.')
        assert tmp.name.endswith('.fits')
        tmp.write_text('x')


# -- item 7: one run per output directory -------------------------------------

def test_a_second_run_into_a_locked_directory_is_refused(field, pipeline,
                                                        tmp_path):
    frames, targets = field
    out = tmp_path / 'out'
    out.mkdir()
    import socket

    # Held by a live process: this one's parent.
    (out / '.satphot.lock').write_text(f'{os.getppid()} '
                                       f'{socket.gethostname()}\n')
    with pytest.raises(SatphotutilsError,
                       match=f'pid {os.getppid()}') as info:
        pipeline(frames, targets, out)
    assert str(out) in str(info.value)
    assert not (out / 'report.json').exists()
    assert (out / '.satphot.lock').exists()


def test_the_lock_of_a_dead_run_is_taken_over(field, pipeline, tmp_path,
                                              caplog):
    frames, targets = field
    out = tmp_path / 'out'
    out.mkdir()
    import socket

    done = subprocess.run([sys.executable, '-c', 'import os; '
                           'print(os.getpid())'], capture_output=True,
                          check=True)
    dead = int(done.stdout)
    (out / '.satphot.lock').write_text(f'{dead} {socket.gethostname()}\n')
    with caplog.at_level(logging.WARNING, logger=pipeline_module.__name__):
        run = pipeline(frames, targets, out)
    assert f'pid {dead}' in caplog.text
    assert run.frames_measured == len(frames)
    # Released at the end, and after a failure.
    assert not (out / '.satphot.lock').exists()
    with pytest.raises(SatphotutilsError, match='other inputs'):
        pipeline(frames, targets[::-1], out, resume=True)
    assert not (out / '.satphot.lock').exists()
    assert not list(out.glob('.satphot.lock*'))


def test_a_lock_with_our_own_pid_is_a_dead_runs(field, pipeline, tmp_path,
                                               caplog, monkeypatch):
    # A killed run's pid, given again to the run that resumes it.
    import socket

    frames, targets = field
    out = tmp_path / 'out'
    out.mkdir()
    (out / '.satphot.lock').write_text(f'{os.getpid()} '
                                       f'{socket.gethostname()}\n')
    # Every other pid looks alive: only being ours makes it stale.
    monkeypatch.setattr(pipeline_module, '_pid_alive', lambda pid: True)
    with caplog.at_level(logging.WARNING, logger=pipeline_module.__name__):
        run = pipeline(frames[:1], targets, out)
    assert run.frames_measured == 1
    assert 'taking over the lock' in caplog.text


def test_lock_drafts_of_dead_processes_are_removed(field, pipeline,
                                                   tmp_path):
    frames, targets = field
    out = tmp_path / 'out'
    out.mkdir()
    dead = subprocess.run([sys.executable, '-c', 'import os; '
                           'print(os.getpid())'], capture_output=True,
                          check=True)
    draft = out / f'.satphot.lock.{int(dead.stdout)}'
    draft.write_text('killed before it linked the lock')
    live = out / f'.satphot.lock.{os.getppid()}'
    live.write_text('another run, taking the lock')
    pipeline(frames[:1], targets, out)
    assert not draft.exists()
    assert live.exists()


def test_lock_is_held_while_the_run_writes(field, pipeline, tmp_path,
                                           monkeypatch):
    frames, targets = field
    out = tmp_path / 'out'
    seen = []
    measure = LightCurvePipeline.measure_frame

    def spy(self, *args, **kwargs):
        seen.append((out / '.satphot.lock').read_text().split()[0])
        return measure(self, *args, **kwargs)

    monkeypatch.setattr(LightCurvePipeline, 'measure_frame', spy)
    pipeline(frames[:2], targets, out)
    assert seen == [str(os.getpid())] * 2


def test_copied_output_directory_is_not_confused(field, pipeline, tmp_path):
    # The state names hold the frames' identity, not the directory's: a
    # copied output directory resumes as the original.
    frames, targets = field
    out = tmp_path / 'out'
    pipeline(frames[:2], targets, out)
    shutil.copytree(out, tmp_path / 'copy')
    run = pipeline(frames, targets, tmp_path / 'copy', resume=True)
    assert run.frames_resumed == 2


# -- item 9: numeric options --------------------------------------------------

@pytest.mark.parametrize(('option', 'value', 'words'), [
    ('epoch_window', np.nan, 'finite number >= 0'),
    ('epoch_window', -1.0, 'finite number >= 0'),
    ('clip_sigma', 0.0, 'clip_sigma must be > 0'),
    ('clip_sigma', np.inf, 'finite number'),
    ('min_comparison', 0, 'min_comparison must be >= 2'),
    ('min_comparison', 1, 'min_comparison must be >= 2'),
    ('min_comparison', 2.5, 'whole number'),
    ('min_comparison', True, 'whole number'),
    ('min_comparison', '5', 'whole number'),
])
def test_numeric_options_are_validated(option, value, words):
    with pytest.raises(ValueError, match=words):
        LightCurvePipeline(AperturePhotometryBaseline(), **{option: value})


def test_whole_float_min_comparison_is_accepted():
    pipeline = LightCurvePipeline(AperturePhotometryBaseline(),
                                  min_comparison=3.0)
    assert pipeline.min_comparison == 3
    assert type(pipeline.min_comparison) is int


@pytest.mark.parametrize('value', ['nan', '-1', 'inf', 'soon'])
def test_cli_epoch_window_is_validated(field, tmp_path, capsys, value):
    from satphotutils.cli import main

    frames, targets = field
    targets.write(tmp_path / 't.ecsv')
    with pytest.raises(SystemExit) as info:
        main(['lightcurve', *map(str, frames), '--targets',
              str(tmp_path / 't.ecsv'), '-o', str(tmp_path / 'out'),
              f'--epoch-window={value}'])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert '--epoch-window' in err
    assert 'finite number >= 0' in err
    assert not (tmp_path / 'out').exists()


# -- item 25: nothing to measure ----------------------------------------------

def test_zero_targets_are_refused_at_once(field, pipeline, tmp_path):
    frames, _ = field
    empty = Table({'name': np.array([], str), 'ra': np.array([], float),
                   'dec': np.array([], float)})
    with pytest.raises(ValueError, match='target table has no rows'):
        pipeline(frames, empty, tmp_path / 'out')
    assert not (tmp_path / 'out').exists()


def test_targets_without_positions_are_refused_at_once(field, pipeline,
                                                       tmp_path):
    frames, _ = field
    nan = Table({'name': ['a', 'b'], 'ra': [np.nan, 10.0],
                 'dec': [1.0, np.nan]})
    with pytest.raises(ValueError, match='no target has a finite position'):
        pipeline(frames, nan, tmp_path / 'out')


def test_a_target_without_a_position_is_said(field, pipeline, caplog):
    frames, targets = field
    some = Table(targets)
    some.add_row(['lost', np.nan, np.nan])
    with caplog.at_level(logging.WARNING, logger=pipeline_module.__name__):
        run = pipeline(frames, some)
    assert '1 target(s) without a finite position' in caplog.text
    assert 'lost' in caplog.text
    assert set(run.lightcurves) == {'a', 'b'}


def test_targets_far_from_every_frame_fail_the_run_with_the_reason(
        field, pipeline, tmp_path, capsys):
    from satphotutils.cli import main

    frames, _ = field
    # On the far side of the frames' projection: no pixel position.
    far = Table({'name': ['far'], 'ra': [CENTRE.ra.deg + 180.0],
                 'dec': [-CENTRE.dec.deg]})
    with pytest.raises(pipeline_module.NothingMeasuredError) as info:
        pipeline(frames, far, tmp_path / 'out')
    # Not mistaken for frames with a broken WCS.
    assert not info.value.run.skipped
    assert 'no target lies on any frame' in str(info.value)
    far.write(tmp_path / 'far.ecsv')
    assert main(['lightcurve', *map(str, frames), '--targets',
                 str(tmp_path / 'far.ecsv'), '-o',
                 str(tmp_path / 'cli')]) == 1
    err = capsys.readouterr().err
    assert 'no target lies on any frame' in err
    assert 'Traceback' not in err


def test_cli_says_in_one_line_why_a_run_cannot_start(field, tmp_path,
                                                     capsys):
    import socket

    from satphotutils.cli import main

    frames, targets = field
    targets.write(tmp_path / 't.ecsv')
    targets[::-1].write(tmp_path / 'reversed.ecsv')
    out = tmp_path / 'out'
    args = ['lightcurve', *map(str, frames[:1]), '-o', str(out)]
    assert main([*args, '--targets', str(tmp_path / 't.ecsv')]) == 0
    capsys.readouterr()
    assert main([*args, '--targets', str(tmp_path / 'reversed.ecsv'),
                 '--resume']) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1
    assert 'the target table' in err
    assert 'Traceback' not in err
    (out / '.satphot.lock').write_text(f'{os.getppid()} '
                                       f'{socket.gethostname()}\n')
    assert main([*args, '--targets', str(tmp_path / 't.ecsv')]) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1
    assert f'pid {os.getppid()}' in err
    assert str(out) in err


def test_resume_with_the_colour_term_switched_is_refused(field, tmp_path):
    # Review finding: the colour term was not part of the saved state, so
    # resuming with it switched crashed (the saved frames had no slope)
    # or silently mixed two calibrations.
    from satphotutils.simulation import Scene

    frames, targets = field
    scene = Scene.random(CENTRE, radius=0.5 * u.deg, g_max=13.0, seed=5)
    comp = Table({'ra': scene.coord.ra.deg, 'dec': scene.coord.dec.deg,
                  'mag': scene.g, 'bp_rp': scene.bp_rp})
    targets = Table(targets)
    targets['bp_rp'] = [0.8, 1.1]
    plain = LightCurvePipeline(AperturePhotometryBaseline(), comparison=comp,
                               min_comparison=3)
    coloured = LightCurvePipeline(AperturePhotometryBaseline(),
                                  comparison=comp, min_comparison=3,
                                  colour_term=True)
    for first, second in ((plain, coloured), (coloured, plain)):
        out = tmp_path / f'out{id(first)}'
        first(frames[:2], targets, out)
        with pytest.raises(SatphotutilsError, match='the colour term'):
            second(frames, targets, out, resume=True)
        assert first(frames, targets, out, resume=True).frames_resumed == 2
