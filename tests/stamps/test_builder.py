import shutil

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from numpy.testing import assert_allclose

from satphotutils.simulation import (
    Camera,
    Detector,
    FrameSimulator,
    Scene,
    simulate_field,
)
from satphotutils.stamps import BuildReport, StampBuilder, read_stamp_table
from satphotutils.utils.exceptions import SatphotutilsError

CENTRE = SkyCoord(200.0, -30.0, unit='deg')


@pytest.fixture(scope='module', name='field')
def fixture_field(tmp_path_factory):
    directory = tmp_path_factory.mktemp('field')
    scene = Scene.random(CENTRE, radius=0.5 * u.deg, g_max=17.0, seed=3)
    offsets = [(0, 0), (0.1, 0.05), (-0.08, 0.1), (0.05, -0.1)]
    coord = SkyCoord([CENTRE.ra.deg + dx for dx, _ in offsets],
                     [CENTRE.dec.deg + dy for _, dy in offsets], unit='deg')
    scene.add(coord, [7.0, 9.5, 11.0, 12.5], [1.0, 0.8, 1.4, 0.9],
              name=['t0', 't1', 't2', 't3'])
    camera = Camera(detector=Detector(shape=(300, 300)))
    sim = FrameSimulator(camera=camera, pointing=CENTRE)
    simulate_field(directory, scene, [sim], n_epochs=2,
                   exposures_per_epoch=3, seed=5)
    targets = Table({
        'source_id': [100, 101, 102, 103], 'ra': coord.ra.deg,
        'dec': coord.dec.deg,
        'phot_g_mean_mag': scene.G[-4:], 'bp_rp': scene.bp_rp[-4:]})
    gaia = Table({'ra': scene.coord.ra.deg, 'dec': scene.coord.dec.deg,
                  'phot_g_mean_mag': scene.G, 'bp_rp': scene.bp_rp})
    return directory, targets, gaia


def test_builds_labelled_stamps_that_match_the_truth(field, tmp_path):
    directory, targets, gaia = field
    out = tmp_path / 'stamps.fits'
    report = StampBuilder(edge=30)(directory, targets, out, neighbours=gaia)
    table = read_stamp_table(out)
    assert report.rows == len(table) > 0
    assert report.frames_used == 6
    truth = Table.read(directory / 'truth.ecsv')
    for row in table:
        t = truth[(truth['file'] == row['file'])
                  & (truth['name'] == f"t{row['star_id'] - 100}")][0]
        # The Gaia-based label agrees with the simulator's truth label.
        assert row['log_counts'] == pytest.approx(t['log_counts'],
                                                  abs=0.01)
        assert row['x'] == pytest.approx(t['x'], abs=0.01)
        assert abs(row['dx']) <= 0.5
    # Three exposures per epoch, two epochs.
    per_star = table[table['star_id'] == 100]
    assert sorted(np.bincount(per_star['epoch'])) == [3, 3]


def test_edge_unity_limit_and_bad_files(field, tmp_path):
    directory, targets, _ = field
    files = sorted(directory.glob('*.fits'))
    broken = tmp_path / 'broken.fits'
    broken.write_bytes(b'not a fits file')
    # A huge edge rejects everything but the central target.
    builder = StampBuilder(edge=140, max_exposures=2, seed=1)
    report = builder([*files, broken], targets, tmp_path / 'a.fits')
    table = read_stamp_table(tmp_path / 'a.fits')
    assert set(table['star_id']) == {100}
    assert len(table) == 2  # at most two exposures per target
    assert report.dropped_over_limit == 4
    assert report.rejected_edge > 0
    assert str(broken) in report.skipped_files
    # Damaged cores (more than four pixels exactly 1) are rejected.
    builder = StampBuilder(edge=30, max_unity=-1)
    with pytest.raises(SatphotutilsError, match='no stamps passed'):
        builder(files, targets, tmp_path / 'b.fits')


def test_frame_table_overrides_headers(field, tmp_path):
    directory, targets, _ = field
    frames = Table.read(directory / 'frames.ecsv')
    frame_table = Table({'file': frames['file'],
                         'zeropoint': np.full(len(frames), 20.0),
                         'transparency': np.ones(len(frames)),
                         'good': np.arange(len(frames)) > 0})
    report = StampBuilder(edge=30)(directory, targets, tmp_path / 'c.fits',
                                   frame_table=frame_table)
    table = read_stamp_table(tmp_path / 'c.fits')
    assert report.frames_used == 5
    assert_allclose(table['zeropoint'], 20.0)


