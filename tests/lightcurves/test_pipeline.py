import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import QTable, Table
from astropy.time import Time
from astropy.timeseries import TimeSeries
from numpy.testing import assert_allclose

import satphotutils.lightcurves.pipeline as pipeline_module
from satphotutils.cli import main
from satphotutils.lightcurves import (
    LightCurvePipeline,
    assign_epochs,
    combine_epochs,
    lightcurve_statistics,
)
from satphotutils.simulation import (
    Camera,
    Detector,
    EclipsingBinary,
    FrameSimulator,
    Scene,
    simulate_field,
)
from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.flags import SATPHOT_FLAGS

CENTRE = SkyCoord(250.0, -45.0, unit='deg')


@pytest.fixture(scope='module', name='field')
def fixture_field(tmp_path_factory):
    directory = tmp_path_factory.mktemp('lc_field')
    detector = Detector(shape=(1024, 300))
    x = np.array([60.0, 130.0, 200.0, 250.0])
    y = np.array([500.0, 480.0, 530.0, 510.0])
    coords = detector.wcs(CENTRE).pixel_to_world(x, y)
    scene = Scene.random(CENTRE, radius=0.8 * u.deg, g_max=15.0, seed=1)
    binary = EclipsingBinary(period=1.7, primary_depth=0.6,
                             secondary_depth=0.2, width=0.12, t0=0.3)
    scene.add(coords, [7.0, 9.0, 10.5, 12.0], [1.0, 1.2, 0.8, 1.0],
              variability=[None, binary, None, None],
              name=['const7', 'eb9', 'const10', 'const12'])
    sim = FrameSimulator(camera=Camera(detector=detector), pointing=CENTRE)
    simulate_field(directory, scene, [sim], n_epochs=12,
                   exposures_per_epoch=3, cadence=0.7, seed=2)
    targets = Table({'name': ['const7', 'eb9', 'const10', 'const12'],
                     'ra': coords.ra.deg, 'dec': coords.dec.deg})
    return directory, targets, scene, binary


def test_light_curves_of_constant_and_variable_stars(field, tmp_path):
    directory, targets, _, binary = field
    broken = tmp_path / 'frames'
    broken.mkdir()
    frames = sorted(directory.glob('*.fits'))
    bad = broken / 'corrupt.fits'
    bad.write_bytes(b'SIMPLE  =    T' + b' ' * 100)
    # Epochs of three exposures 110 s apart; epochs >= 0.01 d apart.
    run = LightCurvePipeline(epoch_window=0.01)(
        [*frames, bad], targets, tmp_path / 'out')
    assert str(bad) in run.skipped
    assert run.frames_measured == 36
    lc = run.lightcurves['const7']
    assert isinstance(lc, TimeSeries)
    assert lc.colnames[0] == 'time'
    assert lc['time'].scale == 'utc'
    # Epochs of three exposures, NaN where all three have a damaged core.
    assert set(np.unique(lc['n_exposures'])) <= {0, 3}
    assert np.isnan(lc['mag'][lc['n_exposures'] == 0].value).all()
    assert len(lc) == 12
    # 0.03 mag with the previous single-camera default; the
    # camera-agnostic one is 25-40% worse on this camera (issue #21).
    for name in ('const7', 'const10', 'const12'):
        stats = run.statistics[name]
        assert stats['dispersion'] < 0.04
    # The eclipsing binary: the measured light curve follows the truth.
    eb = run.lightcurves['eb9']
    truth = 9.0 + np.array([binary(t) for t in eb['time'].mjd])
    assert np.nanmedian(np.abs(eb['mag'].value - truth)) < 0.03
    assert np.ptp(truth) > 0.15
    # Outputs on disk, and a lossless round trip.
    out = tmp_path / 'out'
    read = TimeSeries.read(out / 'eb9.ecsv', format='ascii.ecsv')
    assert_allclose(read['mag'].value, eb['mag'].value)
    assert read['time'].scale == 'utc'
    # The long table holds every target's light curve, row for row.
    everything = QTable.read(out / 'all.ecsv', format='ascii.ecsv')
    assert set(everything['name']) == set(run.lightcurves)
    for name, ts in run.lightcurves.items():
        rows = everything[everything['name'] == name]
        assert_allclose(rows['time'].mjd, ts['time'].mjd, rtol=0, atol=0)
        for col in ('mag', 'mag_err', 'flags', 'n_exposures'):
            assert_allclose(np.asarray(rows[col]), np.asarray(ts[col]))
        assert list(rows['camera']) == list(ts['camera'])
        assert ts.meta['name'] == name
        # One object per target, whatever the number of lookups.
        assert run.lightcurves[name] is ts
    assert lc.meta['ra'] == pytest.approx(
        float(targets[list(targets['name']).index('const7')]['ra']))
    report = json.loads((out / 'report.json').read_text())
    assert report['skipped'][str(bad)].startswith('OSError') or \
        report['skipped'][str(bad)]


