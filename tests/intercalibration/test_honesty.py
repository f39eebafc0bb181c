"""Groups whose offsets cannot be trusted are flagged, not returned."""

import logging
from pathlib import Path

import numpy as np
import pytest
from astropy.table import QTable, vstack
from astropy.time import Time

from satphotutils.cli import main
from satphotutils.intercalibration import (
    DRWIntercalibrator,
    plot_intercalibration,
    read_lightcurve,
)
from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.flags import SATPHOT_FLAGS as F
from satphotutils.utils.flags import decode_flags

DATA = Path(__file__).parents[1] / 'data' / 'asassn_lc'
J0600 = DATA / 'sp1_ASASSN-J060000.76-310027.83.csv'


def _offsets(result):
    return dict(zip(result.offsets['group'],
                    result.offsets['offset'].value, strict=True))


def _with_saturated_camera(lc, rng, *, n=22, shift=4.4):
    """
    A real light curve plus a Betelgeuse-like camera: ``n`` g points of a
    camera ``bl`` reading ``shift`` mag fainter with 0.2 mag of scatter,
    as a badly saturated star gives.
    """
    g = lc[lc['filter'] == 'g']
    rows = g[np.sort(rng.choice(len(g), n, replace=False))]
    rows['camera'] = 'bl'
    rows['mag'] = rows['mag'] + (shift + rng.normal(0, 0.2, n)) * rows[
        'mag'].unit
    return vstack([lc, rows])


@pytest.fixture(scope='module', name='j0600')
def fixture_j0600():
    return read_lightcurve(J0600)


@pytest.mark.parametrize('robust', [False, True])
def test_betelgeuse_like_camera_is_flagged_and_left_out(j0600, rng, robust,
                                                        caplog):
    # Issue #24: a camera several magnitudes off was returned as a fit
    # (+4.39 mag plain, +5.47 robust) and its points combined.
    lc = _with_saturated_camera(j0600, rng)
    with caplog.at_level(logging.WARNING,
                         logger='satphotutils.intercalibration'):
        result = DRWIntercalibrator(robust=robust)(lc)
    assert list(result.flagged_groups) == ['bl/g']
    assert 'max_offset' in result.flagged_groups['bl/g']
    row = result.offsets[result.offsets['group'] == 'bl/g'][0]
    assert row['flags'] == F.REJECTED_GROUP
    # Left out of the light curve, kept apart.
    assert 'bl' not in set(result.lightcurve['camera'])
    assert len(result.lightcurve) + len(result.left_out) == len(lc)
    assert set(result.left_out['group']) == {'bl/g'}
    assert np.all(result.left_out['flags'] & F.REJECTED_GROUP)
    # Named in a warning and in the meta of both tables.
    assert any('bl/g' in r.getMessage() for r in caplog.records)
    for table in (result.lightcurve, result.offsets):
        assert list(table.meta['flagged_groups']) == ['bl/g']
    # The other groups are fitted as if the camera were not there.
    clean = _offsets(DRWIntercalibrator(robust=robust)(j0600))
    fitted = _offsets(result)
    for group, value in clean.items():
        assert fitted[group] == pytest.approx(value, abs=0.003)
    # Its offset is still reported (on the same reference), not hidden.
    assert fitted['bl/g'] == pytest.approx(clean['bi/g'] + 4.4, abs=0.15)


def test_keep_flagged_groups_keeps_their_points(j0600, rng):
    lc = _with_saturated_camera(j0600, rng)
    result = DRWIntercalibrator(keep_flagged_groups=True)(lc)
    assert result.left_out is None
    assert len(result.lightcurve) == len(lc)
    bl = result.lightcurve[result.lightcurve['group'] == 'bl/g']
    assert np.all(bl['flags'] & F.REJECTED_GROUP)
    assert decode_flags(int(bl['flags'][0])) == ['rejected_group']


def test_real_file_with_two_disagreeing_v_cameras_is_flagged():
    # Two V cameras observing together read 9.86 and 11.26 mag: one of
    # them is wrong, and nothing tells which.
    result = DRWIntercalibrator()(read_lightcurve(
        DATA / 'sp2web_317827964025.csv'))
    assert set(result.flagged_groups) == {'bc/V', 'bg/V'}
    assert set(result.lightcurve['filter']) == {'g'}
    assert abs(_offsets(result)['bc/V'] - _offsets(result)['bg/V']) > 1.3