def test_stamps_cut_by_the_detector_edge_are_rejected(field, tmp_path):
    # An edge smaller than the stamp's half-size: a target 7 px from the
    # detector edge passes it, but its stamp would leave the detector.
    directory, targets, gaia = field
    frame = sorted(directory.glob('*.fits'))[0]
    with fits.open(frame) as hdul:
        wcs = WCS(hdul[0].header)
    near = wcs.pixel_to_world(7.0, 150.0)
    more = Table(targets, copy=True)
    more.add_row({'source_id': 104, 'ra': near.ra.deg, 'dec': near.dec.deg,
                  'phot_g_mean_mag': 11.0, 'bp_rp': 1.0})
    report = StampBuilder(edge=5)(directory, more, tmp_path / 'e.fits',
                                  neighbours=gaia)
    table = read_stamp_table(tmp_path / 'e.fits')
    assert report.frames_used == 6
    assert 104 not in set(table['star_id'])
    assert report.rejected_edge == 6
    inner = StampBuilder(edge=30)(directory, targets, tmp_path / 'f.fits',
                                  neighbours=gaia)
    assert report.rows == inner.rows == len(table)


def test_frames_without_a_time_are_epochs_of_their_own(field, tmp_path):
    directory, targets, gaia = field
    frames = []
    for k, path in enumerate(sorted(directory.glob('*.fits'))):
        copy = tmp_path / path.name
        shutil.copy(path, copy)
        if k < 2:  # two of the first epoch's three exposures
            for key in ('MJD-OBS', 'DATE-OBS', 'MJD-AVG', 'DATE-AVG'):
                fits.delval(copy, key)
        frames.append(copy)
    StampBuilder(edge=30)(frames, targets, tmp_path / 'g.fits',
                          neighbours=gaia)
    table = read_stamp_table(tmp_path / 'g.fits')
    rows = table[table['star_id'] == 100]
    timeless = np.isnan(rows['mjd'])
    assert timeless.sum() == 2
    assert len(set(rows['epoch'][timeless])) == 2
    assert not set(rows['epoch'][timeless]) & set(rows['epoch'][~timeless])
    assert sorted(np.bincount(rows['epoch'][~timeless])[
        np.unique(rows['epoch'][~timeless])]) == [1, 3]


def _without_keywords(directory, tmp_path, keys):
    frames = []
    for path in sorted(directory.glob('*.fits')):
        copy = tmp_path / path.name
        shutil.copy(path, copy)
        for key in keys:
            fits.delval(copy, key)
        frames.append(copy)
    return frames


@pytest.mark.parametrize('removed', [('ZP',), ('ZP', 'TRANSP')])
def test_frames_without_a_zero_point_are_calibrated_on_catalogue_stars(
        field, tmp_path, removed):
    directory, _, gaia = field
    frames = _without_keywords(directory, tmp_path, removed)
    catalogue = Table(gaia, copy=True)
    catalogue['source_id'] = np.arange(len(catalogue)) + 1000
    report = StampBuilder(edge=30)(frames, catalogue, tmp_path / 's.fits',
                                   neighbours=gaia)
    table = read_stamp_table(tmp_path / 's.fits')
    assert report.frames_used == 6
    assert sorted(report.zeropoints) == sorted(p.name for p in frames)
    info = Table.read(directory / 'frames.ecsv')
    for row in info:
        fit = report.zeropoints[row['file']]
        rows = table[table['file'] == row['file']]
        # The fit measures Z - 2.5 log10(t); with TRANSP kept, the
        # recorded Z is the reference image's.
        true = 25.5 if 'TRANSP' not in removed else \
            25.5 - 2.5 * np.log10(row['transparency'])
        assert_allclose(rows['zeropoint'], true, atol=0.03)
        assert fit.n_used >= 50
        assert 0 < fit.error < 0.01
        assert_allclose(rows['zeropoint_err'], fit.error)
        assert np.all(rows['zeropoint_n'] == fit.n_used)
    # The labels agree with the simulator's truth to the zero point's
    # accuracy (0.03 mag = 0.012 dex) plus that of the crowding terms:
    # since the frames carry SATURATE, stars with a pixel above it are
    # left out of the fit, which then rests on fainter stars, and two
    # labels of 1068 come out 0.0134 dex off.
    truth = Table.read(directory / 'truth.ecsv')
    key = {(int(s), str(f)): k for k, (s, f) in
           enumerate(zip(truth['star'], truth['file'], strict=True))}
    k = [key.get((int(s) - 1000, str(f)), -1)
         for s, f in zip(table['star_id'], table['file'], strict=True)]
    k = np.array(k)
    assert np.count_nonzero(k >= 0) > 100
    assert_allclose(np.asarray(table['log_counts'])[k >= 0],
                    np.asarray(truth['log_counts'])[k[k >= 0]], atol=0.014)
    assert 'zero points fitted to catalogue stars on 6 frames' in \
        report.summary()


