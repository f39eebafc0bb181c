# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Damaged files and outputs of ``satphot intercalibrate`` (#25 14, 24)."""

from pathlib import Path

import numpy as np
import pytest

from satphotutils.cli import main
from satphotutils.intercalibration import DRWIntercalibrator, read_lightcurve
from satphotutils.utils.exceptions import SatphotutilsError

SHARED = Path(__file__).parents[1] / 'data' / 'asassn_lc'
SP1 = SHARED / 'sp1_V765Cas_EB.csv'


def _damaged(tmp_path, edit):
    lines = SP1.read_text().splitlines()
    lines = edit(lines)
    path = tmp_path / 'damaged.csv'
    path.write_text('\n'.join(lines) + '\n')
    return path


@pytest.mark.parametrize('field', [3, -1])
def test_row_with_a_missing_field_is_invalid_not_shifted(tmp_path, field):
    """Item 14: a missing field used to shift the row's values into the
    wrong columns (a new group ``ba/0`` from a missing filter)."""
    def drop(lines):
        parts = lines[5].split(',')
        del parts[field]
        lines[5] = ','.join(parts)
        return lines

    intact = read_lightcurve(SP1)
    lc = read_lightcurve(_damaged(tmp_path, drop))
    groups = set(zip(lc['camera'], lc['filter'], strict=True))
    assert groups == set(zip(intact['camera'], intact['filter'],
                             strict=True))
    assert lc.meta['n_malformed'] == 1
    assert lc.meta['n_rows'] == intact.meta['n_rows']
    # The damaged row held a valid measurement: one fewer, one more
    # invalid.
    assert len(lc) == len(intact) - 1
    assert lc.meta['n_invalid'] == intact.meta['n_invalid'] + 1


def test_file_with_another_delimiter_is_refused(tmp_path):
    path = _damaged(tmp_path, lambda lines: [lines[0]] + [
        ln.replace(',', ';') for ln in lines[1:]])
    with pytest.raises(SatphotutilsError, match=r'2809 of 2809 rows do not '
                       r"have the header's 10 comma-separated fields"):
        read_lightcurve(path)
    assert main(['intercalibrate', str(path), '-o',
                 str(tmp_path / 'o.ecsv')]) == 1


@pytest.mark.parametrize('robust', [False, True])
def test_too_few_points_say_so(tmp_path, robust):
    """Item 24: 3 usable rows gave 'array of sample points is empty'."""
    path = _damaged(tmp_path, lambda lines: lines[:6])
    lc = read_lightcurve(path)
    with pytest.raises(SatphotutilsError,
                       match=r"min_points=5 usable points an offset needs "
                             r"\(usable points per group: \{'ba/V': 2\}"):
        DRWIntercalibrator(robust=robust)(lc)


def test_every_output_is_checked_before_any_is_written(tmp_path, capsys):
    """Item 24: out.ecsv was written before out.offsets.ecsv failed on an
    existing file, and --plot replaced an existing figure."""
    out = tmp_path / 'lc.ecsv'
    (tmp_path / 'lc.offsets.ecsv').write_text('mine')
    assert main(['intercalibrate', str(SP1), '-o', str(out)]) == 1
    assert not out.exists()
    assert 'lc.offsets.ecsv already exists' in capsys.readouterr().err
    (tmp_path / 'lc.offsets.ecsv').unlink()
    plot = tmp_path / 'figure.png'
    plot.write_text('mine')
    assert main(['intercalibrate', str(SP1), '-o', str(out), '--plot',
                 str(plot)]) == 1
    assert not out.exists()
    assert plot.read_text() == 'mine'
    assert main(['intercalibrate', str(SP1), '-o', str(out), '--plot',
                 str(plot), '--overwrite']) == 0
    assert plot.read_bytes()[:4] == b'\x89PNG'


