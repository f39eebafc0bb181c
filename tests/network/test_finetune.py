"""Fine-tuning: ``Trainer(init=...)`` and ``satphot train --init``."""

import dataclasses
import hashlib
import json
import shutil
import time
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from satphotutils.cli import main
from satphotutils.network import (
    PRESETS,
    SaturatedStarModel,
    Trainer,
    TrainingConfig,
)
from satphotutils.simulation import Camera, Detector, StampSimulator
from satphotutils.stamps import StampTableWriter
from satphotutils.utils.exceptions import SatphotutilsError

from .conftest import camera_codes

# The previous bundled model (feature version 1, read as version 2).
V1_MODEL = Path(__file__).parent / 'data' / 'model_v1'


def _bundled_sha256():
    root = resources.files('satphotutils.data') / 'default_model'
    with resources.as_file(root) as path:
        return hashlib.sha256(
            (path / 'model.safetensors').read_bytes()).hexdigest()


def _predict(model, t, **kw):
    return model(np.asarray(t['stamp']), sky=t['sky'], dx=t['dx'],
                 dy=t['dy'], saturation=t['saturation'], fwhm=t['fwhm'],
                 camera=camera_codes(t), **kw)


def _shifted_simulator(**options):
    # A camera the bundled model never saw: a 15-bit ADC clipping at half
    # the bundled camera's level, another gain and bias.
    detector = Detector(full_well=90000.0, gain=2.5, read_noise=8.0,
                        bias=1000.0, adc_max=32767)
    return StampSimulator(camera=Camera('zz', detector=detector),
                          images_per_star=3, exposures_per_epoch=3,
                          **options)


@pytest.fixture(scope='module', name='shifted')
def fixture_shifted():
    """Labelled stamps of the shifted camera: training and held out."""
    sim = _shifted_simulator(g_range=(4.0, 13.0))
    return sim(120, seed=31), sim(60, seed=32, first_star_id=10_000)


@pytest.fixture(scope='module', name='stamps_300')
def fixture_stamps_300(tmp_path_factory):
    """300 labelled stamps (100 stars x 3 exposures) in a file."""
    path = tmp_path_factory.mktemp('stamps') / 'stamps_300.fits'
    table = StampSimulator(images_per_star=3)(100, seed=41)
    with StampTableWriter(path) as writer:
        writer.write({name: np.asarray(table[name])
                      for name in table.colnames})
    return path


def test_default_resolves_to_the_bundled_model():
    trainer = Trainer(init='default')
    bundled = SaturatedStarModel.default()
    assert trainer.init_record['source'] == 'default'
    assert trainer.init_record['sha256'] == _bundled_sha256()
    assert trainer.init_record['created'] == bundled.metadata['created']
    assert len(trainer.init.networks) == len(bundled.networks)
    for a, b in zip(trainer.init.networks, bundled.networks, strict=True):
        for (name, x), y in zip(a.state_dict().items(),
                                b.state_dict().values(), strict=True):
            assert_allclose(x.numpy(), y.numpy(), err_msg=name)
    # The fine-tuning preset, every member, the init's architecture.
    assert trainer.config.lr == PRESETS['finetune'].lr
    assert trainer.config.seeds == len(bundled.networks)
    assert trainer.config.architecture_config() == {
        k: v for k, v in bundled.architecture().items()
        if k not in ('n_features', 'members')}


def test_init_really_starts_from_the_model(small_stamps, tmp_path):
    init = SaturatedStarModel.default()
    # A step size of 1e-12: whatever the optimiser does, the weights stay
    # those of the init model, so the result is what it started from.
    config = dataclasses.replace(PRESETS['finetune'], epochs=1, lr=1e-12)
    model = Trainer(config, init=init)(small_stamps[:300], tmp_path / 'm')
    t = small_stamps[300:400]
    assert_allclose(_predict(model, t, ensemble=True).log_counts,
                    _predict(init, t, ensemble=True).log_counts,
                    rtol=0, atol=1e-6)
    # Each member is one of the init's (re-ranked on the new validation
    # stars, so perhaps in another order).
    x = init.features(np.asarray(t['stamp']), sky=t['sky'], dx=t['dx'],
                      dy=t['dy'], saturation=t['saturation'],
                      fwhm=t['fwhm'], camera=camera_codes(t)).features
    ranked = model.metadata['training']['validation_loss']
    start = model.metadata['training']['init']['validation_loss']
    for net, loss in zip(model.networks, ranked, strict=True):
        k = int(np.argmin(np.abs(np.asarray(start) - loss)))
        one = SaturatedStarModel(init.features, [net],
                                 input_mean=init.input_mean,
                                 input_std=init.input_std, metadata={})
        ref = SaturatedStarModel(init.features, [init.networks[k]],
                                 input_mean=init.input_mean,
                                 input_std=init.input_std, metadata={})
        assert_allclose(one.predict_features(x)[0],
                        ref.predict_features(x)[0], rtol=0, atol=1e-6)
    assert_allclose(model.input_mean, init.input_mean)
    assert_allclose(model.input_std, init.input_std)
    assert model.features == init.features


