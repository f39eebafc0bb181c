# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The out-of-distribution guard: score, calibration, model file."""

import dataclasses
import json
import logging

import numpy as np
import pytest

from satphotutils.network import SaturatedStarModel
from satphotutils.network.guard import fit_guard
from satphotutils.simulation import StampSimulator
from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.flags import SATPHOT_FLAGS

OOD = SATPHOT_FLAGS.OUT_OF_DISTRIBUTION


class _WidePSF(StampSimulator):
    """
    A camera the default never saw: FWHM 5.5 px, Moffat beta 4.

    Beyond the camera families' 1.2-4 px; the guard here is fitted on
    the single simulated camera (FWHM ~1.7 px).
    """

    def _conditions(self, rng, mjd, draw=None):
        return dataclasses.replace(super()._conditions(rng, mjd, draw),
                                   fwhm=5.5, beta=4.0)


@pytest.fixture(scope='module')
def sets():
    sim = StampSimulator(images_per_star=2)
    return {'fit': sim(700, seed=11), 'valid': sim(400, seed=12),
            'test': sim(400, seed=13),
            'wide': _WidePSF(images_per_star=2)(150, seed=14)}


@pytest.fixture(scope='module')
def guarded(sets):
    model = SaturatedStarModel.default()
    # The distance alone (no uncertainty limit): its calibration is
    # what these tests check.
    fit_guard(model, sets['fit'], valid=sets['valid'],
              false_positive_rate=0.1, sigma_limit=None)
    return model


def _predict(model, stamps, **kwargs):
    return model(np.asarray(stamps['stamp']), sky=stamps['sky'],
                 dx=stamps['dx'], dy=stamps['dy'],
                 saturation=stamps['saturation'], fwhm=stamps['fwhm'],
                 **kwargs)


def _undamaged(stamps):
    return np.asarray(stamps['n_unity']) <= 4


def test_score_higher_on_a_different_camera(guarded, sets):
    test = _predict(guarded, sets['test'], ensemble=True)
    wide = _predict(guarded, sets['wide'], ensemble=True)
    keep_t, keep_w = _undamaged(sets['test']), _undamaged(sets['wide'])
    assert np.median(wide.ood_score[keep_w]) > \
        2 * np.median(test.ood_score[keep_t])
    # And the flag marks most of the other camera's badly-off stars.
    err = np.abs(2.5 * (wide.log_counts
                        - np.asarray(sets['wide']['log_counts'])))
    big = (err > 0.2) & keep_w
    assert big.sum() > 50
    assert np.mean((wide.flags[big] & OOD) != 0) > 0.8


@pytest.mark.parametrize('ensemble', [False, True])
def test_flag_rate_on_in_distribution_matches_nominal(guarded, sets,
                                                      ensemble):
    pred = _predict(guarded, sets['test'], ensemble=ensemble)
    keep = _undamaged(sets['test'])
    rate = np.mean((pred.flags[keep] & OOD) != 0)
    n = keep.sum()
    sigma = np.sqrt(0.1 * 0.9 / n)
    # Calibrated on other stars of the same simulator: within 3.5 sigma
    # of the binomial, plus a little for the finite validation set.
    assert abs(rate - 0.1) < 3.5 * sigma + 0.02
    assert np.array_equal(pred.ood_score > 1, (pred.flags & OOD) != 0)


def test_without_a_guard_nan_no_flag_and_a_log_line(sets, caplog):
    model = SaturatedStarModel.default()
    model.guard = None
    with caplog.at_level(logging.WARNING):
        pred = _predict(model, sets['test'])
        _predict(model, sets['test'])
    assert np.isnan(pred.ood_score).all()
    assert not (pred.flags & OOD).any()
    said = [r for r in caplog.records if 'no out-of-distribution guard'
            in r.getMessage()]
    assert len(said) == 1