def test_a_frame_with_too_few_catalogue_stars_for_a_zero_point_is_skipped(
        field, tmp_path):
    directory, targets, gaia = field
    frames = _without_keywords(directory, tmp_path, ('ZP',))
    # Four targets are too few for a fit (five are needed).
    with pytest.raises(SatphotutilsError, match='no stamps passed') as exc:
        StampBuilder(edge=30)(frames, targets, tmp_path / 's.fits',
                              neighbours=gaia)
    assert 'no ZP keyword' in str(exc.value)
    assert 'catalogue stars could be measured' in str(exc.value)


def test_item13_builder_keeps_every_frames_file_name(field, tmp_path):
    # Each frame is one chunk of the writer: a short first name fixed
    # the width of the file column, and longer later names were cut.
    directory, targets, _ = field
    frames = sorted(directory.glob('*.fits'))[:2]
    names = ['f1.fits', 'night' * 10 + '.fits']
    for frame, name in zip(frames, names, strict=True):
        shutil.copy(frame, tmp_path / name)
    out = tmp_path / 'stamps.fits'
    StampBuilder(edge=30)([tmp_path / n for n in names], targets, out)
    assert set(read_stamp_table(out)['file']) == set(names)


def test_relative_transparency_of_frames_without_keywords(tmp_path):
    # Three exposures with transparencies t = 1.0, 0.8 and 0.5 (Eq. 1:
    # the counts go as 1 / t), written without ZP and TRANSP: the zero
    # points fitted to the catalogue give back t relative to the
    # clearest (t = 0.5), 2.0, 1.6 and 1.0.
    from satphotutils.simulation import ExposureConditions

    scene = Scene.random(CENTRE, radius=0.5 * u.deg, g_max=16.0, seed=4)
    sim = FrameSimulator(camera=Camera(detector=Detector(shape=(300, 300))),
                         pointing=CENTRE)
    frames = []
    for k, t in enumerate((1.0, 0.8, 0.5)):
        cond = ExposureConditions(mjd=59000.0 + k, zeropoint=25.5,
                                  transparency=t, fwhm=2.0)
        frame, _ = sim(scene, conditions=cond, seed=k)
        for key in ('ZP', 'TRANSP'):
            del frame.meta[key]
        frames.append(tmp_path / f'f{k}.fits')
        frame.write(frames[-1])
    gaia = Table({'ra': scene.coord.ra.deg, 'dec': scene.coord.dec.deg,
                  'phot_g_mean_mag': scene.G, 'bp_rp': scene.bp_rp})
    report = StampBuilder(edge=30, workers=1)(frames, gaia,
                                              tmp_path / 's.fits')
    relative = report.relative_transparency()
    for name, t in zip(('f0.fits', 'f1.fits', 'f2.fits'), (2.0, 1.6, 1.0),
                       strict=True):
        assert 2.5 * abs(np.log10(relative[name] / t)) < 0.01
    assert 'transparency relative to the clearest of them: 1.000 to 2.0' \
        in report.summary()



def test_relative_transparency_compares_colour_fits_at_one_colour():
    # Two frames with the same zero point and transparency whose stars
    # differ in colour: with a colour term of 0.15 each fit is quoted at
    # its own median colour, and the comparison must be at one colour.
    from satphotutils.calibration import FrameZeropoint

    a = FrameZeropoint(25.0 + 0.15 * (0.9 - 1.0), 0.001, 80, 2,
                       colour_term=0.15, colour_term_error=0.005,
                       colour_ref=0.9)
    b = FrameZeropoint(25.0 + 0.15 * (1.8 - 1.0), 0.001, 80, 2,
                       colour_term=0.15, colour_term_error=0.005,
                       colour_ref=1.8)
    report = BuildReport(zeropoints={'a.fits': a, 'b.fits': b})
    relative = report.relative_transparency()
    assert relative['a.fits'] == pytest.approx(1.0, abs=1e-12)
    assert relative['b.fits'] == pytest.approx(1.0, abs=1e-12)


