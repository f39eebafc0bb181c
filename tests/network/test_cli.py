import json

import numpy as np
import pytest
from astropy.table import Table
from numpy.testing import assert_allclose

from satphotutils.cli import main
from satphotutils.network import SaturatedStarModel
from satphotutils.stamps import StampTableWriter, read_stamp_table


@pytest.fixture(name='stamp_file')
def fixture_stamp_file(small_stamps, tmp_path):
    path = tmp_path / 'stamps.fits'
    with StampTableWriter(path) as writer:
        writer.write({name: np.asarray(small_stamps[name])
                      for name in small_stamps.colnames})
    return path


def test_train_predict_evaluate(stamp_file, tmp_path, capsys):
    model_dir = tmp_path / 'model'
    assert main(['train', str(stamp_file), '-o', str(model_dir),
                 '--epochs', '2', '--seeds', '2', '--batch-size', '128',
                 '--lr', '0.002', '--seed', '3',
                 '--fwhm-jitter', '0.05']) == 0
    meta = json.loads((model_dir / 'model.json').read_text())
    assert meta['training']['config']['fwhm_jitter'] == 0.05
    assert meta['architecture']['members'] == 2
    assert meta['training']['config']['epochs'] == 2
    assert meta['training']['command'].startswith('satphot')
    assert meta['training']['batch_size'] == 128
    assert 'minibatch size 128\n' in capsys.readouterr().out

    out = tmp_path / 'pred.fits'
    assert main(['predict', str(stamp_file), '--model', str(model_dir),
                 '-o', str(out)]) == 0
    pred = read_stamp_table(out)
    source = read_stamp_table(stamp_file)
    # Every input column is carried through, plus the predictions.
    assert set(source.colnames) < set(pred.colnames)
    assert {'log_counts_pred', 'log_counts_pred_err',
            'pred_flags'} <= set(pred.colnames)
    assert_allclose(pred['g'], source['g'])
    model = SaturatedStarModel.read(model_dir)
    direct = model(np.asarray(source['stamp']), sky=source['sky'],
                   dx=source['dx'], dy=source['dy'],
                   saturation=source['saturation'], fwhm=source['fwhm'],
                   camera=[f'{c}/{f}' for c, f in zip(source['camera'],
                                                      source['filter'],
                                                      strict=True)])
    assert_allclose(pred['log_counts_pred'], direct.log_counts,
                    atol=1e-6)

    report = tmp_path / 'report'
    assert main(['evaluate', str(stamp_file), '--model', str(model_dir),
                 '--report', str(report)]) == 0
    for name in ('report.md', 'summary.json', 'bins.ecsv',
                 'fig3_residuals.png', 'fig4_lightcurves.png'):
        assert (report / name).is_file()
    bins = Table.read(report / 'bins.ecsv')
    assert {'network_median', 'ap2_range68', 'ap5_rms'} <= set(
        bins.colnames)
    assert 'light-curve dispersion' in capsys.readouterr().out


def test_predict_with_the_bundled_model(stamp_file, tmp_path):
    out = tmp_path / 'pred.fits'
    assert main(['predict', str(stamp_file), '-o', str(out)]) == 0
    pred = read_stamp_table(out)
    ok = (pred['n_unity'] <= 4) & (pred['outcome'] == 'ok')
    diff = -2.5 * (pred['log_counts_pred'] - pred['log_counts'])[ok]
    # The bundled model measures these stars (simulated with a seed it
    # never saw) to a few hundredths of a magnitude.
    assert abs(np.median(diff)) < 0.01
    assert np.percentile(np.abs(diff), 68) < 0.05


def test_errors_are_reported(stamp_file, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(['train', str(stamp_file), '-o', str(tmp_path / 'm'),
              '--fwhm-jitter', '-0.1'])
    assert '--fwhm-jitter' in capsys.readouterr().err
    assert main(['predict', str(stamp_file), '--model', str(tmp_path),
                 '-o', str(tmp_path / 'x.fits')]) == 1
    assert 'not a satphotutils model directory' in capsys.readouterr().err
    assert main(['evaluate', str(tmp_path / 'missing.fits'),
                 '--report', str(tmp_path / 'r')]) == 1
