"""The extension point: registered architectures and the model factory."""

import json

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from torch import nn

from satphotutils.network import (
    SaturatedStarModel,
    StampCNN,
    StampFeatures,
    StampMLP,
    Trainer,
    TrainingConfig,
    architecture_types,
    get_architecture,
    register_architecture,
)
from satphotutils.utils.exceptions import SatphotutilsError

from .conftest import camera_codes


def _kw(t):
    return {'sky': t['sky'], 'dx': t['dx'], 'dy': t['dy'],
            'saturation': t['saturation'], 'fwhm': t['fwhm'],
            'camera': camera_codes(t)}


def test_builtin_architectures_are_registered():
    assert {'mlp', 'cnn'} <= set(architecture_types())
    assert get_architecture('mlp') is StampMLP
    assert get_architecture('cnn') is StampCNN
    with pytest.raises(KeyError, match="unknown architecture type 'x'"):
        get_architecture('x')


def test_cnn_grid_is_the_stamp():
    # The pixel block scattered back onto the grid is the stamp's circle,
    # in place.
    features = StampFeatures()
    net = StampCNN(features, channels=1, conv_layers=1, width=4, depth=1)
    stamp = np.arange(21 * 21, dtype=np.float32).reshape(21, 21)
    x = features(stamp[None] + 1000.0, sky=[0.0], dx=[0.0], dy=[0.0],
                 saturation=[6e4], fwhm=[2.0])
    assert net.grid_shape == (11, 11)
    grid = np.zeros(121, np.float32)
    grid[net.grid_index.numpy()] = np.arange(features.n_pixels)
    grid = grid.reshape(net.grid_shape)
    dy, dx = features.pixel_offsets
    assert_allclose(grid[dy + 5, dx + 5], np.arange(features.n_pixels))
    # ... and pixel i of the features is stamp pixel (10 + dy, 10 + dx).
    bkg = x.local_bkg[0]
    scale = 10 ** x.base[0]
    assert_allclose(x.features[0, :features.n_pixels] * scale,
                    stamp[10 + dy, 10 + dx] + 1000.0 - bkg, rtol=1e-5)


def test_cnn_trains_and_round_trips_through_the_registry(small_stamps,
                                                         tmp_path):
    config = TrainingConfig(architecture='cnn', width=32, depth=1,
                            architecture_options={'channels': 4},
                            epochs=3, seeds=2, batch_size=128)
    model = Trainer(config)(small_stamps, tmp_path / 'cnn')
    meta = json.loads((tmp_path / 'cnn' / 'model.json').read_text())
    assert meta['architecture'] == {
        'type': 'cnn', 'channels': 4, 'conv_layers': 2, 'width': 32,
        'depth': 1, 'n_features': model.features.n_features, 'members': 2}
    again = SaturatedStarModel.read(tmp_path / 'cnn')
    assert all(type(net) is StampCNN for net in again.networks)
    t = small_stamps
    for opts in ({}, {'ensemble': True, 'reflections': True}):
        a = model(np.asarray(t['stamp']), **_kw(t), **opts)
        b = again(np.asarray(t['stamp']), **_kw(t), **opts)
        assert_allclose(a.log_counts, b.log_counts, rtol=0, atol=1e-6)
        assert_allclose(a.log_counts_err, b.log_counts_err, rtol=1e-6)
    # It learnt: the saturated stars are closer to the truth than the
    # 5-px aperture sum it corrects.
    sat = np.asarray(t['saturated']) & (np.asarray(t['n_unity']) <= 4)
    pred = model(np.asarray(t['stamp']), **_kw(t))
    err_net = np.abs(pred.log_counts - t['log_counts'])[sat]
    err_ap = np.abs(pred.aperture_log_counts - t['log_counts'])[sat]
    assert np.median(err_net) < np.median(err_ap)


def test_trainer_builds_members_with_the_model_factory(small_stamps,
                                                       tmp_path):
    calls = []

    def factory(features):
        calls.append(features.n_features)
        return StampMLP(features.n_features, width=8, depth=1)

    model = Trainer(TrainingConfig(epochs=1, seeds=2, batch_size=256),
                    model_factory=factory)(small_stamps, tmp_path / 'm')
    assert calls == [model.features.n_features] * 2
    again = SaturatedStarModel.read(tmp_path / 'm')
    assert [net.to_config() for net in again.networks] == [
        {'type': 'mlp', 'width': 8, 'depth': 1}] * 2


def test_unregistered_network_is_refused_before_training(small_stamps,
                                                         tmp_path):
    class Plain(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.layer = nn.Linear(n, 2)

        def forward(self, x):
            out = self.layer(x)
            return out[:, 0], out[:, 1]

    trainer = Trainer(TrainingConfig(epochs=1),
                      model_factory=lambda f: Plain(f.n_features))
    with pytest.raises(SatphotutilsError, match='register_architecture'):
        trainer(small_stamps, tmp_path / 'plain')
    assert not list((tmp_path / 'plain' / 'checkpoints').glob('*epoch*'))


def test_unknown_configured_architecture_is_refused():
    with pytest.raises(ValueError, match=r"unknown architecture type 'rnn'"
                       r'; registered types: .*cnn.*mlp'):
        Trainer(TrainingConfig(architecture='rnn'))


@register_architecture
class _MeanOnly(nn.Module):
    """A third architecture, defined outside the package."""

    architecture_type = 'test-linear'

    def __init__(self, n_features, *, scale):
        super().__init__()
        self.scale = scale
        self.layer = nn.Linear(n_features, 2)
        with torch.no_grad():
            self.layer.weight.mul_(0.01)
            self.layer.bias.copy_(torch.tensor([0.0, -3.0]))

    def to_config(self):
        return {'type': self.architecture_type, 'scale': self.scale}

    @classmethod
    def from_config(cls, config, *, features):
        return cls(features.n_features, scale=config.get('scale', 1.0))

    def forward(self, x):
        out = self.layer(x) * self.scale
        return out[:, 0], out[:, 1]


def test_an_outside_architecture_trains_and_reads_back(small_stamps,
                                                       tmp_path):
    model = Trainer(
        TrainingConfig(epochs=1, batch_size=256),
        model_factory=lambda f: _MeanOnly(f.n_features, scale=0.5))(
            small_stamps, tmp_path / 'lin')
    again = SaturatedStarModel.read(tmp_path / 'lin')
    assert type(again.networks[0]) is _MeanOnly
    assert again.networks[0].scale == 0.5
    t = small_stamps[:50]
    assert_allclose(again(np.asarray(t['stamp']), **_kw(t)).log_counts,
                    model(np.asarray(t['stamp']), **_kw(t)).log_counts,
                    atol=1e-6)