def test_in_memory_light_curves_say_how_they_were_measured(field):
    # Their plot's panel title: an aperture light curve in memory was
    # titled 'satphotutils network'.
    from satphotutils.lightcurves import plot_lightcurve
    from satphotutils.photometry import AperturePhotometryBaseline

    directory, targets, _, _ = field
    frames = sorted(directory.glob('*.fits'))[:6]
    run = LightCurvePipeline(AperturePhotometryBaseline(radius=2.0),
                             epoch_window=0.01)(frames, targets[:1])
    lc = run.lightcurves['const7']
    assert lc.meta['method'] == 'AperturePhotometryBaseline'
    fig = plot_lightcurve(lc)
    assert fig.axes[0].get_title() == 'baseline: aperture photometry'


def test_resume_does_not_duplicate(field, tmp_path):
    directory, targets, _, _ = field
    frames = sorted(directory.glob('*.fits'))
    out = tmp_path / 'out'
    pipeline = LightCurvePipeline(epoch_window=0.01)
    first = pipeline(frames[:15], targets, out)
    again = pipeline(frames, targets, out, resume=True)
    assert again.frames_resumed == 15
    # Measured in this run; the resumed ones are counted apart.
    assert again.frames_measured == len(frames) - 15
    full = pipeline(frames, targets, tmp_path / 'fresh')
    for name in full.lightcurves:
        assert len(again.lightcurves[name]) == len(full.lightcurves[name])
        assert_allclose(again.lightcurves[name]['mag'].value,
                        full.lightcurves[name]['mag'].value)
    assert len(first.lightcurves['const7']) == 5


def test_dask_local_cluster_gives_the_serial_answer(field, tmp_path,
                                                    caplog, capsys):
    distributed = pytest.importorskip('distributed')
    directory, targets, _, _ = field
    frames = sorted(directory.glob('*.fits'))[:9]
    serial = LightCurvePipeline()(frames, targets)
    # Loopback only: scheduler, nannies and workers all bind to 'lo'.
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                  interface='lo',
                                  dashboard_address='127.0.0.1:0',
                                  worker_dashboard_address=None,
                                  processes=True) as cluster, \
            distributed.Client(cluster) as client:
        pipeline = LightCurvePipeline()
        with caplog.at_level('WARNING', logger=pipeline_module.__name__):
            parallel = pipeline(frames, targets, scheduler=client,
                                progress=True)
            # Runs one after another on one client (this once hung: the
            # second run reused the first's scattered keys).
            again = pipeline(frames, targets, scheduler=client)
            third = pipeline(frames, targets, scheduler=client)
    # The nanny's default memory setting is reported, once per client.
    trim = [r for r in caplog.records
            if 'MALLOC_TRIM_THRESHOLD_=65536' in r.getMessage()]
    assert len(trim) == 1
    # The progress bar counts the frames as the workers' tasks return.
    bar = capsys.readouterr().err
    assert 'frames: 100%' in bar
    assert f'{len(frames)}/{len(frames)}' in bar
    for name, lc in serial.lightcurves.items():
        for run in (parallel, again, third):
            assert_allclose(run.lightcurves[name]['mag'].value,
                            lc['mag'].value, atol=1e-9)
    threads = LightCurvePipeline()(frames, targets, scheduler='threads')
    assert_allclose(threads.lightcurves['const7']['mag'].value,
                    serial.lightcurves['const7']['mag'].value, atol=1e-9)


