import json
import logging

import numpy as np
import pytest
from numpy.testing import assert_allclose

from satphotutils.network import (
    PRESETS,
    SaturatedStarModel,
    Trainer,
    TrainingConfig,
)
from satphotutils.utils.exceptions import SatphotutilsError

from .conftest import camera_codes


def test_trained_model_beats_its_starting_point(tiny_model, small_stamps):
    model, _ = tiny_model
    history = model.metadata['training']
    assert history['rows_used']['train'] > 0
    # The network improves on the raw 5-px aperture sum it starts from on
    # saturated stars, for which that sum misses much of the flux.
    t = small_stamps
    out = model(np.asarray(t['stamp']), sky=t['sky'], dx=t['dx'],
                dy=t['dy'], saturation=t['saturation'], fwhm=t['fwhm'],
                camera=camera_codes(t))
    sat = np.asarray(t['saturated']) & (np.asarray(t['n_unity']) <= 4)
    err_net = np.abs(out.log_counts - t['log_counts'])[sat]
    err_ap = np.abs(out.aperture_log_counts - t['log_counts'])[sat]
    assert np.median(err_net) < 0.7 * np.median(err_ap)


def test_model_files_round_trip(tiny_model, small_stamps):
    model, path = tiny_model
    assert (path / 'model.safetensors').is_file()
    meta = json.loads((path / 'model.json').read_text())
    for key in ('format_version', 'features', 'feature_names',
                'architecture', 'uncertainty_scale', 'validation',
                'training'):
        assert key in meta
    assert meta['training']['versions']['satphotutils']
    again = SaturatedStarModel.read(path)
    t = small_stamps[:50]
    kw = {'sky': t['sky'], 'dx': t['dx'], 'dy': t['dy'],
          'saturation': t['saturation'], 'fwhm': t['fwhm'],
          'camera': camera_codes(t)}
    a = model(np.asarray(t['stamp']), **kw, ensemble=True)
    b = again(np.asarray(t['stamp']), **kw, ensemble=True)
    assert_allclose(a.log_counts, b.log_counts, rtol=0, atol=1e-6)
    assert_allclose(a.log_counts_err, b.log_counts_err, rtol=1e-6)
    # No pickle anywhere: the weights file is safetensors (a JSON header).
    head = (path / 'model.safetensors').read_bytes()[:64]
    assert b'__' in head or b'{' in head
    assert not any(p.suffix in ('.pt', '.pth', '.pkl')
                   for p in path.rglob('*'))


def test_reflection_and_ensemble_options(tiny_model, small_stamps):
    model, _ = tiny_model
    t = small_stamps[:40]
    kw = {'sky': t['sky'], 'dx': t['dx'], 'dy': t['dy'],
          'saturation': t['saturation'], 'fwhm': t['fwhm'],
          'camera': camera_codes(t)}
    plain = model(np.asarray(t['stamp']), **kw)
    both = model(np.asarray(t['stamp']), **kw, reflections=True,
                 ensemble=True)
    assert np.all(np.isfinite(both.log_counts))
    # Averaging views and members changes predictions only slightly.
    assert np.median(np.abs(both.log_counts - plain.log_counts)) < 0.05


def test_bad_model_directories_give_clear_errors(tiny_model, tmp_path):
    _, path = tiny_model
    with pytest.raises(SatphotutilsError, match='not a satphotutils model'):
        SaturatedStarModel.read(tmp_path)
    bad = tmp_path / 'bad'
    bad.mkdir()
    (bad / 'model.safetensors').write_bytes(
        (path / 'model.safetensors').read_bytes())
    meta = json.loads((path / 'model.json').read_text())
    (bad / 'model.json').write_text(json.dumps(meta | {'format_version': 7}))
    with pytest.raises(SatphotutilsError, match='format version 7'):
        SaturatedStarModel.read(bad)
    names = [*meta['feature_names'][:-1], 'something_else']
    (bad / 'model.json').write_text(json.dumps(meta | {'feature_names':
                                                       names}))
    with pytest.raises(SatphotutilsError, match='features that differ'):
        SaturatedStarModel.read(bad)
    (bad / 'model.json').write_text(json.dumps(meta))
    (bad / 'model.safetensors').write_bytes(b'\x80\x04not safetensors')
    with pytest.raises(SatphotutilsError, match='safetensors'):
        SaturatedStarModel.read(bad)