def test_real_file_with_a_stepped_camera_is_flagged():
    # Camera bq reads 0.6 mag faint until JD 2459700, then agrees: its one
    # offset (+0.43) is 0.48 mag from the other g cameras (within 0.01),
    # far beyond their scatter, though within max_offset.
    result = DRWIntercalibrator(robust=True)(read_lightcurve(
        DATA / 'sp2web_455267102087.csv'))
    assert list(result.flagged_groups) == ['bq/g']
    assert 'sigma' in result.flagged_groups['bq/g']


@pytest.mark.parametrize('name', ['sp1_V765Cas_EB.csv',
                                  'sp1_ASASSN-J060000.76-310027.83.csv',
                                  'sp2api_VXMen.csv',
                                  'sp2web_352187470767.csv'])
def test_good_real_files_have_no_flagged_group(name):
    # Their groups agree within a filter to 0.01-0.1 mag; V and g differ
    # by the star's colour (up to 0.6 mag here), which is not judged.
    result = DRWIntercalibrator(robust=True)(read_lightcurve(DATA / name))
    assert result.flagged_groups == {}
    assert result.left_out is not None
    assert len(result.left_out) == 0


def _simulated(rng, offsets, *, n=1500):
    t = np.sort(rng.uniform(0, 1500, n))
    signal = 0.1 * np.sin(t / 60.0)
    groups = np.array(list(offsets))[rng.integers(0, len(offsets), n)]
    cam, filt = np.array([g.split('/') for g in groups]).T
    mag = 12.0 + signal + np.array([offsets[g] for g in groups]) \
        + rng.normal(0, 0.01, n)
    return QTable({'time': Time(2458000 + t, format='jd'), 'mag': mag,
                   'mag_err': np.full(n, 0.01), 'camera': cam,
                   'filter': filt})


def test_offset_inconsistent_with_its_filter_at_five_sigma(rng):
    # Within g the cameras agree to 0.03 mag, except bk (0.45 mag off):
    # 0.43 / 0.05 (the smallest scatter assumed) = 8.6 sigma. bl, 0.2 mag
    # off, is 3.6 sigma: a camera offset to correct, not a failure. V is
    # 0.6 mag off g, which is the star's colour.
    offsets = {'bi/g': 0.0, 'bj/g': 0.02, 'bm/g': -0.01, 'bn/g': 0.03,
               'bk/g': 0.45, 'bl/g': 0.2, 'ba/V': -0.6, 'bb/V': -0.58}
    result = DRWIntercalibrator()(_simulated(rng, offsets))
    # 0.43 mag from the median of the others (0.02), 8.6 sigma.
    assert list(result.flagged_groups) == ['bk/g']
    assert 'sigma' in result.flagged_groups['bk/g']
    fitted = _offsets(result)
    for group in ('bj/g', 'bl/g', 'ba/V'):
        assert fitted[group] - fitted['bi/g'] == pytest.approx(
            offsets[group], abs=0.005)


def test_mostly_clipped_group_is_flagged(rng):
    lc = _simulated(rng, {'bi/g': 0.0, 'bj/g': 0.1, 'bm/g': -0.05})
    junk = (np.asarray(lc['camera']) == 'bm') \
        & (rng.uniform(size=len(lc)) < 0.7)
    lc['mag'][junk] += rng.choice([-1, 1], junk.sum()) \
        * rng.uniform(0.5, 2.0, junk.sum())
    result = DRWIntercalibrator(robust=True)(lc)
    assert list(result.flagged_groups) == ['bm/g']
    assert 'clipped' in result.flagged_groups['bm/g']


def test_small_group_is_flagged_and_never_printed_as_nan(rng, tmp_path,
                                                          capsys):
    lc = _simulated(rng, {'bi/g': 0.0, 'bj/g': 0.1}, n=400)
    # A group of three points; 'bz' sorts last, which made the fit index
    # past the jitters and fail with an IndexError.
    lc['camera'][:3] = 'bz'
    for robust in (False, True):
        result = DRWIntercalibrator(robust=robust)(lc)
        row = result.offsets[result.offsets['group'] == 'bz/g'][0]
        assert row['flags'] == F.SMALL_GROUP
        assert np.isnan(row['offset'].value)
        assert 'min_points' in row['reason']
        assert len(result.left_out) == 3
        assert np.all(result.left_out['flags'] & F.SMALL_GROUP)
    path = tmp_path / 'lc.ecsv'
    lc.write(path)
    out = tmp_path / 'out.ecsv'
    assert main(['intercalibrate', str(path), '-o', str(out)]) == 0
    captured = capsys.readouterr()
    assert 'nan' not in captured.out.lower()
    assert 'bz/g: left out' in captured.out
    assert 'warning: group bz/g left out' in captured.err
    assert 'bz' not in set(QTable.read(out)['camera'])