@pytest.mark.parametrize('n_files', [1, 3, 4, 9, 50, 64, 65, 1000])
@pytest.mark.parametrize('n_workers', [1, 2, 7])
def test_dask_tasks_cover_the_frames_in_few_even_bounded_batches(
        n_files, n_workers):
    files = [f'f{i}.fits' for i in range(n_files)]
    batches = pipeline_module._batches(files, n_workers)
    # Every frame once, in order, none empty.
    assert [f for b in batches for f in b] == files
    sizes = [len(b) for b in batches]
    assert min(sizes) >= 1
    assert max(sizes) - min(sizes) <= 1
    assert max(sizes) <= pipeline_module._MAX_FRAMES_PER_TASK
    # Two tasks per worker while frames allow; more only when one task
    # fewer would have to take more than the bound.
    n = len(batches)
    assert n >= min(n_files, 2 * n_workers)
    if n > 2 * n_workers:
        assert -(-n_files // (n - 1)) > pipeline_module._MAX_FRAMES_PER_TASK


@pytest.mark.parametrize('scheduler', ['sync', 'threads'])
def test_local_dask_hands_back_frames_round_by_round(monkeypatch,
                                                     scheduler):
    # A long run on a local scheduler must not hold every result until
    # the end: the pipeline saves each frame's results as they arrive.
    monkeypatch.setattr('os.cpu_count', lambda: 2)
    measured = []

    def measure(pipeline, path, coords):
        measured.append(path)
        return path

    monkeypatch.setattr(pipeline_module, '_safe_measure', measure)
    files = [f'f{i}.fits' for i in range(200)]
    results = pipeline_module._dask_map(None, files, None, scheduler)
    first = next(results)
    assert len(measured) <= 2 * pipeline_module._MAX_FRAMES_PER_TASK
    rest = list(results)
    assert sorted(p for p, _ in [first, *rest]) == sorted(files)
    assert all(p == r for p, r in [first, *rest])
    assert sorted(measured) == sorted(files)


def test_local_processes_share_one_pool_across_rounds(monkeypatch):
    # Each round is its own dask.compute; without a pool of its own dask
    # would start new processes (and import torch in them) every round.
    import concurrent.futures

    import dask.multiprocessing

    pools = []

    class Counted(concurrent.futures.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(concurrent.futures, 'ProcessPoolExecutor', Counted)
    monkeypatch.setattr(dask.multiprocessing, 'ProcessPoolExecutor',
                        Counted)
    monkeypatch.setattr('os.cpu_count', lambda: 2)
    import types

    from astropy.io import fits

    files = [f'missing{i}.fits' for i in range(200)]
    # A stand-in pipeline (picklable, no model): every frame fails in the
    # worker with the missing file's OSError and comes back as it, which
    # is all this test needs.
    stub = types.SimpleNamespace(measure_frame=fits.getheader)
    results = list(pipeline_module._dask_map(stub, files, None,
                                             'processes'))
    assert len(pipeline_module._batches(files, 2)) > 2  # several rounds
    assert len(pools) == 1
    assert [p for p, _ in results] == files
    assert all(isinstance(r, FileNotFoundError) for _, r in results)


class _StubClient:
    """The part of a distributed.Client the worker memory check uses."""

    def __init__(self, client_id, environ):
        self.id = client_id
        self.environ = environ
        self.calls = 0

    def run(self, func):
        self.calls += 1
        if self.environ is None:
            msg = 'worker lost'
            raise OSError(msg)
        return dict(self.environ)


def test_worker_memory_check_warns_once_about_trimming_workers(caplog):
    from satphotutils.lightcurves.pipeline import _check_worker_memory

    unset = _StubClient('unset', {'tcp://a': None, 'tcp://b': None})
    lost = _StubClient('lost', None)
    trimming = _StubClient('nanny', {'tcp://a': '65536', 'tcp://b': None})
    with caplog.at_level('WARNING', logger=pipeline_module.__name__):
        _check_worker_memory(unset)
        _check_worker_memory(lost)  # the run goes on without the advice
        assert not caplog.records
        _check_worker_memory(trimming)
        _check_worker_memory(trimming)
    assert trimming.calls == 1
    (record,) = caplog.records
    message = record.getMessage()
    assert 'MALLOC_TRIM_THRESHOLD_=65536' in message
    assert 'MALLOC_TRIM_THRESHOLD_": None' in message


def test_ensemble_calibration_with_comparison_stars(field, tmp_path):
    directory, targets, scene, _ = field
    frames = sorted(directory.glob('*.fits'))[:6]
    # Comparison stars: unsaturated scene stars, catalogue g.
    sel = (scene.g > 12.5) & (scene.g < 13.5) \
        & np.array([v is None for v in scene.variability])
    comp = Table({'ra': scene.coord.ra.deg[sel],
                  'dec': scene.coord.dec.deg[sel], 'mag': scene.g[sel]})
    by_header = LightCurvePipeline()(frames, targets)
    by_comp = LightCurvePipeline(comparison=comp)(frames, targets)
    diff = by_comp.lightcurves['const10']['mag'].value \
        - by_header.lightcurves['const10']['mag'].value
    assert np.all(np.abs(diff) < 0.05)
    # Each exposure records its calibration: the zero point fitted to the
    # comparison stars is the header's Z - 2.5 log10(t).
    from astropy.coordinates import SkyCoord
    from astropy.io import fits

    coords = SkyCoord(targets['ra'], targets['dec'], unit='deg')
    pipeline = LightCurvePipeline(comparison=comp)
    for path in frames[:2]:
        rows = pipeline.measure_frame(path, coords)
        header = fits.getheader(path)
        true = header['ZP'] - 2.5 * np.log10(header['TRANSP'])
        assert np.all(np.abs(rows['zeropoint'] - true) < 0.05)
        assert np.all((rows['zeropoint_err'] > 0)
                      & (rows['zeropoint_err'] < 0.02))
        assert np.all(rows['n_comparison'] >= 5)


def test_comparison_calibration_with_a_colour_term(tmp_path, capsys):
    # Simulated truth: a camera whose counts depend on colour (0.2 mag
    # per mag of BP - RP). With --colour-term every target is put at its
    # own colour and its magnitude is its true g whatever the colour;
    # without it the error follows the colour. The options are checked.
    from satphotutils.photometry import AperturePhotometryBaseline
    from satphotutils.stamps.calibrate import _isolated

    detector = Detector(shape=(500, 500))
    scene = Scene.random(CENTRE, radius=0.6 * u.deg, g_max=15.0, seed=21)
    sim = FrameSimulator(camera=Camera(colour_term=0.2, detector=detector),
                         pointing=CENTRE)
    simulate_field(tmp_path / 'frames', scene, [sim], n_epochs=2,
                   exposures_per_epoch=2, seed=5)
    x, y = detector.wcs(CENTRE).world_to_pixel(scene.coord)
    inside = (x > 30) & (x < 470) & (y > 30) & (y < 470)
    alone = _isolated(x, y, scene.g, 8.0, limit=0.03)
    faint = inside & alone & (scene.g > 12.0) & (scene.g < 14.5) \
        & np.array([v is None for v in scene.variability])
    pick = np.flatnonzero(faint)
    targets_at = pick[::3][:10]
    comps_at = np.setdiff1d(pick, targets_at)
    def table(at):
        return Table({'name': [f's{i}' for i in at],
                      'ra': scene.coord.ra.deg[at],
                      'dec': scene.coord.dec.deg[at], 'mag': scene.g[at],
                      'bp_rp': scene.bp_rp[at]})
    targets, comp = table(targets_at), table(comps_at)
    assert np.ptp(targets['bp_rp']) > 0.8
    frames = sorted((tmp_path / 'frames').glob('*.fits'))
    residual = {}
    for term in (True, False):
        run = LightCurvePipeline(AperturePhotometryBaseline(),
                                 comparison=comp, colour_term=term)(
            frames, targets)
        residual[term] = np.array([
            np.median(run.lightcurves[name]['mag'].value) - g
            for name, g in zip(targets['name'], targets['mag'],
                               strict=True)])
    colour = np.asarray(targets['bp_rp'])
    slope = {k: np.polyfit(colour, v, 1)[0] for k, v in residual.items()}
    assert np.median(np.abs(residual[True])) < 0.015
    assert abs(slope[True]) < 0.04
    assert slope[False] == pytest.approx(0.2, abs=0.05)
    with pytest.raises(SatphotutilsError, match='bp_rp'):
        LightCurvePipeline(comparison=comp['ra', 'dec', 'mag'],
                           colour_term=True)
    with pytest.raises(SatphotutilsError, match='comparison'):
        LightCurvePipeline(colour_term=True)
    with pytest.raises(SatphotutilsError, match='2 targets have none'):
        bad = targets.copy()
        bad['bp_rp'][:2] = np.nan
        LightCurvePipeline(AperturePhotometryBaseline(), comparison=comp,
                           colour_term=True)(frames, bad)
    # The command line: the same calibration.
    targets.write(tmp_path / 'targets.ecsv')
    comp.write(tmp_path / 'comp.ecsv')
    assert main(['lightcurve', str(tmp_path / 'frames'), '--targets',
                 str(tmp_path / 'targets.ecsv'), '-o', str(tmp_path / 'lc'),
                 '--method', 'aperture', '--comparison',
                 str(tmp_path / 'comp.ecsv'), '--colour-term']) == 0
    written = Table.read(tmp_path / 'lc' / f'{targets["name"][0]}.ecsv')
    assert np.median(written['mag']) == pytest.approx(
        targets['mag'][0] + residual[True][0], abs=1e-6)


def test_epoch_rules():
    assert assign_epochs([5.0, 1.0, 1.01, 5.02]).tolist() == [1, 0, 0, 1]
    t = Time([1.0, 1.001, 1.002, 2.0, 2.001, 3.0], format='mjd')
    exp = QTable({'time': t, 'mag': [10.0, 10.2, 13.0, 11.0, 11.2, 12.0],
                  'mag_err': np.full(6, 0.01),
                  'flux': np.ones(6), 'flux_err': np.ones(6),
                  'flags': [0, 0, 4, 0, 0, 0]})
    lc = combine_epochs(exp)
    # Median of three, mean of two, the value of one.
    assert_allclose(lc['mag'].value, [10.2, 11.1, 12.0])
    assert list(lc['n_exposures']) == [3, 2, 1]
    assert list(lc['flags']) == [4, 0, 0]


def test_outliers_are_flagged_not_dropped():
    mag = np.r_[np.random.default_rng(1).normal(8, 0.01, 50), 6.0]
    lc = Table({'mag': mag, 'flags': np.zeros(51, int)})
    stats = lightcurve_statistics(lc)
    assert len(lc) == 51
    assert lc['flags'][-1] & SATPHOT_FLAGS.LIGHTCURVE_OUTLIER
    assert stats['n_outliers'] == 1
    assert stats['rms'] < 0.02


def test_lightcurve_command(field, tmp_path, capsys):
    directory, targets, _, _ = field
    tfile = tmp_path / 'targets.ecsv'
    targets.write(tfile)
    out = tmp_path / 'cli'
    frames = [str(p) for p in sorted(directory.glob('*.fits'))[:6]]
    assert main(['lightcurve', *frames, '--targets', str(tfile), '-o',
                 str(out), '--plot']) == 0
    assert (out / 'const7.png').is_file()
    assert main(['lightcurve', str(directory / '*.fits'), '--targets',
                 str(tfile), '-o', str(out), '--resume']) == 0
    assert '6 resumed' in capsys.readouterr().out


@pytest.mark.parametrize('output_format', ['ecsv', 'fits'])
def test_light_curve_files_round_trip_losslessly(field, tmp_path,
                                                 output_format):
    from astropy.timeseries import TimeSeries

    directory, targets, _, _ = field
    frames = sorted(directory.glob('*.fits'))[:9]
    out = tmp_path / output_format
    run = LightCurvePipeline()(frames, targets, out,
                               output_format=output_format)
    for name, lc in run.lightcurves.items():
        path = out / f'{name}.{output_format}'
        back = TimeSeries.read(path, format='ascii.ecsv') \
            if output_format == 'ecsv' else \
            TimeSeries.read(path, format='fits', astropy_native=True)
        assert back.colnames == lc.colnames
        assert back['time'].scale == lc['time'].scale == 'utc'
        assert np.all(back['time'] == lc['time'])
        for col in lc.colnames[1:]:
            a, b = np.asarray(back[col]), np.asarray(lc[col])
            if a.dtype.kind == 'f':
                np.testing.assert_array_equal(a, b)
            else:
                assert a.astype(str).tolist() == b.astype(str).tolist()
    assert (out / f'all.{output_format}').is_file()


def test_unknown_output_format_is_refused(field):
    directory, targets, _, _ = field
    with pytest.raises(ValueError, match='output_format must be one of'):
        LightCurvePipeline()(directory, targets, output_format='csv')


# -- the redesign: one frame home, one source for each value -----------------

def _rewrite(frames, directory, change):
    """Copies of frames with their headers changed by ``change(header)``."""
    from astropy.io import fits

    directory.mkdir()
    out = []
    for path in frames:
        with fits.open(path) as hdul:
            header = hdul[0].header.copy()
            change(header)
            fits.PrimaryHDU(hdul[0].data, header=header).writeto(
                directory / path.name)
        out.append(directory / path.name)
    return out


def test_photometry_header_keys_reach_the_pipeline(field, tmp_path):
    # The zero point under another keyword: configured once, on the
    # photometry, and used by the pipeline (every frame used to be
    # skipped with 'no ZP keyword').
    from satphotutils.frames import HeaderKeys
    from satphotutils.photometry import SaturatedStarPhotometry

    directory, targets, _, _ = field
    frames = sorted(directory.glob('*.fits'))[:6]

    def rename(header):
        header['MAGZP'] = header.pop('ZP')

    renamed = _rewrite(frames, tmp_path / 'magzp', rename)
    phot = SaturatedStarPhotometry(header_keys=HeaderKeys(zeropoint='MAGZP'))
    run = LightCurvePipeline(phot, epoch_window=0.01)(renamed, targets)
    assert not run.skipped
    ref = LightCurvePipeline(epoch_window=0.01)(frames, targets)
    for name in ref.lightcurves:
        assert_allclose(run.lightcurves[name]['mag'].value,
                        ref.lightcurves[name]['mag'].value, rtol=0,
                        atol=1e-9)


def test_frames_with_only_date_obs_are_measured(field, tmp_path):
    directory, targets, _, _ = field
    frames = sorted(directory.glob('*.fits'))[:6]

    def strip(header):
        for key in ('MJD-OBS', 'MJD-AVG', 'DATE-AVG'):
            header.remove(key)

    stripped = _rewrite(frames, tmp_path / 'dateobs', strip)
    run = LightCurvePipeline(epoch_window=0.01)(stripped, targets)
    ref = LightCurvePipeline(epoch_window=0.01)(frames, targets)
    assert not run.skipped
    for name in ref.lightcurves:
        # DATE-OBS (the start, to 1 ms) + EXPTIME/2: the mid-exposure time.
        assert_allclose(run.lightcurves[name]['time'].mjd,
                        ref.lightcurves[name]['time'].mjd, rtol=0,
                        atol=2e-8)


def test_pipeline_magnitudes_are_the_photometry_tables(field):
    # With ZP and TRANSP in the header the pipeline takes the photometry
    # table's magnitudes as they are, never re-deriving them.
    from satphotutils.frames import read_frame

    directory, targets, _, _ = field
    path = sorted(directory.glob('*.fits'))[4]
    pipeline = LightCurvePipeline()
    coords = SkyCoord(targets['ra'], targets['dec'], unit='deg')
    rows = pipeline.measure_frame(path, coords)
    frame, info = read_frame(path)
    assert info.transparency != 1.0
    table = pipeline.photometry(frame, skycoord=coords[rows['target']])
    assert_allclose(rows['mag'], table['mag'].value, rtol=0, atol=0)
    assert_allclose(rows['mag_err'], table['mag_err'].value, rtol=0, atol=0)


def test_comparison_stars_are_measured_with_the_targets(field, monkeypatch):
    # One photometry call per frame for targets and comparison stars
    # together (it used to be two, each converting the pixel positions
    # back to the sky), and the unknown_camera flag no longer keeps every
    # comparison star out.
    from satphotutils.photometry.core import SaturatedStarPhotometry

    directory, targets, scene, _ = field
    frames = sorted(directory.glob('*.fits'))[:4]
    pick = (scene.g > 12.0) & (scene.g < 14.0)
    comp = Table({'ra': scene.coord.ra.deg[pick],
                  'dec': scene.coord.dec.deg[pick], 'mag': scene.g[pick]})
    calls = []
    original = SaturatedStarPhotometry._measure_positions

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SaturatedStarPhotometry, '_measure_positions',
                        counted)
    # Placed once: never converted back from pixels to the sky.
    from astropy.wcs import WCS

    def refuse(*args, **kwargs):
        raise AssertionError('pixel_to_world called')

    monkeypatch.setattr(WCS, 'pixel_to_world', refuse)
    run = LightCurvePipeline(comparison=comp, epoch_window=0.01)(frames,
                                                                  targets)
    assert len(calls) == len(frames)
    flags = np.bitwise_or.reduce(run.lightcurves['const10']['flags'])
    assert not flags & SATPHOT_FLAGS.NO_CALIBRATION


def test_an_unexpected_error_stops_the_run(field, monkeypatch):
    # Only the errors of a bad frame are reported and skipped; a bug (here
    # an injected TypeError) must not turn into '0 light curves'.
    directory, targets, _, _ = field
    frames = sorted(directory.glob('*.fits'))[:2]

    def broken(self, path, coords):
        raise TypeError('injected')

    monkeypatch.setattr(LightCurvePipeline, 'measure_frame', broken)
    with pytest.raises(TypeError, match='injected'):
        LightCurvePipeline()(frames, targets)


def test_a_run_that_measured_nothing_fails_with_the_reasons(field, tmp_path,
                                                            capsys):
    from satphotutils.lightcurves import NothingMeasuredError

    directory, targets, _, _ = field
    frames = sorted(directory.glob('*.fits'))[:3]

    def strip(header):
        header.remove('ZP')

    stripped = _rewrite(frames, tmp_path / 'nozp', strip)
    out = tmp_path / 'out'
    with pytest.raises(NothingMeasuredError, match='3 x SatphotutilsError: '
                       'no ZP keyword') as info:
        LightCurvePipeline()(stripped, targets, out)
    assert len(info.value.run.skipped) == 3
    # The report is written all the same.
    assert len(json.loads((out / 'report.json').read_text())['skipped']) == 3
    tpath = tmp_path / 'targets.ecsv'
    targets.write(tpath)
    code = main(['lightcurve', *map(str, stripped), '--targets', str(tpath),
                 '-o', str(tmp_path / 'cli')])
    assert code == 1
    assert 'no ZP keyword' in capsys.readouterr().err


def test_light_curve_outputs_carry_provenance(field, tmp_path):
    directory, targets, _, _ = field
    frames = sorted(directory.glob('*.fits'))[:3]
    out = tmp_path / 'out'
    LightCurvePipeline(epoch_window=0.01)(frames, targets, out)
    for name in ('const7.ecsv', 'all.ecsv', 'statistics.ecsv'):
        meta = Table.read(out / name).meta
        assert meta['version']['satphotutils'], name
        assert meta['config']['photometry'] == 'SaturatedStarPhotometry'
        assert meta['config']['photometry_config']['header_keys']['mjd'] \
            == 'MJD-OBS'
    report = json.loads((out / 'report.json').read_text())
    assert report['provenance']['config']['epoch_window'] == 0.01


def test_lightcurve_command_takes_header_keys(field, tmp_path):
    directory, targets, _, _ = field
    frames = sorted(directory.glob('*.fits'))[:3]

    def rename(header):
        header['MAGZP'] = header.pop('ZP')

    renamed = _rewrite(frames, tmp_path / 'magzp', rename)
    tpath = tmp_path / 'targets.ecsv'
    targets.write(tpath)
    args = ['lightcurve', str(tmp_path / 'magzp'), '--targets', str(tpath)]
    assert main([*args, '-o', str(tmp_path / 'a')]) == 1
    assert main([*args, '-o', str(tmp_path / 'b'),
                 '--header-key', 'zeropoint=MAGZP']) == 0
    assert len(renamed) == 3


def test_frame_whose_wcs_places_nothing_is_skipped_and_said(field, tmp_path):
    # A singular CD matrix gives NaN for every position: the frame was
    # neither measured nor reported.
    directory, targets, _, _ = field
    frames = sorted(directory.glob('*.fits'))[:2]

    def singular(header):
        for key in ('CD1_1', 'CD1_2', 'CD2_1', 'CD2_2', 'PC1_1', 'PC1_2',
                    'PC2_1', 'PC2_2', 'CDELT1', 'CDELT2'):
            header.remove(key, ignore_missing=True)
        header.update({'CD1_1': 1e-3, 'CD1_2': 1e-3, 'CD2_1': 1e-3,
                       'CD2_2': 1e-3})

    bad = _rewrite(frames[:1], tmp_path / 'singular', singular)[0]
    run = LightCurvePipeline(epoch_window=0.01)([bad, frames[1]], targets)
    assert 'places no target' in run.skipped[str(bad)]
    assert run.frames_measured == 1


@pytest.mark.skipif(sys.platform == 'win32', reason='POSIX signals')
def test_item25_pool_workers_end_with_a_killed_run(tmp_path):
    # A run killed with SIGKILL cannot shut its pool down: the workers
    # must notice on their own and exit.
    import signal
    import subprocess
    import time

    script = tmp_path / 'run.py'
    script.write_text(
        'import os, time\n'
        'from satphotutils.utils.workers import process_pool\n'
        "if __name__ == '__main__':\n"
        '    pool = process_pool(1)\n'
        '    print(pool.submit(os.getpid).result(), flush=True)\n'
        '    time.sleep(120)\n')
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(sys.path)}
    run = subprocess.Popen([sys.executable, str(script)], env=env,
                           stdout=subprocess.PIPE, text=True)
    try:
        worker = int(run.stdout.readline())
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _alive(worker):
            time.sleep(0.2)
        alive = _alive(worker)
    finally:
        run.kill()
        run.stdout.close()
    if alive:
        os.kill(worker, signal.SIGKILL)
    assert not alive, 'the pool worker outlived the killed run'


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead; it waits for init to reap it.
    stat = Path(f'/proc/{pid}/stat')
    return not (stat.exists() and stat.read_text().split()[2] == 'Z')