def test_resume_after_interruption_matches_uninterrupted(small_stamps,
                                                         tmp_path):
    import satphotutils.network.training as training

    config = TrainingConfig(epochs=3, batch_size=256, seed=5)
    full = Trainer(config)(small_stamps, tmp_path / 'full')
    # Killed after two epochs ...
    part_dir = tmp_path / 'part'
    state = _train_epochs(Trainer(config), small_stamps, part_dir, 2)
    assert state['epoch'] == 2
    # ... the same command resumes: only the third epoch is trained.
    saved = []
    original = training._save_checkpoint

    def count(net, opt, sched, state, paths):
        saved.append(state['epoch'])
        original(net, opt, sched, state, paths)

    training._save_checkpoint = count
    try:
        resumed = Trainer(config)(small_stamps, part_dir)
    finally:
        training._save_checkpoint = original
    assert saved == [3]
    t = small_stamps[:30]
    kw = {'sky': t['sky'], 'dx': t['dx'], 'dy': t['dy'],
          'saturation': t['saturation'], 'fwhm': t['fwhm'],
          'camera': camera_codes(t)}
    assert_allclose(resumed(np.asarray(t['stamp']), **kw).log_counts,
                    full(np.asarray(t['stamp']), **kw).log_counts,
                    atol=1e-5)


def _train_epochs(trainer, stamps, out, n):
    """Run a trainer but stop after n epochs, leaving its checkpoints."""
    import satphotutils.network.training as training

    original = training._save_checkpoint
    calls = []

    def stop_after(net, opt, sched, state, paths):
        original(net, opt, sched, state, paths)
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt

    training._save_checkpoint = stop_after
    try:
        with pytest.raises(KeyboardInterrupt):
            trainer(stamps, out)
    finally:
        training._save_checkpoint = original
    return json.loads((out / 'checkpoints' / 'seed0.json').read_text())


def test_presets_and_validation():
    paper = PRESETS['paper']
    assert (paper.optimizer, paper.lr, paper.batch_size, paper.loss,
            paper.epochs, paper.seeds) == ('adam', 1e-4, 128, 'mse', 150, 24)
    with pytest.raises(ValueError, match='optimizer'):
        TrainingConfig(optimizer='sgd')
    with pytest.raises(ValueError, match='unknown preset'):
        Trainer('fastest')


def test_refuses_to_overwrite_a_model(tiny_model, small_stamps):
    _, path = tiny_model
    with pytest.raises(SatphotutilsError, match='already holds a model'):
        Trainer(TrainingConfig(epochs=1))(small_stamps, path)


def test_default_batch_follows_the_table(small_stamps, tmp_path):
    # A batch of 256 gives a table of a few thousand stamps a handful of
    # optimizer steps per epoch; the default now picks the size from the
    # table (at least 500 steps an epoch, a power of two from 16 to 256).
    config = TrainingConfig()
    assert config.batch_size is None
    assert [config.batch_size_for(n) for n in
            (10, 8_000, 16_000, 32_000, 64_000, 128_000, 10**7)] == \
        [16, 16, 32, 64, 128, 256, 256]
    assert TrainingConfig(batch_size=7).batch_size_for(10**6) == 7
    numpy_int = TrainingConfig(batch_size=np.int64(32))
    assert type(numpy_int.batch_size) is int
    json.dumps(numpy_int.to_dict())
    for bad in (0, -3, 2.5, True, '16'):
        with pytest.raises(ValueError, match='batch_size'):
            TrainingConfig(batch_size=bad)
    model = Trainer(TrainingConfig(epochs=1, seeds=1))(small_stamps,
                                                       tmp_path / 'm')
    training = model.metadata['training']
    assert training['config']['batch_size'] is None
    assert training['batch_size'] == 16
    # The model file says what was used.
    again = SaturatedStarModel.read(tmp_path / 'm')
    assert again.metadata['training']['batch_size'] == 16


def test_fwhm_jitter_is_the_configured_scatter(small_stamps, tmp_path):
    # Issue #23: a 10% jitter of the FWHM input kept a raw camera's
    # network from following the seeing; the default is now 3%, set by
    # TrainingConfig.fwhm_jitter (satphot train --fwhm-jitter).
    assert TrainingConfig().fwhm_jitter == 0.03
    for bad in (-0.01, 1.5, True, 'x', None, np.nan):
        with pytest.raises(ValueError, match='fwhm_jitter'):
            TrainingConfig(fwhm_jitter=bad)
    numpy_float = TrainingConfig(fwhm_jitter=np.float32(0.05))
    assert type(numpy_float.fwhm_jitter) is float
    json.dumps(numpy_float.to_dict())
    table = small_stamps
    measured = np.asarray(table['fwhm'], dtype=float)
    spread = {}
    for jitter in (0.0, 0.03, 0.1):
        trainer = Trainer(TrainingConfig(fwhm_jitter=jitter, seed=4))
        data, _, features = trainer._load(table)
        names = list(features.names)
        # The fwhm scalar is (FWHM - 2 px) / 1 px.
        seen = data.features[:, names.index('fwhm')].astype(float) + 2.0
        inside = (measured > 1.0) & (measured < 7.0)
        spread[jitter] = np.std(np.log(seen[inside] / measured[inside]))
    assert spread[0.0] < 1e-6
    assert_allclose(spread[0.03], 0.03, rtol=0.1)
    assert_allclose(spread[0.1], 0.1, rtol=0.1)
    model = Trainer(TrainingConfig(epochs=1, fwhm_jitter=0.05))(
        small_stamps, tmp_path / 'm')
    again = SaturatedStarModel.read(tmp_path / 'm')
    assert model.metadata['training']['config']['fwhm_jitter'] == 0.05
    assert again.metadata['training']['config']['fwhm_jitter'] == 0.05