def test_few_steps_on_the_same_camera_do_not_hurt(small_stamps, tmp_path):
    init = SaturatedStarModel.default()
    config = dataclasses.replace(PRESETS['finetune'], epochs=2)
    model = Trainer(config, init=init)(small_stamps, tmp_path / 'm')
    # Independent stars of the same camera, against simulated truth.
    held = StampSimulator(images_per_star=3)(150, seed=77)
    ok = np.asarray(held['n_unity']) <= 4
    truth = np.asarray(held['log_counts'])[ok]

    def error(m):
        pred = _predict(m, held, ensemble=True).log_counts[ok]
        return np.median(np.abs(pred - truth))

    assert error(model) <= 1.1 * error(init)
    record = model.metadata['training']['init']
    assert len(record['validation_loss']) == len(init.networks)
    # The best epoch's validation loss is never worse than the start's.
    assert max(model.metadata['training']['validation_loss']) <= max(
        record['validation_loss']) + 1e-9


def test_finetuning_a_shifted_camera_beats_the_untouched_init(shifted,
                                                               tmp_path):
    train, held = shifted
    # The previous bundled model knew one camera and is off on this one
    # (the camera-agnostic default is not: it is checked last).
    init = SaturatedStarModel.read(V1_MODEL)
    config = dataclasses.replace(PRESETS['finetune'], epochs=6)
    model = Trainer(config, init=init)(train, tmp_path / 'm')
    sat = np.asarray(held['saturated']) & (np.asarray(held['n_unity']) <= 4)
    truth = np.asarray(held['log_counts'])[sat]

    def error(m):
        pred = _predict(m, held, ensemble=True).log_counts[sat]
        return np.median(np.abs(pred - truth))

    before, after = error(init), error(model)
    assert after < 0.5 * before, (before, after)
    assert error(SaturatedStarModel.default()) < 0.5 * before


def test_300_stamps_train_from_the_cli_in_seconds(stamps_300, tmp_path,
                                                  capsys):
    out = tmp_path / 'tuned'
    start = time.perf_counter()
    assert main(['train', str(stamps_300), '-o', str(out), '--init',
                 'default', '--epochs', '2']) == 0
    assert time.perf_counter() - start < 60
    printed = capsys.readouterr().out
    assert 'started from default' in printed
    meta = json.loads((out / 'model.json').read_text())
    bundled = SaturatedStarModel.default()
    record = meta['training']['init']
    assert record['source'] == 'default'
    assert record['created'] == bundled.metadata['created']
    assert record['sha256'] == _bundled_sha256()
    assert record['trained_on'] == bundled.metadata['training']['source']
    assert record['feature_version'] == bundled.features.to_dict()[
        'version']
    # The fine-tuning preset with the user's epochs; the model's own
    # preprocessing, members and provenance.
    config = meta['training']['config']
    assert (config['epochs'], config['lr'], config['batch_size']) == (
        2, PRESETS['finetune'].lr, PRESETS['finetune'].batch_size)
    assert meta['features'] == bundled.features.to_dict()
    assert meta['architecture'] == bundled.architecture()
    assert meta['training']['command'].startswith('satphot')
    # No test split by default: the stars train or validate.
    used = meta['training']['stars_used']
    assert used['test'] == 0
    assert used['train'] + used['validation'] == 100
    # A few hundred stamps: a soup of copies per member.
    assert meta['training']['soup'] == 4
    assert 'the average of 4 fine-tuned copies' in printed
    assert len(meta['training']['soup_kept']) == len(bundled.networks)
    # Every uncertainty scale says where it came from.
    for mode in ('single', 'ensemble'):
        for group in ('saturated', 'unsaturated'):
            entry = meta['training']['calibration'][mode][group]
            assert entry['source'] in ('validation', 'init model')
            assert meta['uncertainty_scale'][mode][group] > 0
    SaturatedStarModel.read(out)