def test_frame_workers_started_by_spawn_get_the_run(field, tmp_path,
                                                    monkeypatch):
    # Where fork is not used (macOS, Windows), the workers are spawned:
    # they must be sent the run's context, and give the same table.
    import satphotutils.stamps.builder as builder

    directory, targets, _ = field
    frames = sorted(directory.glob('*.fits'))[:4]
    StampBuilder(edge=30, workers=1)(frames, targets, tmp_path / 'one.fits')
    monkeypatch.setattr(builder, '_START_METHOD', 'spawn')
    StampBuilder(edge=30, workers=2)(frames, targets, tmp_path / 'two.fits')
    assert (tmp_path / 'one.fits').read_bytes() == \
        (tmp_path / 'two.fits').read_bytes()


@pytest.mark.parametrize('header', [True, False])
def test_rows_say_whether_their_frame_kept_its_bleed_trails(tmp_path,
                                                            header):
    # Simulated truth: frames whose pipeline left the trails (raw) and
    # frames it corrected. The rows' corrected column says which, from
    # SATCORR or, without it, from the saturated targets' stamps; a model
    # trained on them then knows what it was trained on.
    from satphotutils.network.training import _training_frames
    from satphotutils.simulation import SurveyPipeline

    scene = Scene.random(CENTRE, radius=0.5 * u.deg, g_max=14.0, seed=7)
    coord = SkyCoord(CENTRE.ra.deg + np.array([0.0, 0.1, -0.1, 0.05]),
                     CENTRE.dec.deg + np.array([0.0, 0.05, -0.05, 0.1]),
                     unit='deg')
    scene.add(coord, [7.5, 8.0, 8.5, 9.0], np.ones(4),
              name=['a', 'b', 'c', 'd'])
    gaia = Table({'source_id': np.arange(len(scene.G)),
                  'ra': scene.coord.ra.deg, 'dec': scene.coord.dec.deg,
                  'phot_g_mean_mag': scene.G, 'bp_rp': scene.bp_rp})
    found = {}
    for correction in (True, False):
        camera = Camera(detector=Detector(shape=(300, 300),
                                          full_well=80000.0))
        sim = FrameSimulator(camera=camera, pointing=CENTRE,
                             pipeline=SurveyPipeline(correction=correction))
        directory = tmp_path / f'c{correction}'
        simulate_field(directory, scene, [sim], n_epochs=1,
                       exposures_per_epoch=2, seed=6)
        frames = sorted(directory.glob('*.fits'))
        if not header:
            copies = tmp_path / f'h{correction}'
            copies.mkdir()
            frames = _without_keywords(directory, copies, ['SATCORR'])
        StampBuilder(edge=15, seed=1, workers=1)(
            frames, gaia, tmp_path / f'{correction}.fits')
        table = read_stamp_table(tmp_path / f'{correction}.fits')
        found[correction] = set(np.asarray(table['corrected']).tolist())
        columns = {name: table[name] for name in table.colnames}
        assert _training_frames(columns, np.ones(len(table), bool)) == (
            'corrected' if correction else 'uncorrected')
    assert found == {True: {1}, False: {0}}


def test_trails_below_the_nominal_level_still_count():
    # Review finding: a frame whose trail pixels sit a little below its
    # SATURATE value (bias-subtracted, flat-fielded) was "unknown" (-1):
    # the stamps are looked at from bleed_trails' own level (0.9).
    import dataclasses

    from satphotutils.frames import FrameInfo

    stamps = np.full((3, 21, 21), 100.0, dtype=np.float32)
    stamps[:, :, 10] = 64_000.0  # trails through every stamp
    meta = {'info': dataclasses.replace(FrameInfo(), corrected=None)}
    builder = StampBuilder()
    assert builder._corrected(stamps, meta, 65_535.0) == 0
    # Round saturated cores: corrected; cores too small to tell: unknown.
    cores = np.full((3, 21, 21), 100.0, dtype=np.float32)
    cores[:, 9:12, 9:12] = 64_000.0
    assert builder._corrected(cores, meta, 65_535.0) == 1
    cores[:, 9:12, 9:12] = 100.0
    cores[:, 10, 10:12] = 64_000.0
    assert builder._corrected(cores, meta, 65_535.0) == -1
    meta = {'info': dataclasses.replace(FrameInfo(), corrected=True)}
    assert builder._corrected(stamps, meta, 65_535.0) == 1