def test_guard_round_trips_through_the_model_file(guarded, sets, tmp_path):
    guarded.write(tmp_path / 'm')
    again = SaturatedStarModel.read(tmp_path / 'm')
    np.testing.assert_array_equal(again.guard.whiten, guarded.guard.whiten)
    assert again.guard.threshold == guarded.guard.threshold
    a = _predict(guarded, sets['test'][:50], ensemble=True)
    b = _predict(again, sets['test'][:50], ensemble=True)
    np.testing.assert_allclose(a.ood_score, b.ood_score, rtol=1e-5)


def _rewrite_tensors(path, change):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path))


def test_a_damaged_guard_tensor_is_refused_naming_the_file(guarded,
                                                           tmp_path):
    guarded.write(tmp_path / 'shape')
    weights = tmp_path / 'shape' / 'model.safetensors'
    _rewrite_tensors(weights, lambda t: t.update(
        {'guard.whiten': t['guard.whiten'][:, :10, :10].copy()}))
    with pytest.raises(SatphotutilsError,
                       match=r'model\.safetensors.*guard\.whiten'):
        SaturatedStarModel.read(tmp_path / 'shape')

    guarded.write(tmp_path / 'nan')
    weights = tmp_path / 'nan' / 'model.safetensors'

    def poison(t):
        t['guard.mean'] = t['guard.mean'].copy()
        t['guard.mean'][0, 0] = np.nan

    _rewrite_tensors(weights, poison)
    with pytest.raises(SatphotutilsError, match=r'model\.safetensors.*'
                       r'non-finite'):
        SaturatedStarModel.read(tmp_path / 'nan')

    guarded.write(tmp_path / 'meta')
    meta_path = tmp_path / 'meta' / 'model.json'
    meta = json.loads(meta_path.read_text())
    meta['guard']['threshold']['single'] = -1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(SatphotutilsError,
                       match=r'model\.json: guard\.threshold\.single'):
        SaturatedStarModel.read(tmp_path / 'meta')

    guarded.write(tmp_path / 'orphan')
    meta_path = tmp_path / 'orphan' / 'model.json'
    meta = json.loads(meta_path.read_text())
    del meta['guard']
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(SatphotutilsError, match='unexpected tensors guard'):
        SaturatedStarModel.read(tmp_path / 'orphan')


def test_fit_guard_refuses_too_few_stamps(sets):
    model = SaturatedStarModel.default()
    model.guard = None
    with pytest.raises(SatphotutilsError, match='too few usable stamps'):
        fit_guard(model, sets['fit'][:100])
    assert fit_guard(model, sets['fit'][:100], strict=False) is None
    assert model.guard is None


def test_satphot_guard_adds_a_guard_to_a_model(sets, tmp_path, capsys):
    from satphotutils.cli import main
    from satphotutils.stamps import StampTableWriter

    SaturatedStarModel.default().write(tmp_path / 'm')
    with StampTableWriter(tmp_path / 'fit.fits') as writer:
        writer.write({name: np.asarray(sets['fit'][name])
                      for name in sets['fit'].colnames})
    assert main(['guard', str(tmp_path / 'm'),
                 str(tmp_path / 'fit.fits')]) == 0
    assert 'wrote the guard' in capsys.readouterr().out
    assert SaturatedStarModel.read(tmp_path / 'm').guard is not None


def test_uncertainty_limit_flags_what_the_model_cannot_measure(guarded,
                                                               sets):
    # With sigma_limit, ood_score is the larger of the distance over its
    # threshold and the calibrated uncertainty (mag) over the limit.
    plain = _predict(guarded, sets['test'], ensemble=True)
    limited = dataclasses.replace(guarded.guard, sigma_limit=0.05)
    model = SaturatedStarModel(guarded.features, guarded.networks,
                               input_mean=guarded.input_mean,
                               input_std=guarded.input_std,
                               metadata=guarded.metadata, guard=limited)
    pred = _predict(model, sets['test'], ensemble=True)
    sigma_mag = 2.5 * pred.log_counts_err
    np.testing.assert_allclose(
        pred.ood_score, np.fmax(plain.ood_score, sigma_mag / 0.05))
    unsure = sigma_mag > 0.05
    assert unsure.any()
    assert ((pred.flags[unsure] & OOD) != 0).all()
    assert np.array_equal(pred.ood_score > 1, (pred.flags & OOD) != 0)