def test_cli_refuses_architecture_options_with_init(stamps_300, tmp_path,
                                                    capsys):
    assert main(['train', str(stamps_300), '-o', str(tmp_path / 'x'),
                 '--init', 'default', '--width', '64']) == 1
    err = capsys.readouterr().err
    assert '--width' in err
    assert '--init' in err


def test_cli_refuses_a_soup_without_init(stamps_300, tmp_path, capsys):
    assert main(['train', str(stamps_300), '-o', str(tmp_path / 'x'),
                 '--soup', '3']) == 1
    err = capsys.readouterr().err
    assert '--soup 3 needs --init' in err
    assert not (tmp_path / 'x').exists()


def test_incompatible_feature_version_is_refused(tmp_path):
    root = resources.files('satphotutils.data') / 'default_model'
    bad = tmp_path / 'future_model'
    with resources.as_file(root) as path:
        shutil.copytree(path, bad)
    meta = json.loads((bad / 'model.json').read_text())
    meta['features']['version'] = 99
    (bad / 'model.json').write_text(json.dumps(meta))
    with pytest.raises(SatphotutilsError,
                       match=r'cannot fine-tune from .*future_model.*'
                             r'feature version 99.*versions \(2, 3\)'):
        Trainer(init=bad)


def test_incompatible_stamp_size_is_refused(tmp_path):
    small = StampSimulator(stamp_size=15, images_per_star=3)(5, seed=3)
    match = (r'stamps of 15 x 15 pixels, the init model default reads '
             r'features.stamp_size = 21')
    with pytest.raises(SatphotutilsError, match=match):
        Trainer(init='default')(small, tmp_path / 'm')


def test_missing_column_names_the_init_model(small_stamps, tmp_path):
    t = small_stamps[:30].copy()
    t.remove_column('dx')
    with pytest.raises(SatphotutilsError,
                       match=r'init model default .*cannot read.*dx'):
        Trainer(init='default')(t, tmp_path / 'm')


def test_init_conflicts_are_refused():
    from satphotutils.network import StampFeatures

    with pytest.raises(SatphotutilsError, match='3, but the init model'):
        Trainer(dataclasses.replace(PRESETS['finetune'], seeds=3),
                init='default')
    with pytest.raises(SatphotutilsError, match='leave features out'):
        Trainer(init='default', features=StampFeatures(cameras=('xx/g',)))
    with pytest.raises(TypeError, match='init must be'):
        Trainer(init=3)


def test_tiny_sample_calibration_falls_back_to_the_init(small_stamps,
                                                        tmp_path):
    # 12 stars: about 6 validation rows, far too few for a 68th
    # percentile, so every scale is the init model's.
    ids = np.unique(np.asarray(small_stamps['star_id']))[:12]
    t = small_stamps[np.isin(np.asarray(small_stamps['star_id']), ids)]
    init = SaturatedStarModel.default()
    config = dataclasses.replace(PRESETS['finetune'], epochs=1)
    model = Trainer(config, init=init)(t, tmp_path / 'm')
    record = model.metadata['training']['calibration']
    for mode in ('single', 'ensemble'):
        for group in ('saturated', 'unsaturated'):
            assert record[mode][group]['rows'] < 30
            assert record[mode][group]['source'] == 'init model'
            assert model.metadata['uncertainty_scale'][mode][group] == \
                init.metadata['uncertainty_scale'][mode][group]
    # Too few validation rows per brightness bin for a classical lookup.
    assert model.metadata['classical'] == []


def test_two_stars_still_get_a_validation_star(small_stamps, tmp_path):
    from satphotutils.network.training import _split

    ids = np.asarray(small_stamps['star_id'])
    two = np.isin(ids, np.unique(ids)[:2])
    config = TrainingConfig(fractions=(0.8, 0.0, 0.2))
    subset = _split(ids[two], np.ones(two.sum(), bool), config)
    # split_by_star alone rounds 0.2 x 2 stars to none.
    assert set(subset.tolist()) == {0, 2}
    model = Trainer(dataclasses.replace(PRESETS['finetune'], epochs=1),
                    init='default')(small_stamps[two], tmp_path / 'm')
    assert model.metadata['training']['stars_used'] == {
        'train': 1, 'validation': 1, 'test': 0}


def test_scratch_training_with_tiny_validation_does_not_invent_scales(
        small_stamps, tmp_path):
    ids = np.unique(np.asarray(small_stamps['star_id']))[:12]
    t = small_stamps[np.isin(np.asarray(small_stamps['star_id']), ids)]
    model = Trainer(TrainingConfig(epochs=1))(t, tmp_path / 'm')
    for mode, groups in model.metadata['training']['calibration'].items():
        for group, entry in groups.items():
            assert entry['source'] == 'none'
            assert model.metadata['uncertainty_scale'][mode][group] == 1.0


