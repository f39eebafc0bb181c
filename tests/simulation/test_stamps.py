import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose

from satphotutils.simulation import StampSimulator, SurveyPipeline
from satphotutils.stamps import iter_stamp_table, read_stamp_table


@pytest.fixture(scope='module', name='stamps')
def fixture_stamps():
    return StampSimulator(images_per_star=3)(120, seed=11)


def test_stamp_table_columns(stamps):
    for name in ('stamp', 'log_counts', 'star_id', 'zeropoint', 'sky',
                 'camera', 'filter', 'g', 'saturated', 'damaged'):
        assert name in stamps.colnames
    assert stamps['stamp'].shape == (360, 21, 21)
    assert stamps['stamp'].dtype == np.float32
    # Three exposures per star, grouped by star_id.
    _, counts = np.unique(stamps['star_id'], return_counts=True)
    assert np.all(counts == 3)


def test_targets_are_centred_and_labelled():
    # Unsaturated targets in sparse (high-latitude) fields: the flux in the
    # 5-px circle above the local sky holds most of the label's counts,
    # and the peak is at the centre pixel or next to it.
    stamps = StampSimulator(images_per_star=3, g_range=(11.5, 13.5),
                            latitude_range=(70, 90))(40, seed=2)
    sel = ~stamps['saturated'] & (stamps['f_c'] < 0.05)
    assert sel.sum() > 20
    yy, xx = np.mgrid[-10:11, -10:11]
    circle = xx**2 + yy**2 <= 25
    ratios, centred = [], []
    for row in stamps[sel]:
        stamp = row['stamp']
        sky = np.median(stamp[~circle])
        peak = np.unravel_index(np.argmax(np.where(circle, stamp, -np.inf)),
                                stamp.shape)
        centred.append(max(abs(peak[0] - 10), abs(peak[1] - 10)) <= 1)
        ratios.append(np.sum(stamp[circle] - sky) / 10 ** row['log_counts'])
    assert np.mean(centred) > 0.95
    # A Moffat (beta=2.5) puts ~93% within 5 px; the sky median is biased
    # up a little by neighbours.
    assert 0.85 < np.median(ratios) < 1.0


def test_saturated_fraction_follows_magnitude(stamps):
    g, sat = stamps['g'], stamps['saturated']
    assert np.all(sat[g < 10.5])
    # Fainter than g = 12.3 a target saturates only through a bright
    # neighbour within 2 px or a blend (the onset for isolated stars is
    # tested in test_pipeline.py): uncommon even in crowded fields.
    assert np.mean(sat[g > 12.3]) < 0.15
    assert np.mean(sat[(g > 12.3) & (stamps['f_c'] < 0.01)]) < 0.1


def test_damage_only_with_saturation(stamps):
    damaged = stamps['damaged']
    assert damaged.any()
    # Mostly the target's own core; otherwise a saturated neighbour's,
    # away from the centre.
    assert np.mean(stamps['saturated'][damaged]) > 0.8
    yy, xx = np.mgrid[-10:11, -10:11]
    for row in stamps[damaged]:
        ones = row['stamp'] == 1.0
        assert ones.any()
        assert np.count_nonzero(ones & (xx**2 + yy**2 <= 25)) \
            == row['n_unity']
        if not row['saturated']:
            assert np.hypot(xx[ones], yy[ones]).min() > 2


def test_configured_damage_fraction():
    sim = StampSimulator(images_per_star=1, g_range=(3.0, 6.0),
                         pipeline=SurveyPipeline(damage_fraction=0.0))
    assert not sim(20, seed=1)['damaged'].any()


@pytest.mark.parametrize(('weighting', 'span'),
                         [('area', (0.0, 90.0)), ('stars', (0.0, 90.0)),
                          ('stars', (-20.0, 40.0)), ('stars', (15.0, 60.0))])
def test_latitude_weighting_follows_the_sky(weighting, span):
    # Against the distribution integrated independently: sky area cos(b)
    # times, for 'stars', the star density of latitude_factor.
    from scipy import integrate, stats

    from satphotutils.simulation import latitude_factor

    def pdf(b):
        area = np.cos(np.deg2rad(b))
        return area * (latitude_factor(b) if weighting == 'stars' else 1)

    total = integrate.quad(pdf, *span, points=[0.0])[0]

    def cdf(b):
        return np.array([integrate.quad(pdf, span[0], v, points=[0.0])[0]
                         if v > span[0] else 0.0
                         for v in np.atleast_1d(b)]) / total

    sim = StampSimulator(latitude_range=span, latitude_weighting=weighting)
    b = sim._latitudes(np.random.default_rng(3), 4000)
    assert span[0] <= b.min()
    assert b.max() <= span[1]
    assert stats.kstest(b, cdf).pvalue > 0.01
    if span == (0.0, 90.0):
        # Half the catalogue's stars lie within 10 degrees of the plane,
        # a sixth of the sky's area does.
        expected = 0.5 if weighting == 'stars' else np.sin(np.deg2rad(10))
        assert abs(np.mean(b < 10) - expected) < 0.05


def test_latitude_weighting_is_validated():
    with pytest.raises(ValueError, match="latitude_weighting must be 'area'"):
        StampSimulator(latitude_weighting='density')


def test_deterministic_with_a_seed():
    sim = StampSimulator(images_per_star=2)
    a = sim(10, seed=5)
    b = sim(10, seed=5)
    c = sim(10, seed=6)
    assert np.array_equal(a['stamp'], b['stamp'])
    assert not np.array_equal(a['stamp'], c['stamp'])


