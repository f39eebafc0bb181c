# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Training: configuration presets, the resumable runner, model selection.

Each seed trains one network with checkpoints after every epoch (weights,
optimiser and progress, in safetensors and JSON: resumable after a kill),
early stopping on the validation loss, and the four reflections drawn at
random per sample. The members are ranked by their best validation loss;
the uncertainties are then calibrated on the validation set, separately
for saturated and unsaturated stars.
"""

import dataclasses
import functools
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

from satphotutils.utils._misc import get_versions
from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.io import atomic_output
from satphotutils.utils.stats import dispersion

from . import registry
from .dataset import load_features, split_by_star
from .features import StampFeatures
from .guard import fit_guard
from .modelfile import (
    SaturatedStarModel,
    _architecture_config,
    _torch_device,
)

__all__ = ['PRESETS', 'Trainer', 'TrainingConfig']

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainingConfig:
    """
    Hyper-parameters of a training run.

    Parameters
    ----------
    epochs : int
        Maximum number of epochs.
    batch_size : int
        Minibatch size.
    lr : float
        (Peak) learning rate.
    weight_decay : float
        AdamW weight decay.
    optimizer : {'adamw', 'adam'}
        Optimiser.
    schedule : {'onecycle', 'constant'}
        Learning-rate schedule.
    loss : {'huber', 'mse'}
        Loss of the mean head; Huber (robust to the survey's corrupted
        exposures) with width ``huber_delta`` dex, or the paper's MSE.
    huber_delta : float
        Huber width (dex).
    architecture : str
        Registered architecture type (``satphotutils.network.registry``):
        ``'mlp'`` (`~satphotutils.network.StampMLP`) or ``'cnn'``
        (`~satphotutils.network.StampCNN`).
    width, depth : int
        Network shape: the hidden layers of the MLP, the dense layers
        after the CNN's convolutions.
    architecture_options : dict
        Further options of the architecture's ``from_config`` (for
        ``'cnn'``: ``channels``, ``conv_layers``).
    seeds : int
        Networks trained from different seeds; the best on the
        validation set comes first, and all form the ensemble.
    seed : int
        Base random seed (split, initialisation, minibatches).
    patience : int
        Epochs without improvement of the validation loss before
        stopping.
    reflections : bool
        Augment with the four reflections of each stamp.
    camera_dropout : float
        Fraction of samples shown with the camera-agnostic encoding, so
        that unknown cameras get a trained fallback.
    max_unity : int
        Stamps with more pixels exactly equal to 1 are left out (the
        paper's four).
    fractions : tuple of float
        Star-grouped train/test/validation fractions.

    Examples
    --------
    >>> from satphotutils.network import TrainingConfig
    >>> config = TrainingConfig(epochs=20, seeds=3)
    >>> config.epochs, config.seeds
    (20, 3)
    """

    epochs: int = 30
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-5
    optimizer: str = 'adamw'
    schedule: str = 'onecycle'
    loss: str = 'huber'
    huber_delta: float = 0.01
    architecture: str = 'mlp'
    width: int = 256
    depth: int = 3
    architecture_options: dict = dataclasses.field(default_factory=dict)
    seeds: int = 1
    seed: int = 0
    patience: int = 8
    reflections: bool = True
    camera_dropout: float = 0.1
    max_unity: int = 4
    fractions: tuple = (0.6, 0.2, 0.2)

    def __post_init__(self):
        checks = {
            'epochs': self.epochs >= 1, 'batch_size': self.batch_size >= 1,
            'lr': self.lr > 0, 'seeds': self.seeds >= 1,
            'optimizer': self.optimizer in ('adamw', 'adam'),
            'schedule': self.schedule in ('onecycle', 'constant'),
            'loss': self.loss in ('huber', 'mse'),
            'camera_dropout': 0 <= self.camera_dropout < 1,
            'architecture': isinstance(self.architecture, str),
            'architecture_options': isinstance(self.architecture_options,
                                               dict)
            and not {'type', 'width', 'depth'} & set(
                self.architecture_options)}
        for name, ok in checks.items():
            if not ok:
                msg = f'invalid training option {name}={getattr(self, name)!r}'
                raise ValueError(msg)
        self.fractions = tuple(self.fractions)

    def to_dict(self):
        """Return the options as a dict."""
        return dataclasses.asdict(self)

    def architecture_config(self):
        """
        Return the ``architecture`` config the default factory builds.

        Examples
        --------
        >>> from satphotutils.network import TrainingConfig
        >>> TrainingConfig(width=64, depth=2).architecture_config()
        {'type': 'mlp', 'width': 64, 'depth': 2}
        """
        return {'type': self.architecture, 'width': self.width,
                'depth': self.depth, **self.architecture_options}


#: Named configurations. ``'paper'`` is Winecki & Kochanek's recipe
#: (Adam, lr 1e-4, batch 128, MSE, 150 epochs, best of 24 seeds);
#: ``'default'`` converges in a few minutes on two cores.
PRESETS = {
    'default': TrainingConfig(),
    'paper': TrainingConfig(epochs=150, batch_size=128, lr=1e-4,
                            weight_decay=0.0, optimizer='adam',
                            schedule='constant', loss='mse', seeds=24,
                            patience=150, camera_dropout=0.0),
}


# Training jitter of the frames' FWHM input (see load_features).
_FWHM_SCATTER = 0.1


def _device(device):
    import torch

    if device is None:
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    return _torch_device(device)


def _symmetric_stats(x, features, reflections):
    mean = x.mean(axis=0, dtype=np.float64)
    std = x.std(axis=0, dtype=np.float64)
    if reflections:
        # Standardisation must commute with the reflections.
        perms = features.reflections()
        signs = features.reflection_signs().astype(np.float64)
        mean = np.mean([mean[p] * s for p, s in zip(perms, signs,
                                                    strict=True)], axis=0)
        std = np.mean([std[p] for p in perms], axis=0)
    std = np.where(std > 1e-6, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


class Trainer:
    """
    Train a `~satphotutils.network.SaturatedStarModel` on a stamp table.

    Parameters
    ----------
    config : `TrainingConfig` or str, optional
        Options, or the name of a preset in ``PRESETS``; ``'default'`` if
        `None`.

    model_factory : callable, optional
        ``model_factory(features)`` returns an untrained network (a
        `torch.nn.Module` of a registered architecture, see
        ``satphotutils.network.registry``) for a
        `~satphotutils.network.StampFeatures`; it is called once per
        seed, after the seed is set. By default the architecture of
        ``config.architecture_config()`` is built from the registry.

    features : `~satphotutils.network.StampFeatures`, optional
        Preprocessing. By default the current feature version, camera
        agnostic (no camera encoding): the model reads each frame's
        saturation level and FWHM instead, which it can use on any
        camera.

    device : str, optional
        Torch device (``'cpu'``, ``'cuda'``, ``'mps'``); the GPU when
        present if `None`, else the CPU.

    progress : bool, optional
        Show tqdm progress bars.

    Examples
    --------
    >>> from satphotutils.network import Trainer
    >>> Trainer('paper').config.lr
    0.0001
    """

    def __init__(self, config=None, *, model_factory=None, features=None,
                 device=None, progress=False):
        if config is None:
            config = 'default'
        if isinstance(config, str):
            if config not in PRESETS:
                msg = f'unknown preset {config!r}; use one of {list(PRESETS)}'
                raise ValueError(msg)
            config = dataclasses.replace(PRESETS[config])
        self.config = config
        if model_factory is None:
            try:
                registry.get_architecture(config.architecture)
            except KeyError as exc:
                raise ValueError(exc.args[0]) from None
            model_factory = functools.partial(
                _build, config.architecture_config())
        self.model_factory = model_factory
        self.features = features
        self.device = device
        self.progress = progress

    def __call__(self, stamps, output_dir, *, resume=True, overwrite=False,
                 provenance=None):
        """
        Train on a stamp table and write the model to ``output_dir``.

        Parameters
        ----------
        stamps : path-like, `~astropy.table.Table` or list of them
            The stamp table(s), with labels ``log_counts``.

        output_dir : path-like
            Directory for the model and the per-epoch checkpoints
            (``checkpoints/``).

        resume : bool, optional
            Continue from the checkpoints of an interrupted run with the
            same data and options.

        overwrite : bool, optional
            Replace a finished model in ``output_dir``.

        provenance : dict, optional
            Extra provenance for the model metadata (e.g. the command).

        Returns
        -------
        model : `~satphotutils.network.SaturatedStarModel`
        """
        cfg = self.config
        out = Path(output_dir)
        if (out / 'model.json').exists() and not overwrite:
            msg = (f'{out} already holds a model; choose another directory '
                   'or use overwrite')
            raise SatphotutilsError(msg)
        start_time = time.perf_counter()
        device = _device(self.device)
        data, columns, features = self._load(stamps)
        subset = split_by_star(columns['star_id'], fractions=cfg.fractions,
                               seed=cfg.seed)
        usable = (np.isfinite(columns['label']) & data.finite
                  & (data.n_unity <= cfg.max_unity))
        train = np.flatnonzero(usable & (subset == 0))
        valid = np.flatnonzero(usable & (subset == 2))
        test = np.flatnonzero(usable & (subset == 1))
        if len(train) == 0 or len(valid) == 0:
            msg = 'too few usable labelled stamps to train and validate'
            raise SatphotutilsError(msg)
        x = data.features
        mean, std = _symmetric_stats(x[train], features, cfg.reflections)
        key = self._run_key(stamps, len(x), features, mean)
        ckpt = out / 'checkpoints'
        ckpt.mkdir(parents=True, exist_ok=True)

        members, losses, resumed = [], [], {}
        for k in range(cfg.seeds):
            net, best, after = self._train_one(
                k, x, columns['target'], train, valid, mean, std, features,
                device, ckpt, key, resume)
            members.append(net.cpu())
            losses.append(best)
            if after:
                resumed[str(k)] = after
        order = np.argsort(losses)
        members = [members[i] for i in order]
        log.info('validation losses: %s', sorted(losses))

        model = SaturatedStarModel(
            features, members, input_mean=mean, input_std=std, metadata={})
        label = columns['label']
        model.metadata.update({
            'saturation_log_counts': _saturation_threshold(
                columns, usable, data),
            'label_range': [float(np.min(label[train])),
                            float(np.max(label[train]))]})
        model.metadata['uncertainty_scale'] = _calibrate(
            model, data, columns, valid)
        model.metadata['classical'] = _classical_table(
            model, data, columns, valid)
        model.metadata['validation'] = _metrics(model, data, columns, valid)
        model.metadata['test'] = _metrics(model, data, columns, test)
        fit_guard(model, data[train], valid=data[valid], seed=cfg.seed,
                  strict=False)
        model.metadata['training'] = {
            'source': _describe(stamps),
            'rows': len(x), 'rows_used': {'train': len(train),
                                          'validation': len(valid),
                                          'test': len(test)},
            'config': cfg.to_dict(),
            'validation_loss': [float(v) for v in sorted(losses)],
            # Seeds continued from a checkpoint: the epoch they resumed
            # after.
            'resumed_after_epoch': resumed,
            'seconds': round(time.perf_counter() - start_time, 1),
            'device': str(device),
            'versions': get_versions(),
            **(provenance or {})}
        model.write(out, overwrite=True)
        return model

    # -- steps ------------------------------------------------------------

    def _load(self, stamps):
        features = self.features
        if features is None:
            # Camera-agnostic: a per-camera encoding would be an input the
            # network cannot use on any camera it did not see.
            features = StampFeatures()
        data, columns = load_features(
            stamps, features, fwhm_scatter=_FWHM_SCATTER,
            seed=self.config.seed)
        for name in ('log_counts', 'star_id'):
            if name not in columns:
                msg = (f'the stamp table has no {name} column; training '
                       'needs the labels and the stars they belong to')
                raise SatphotutilsError(msg)
        columns['label'] = columns['log_counts'].astype(float)
        columns['target'] = (columns['label'] - data.base).astype(
            np.float32)
        return data, columns, features

    def _run_key(self, stamps, n_rows, features, mean):
        text = json.dumps({'config': self.config.to_dict(),
                           'features': features.to_dict(), 'rows': n_rows,
                           'mean': float(np.sum(mean))}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _train_one(self, k, x, target, train, valid, mean, std, features,
                   device, ckpt, key, resume):
        import torch
        from torch.nn import functional as F

        cfg = self.config
        seed = cfg.seed * 1000 + k
        torch.manual_seed(seed)
        net = self.model_factory(features)
        # Fails now, not after training, for a network a model file could
        # not describe.
        architecture = _architecture_config([net], features)
        net = net.to(device)
        key = hashlib.sha256(json.dumps(
            [key, architecture], sort_keys=True).encode()).hexdigest()[:16]
        opt_cls = torch.optim.AdamW if cfg.optimizer == 'adamw' else \
            torch.optim.Adam
        opt = opt_cls(net.parameters(), lr=cfg.lr,
                      weight_decay=cfg.weight_decay)
        steps = int(np.ceil(len(train) / cfg.batch_size))
        sched = None
        if cfg.schedule == 'onecycle':
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps,
                pct_start=0.15)
        state = {'epoch': 0, 'best': np.inf, 'bad': 0, 'key': key,
                 'history': []}
        paths = _ckpt_paths(ckpt, k)
        resumed_after = 0
        if resume and paths['state'].exists():
            saved = json.loads(paths['state'].read_text())
            if saved.get('key') == key and 'files' in saved:
                _load_checkpoint(net, opt, sched, paths, device)
                state = saved
                resumed_after = state['epoch']
                log.info('seed %d: resuming after epoch %d', k,
                         state['epoch'])
        mean_t = torch.from_numpy(mean).to(device)
        std_t = torch.from_numpy(std).to(device)
        x_t = torch.from_numpy(x)
        y_t = torch.from_numpy(target)
        perms = torch.from_numpy(features.reflections()).to(device)
        signs = torch.from_numpy(features.reflection_signs()).to(device)
        n_cam = len(features.cameras) + 1
        cam0 = features.n_features - n_cam

        def prepare(idx, rng=None):
            xb = x_t[idx].to(device)
            if rng is not None and cfg.reflections:
                r = torch.from_numpy(rng.integers(0, 4, len(idx))).to(device)
                xb = torch.gather(xb, 1, perms[r]) * signs[r]
            if rng is not None and cfg.camera_dropout > 0 and n_cam > 1:
                drop = torch.from_numpy(
                    rng.random(len(idx)) < cfg.camera_dropout).to(device)
                xb[drop, cam0:] = 0.0
                xb[drop, -1] = 1.0
            return (xb - mean_t) / std_t

        def loss_fn(mu, log_sigma, y):
            if cfg.loss == 'huber':
                mean_loss = F.huber_loss(mu, y, delta=cfg.huber_delta) \
                    / cfg.huber_delta
            else:
                mean_loss = F.mse_loss(mu, y)
            resid = (y - mu.detach()) / torch.exp(log_sigma)
            nll = (log_sigma + 0.5 * resid**2).mean()
            return mean_loss, nll

        def validate():
            net.eval()
            total, n = 0.0, 0
            with torch.inference_mode():
                for s in range(0, len(valid), 65536):
                    idx = valid[s:s + 65536]
                    mu, log_sigma = net(prepare(idx))
                    mean_loss, _ = loss_fn(mu, log_sigma,
                                           y_t[idx].to(device))
                    total += float(mean_loss) * len(idx)
                    n += len(idx)
            net.train()
            return total / n

        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.epochs, initial=state['epoch'],
                       desc=f'seed {k + 1}/{cfg.seeds}', unit='epoch')
        net.train()
        while state['epoch'] < cfg.epochs and state['bad'] < cfg.patience:
            epoch = state['epoch']
            rng = np.random.default_rng([cfg.seed, k, epoch])
            order = train[rng.permutation(len(train))]
            t0 = time.perf_counter()
            for s in range(0, len(order), cfg.batch_size):
                idx = order[s:s + cfg.batch_size]
                mu, log_sigma = net(prepare(idx, rng))
                mean_loss, nll = loss_fn(mu, log_sigma, y_t[idx].to(device))
                opt.zero_grad(set_to_none=True)
                (mean_loss + nll).backward()
                opt.step()
                if sched is not None:
                    sched.step()
            val = validate()
            rate = len(order) / (time.perf_counter() - t0)
            state['epoch'] = epoch + 1
            state['history'].append({'epoch': epoch + 1, 'val_loss': val,
                                     'stamps_per_s': rate})
            if val < state['best']:
                state['best'], state['bad'] = val, 0
                _save_weights(net, paths['best'])
            else:
                state['bad'] += 1
            _save_checkpoint(net, opt, sched, state, paths)
            if bar is not None:
                bar.set_postfix(val=f'{val:.4g}', rate=f'{rate:.0f}/s')
                bar.update(1)
        if bar is not None:
            bar.close()
        _load_weights(net, paths['best'], device)
        return net, state['best'], resumed_after


def _build(config, features):
    return registry.build(config, features=features)


def _describe(stamps):
    if isinstance(stamps, (list, tuple)):
        return [_describe(s) for s in stamps]
    return 'in-memory table' if hasattr(stamps, 'colnames') else \
        Path(stamps).name


def _ckpt_paths(ckpt, k):
    # Weights and optimiser state carry their epoch in the file name and
    # the state file, written last, names them: a kill at any moment
    # leaves the state pointing at a complete, consistent checkpoint.
    return {'dir': ckpt, 'prefix': f'seed{k}',
            'state': ckpt / f'seed{k}.json',
            'best': ckpt / f'seed{k}.best.safetensors'}


def _epoch_files(paths, epoch):
    stem = f'{paths["prefix"]}.epoch{epoch}'
    return (paths['dir'] / f'{stem}.safetensors',
            paths['dir'] / f'{stem}.optimizer.safetensors')


def _save_weights(net, path):
    from safetensors.torch import save_file

    with atomic_output(path, overwrite=True) as tmp:
        save_file({k: v.detach().cpu().contiguous()
                   for k, v in net.state_dict().items()}, str(tmp))


def _load_weights(net, path, device):
    from safetensors.torch import load_file

    net.load_state_dict(load_file(str(path), device=str(device)))


def _save_checkpoint(net, opt, sched, state, paths):
    import torch
    from safetensors.torch import save_file

    weights, optimizer = _epoch_files(paths, state['epoch'])
    _save_weights(net, weights)
    # The optimiser state flattened to named tensors: no pickle.
    tensors = {}
    for i, (pid, pstate) in enumerate(opt.state_dict()['state'].items()):
        for name, value in pstate.items():
            value = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f'{i}.{pid}.{name}'] = value.detach().cpu().contiguous()
    with atomic_output(optimizer, overwrite=True) as tmp:
        save_file(tensors, str(tmp))
    state = dict(state)
    state['files'] = [weights.name, optimizer.name]
    state['scheduler'] = None if sched is None else {
        k: v for k, v in sched.state_dict().items()
        if isinstance(v, (int, float, str, bool, list)) or v is None}
    with atomic_output(paths['state'], overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(state, default=float))
    # Only now is the previous checkpoint unneeded.
    for old in paths['dir'].glob(f'{paths["prefix"]}.epoch*.safetensors'):
        if old.name not in state['files']:
            old.unlink(missing_ok=True)


def _load_checkpoint(net, opt, sched, paths, device):
    from safetensors.torch import load_file

    saved = json.loads(paths['state'].read_text())
    weights, optimizer = (paths['dir'] / name for name in saved['files'])
    _load_weights(net, weights, device)
    tensors = load_file(str(optimizer), device=str(device))
    opt_state = opt.state_dict()
    for key, value in tensors.items():
        _, pid, name = key.split('.', 2)
        opt_state['state'].setdefault(int(pid), {})[name] = value
    opt.load_state_dict(opt_state)
    if sched is not None and saved.get('scheduler'):
        sched_state = sched.state_dict()
        sched_state.update(saved['scheduler'])
        sched.load_state_dict(sched_state)


def _saturation_threshold(columns, usable, data):
    """Return the label above which most stamps are saturated."""
    if data.log_headroom[usable].size and np.isfinite(
            data.log_headroom[usable]).all():
        # Feature version 3: relative to each frame's headroom.
        label = columns['label'][usable] - data.log_headroom[usable]
        if 'saturated' not in columns:
            # A star saturates when its peak pixel, about a tenth of its
            # counts at FWHM 2 px, reaches the headroom.
            return 1.0
        sat = columns['saturated'][usable].astype(bool)
        grid = np.linspace(np.nanmin(label), np.nanmax(label), 400)
        errors = [np.count_nonzero(sat != (label > t)) for t in grid]
        return float(grid[int(np.argmin(errors))])
    if 'saturated' in columns:
        label = columns['label'][usable]
        sat = columns['saturated'][usable].astype(bool)
        grid = np.linspace(np.nanmin(label), np.nanmax(label), 400)
        errors = [np.count_nonzero(sat != (label > t)) for t in grid]
        return float(grid[int(np.argmin(errors))])
    return float(np.median(-0.4 * (11.5 - columns['zeropoint']))) \
        if 'zeropoint' in columns else 5.6


def _groups(model, columns, rows, pred, x):
    if 'saturated' in columns:
        return columns['saturated'][rows].astype(bool)
    return model.is_saturated(x, pred)


def _calibrate(model, data, columns, rows):
    """Scale the uncertainties so that 68% of |z| < 1 in each group."""
    x = data[rows]
    label = columns['label'][rows]
    scales = {}
    for mode in ('single', 'ensemble'):
        delta, sigma = model.predict_features(
            x.features, ensemble=(mode == 'ensemble'))
        pred = x.base + delta
        z = np.abs(label - pred) / sigma
        sat = _groups(model, columns, rows, pred, x)
        scales[mode] = {
            name: float(np.percentile(z[group], 68.27)) if group.any()
            else 1.0 for name, group in (('saturated', sat),
                                         ('unsaturated', ~sat))}
    return scales


def _classical_table(model, data, columns, rows, *, step=0.25,
                     min_rows=50):
    """
    Compare the network with classical estimates on validation stars.

    For unsaturated stars, in bins of the network's log counts, the
    single-exposure dispersion of the network and of each classical
    estimate (aperture sums of 2, 3 and 5 px, the PSF-weighted sum) after
    its median offset; the hybrid mode uses the best one per bin.
    """
    x = data[rows]
    pred = model.predict_prepared(x).log_counts
    sat = _groups(model, columns, rows, pred, x)
    estimates = model.features.classical_estimates(x)
    label = columns['label'][rows]
    # Bins on the model's saturation scale (relative to each frame's
    # headroom for a camera-agnostic model), as the lookup reads them.
    where = model.saturation_coordinate(x, pred)
    lo = np.floor(np.min(where[~sat]) / step) * step if (~sat).any() \
        else 0.0
    table = []
    for start in np.arange(lo, model.saturation_log_counts + step, step):
        sel = ~sat & (where >= start) & (where < start + step)
        if sel.sum() < min_rows:
            continue
        entry = {'lo': float(start), 'hi': float(start + step),
                 'network': float(dispersion(label[sel] - pred[sel]))}
        for name, est in estimates.items():
            offset = float(np.nanmedian(label[sel] - est[sel]))
            entry[name] = {'offset': offset, 'dispersion': float(
                dispersion(label[sel] - est[sel] - offset))}
        table.append(entry)
    return table


def _metrics(model, data, columns, rows):
    """Single-exposure statistics (mag) of the best member on ``rows``."""
    if len(rows) == 0:
        return {}
    pred = model.predict_prepared(data[rows])
    label = columns['label'][rows]
    diff = -2.5 * (pred.log_counts - label)
    z = np.abs(label - pred.log_counts) / pred.log_counts_err
    sat = _groups(model, columns, rows, pred.log_counts, data[rows])
    out = {}
    for name, group in (('saturated', sat), ('unsaturated', ~sat)):
        if group.any():
            out[name] = {
                'n': int(group.sum()),
                'median': float(np.median(diff[group])),
                'dispersion': float(dispersion(diff[group])),
                'coverage_1sigma': float(np.mean(z[group] < 1))}
    return out