def test_the_soup_is_the_mean_of_its_copies_weights():
    import torch

    from satphotutils.network import StampMLP
    from satphotutils.network.training import _soup

    torch.manual_seed(3)
    nets = [StampMLP(6, width=5, depth=2) for _ in range(3)]
    soup = _soup(nets)
    for name, value in soup.state_dict().items():
        expected = np.mean([n.state_dict()[name].numpy() for n in nets],
                           axis=0)
        assert_allclose(value.numpy(), expected, rtol=1e-6, atol=1e-7,
                        err_msg=name)
    # The copies themselves are left as they were.
    assert not np.allclose(nets[0].state_dict()['body.0.weight'].numpy(),
                           soup.state_dict()['body.0.weight'].numpy())


def test_soup_needs_a_model_to_start_from():
    with pytest.raises(ValueError, match='soup=2 needs init'):
        Trainer(TrainingConfig(soup=2))
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match='soup'):
            TrainingConfig(soup=bad)
    assert PRESETS['finetune'].soup is None
    assert TrainingConfig(soup=None).soup_for(240) > 1


def test_fine_tuning_averages_copies_of_each_member(shifted, tmp_path):
    train, held = shifted
    # A model that is off on this camera, so that every copy moves.
    init = SaturatedStarModel.read(V1_MODEL)
    config = dataclasses.replace(PRESETS['finetune'], epochs=3, soup=3)
    out = tmp_path / 'm'
    model = Trainer(config, init=init)(train, out)
    # One network per init member, whatever the soup.
    assert len(model.networks) == len(init.networks)
    training = model.metadata['training']
    copies = training['soup_validation_loss']
    assert np.shape(copies) == (len(init.networks), 3)
    # The copies differ (their own minibatches), and no member is worse
    # on the validation stars than the init member it started from.
    assert all(len(set(c)) >= 2 for c in copies)
    assert max(training['validation_loss']) <= max(
        training['init']['validation_loss']) + 1e-9
    # The weights are those of no single copy: the average moved them.
    for net in model.networks:
        assert not any(np.allclose(
            net.state_dict()['body.0.weight'].numpy(),
            start.state_dict()['body.0.weight'].numpy())
            for start in init.networks)
    # Every copy checkpoints on its own, so a rerun resumes all of them.
    names = sorted(p.name for p in (out / 'checkpoints').glob('seed*.json'))
    assert names == sorted(f'seed{k}{"" if c == 0 else f".{c}"}.json'
                           for k in range(len(init.networks))
                           for c in range(3))
    again = Trainer(config, init=init)(train, out, overwrite=True)
    assert set(again.metadata['training']['resumed_after_epoch']) == {
        f'{k}{"" if c == 0 else f".{c}"}'
        for k in range(len(init.networks)) for c in range(3)}
    assert_allclose(_predict(again, held, ensemble=True).log_counts,
                    _predict(model, held, ensemble=True).log_counts,
                    rtol=0, atol=1e-6)
    # Fewer copies reuse the same checkpoints: how many are averaged does
    # not change how any one of them trains.
    fewer = Trainer(dataclasses.replace(config, soup=2), init=init)(
        train, out, overwrite=True)
    assert set(fewer.metadata['training']['resumed_after_epoch']) == {
        f'{k}{"" if c == 0 else f".{c}"}'
        for k in range(len(init.networks)) for c in range(2)}
    assert fewer.metadata['training']['soup'] == 2


def test_a_soup_worse_than_the_init_keeps_the_init(shifted, tmp_path,
                                                   monkeypatch):
    import torch

    from satphotutils.network import training

    train, held = shifted
    init = SaturatedStarModel.read(V1_MODEL)
    real = training._soup

    def spoilt(nets):
        # An average that lost its way: every weight scrambled.
        out = real(nets)
        with torch.no_grad():
            for p in out.parameters():
                p.mul_(-1.0)
        return out

    monkeypatch.setattr(training, '_soup', spoilt)
    config = dataclasses.replace(PRESETS['finetune'], epochs=2, soup=2)
    model = Trainer(config, init=init)(train, tmp_path / 'm')
    assert model.metadata['training']['soup_kept'] == [False] * len(
        init.networks)
    # Every member is an init member, unchanged.
    assert_allclose(_predict(model, held, ensemble=True).log_counts,
                    _predict(init, held, ensemble=True).log_counts,
                    rtol=0, atol=1e-6)