def test_write_streams_in_chunks_and_reads_back(tmp_path):
    sim = StampSimulator(images_per_star=2)
    path = tmp_path / 'stamps.fits'
    n = sim.write(path, 25, seed=3, chunk_stars=10, n_workers=1)
    assert n == 50
    table = read_stamp_table(path)
    assert len(table) == 50
    assert np.array_equal(np.unique(table['star_id']), np.arange(25))
    chunks = list(iter_stamp_table(path, chunk_size=16))
    assert [len(c) for c in chunks] == [16, 16, 16, 2]
    assert np.array_equal(np.concatenate([c['stamp'] for c in chunks]),
                          table['stamp'])


@pytest.mark.slow
def test_result_does_not_depend_on_the_number_of_workers(tmp_path):
    sim = StampSimulator(images_per_star=2)
    sim.write(tmp_path / 'one.fits', 30, seed=9, chunk_stars=8, n_workers=1)
    sim.write(tmp_path / 'two.fits', 30, seed=9, chunk_stars=8, n_workers=2)
    one = read_stamp_table(tmp_path / 'one.fits')
    two = read_stamp_table(tmp_path / 'two.fits')
    for name in one.colnames:
        assert np.array_equal(one[name], two[name]), name


def test_cli_simulate_stamps(tmp_path):
    out = tmp_path / 'cli.fits'
    proc = subprocess.run(
        [sys.executable, '-m', 'satphotutils.cli', 'simulate', 'stamps',
         str(out), '--n-stars', '4', '--images-per-star', '2', '--seed', '1',
         '--gmin', '5', '--gmax', '12', '--workers', '1'],
        capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    table = read_stamp_table(out)
    assert len(table) == 8
    assert table['g'].min() >= 5
    assert table['g'].max() <= 12
    # The same command again refuses to overwrite, in one line.
    proc = subprocess.run(
        [sys.executable, '-m', 'satphotutils.cli', 'simulate', 'stamps',
         str(out), '--n-stars', '4', '--workers', '1'],
        capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 1
    assert 'already exists' in proc.stderr
    assert 'Traceback' not in proc.stderr
    # --latitude-weighting reaches the simulator: the same seed places
    # the targets at other latitudes, so their neighbours differ.
    stars = tmp_path / 'stars.fits'
    proc = subprocess.run(
        [sys.executable, '-m', 'satphotutils.cli', 'simulate', 'stamps',
         str(stars), '--n-stars', '4', '--images-per-star', '2', '--seed',
         '1', '--gmin', '5', '--gmax', '12', '--workers', '1',
         '--latitude-weighting', 'stars'],
        capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    other = read_stamp_table(stars)
    assert_allclose(other['g'], table['g'])
    assert not np.array_equal(other['stamp'], table['stamp'])


def test_cli_simulate_frames(tmp_path):
    proc = subprocess.run(
        [sys.executable, '-m', 'satphotutils.cli', 'simulate', 'frames',
         str(tmp_path / 'field'), '--n-epochs', '2', '--size', '96',
         '--camera', 'bi:g', '--camera', 'ba:V:0.2', '--variables',
         '--g-max', '16', '--seed', '2'],
        capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / 'field').glob('*.fits'))) == 6
    assert (tmp_path / 'field' / 'truth.ecsv').exists()


def test_cli_rejects_a_bad_camera(capsys):
    from satphotutils.cli import main

    with pytest.raises(SystemExit) as exc:
        main(['simulate', 'stamps', 'x.fits', '--n-stars', '1',
              '--camera', 'bi:r'])
    assert exc.value.code == 2
    assert 'FILTER g or V' in capsys.readouterr().err


def test_label_relates_to_true_counts(stamps):
    # Eq. 2: label = N_s (1 + f_c) - b_c, with N_s the target's own counts
    # for a colour term of zero (the default camera).
    n_s = 10 ** stamps['true_log_counts']
    label = n_s * (1 + stamps['f_c']) - stamps['b_c']
    assert_allclose(10 ** stamps['log_counts'], label, rtol=1e-9)


def test_epochs_group_consecutive_exposures():
    sim = StampSimulator(images_per_star=6, exposures_per_epoch=3,
                         exposures_per_chunk=12, g_range=(12.0, 14.0))
    table = sim(5, seed=3)
    for star in np.unique(table['star_id']):
        rows = table[table['star_id'] == star]
        epochs, counts = np.unique(rows['epoch'], return_counts=True)
        assert list(counts) == [3, 3]
        for epoch in epochs:
            same = rows[rows['epoch'] == epoch]
            assert np.ptp(same['mjd']) * 86400 < 300
            assert len(np.unique(same['exposure'])) == 3
            # One night: transparency within a few per cent.
            assert np.ptp(np.log10(same['transparency'])) < 0.05
    with pytest.raises(ValueError, match='exposures_per_epoch must divide'):
        StampSimulator(images_per_star=4, exposures_per_epoch=3)


@pytest.mark.parametrize('radius', [3.0, 7.5])
def test_n_unity_counts_the_configured_signal_circle(radius):
    sim = StampSimulator(images_per_star=2, g_range=(3.0, 7.0),
                         pipeline=SurveyPipeline(damage_fraction=1.0),
                         signal_radius=radius)
    stamps = sim(20, seed=4)
    yy, xx = np.mgrid[-10:11, -10:11]
    ones = np.asarray(stamps['stamp']) == 1.0
    expected = np.count_nonzero(ones & (np.hypot(xx, yy) <= radius),
                                axis=(1, 2))
    assert (expected > 0).sum() > 10
    assert np.asarray(stamps['n_unity']).tolist() == expected.tolist()
    with pytest.raises(ValueError, match='radius must be'):
        StampSimulator(signal_radius=np.nan)