def test_command_names_the_flagged_group(j0600, rng, tmp_path, capsys):
    path = tmp_path / 'lc.ecsv'
    _with_saturated_camera(j0600, rng).write(path)
    out = tmp_path / 'out.ecsv'
    assert main(['intercalibrate', str(path), '-o', str(out),
                 '--robust']) == 0
    captured = capsys.readouterr()
    (line,) = [ln for ln in captured.err.splitlines() if 'bl/g' in ln]
    assert line.startswith('satphot intercalibrate: warning: group bl/g')
    assert 'max_offset' in line
    (row,) = [ln for ln in captured.out.splitlines() if 'bl/g' in ln]
    assert 'left out' in row
    assert '+-' not in row
    assert 'bl' not in set(QTable.read(out)['camera'])
    offsets = QTable.read(tmp_path / 'out.offsets.ecsv')
    assert list(offsets.meta['flagged_groups']) == ['bl/g']
    # With the option they are kept, flagged.
    assert main(['intercalibrate', str(path), '-o', str(out), '--overwrite',
                 '--keep-flagged-groups']) == 0
    kept = QTable.read(out)
    assert np.all(kept['flags'][kept['camera'] == 'bl'] & F.REJECTED_GROUP)


def test_every_group_flagged_is_an_error(rng):
    lc = _simulated(rng, {'bi/V': 0.0, 'bj/V': 1.5}, n=300)
    with pytest.raises(SatphotutilsError, match=r'every camera/filter group '
                       r'was flagged.*keep_flagged_groups'):
        DRWIntercalibrator()(lc)
    result = DRWIntercalibrator(keep_flagged_groups=True)(lc)
    assert set(result.flagged_groups) == {'bi/V', 'bj/V'}


@pytest.mark.parametrize(('option', 'value'), [
    ('max_offset', np.nan), ('max_offset', 0.0), ('max_offset_sigma', -1),
    ('clip_sigma', np.inf), ('max_clipped_fraction', 0.0),
    ('max_clipped_fraction', 1.5), ('min_points', 0), ('max_iter', 2.5)])
def test_invalid_limits_are_refused(option, value):
    with pytest.raises(ValueError, match=option):
        DRWIntercalibrator(**{option: value})


def test_plot_shows_flagged_groups_apart_and_many_groups_distinctly(
        rng, tmp_path):
    import matplotlib.pyplot as plt

    # Fifteen groups, beyond the ten colours of the cycle; bl 4 mag off.
    offsets = {f'b{c}/g': 0.01 * k for k, c in enumerate('abcdefghijkmno')}
    offsets['bl/g'] = 4.0
    result = DRWIntercalibrator()(_simulated(rng, offsets, n=1200))
    assert list(result.flagged_groups) == ['bl/g']
    fig = plot_intercalibration(result)
    try:
        assert len(fig.axes) == 3
        assert 'bl/g' in fig.axes[2].get_title(loc='left')
        legend = fig.legends[0]
        styles = [(h.get_color(), h.get_marker())
                  for h in legend.legend_handles]
        assert len(set(styles)) == len(styles) == 15
        labels = [t.get_text() for t in legend.get_texts()]
        assert 'bl/g (flagged)' in labels
        # The legend sits right of every panel, outside the data.
        fig.canvas.draw()
        box = legend.get_window_extent()
        for ax in fig.axes:
            assert box.x0 >= ax.get_window_extent().x1
        # The flagged group is only in its own panel.
        flagged = styles[labels.index('bl/g (flagged)')]
        for ax, expected in zip(fig.axes, (False, False, True),
                                strict=True):
            drawn = any(len(line.get_xdata()) and (
                line.get_color(), line.get_marker()) == flagged
                for line in ax.lines)
            assert drawn == expected
    finally:
        plt.close(fig)
    path = tmp_path / 'p.png'
    plot_intercalibration(result, path=path)
    assert path.stat().st_size > 10000