def test_command_fits_and_reports_the_model(tmp_path, capsys):
    out = tmp_path / 'lc.ecsv'
    assert main(['intercalibrate', str(SHARED / 'sp2web_352187470767.csv'),
                 '-o', str(out), '--amplitude-ratio', '--error-scale',
                 '--select', '--robust']) == 0
    text = capsys.readouterr().out
    assert 'DRW sigma' in text
    assert 'chosen by BIC among' in text
    from astropy.table import QTable

    offsets = QTable.read(tmp_path / 'lc.offsets.ecsv')
    for name in ('jitter', 'jitter_err', 'error_scale', 'ratio'):
        assert name in offsets.colnames
    assert np.isfinite(offsets.meta['drw']['bic'])


def test_plot_range_follows_the_fitted_points():
    """Two bad-quality points 0.8 mag faint squeezed the calibrated light
    curve of this real file into a line; they go on the edge."""
    import matplotlib.pyplot as plt

    from satphotutils.intercalibration import plot_intercalibration

    result = DRWIntercalibrator(robust=True)(read_lightcurve(
        SHARED / 'sp2web_352187470767.csv'))
    fig = plot_intercalibration(result)
    try:
        low, high = sorted(fig.axes[1].get_ylim())
        assert high - low < 0.3
        assert 12.2 < low < high < 12.45
        labels = [t.get_text() for t in fig.legends[0].get_texts()]
        assert 'beyond the range, at the edge' in labels
    finally:
        plt.close(fig)


def test_command_offsets_at_the_signal_mean(tmp_path):
    """The V - g offsets of the real V + g light curve at the mean of the
    fitted signal: said so in the meta; the g cameras' unchanged."""
    from astropy.table import QTable

    path = SHARED / 'sp1_ASASSN-J060000.76-310027.83.csv'
    tables = {}
    for at in ('process_mean', 'signal_mean'):
        out = tmp_path / f'{at}.ecsv'
        assert main(['intercalibrate', str(path), '-o', str(out),
                     '--amplitude-ratio', '--offsets-at', at]) == 0
        tables[at] = QTable.read(tmp_path / f'{at}.offsets.ecsv')
    meta = tables['signal_mean'].meta
    assert meta['drw']['offsets_at'] == 'signal_mean'
    assert meta['config']['offsets_at'] == 'signal_mean'
    # The reference group is a V camera here: the g cameras' offsets
    # shift together, their differences do not.
    assert meta['drw']['reference'].endswith('/V')
    g = np.char.endswith(np.asarray(tables['signal_mean']['group'],
                                    dtype=str), '/g')
    signal, process = (tables[at]['offset'].value[g]
                       for at in ('signal_mean', 'process_mean'))
    np.testing.assert_allclose(signal - signal[0], process - process[0],
                               atol=1e-9)
    # A DRW of tau ~ 10 years: its mean over the light curve is poorly
    # known, the V - g offsets at it well.
    errors = {at: tables[at]['offset_err'].value[g] for at in tables}
    assert np.all(errors['signal_mean'] < 0.5 * errors['process_mean'])


def test_an_amplitude_ratio_at_its_bound_is_named(tmp_path, caplog, capsys):
    """
    The real V + g light curve of J060000: its V (2014-2018) and g
    (2017-2023) seasons barely overlap and the V/g amplitude ratio runs
    to the fit's lower bound (0.05), a degenerate fit whose offsets rest
    on that bound. Named in the meta, the log and on stderr.
    """
    import logging

    from astropy.table import QTable

    path = SHARED / 'sp1_ASASSN-J060000.76-310027.83.csv'
    out = tmp_path / 'j.ecsv'
    with caplog.at_level(logging.WARNING,
                         logger='satphotutils.intercalibration'):
        assert main(['intercalibrate', str(path), '-o', str(out),
                     '--amplitude-ratio']) == 0
    meta = QTable.read(tmp_path / 'j.offsets.ecsv').meta
    assert meta['drw']['ratio_at_bound'] == {'V': pytest.approx(0.05)}
    assert any('amplitude ratio of band V to band g is at the bound'
               in r.getMessage() for r in caplog.records)
    err = capsys.readouterr().err
    assert 'amplitude ratio of band V to g is at the bound' in err
    # Without the ratio nothing is pinned.
    result = DRWIntercalibrator()(read_lightcurve(path))
    assert 'ratio_at_bound' not in result.drw