def test_training_does_not_say_its_model_is_unguarded(small_stamps,
                                                     tmp_path, caplog):
    # Training evaluated the model (calibration, validation figures)
    # before fitting its guard, and each run logged "the model has no
    # out-of-distribution guard ... fit one with satphot guard" although
    # the model it wrote had one.
    with caplog.at_level(logging.WARNING):
        model = Trainer(TrainingConfig(epochs=1, seeds=1))(
            small_stamps, tmp_path / 'm')
    assert model.guard is not None
    assert 'no out-of-distribution guard' not in caplog.text
    # A model read without one still says so once, when it predicts.
    bare = SaturatedStarModel.read(tmp_path / 'm')
    bare.guard = None
    t = small_stamps[:20]
    with caplog.at_level(logging.WARNING):
        bare(np.asarray(t['stamp']), sky=t['sky'], dx=t['dx'], dy=t['dy'],
             saturation=t['saturation'], fwhm=t['fwhm'],
             camera=camera_codes(t))
    assert caplog.text.count('no out-of-distribution guard') == 1


@pytest.mark.slow
def test_the_default_batch_trains_tall_stamps_of_a_raw_camera(tmp_path):
    # Issue #23: a user's 24,000 tall stamps of a raw camera with the
    # default preset. A batch of 256 made too few optimizer steps (the
    # tall_network benchmark: 0.0157 mag against 0.0071); on the same
    # table the table-sized default must do clearly better than 256.
    from satphotutils.network import lightcurve_dispersion
    from satphotutils.network.dataset import features_of
    from satphotutils.simulation import (
        Camera,
        Detector,
        StampSimulator,
        SurveyPipeline,
    )

    camera = Camera('raw', detector=Detector(
        full_well=80000.0, nonlinearity=0.02, bloom_fraction=0.05,
        corner_throughput=0.8))

    def simulate(n, seed, images, per_epoch):
        sim = StampSimulator(camera=camera, stamp_size=(81, 21),
                             pipeline=SurveyPipeline(correction=False,
                                                     damage_fraction=0.0),
                             g_range=(5.0, 15.0), images_per_star=images,
                             exposures_per_epoch=per_epoch)
        return sim(n, seed=seed)

    train, test = simulate(6000, 1, 4, 1), simulate(200, 2, 12, 3)
    g = np.asarray(test['g'])
    label = np.asarray(test['log_counts'])

    def scatter(log_counts, lo, hi):
        sel = (g >= lo) & (g < hi)
        _, disp, _ = lightcurve_dispersion(
            np.asarray(test['star_id'])[sel], np.asarray(test['epoch'])[sel],
            -2.5 * (log_counts - label)[sel])
        return np.nanmedian(disp)

    sat, unsat = {}, {}
    for name, options in (('auto', {}), ('256', {'batch_size': 256}),
                          ('jitter 0.1', {'fwhm_jitter': 0.1})):
        model = Trainer(TrainingConfig(epochs=15, **options))(
            train, tmp_path / name.replace(' ', '_'))
        pred = model.predict_prepared(features_of(test, model.features))
        sat[name] = scatter(pred.log_counts, 7.5, 11.5)
        unsat[name] = scatter(pred.log_counts, 12.0, 14.5)
    assert sat['auto'] < 0.75 * sat['256'], sat
    # The former 10% jitter of the FWHM input kept the network from
    # following the seeing: unsaturated light curves 0.030 against the
    # default's 0.015 mag in the tall_network benchmark, 0.018 against
    # 0.012 on a second table (three seeds each). Saturated ones gained
    # less and not on every table (0.0072 -> 0.0053 there, 0.0058 ->
    # 0.0053 on the second, 0.0063 -> 0.0069 on this one).
    assert unsat['auto'] < 0.8 * unsat['jitter 0.1'], unsat
