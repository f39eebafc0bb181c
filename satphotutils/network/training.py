# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Training: configuration presets, the resumable runner, model selection.

Each seed trains one network with checkpoints after every epoch (weights,
optimiser and progress, in safetensors and JSON: resumable after a kill),
early stopping on the validation loss, and the four reflections drawn at
random per sample. The members are ranked by their best validation loss;
the uncertainties are then calibrated on the validation set, separately
for saturated and unsaturated stars.

Fine-tuning (``Trainer(init=...)``, ``satphot train --init``) starts each
member from a trained model's weights, with that model's preprocessing
and input standardisation, and with the ``'finetune'`` preset's options.
"""

import copy
import dataclasses
import functools
import hashlib
import json
import logging
import numbers
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np

from satphotutils.utils._misc import get_versions
from satphotutils.utils._parameters import stamp_shape
from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.flags import SATPHOT_FLAGS
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

# Fewer validation rows of a group than this and its uncertainty scale
# falls back (the 68th percentile of n values is uncertain by about
# 100/sqrt(n) per cent).
_MIN_CALIBRATION_ROWS = 30
# Uncertainty scales outside this range are clamped: no network's own
# sigma is off by more.
_SCALE_LIMITS = (0.1, 10.0)


@dataclasses.dataclass
class TrainingConfig:
    """
    Hyper-parameters of a training run.

    Parameters
    ----------
    epochs : int
        Maximum number of epochs.
    batch_size : int or None
        Minibatch size. `None` (the default): chosen from the number of
        training stamps by `batch_size_for`, so that a small table still
        gets enough optimizer steps.
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
    seeds : int or None
        Networks trained from different seeds; the best on the
        validation set comes first, and all form the ensemble. `None`
        means one per member of the model fine-tuning starts from (one
        when training from scratch).
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
    fwhm_jitter : float
        Scatter (natural log) of a log-normal factor the frames' ``fwhm``
        column is multiplied by in training, row by row, so that the
        network does not lean on the width more closely than a FWHM
        measured with other stars or another tool can be trusted (the
        stamp builder's and the photometry's
        `~satphotutils.frames.frame_fwhm` of one frame agree to 1-3%).
        0 trusts it exactly. Larger is not safer: the network
        then cannot follow the seeing, which changes from exposure to
        exposure, and its light curves scatter by as much. On tall
        stamps of a raw camera (the ``tall_network`` benchmark, 24,000
        stamps), saturated light curves scatter 0.0047 / 0.0053 /
        0.0072 mag with 0 / 0.03 / 0.1, unsaturated 0.013 / 0.015 /
        0.030; with each test frame's FWHM off by a further 5%, 0.0076 /
        0.0065 / 0.0074 and 0.024 / 0.022 / 0.032. The bundled model
        was trained with 0.03.
    fractions : tuple of float
        Star-grouped train/test/validation fractions (see
        `~satphotutils.network.split_by_star`). A test fraction of 0
        leaves no test set (``metadata['test']`` is then empty); the
        validation set gets at least one star whenever its fraction is
        positive and there are two stars or more.
    soup : int or None
        Fine-tuning only: copies of each init member trained (each with
        its own minibatch order and reflections) and averaged, weight by
        weight, into one network: a "model soup" (Wortsman et al. 2022,
        ICML, arXiv:2203.05482). Copies of one starting point stay in its
        basin, so their average is a network as good as the ensemble of
        the copies at the cost of one; it averages away what a few
        hundred stamps teach by chance. 1 trains the member itself;
        `None` chooses from the training split: ``AUTO_SOUP`` copies
        below ``AUTO_SOUP_MAX_TRAIN`` training stamps, else 1 (the
        ``'finetune'`` preset; see `Trainer`).

    Examples
    --------
    >>> from satphotutils.network import TrainingConfig
    >>> config = TrainingConfig(epochs=20, seeds=3)
    >>> config.epochs, config.seeds
    (20, 3)
    """

    epochs: int = 30
    batch_size: int | None = None
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
    fwhm_jitter: float = 0.03
    fractions: tuple = (0.6, 0.2, 0.2)
    soup: int | None = 1

    def __post_init__(self):
        checks = {
            'epochs': self.epochs >= 1,
            'batch_size': self.batch_size is None or (
                isinstance(self.batch_size, (int, np.integer))
                and not isinstance(self.batch_size, bool)
                and self.batch_size >= 1),
            # inf passes "> 0" and trains to NaN weights.
            'lr': self.lr > 0 and np.isfinite(self.lr),
            'weight_decay': self.weight_decay >= 0
            and np.isfinite(self.weight_decay),
            'huber_delta': self.huber_delta > 0
            and np.isfinite(self.huber_delta),
            'seeds': self.seeds is None or (
                isinstance(self.seeds, int) and self.seeds >= 1),
            'soup': self.soup is None or (
                isinstance(self.soup, (int, np.integer))
                and not isinstance(self.soup, bool) and self.soup >= 1),
            'optimizer': self.optimizer in ('adamw', 'adam'),
            'schedule': self.schedule in ('onecycle', 'constant'),
            'loss': self.loss in ('huber', 'mse'),
            'camera_dropout': 0 <= self.camera_dropout < 1,
            'fwhm_jitter': isinstance(self.fwhm_jitter, numbers.Real)
            and not isinstance(self.fwhm_jitter, bool)
            and 0 <= self.fwhm_jitter <= 1,
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
        # numpy float32 passes the check but not json.dumps.
        self.fwhm_jitter = float(self.fwhm_jitter)
        if self.batch_size is not None:
            # numpy integers pass the check but not json.dumps.
            self.batch_size = int(self.batch_size)
        if self.soup is not None:
            self.soup = int(self.soup)

    def soup_for(self, n_train):
        """
        Return the copies per member averaged for ``n_train`` stamps.

        ``soup`` when set; otherwise ``AUTO_SOUP`` (4) below
        ``AUTO_SOUP_MAX_TRAIN`` (1,500) training stamps and 1 from there
        on: on the ``finetune`` benchmark's camera the soup of four made
        300 stamps' light curves 24% better than one copy (eight draws),
        1,000 stamps' 4% (four draws), and 3,000 and 10,000 stamps' 4%
        and 10% worse, where the longer runs carry the copies further
        apart than their average can follow.

        Examples
        --------
        >>> from satphotutils.network import TrainingConfig
        >>> config = TrainingConfig(soup=None)
        >>> [config.soup_for(n) for n in (240, 800, 2400)]
        [4, 4, 1]
        """
        if self.soup is not None:
            return self.soup
        return AUTO_SOUP if n_train < AUTO_SOUP_MAX_TRAIN else 1

    def to_dict(self):
        """Return the options as a dict."""
        return dataclasses.asdict(self)

    def batch_size_for(self, n_train):
        """
        Return the minibatch size for ``n_train`` training stamps.

        ``batch_size`` when set; otherwise the largest power of two from
        16 to 256 (``MIN_AUTO_BATCH``, ``MAX_AUTO_BATCH`` in this module)
        that makes at least 500 (``AUTO_STEPS_PER_EPOCH``) optimizer
        steps per epoch. What limits a short run on a small table is the
        number of steps, not the epochs: on 14,400 tall training stamps
        (15 epochs) a batch of 256 (57 steps per epoch) left the
        saturated light curves at 0.016 mag, 64 at 0.011, 32 at 0.0085,
        16 at 0.0071 (the ``tall_network`` benchmark). Tables of a few
        hundred thousand stamps keep 256.

        Examples
        --------
        >>> from satphotutils.network import TrainingConfig
        >>> config = TrainingConfig()
        >>> [config.batch_size_for(n) for n in (300, 14_400, 60_000, 10**6)]
        [16, 16, 64, 256]
        >>> TrainingConfig(batch_size=100).batch_size_for(300)
        100
        """
        if self.batch_size is not None:
            return int(self.batch_size)
        want = n_train / AUTO_STEPS_PER_EPOCH
        batch = MIN_AUTO_BATCH
        while batch * 2 <= min(want, MAX_AUTO_BATCH):
            batch *= 2
        return batch

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


#: ``TrainingConfig(batch_size=None)``: the fewest optimizer steps per
#: epoch asked for, and the range of sizes chosen from
#: (`TrainingConfig.batch_size_for`).
AUTO_STEPS_PER_EPOCH = 500
MIN_AUTO_BATCH = 16
MAX_AUTO_BATCH = 256
#: ``TrainingConfig(soup=None)``: copies per member averaged, and the
#: training split from which one copy is trained instead
#: (`TrainingConfig.soup_for`).
AUTO_SOUP = 4
AUTO_SOUP_MAX_TRAIN = 1500

#: Named configurations. ``'paper'`` is Winecki & Kochanek's recipe
#: (Adam, lr 1e-4, batch 128, MSE, 150 epochs, best of 24 seeds);
#: ``'default'`` converges in a few minutes on two cores; ``'finetune'``
#: is for starting from a trained model (``Trainer(init=...)``), see
#: `Trainer`.
PRESETS = {
    'default': TrainingConfig(),
    'paper': TrainingConfig(epochs=150, batch_size=128, lr=1e-4,
                            weight_decay=0.0, optimizer='adam',
                            schedule='constant', loss='mse', seeds=24,
                            patience=150, camera_dropout=0.0),
    # Why these: see Trainer's Notes.
    'finetune': TrainingConfig(epochs=15, batch_size=32, lr=3e-3,
                               seeds=None, patience=15,
                               fractions=(0.8, 0.0, 0.2), soup=None),
}

# Columns read besides the features: labels, groups, and what says
# whether each stamp's frame was corrected.
_EXTRA_COLUMNS = ('log_counts', 'star_id', 'saturated', 'epoch', 'g',
                  'corrected', 'family_correction')


def _training_frames(columns, usable):
    """
    Say what frames the stamps came from: ``metadata['training_frames']``.

    ``'corrected'`` (the pipeline replaced the bleed trails),
    ``'uncorrected'`` (the trails stayed), ``'mixed'``, or `None` when
    the table does not say: from a ``corrected`` column (the frames'
    ``SATCORR``: boolean, or the stamp builder's 1/0 with -1 for frames
    that could not tell, left out), else the simulator's
    ``family_correction`` (``'raw'`` is uncorrected).
    """
    if 'corrected' in columns:
        value = np.asarray(columns['corrected'])[usable]
        # The stamp builder's integers: -1 where a frame could not tell.
        known = value >= 0 if value.dtype.kind in 'iu' else \
            np.ones(value.shape, dtype=bool)
        corrected = value[known].astype(bool)
    elif 'family_correction' in columns:
        corrected = np.char.strip(np.asarray(
            columns['family_correction'], dtype=str))[usable] != 'raw'
    else:
        return None
    if not len(corrected):
        return None
    if corrected.all():
        return 'corrected'
    return 'uncorrected' if not corrected.any() else 'mixed'


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
        Options, or the name of a preset in ``PRESETS``; ``'finetune'``
        if `None` and ``init`` is given, else ``'default'``.

    init : str, path-like or SaturatedStarModel, optional
        Fine-tune: start from this model (``'default'``: the bundled
        one, `~satphotutils.network.SaturatedStarModel.default`; a path:
        a model directory) instead of random weights. See the Notes.

    model_factory : callable, optional
        ``model_factory(features)`` returns an untrained network (a
        `torch.nn.Module` of a registered architecture, see
        ``satphotutils.network.registry``) for a
        `~satphotutils.network.StampFeatures`; it is called once per
        seed, after the seed is set. By default the architecture of
        ``config.architecture_config()`` is built from the registry.
        Not with ``init``.

    features : `~satphotutils.network.StampFeatures`, optional
        Preprocessing. By default the current feature version, camera
        agnostic (no camera encoding): the model reads each frame's
        saturation level and FWHM instead, which it can use on any
        camera. With ``init``, that model's.

    device : str, optional
        Torch device (``'cpu'``, ``'cuda'``, ``'mps'``); the GPU when
        present if `None`, else the CPU.

    progress : bool, optional
        Show tqdm progress bars.

    Raises
    ------
    SatphotutilsError
        If ``init`` cannot be read, or ``features``, ``model_factory`` or
        ``config.seeds`` conflict with it.

    ValueError
        If ``config.soup`` asks for copies without ``init``, or names an
        unknown preset or architecture.

    Notes
    -----
    With ``init``, member *k* starts from the init model's member *k*
    (``config.seeds`` members, by default all of them), and the init
    model's preprocessing (``features``, including its camera encoding:
    a camera it does not know keeps the camera-agnostic encoding) and
    input standardisation are kept: re-deriving the mean and standard
    deviation from a few hundred stamps would change what every weight
    of the first layer sees. The architecture options of ``config`` are
    replaced by the init model's. The init model's loss on the new
    validation stars is the starting point of the early stopping: if no
    epoch improves on it, the init weights are kept. The uncertainty
    scales, the classical lookup, the saturation boundary and the label
    range are derived from the new data; ``metadata['training']['init']``
    records the model started from (its source, ``created``, the SHA-256
    of its weights and its own training source).

    The ``'default'`` preset leaves ``batch_size`` to the table's size
    (`TrainingConfig.batch_size_for`): 256 for the few hundred thousand
    stamps of a bundled model, 16 for a user's 24,000.

    The ``'finetune'`` preset (the default with ``init``), and why:

    - ``lr`` 3e-3, one-cycle schedule: a camera the init model does not
      know can need large changes (on the benchmark's unseen camera a
      peak of 3e-4 left the saturated light curves at 0.08 mag, 3e-3
      brought them to 0.02), while the one-cycle warm-up (lr/25 for the
      first 15% of the steps) and keeping epoch 0 when no epoch beats
      it protect a model that was already right;
    - ``batch_size`` 32: 300 stamps make 8 steps per epoch, not one;
    - ``epochs`` 15, ``patience`` 15: the best epoch on the validation
      set is kept, the schedule always runs its full course;
    - ``fractions`` (0.8, 0.0, 0.2): no test split, so that every
      labelled star of a small set trains or validates (evaluate on
      stars of your own); ``seeds`` `None`: every init member.
    - ``soup`` `None`: below 1,500 training stamps each init member is
      fine-tuned four times (its own minibatch order and reflections
      each time) and the four are averaged weight by weight into one
      network, which is kept unless the init member does better on the
      validation stars (`TrainingConfig.soup_for`). What a hundred
      stars teach by chance differs from copy to copy and averages
      away; what the camera teaches does not. On the ``finetune``
      benchmark's camera, 300 stamps (median of eight draws of 100
      stars) gave saturated light curves of 0.0148 mag with the soup
      against 0.0195 with one copy, which was worse than the untouched
      default (0.0161); on a soft V camera 0.0216 against 0.0232, on a
      camera saturating at its full well 0.0141 against 0.0137. The
      model keeps the init model's size and speed; the training takes
      four times as long.

    Examples
    --------
    >>> from satphotutils.network import Trainer
    >>> Trainer('paper').config.lr
    0.0001
    >>> tuner = Trainer(init='default')
    >>> tuner.config.lr, tuner.config.epochs, tuner.config.seeds
    (0.003, 15, 2)
    """

    def __init__(self, config=None, *, init=None, model_factory=None,
                 features=None, device=None, progress=False):
        self.init, self.init_record = (None, None) if init is None else \
            _read_init(init)
        if config is None:
            config = 'default' if init is None else 'finetune'
        if isinstance(config, str):
            if config not in PRESETS:
                msg = f'unknown preset {config!r}; use one of {list(PRESETS)}'
                raise ValueError(msg)
            config = dataclasses.replace(PRESETS[config])
        if self.init is not None:
            config, features = self._adopt_init(config, model_factory,
                                                features)
        elif config.soup is not None and config.soup > 1:
            msg = (f'soup={config.soup} needs init: networks trained from '
                   'different random weights cannot be averaged; use '
                   'soup=1, or seeds for an ensemble')
            raise ValueError(msg)
        elif config.seeds is None:
            config = dataclasses.replace(config, seeds=1)
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

    def _adopt_init(self, config, model_factory, features):
        """Return the config and features for fine-tuning ``self.init``."""
        init, name = self.init, self.init_record['source']
        if model_factory is not None:
            msg = ('model_factory cannot be combined with init: the '
                   f'networks are copies of those of {name}')
            raise SatphotutilsError(msg)
        if features is not None and features != init.features:
            msg = (f'features {features.to_dict()} differ from those of the '
                   f'init model {name}, {init.features.to_dict()}: leave '
                   'features out when fine-tuning')
            raise SatphotutilsError(msg)
        members = len(init.networks)
        seeds = members if config.seeds is None else config.seeds
        if seeds > members:
            msg = (f'seeds={seeds}, but the init model {name} has '
                   f'{members} member(s) to start from; use seeds <= '
                   f'{members}')
            raise SatphotutilsError(msg)
        arch = init.networks[0].to_config()
        kind = arch.pop('type')
        width, depth = arch.pop('width', None), arch.pop('depth', None)
        config = dataclasses.replace(
            config, seeds=seeds, architecture=kind,
            width=config.width if width is None else width,
            depth=config.depth if depth is None else depth,
            architecture_options=arch)
        return config, init.features

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

        Raises
        ------
        SatphotutilsError
            If ``output_dir`` holds a model, the table lacks labels or
            star ids, there are too few usable labelled stars to train
            and validate, or (with ``init``) the init model cannot read
            the table (the message names the column or field).
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
        usable = (np.isfinite(columns['label']) & data.finite
                  & (data.n_unity <= cfg.max_unity))
        subset = _split(columns['star_id'], usable, cfg)
        train = np.flatnonzero(usable & (subset == 0))
        valid = np.flatnonzero(usable & (subset == 2))
        test = np.flatnonzero(usable & (subset == 1))
        if len(train) == 0 or len(valid) == 0:
            msg = 'too few usable labelled stamps to train and validate'
            raise SatphotutilsError(msg)
        x = data.features
        if self.init is None:
            mean, std = _symmetric_stats(x[train], features,
                                         cfg.reflections)
            starts = [None] * cfg.seeds
        else:
            mean, std = self.init.input_mean, self.init.input_std
            starts = self.init.networks[:cfg.seeds]
        key = self._run_key(stamps, len(x), features, mean)
        ckpt = out / 'checkpoints'
        ckpt.mkdir(parents=True, exist_ok=True)

        members, losses, resumed, initial, copies = [], [], {}, [], []
        souped = []
        n_copies = cfg.soup_for(len(train)) if self.init is not None else 1
        for k in range(cfg.seeds):
            nets, bests = [], []
            for c in range(n_copies):
                net, best, after, history = self._train_one(
                    k, x, columns['target'], train, valid, mean, std,
                    features, device, ckpt, key, resume, start=starts[k],
                    replica=c)
                nets.append(net.cpu())
                bests.append(best)
                if after:
                    resumed[_member_name(k, c)] = after
            if starts[k] is not None:
                initial.append(history[0]['val_loss'])
            net, best = nets[0], bests[0]
            if n_copies > 1:
                net = _soup(nets)
                best = _validation_loss(net, x, columns['target'], valid,
                                        mean, std, cfg, device)
                net = net.cpu()
                # As for an epoch: the init member is kept unless the
                # average does better on the validation stars (a NaN
                # loss never does).
                kept = best <= initial[-1]
                if not kept:
                    net, best = copy.deepcopy(starts[k]).cpu(), initial[-1]
                copies.append([float(v) for v in bests])
                souped.append(bool(kept))
            members.append(net)
            losses.append(best)
        order = np.argsort(losses)
        members = [members[i] for i in order]
        log.info('validation losses: %s', sorted(losses))

        model = SaturatedStarModel(
            features, members, input_mean=mean, input_std=std, metadata={})
        # Its guard is fitted last, from the trained members: the
        # evaluations before it must not tell the user the model has none
        # (fit_guard says so itself if it cannot fit one).
        model._said_unguarded = True
        label = columns['label']
        model.metadata.update({
            'training_frames': _training_frames(columns, usable),
            'saturation_log_counts': _saturation_threshold(
                columns, usable, data),
            'label_range': [float(np.min(label[train])),
                            float(np.max(label[train]))]})
        fallback = None if self.init is None else \
            self.init.metadata.get('uncertainty_scale')
        scales, calibration = _calibrate(model, data, columns, valid,
                                         fallback=fallback)
        model.metadata['uncertainty_scale'] = scales
        model.metadata['classical'] = _classical_table(
            model, data, columns, valid)
        model.metadata['validation'] = _metrics(model, data, columns, valid)
        if model.metadata['training_frames'] == 'uncorrected':
            model.metadata['trail_validation'] = _trail_validation(
                model, data, columns, valid, stamps)
        model.metadata['test'] = _metrics(model, data, columns, test)
        fit_guard(model, data[train], valid=data[valid], seed=cfg.seed,
                  strict=False)
        model.metadata['training'] = {
            'source': _describe(stamps),
            'rows': len(x), 'rows_used': {'train': len(train),
                                          'validation': len(valid),
                                          'test': len(test)},
            'stars_used': {
                name: int(np.unique(columns['star_id'][rows]).size)
                for name, rows in (('train', train), ('validation', valid),
                                   ('test', test))},
            'config': cfg.to_dict(),
            'batch_size': cfg.batch_size_for(len(train)),
            # Copies averaged per member (1: none).
            'soup': n_copies,
            'validation_loss': [float(v) for v in sorted(losses)],
            # Seeds continued from a checkpoint: the epoch they resumed
            # after.
            'resumed_after_epoch': resumed,
            # Where each uncertainty scale came from.
            'calibration': calibration,
            'classical_bins': len(model.metadata['classical']),
            'seconds': round(time.perf_counter() - start_time, 1),
            'device': str(device),
            'versions': get_versions(),
            **(provenance or {})}
        if self.init is not None:
            model.metadata['training']['init'] = {
                **self.init_record,
                # The init members' loss on this validation set, before
                # any step: what fine-tuning improved on.
                'validation_loss': [float(v) for v in initial]}
        if copies:
            # Per init member, in init order: each copy's best validation
            # loss before averaging, and whether the average was kept
            # (else the init member was).
            model.metadata['training']['soup_validation_loss'] = copies
            model.metadata['training']['soup_kept'] = souped
        model.write(out, overwrite=True)
        return model

    # -- steps ------------------------------------------------------------

    def _load(self, stamps):
        features = self.features
        if features is None:
            # Camera-agnostic: a per-camera encoding would be an input the
            # network cannot use on any camera it did not see. The stamp
            # shape is the table's: tall stamps make a tall-stamp model.
            features = StampFeatures(stamp_size=_table_shape(stamps))
        if self.init is None:
            data, columns = load_features(
                stamps, features, fwhm_scatter=self.config.fwhm_jitter,
                seed=self.config.seed, extra_columns=_EXTRA_COLUMNS)
        else:
            data, columns = self._load_for_init(stamps, features)
        for name in ('log_counts', 'star_id'):
            if name not in columns:
                msg = (f'the stamp table has no {name} column; training '
                       'needs the labels and the stars they belong to')
                raise SatphotutilsError(msg)
        columns['label'] = columns['log_counts'].astype(float)
        columns['target'] = (columns['label'] - data.base).astype(
            np.float32)
        return data, columns, features

    def _load_for_init(self, stamps, features):
        """`load_features`, its errors naming the init model and the fix."""
        name = self.init_record['source']
        size = features.stamp_size
        ny, nx = features.stamp_shape
        for src in stamps if isinstance(stamps, (list, tuple)) else [stamps]:
            shape = _stamp_shape(src)
            if shape is not None and shape != (ny, nx):
                msg = (f'{_describe(src)}: the stamp column holds stamps of '
                       f'{shape[0]} x {shape[1]} pixels, the init model '
                       f'{name} reads features.stamp_size = {size}: cut the '
                       f'stamps at {ny} x {nx} pixels, or train from '
                       'scratch (without init)')
                raise SatphotutilsError(msg)
        try:
            return load_features(stamps, features,
                                 fwhm_scatter=self.config.fwhm_jitter,
                                 seed=self.config.seed,
                                 extra_columns=_EXTRA_COLUMNS)
        except (SatphotutilsError, ValueError) as exc:
            msg = (f'{_describe(stamps)}: the init model {name} (feature '
                   f'version {features.to_dict()["version"]}) cannot read '
                   f'this stamp table: {exc}')
            raise SatphotutilsError(msg) from exc

    def _run_key(self, stamps, n_rows, features, mean):
        # The soup does not change how any one copy trains: its copies'
        # checkpoints stay valid whatever the number of copies.
        config = self.config.to_dict()
        config.pop('soup')
        text = json.dumps({'config': config,
                           'features': features.to_dict(), 'rows': n_rows,
                           'mean': float(np.sum(mean)),
                           'init': (self.init_record or {}).get('sha256')},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _train_one(self, k, x, target, train, valid, mean, std, features,
                   device, ckpt, key, resume, *, start=None, replica=0):
        import torch

        cfg = self.config
        # Copy 0 of a soup is the member alone: its seeds and checkpoints
        # are those of a run without one.
        seed = cfg.seed * 1000 + k + 1_000_003 * replica
        torch.manual_seed(seed)
        net = self.model_factory(features) if start is None else \
            copy.deepcopy(start)
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
        batch_size = cfg.batch_size_for(len(train))
        steps = int(np.ceil(len(train) / batch_size))
        sched = None
        if cfg.schedule == 'onecycle':
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps,
                pct_start=0.15)
        state = {'epoch': 0, 'best': np.inf, 'bad': 0, 'key': key,
                 'history': []}
        paths = _ckpt_paths(ckpt, _member_name(k, replica))
        resumed_after = 0
        if resume and paths['state'].exists():
            saved = json.loads(paths['state'].read_text())
            if saved.get('key') == key and 'files' in saved:
                _load_checkpoint(net, opt, sched, paths, device)
                state = saved
                resumed_after = state['epoch']
                log.info('seed %s: resuming after epoch %d',
                         _member_name(k, replica), state['epoch'])
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
            return _losses(mu, log_sigma, y, cfg)

        def validate():
            val = _validation_loss(net, x, target, valid, mean, std, cfg,
                                   device)
            net.train()
            return val

        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.epochs, initial=state['epoch'],
                       desc=f'seed {k + 1}/{cfg.seeds}' + (
                           f' copy {replica + 1}' if replica else ''),
                       unit='epoch')
        if start is not None and not state['history']:
            # Epoch 0 is the init model itself: fine-tuning keeps it
            # unless an epoch does better on the validation stars.
            val = validate()
            state['best'] = val
            state['history'].append({'epoch': 0, 'val_loss': val})
            _save_weights(net, paths['best'])
        net.train()
        while state['epoch'] < cfg.epochs and state['bad'] < cfg.patience:
            epoch = state['epoch']
            rng = np.random.default_rng(
                [cfg.seed, k, epoch] + ([replica] if replica else []))
            order = train[rng.permutation(len(train))]
            t0 = time.perf_counter()
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
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
        return net, state['best'], resumed_after, state['history']


def _build(config, features):
    return registry.build(config, features=features)


def _member_name(k, replica):
    """Name of member ``k``'s copy (checkpoints, resume records)."""
    return str(k) if replica == 0 else f'{k}.{replica}'


def _losses(mu, log_sigma, y, cfg):
    """Return the mean head's loss and the width head's likelihood."""
    import torch
    from torch.nn import functional as F

    if cfg.loss == 'huber':
        mean_loss = F.huber_loss(mu, y, delta=cfg.huber_delta) \
            / cfg.huber_delta
    else:
        mean_loss = F.mse_loss(mu, y)
    resid = (y - mu.detach()) / torch.exp(log_sigma)
    nll = (log_sigma + 0.5 * resid**2).mean()
    return mean_loss, nll


def _validation_loss(net, x, target, valid, mean, std, cfg, device):
    """Return the mean head's loss on rows ``valid`` (no augmentation)."""
    import torch

    mean_t = torch.from_numpy(mean).to(device)
    std_t = torch.from_numpy(std).to(device)
    net = net.to(device)
    net.eval()
    total, n = 0.0, 0
    with torch.inference_mode():
        for s in range(0, len(valid), 65536):
            idx = valid[s:s + 65536]
            xb = (torch.from_numpy(x[idx]).to(device) - mean_t) / std_t
            mu, log_sigma = net(xb)
            mean_loss, _ = _losses(
                mu, log_sigma, torch.from_numpy(target[idx]).to(device), cfg)
            total += float(mean_loss) * len(idx)
            n += len(idx)
    return total / n


def _soup(nets):
    """
    Return a network whose weights are the mean of those of ``nets``.

    All are copies of one architecture fine-tuned from one start; the
    first gives the structure.
    """
    import torch

    out = copy.deepcopy(nets[0])
    states = [net.state_dict() for net in nets]
    with torch.no_grad():
        out.load_state_dict({
            name: (torch.stack([st[name].float() for st in states]).mean(0)
                   .to(value.dtype) if value.is_floating_point() else value)
            for name, value in states[0].items()})
    return out


def _read_init(init):
    """
    Return the model fine-tuning starts from and its provenance record.

    Parameters
    ----------
    init : str, path-like or `~satphotutils.network.SaturatedStarModel`
        The bundled model, a model directory, or a model.

    Returns
    -------
    model : `~satphotutils.network.SaturatedStarModel`

    record : dict
        ``source`` (``'default'``, the directory, or ``'in-memory
        model'``), ``created``, ``sha256`` (of its ``model.safetensors``
        as stored; for an in-memory model, as `write` would store it),
        ``feature_version``, ``members``, ``architecture`` and its own
        training ``trained_on`` and ``init`` (a chain of fine-tunings).
    """
    if isinstance(init, SaturatedStarModel):
        model, source = init, 'in-memory model'
        with tempfile.TemporaryDirectory() as tmp:
            model.write(tmp)
            digest = _sha256(Path(tmp) / 'model.safetensors')
    elif isinstance(init, (str, Path)):
        source = str(init)
        if source == 'default':
            root = resources.files('satphotutils.data') / 'default_model'
            with resources.as_file(root) as path:
                model = SaturatedStarModel.read(path)
                digest = _sha256(Path(path) / 'model.safetensors')
        else:
            try:
                model = SaturatedStarModel.read(init)
            except SatphotutilsError as exc:
                msg = (f'cannot fine-tune from {source}: {exc}; give a model '
                       "directory this satphotutils reads, or 'default'")
                raise SatphotutilsError(msg) from None
            digest = _sha256(Path(init) / 'model.safetensors')
    else:
        msg = ("init must be 'default', a model directory or a "
               f'SaturatedStarModel, not {type(init).__name__}')
        raise TypeError(msg)
    training = model.metadata.get('training', {})
    record = {'source': source, 'created': model.metadata.get('created'),
              'sha256': digest,
              'feature_version': model.features.to_dict()['version'],
              'members': len(model.networks),
              'architecture': model.architecture(),
              'trained_on': training.get('source')}
    if 'init' in training:
        record['init'] = training['init']
    return model, record


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(functools.partial(f.read, 1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _split(star_id, usable, config):
    """
    Split rows by star as ``config.fractions`` says, sane for few stars.

    `~satphotutils.network.split_by_star` rounds each share to whole
    stars, so that a handful of stars can leave the validation set
    empty; then one training star moves there. Only stars with usable
    rows are counted.
    """
    star_id = np.asarray(star_id)
    subset = split_by_star(star_id, fractions=config.fractions,
                           seed=config.seed)
    n_valid = np.unique(star_id[usable & (subset == 2)]).size
    train_stars = np.unique(star_id[usable & (subset == 0)])
    if n_valid == 0 and config.fractions[2] > 0 and train_stars.size >= 2:
        moved = np.random.default_rng(config.seed).choice(train_stars)
        subset[star_id == moved] = 2
        n_valid = 1
    if 0 < n_valid < 10:
        log.warning('only %d validation star(s): the early stopping and the '
                    'uncertainty calibration are noisy', n_valid)
    return subset


def _stamp_shape(source):
    """Return the (ny, nx) of a stamp table's stamps, or `None`."""
    from astropy.table import Table

    from satphotutils.stamps.table import iter_stamp_table

    if isinstance(source, Table):
        head = source
    else:
        head = next(iter_stamp_table(source, chunk_size=1,
                                     columns=['stamp']), None)
    if head is None or 'stamp' not in head.colnames:
        return None
    shape = np.shape(head['stamp'])[1:]
    return tuple(int(n) for n in shape) if len(shape) == 2 else None


def _table_shape(stamps):
    """
    Return the one stamp shape of the tables to train on.

    21 x 21 when no table says (an empty one); tables of different
    shapes are refused: one model reads one shape.
    """
    sources = stamps if isinstance(stamps, (list, tuple)) else [stamps]
    shapes = {}
    for src in sources:
        shape = _stamp_shape(src)
        if shape is not None:
            shapes.setdefault(shape, _describe(src))
    if len(shapes) > 1:
        listed = ', '.join(f'{name} ({ny} x {nx})'
                           for (ny, nx), name in shapes.items())
        msg = (f'the stamp tables hold stamps of different shapes: {listed}; '
               'a model reads one shape: train on tables cut alike')
        raise SatphotutilsError(msg)
    if not shapes:
        return 21
    (shape,) = shapes
    try:
        # The default annulus (7-10 px) needs 21 columns.
        return stamp_shape(shape, name='the stamp column', minimum=21)
    except ValueError as exc:
        msg = f'{_describe(sources[0])}: {exc}'
        raise SatphotutilsError(msg) from None


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
    # The learning rate and momenta the scheduler set live in the
    # parameter groups: without them the first step after a resume ran
    # at the schedule's starting rate.
    state['param_groups'] = [
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()
         if k != 'params' and (isinstance(v, (int, float, bool, tuple))
                               or v is None)}
        for g in opt.state_dict()['param_groups']]
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
    for group, values in zip(opt_state['param_groups'],
                             saved.get('param_groups', []), strict=False):
        group.update({k: tuple(v) if isinstance(v, list) else v
                      for k, v in values.items()})
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


def _calibrate(model, data, columns, rows, *, fallback=None):
    """
    Scale the uncertainties so that 68% of |z| < 1 in each group.

    A group with fewer than ``_MIN_CALIBRATION_ROWS`` validation rows
    takes ``fallback``'s scale (the init model's, when fine-tuning), or
    else the scale of both groups together, or else 1; a scale outside
    ``_SCALE_LIMITS`` is clamped.

    Returns
    -------
    scales : dict
        ``uncertainty_scale`` of the model metadata.

    record : dict
        Per mode and group: ``rows`` and ``source`` (``'validation'``,
        ``'init model'``, ``'both groups'`` or ``'none'``), and
        ``clamped_from`` when clamped.
    """
    x = data[rows]
    label = columns['label'][rows]
    scales, record = {}, {}
    for mode in ('single', 'ensemble'):
        delta, sigma = model.predict_features(
            x.features, ensemble=(mode == 'ensemble'))
        pred = x.base + delta
        z = np.abs(label - pred) / sigma
        sat = _groups(model, columns, rows, pred, x)
        scales[mode], record[mode] = {}, {}
        for name, group in (('saturated', sat), ('unsaturated', ~sat)):
            n = int(group.sum())
            entry = {'rows': n}
            old = ((fallback or {}).get(mode) or {}).get(name)
            if n >= _MIN_CALIBRATION_ROWS:
                value, entry['source'] = float(np.percentile(
                    z[group], 68.27)), 'validation'
            elif old is not None:
                value, entry['source'] = float(old), 'init model'
            elif len(z) >= _MIN_CALIBRATION_ROWS:
                value, entry['source'] = float(np.percentile(
                    z, 68.27)), 'both groups'
            else:
                value, entry['source'] = 1.0, 'none'
            clamped = float(np.clip(value, *_SCALE_LIMITS))
            if clamped != value:
                entry['clamped_from'] = value
            scales[mode][name] = clamped
            record[mode][name] = entry
    return scales, record


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


#: Version of ``metadata['trail_validation']`` (see `_trail_validation`).
#: Version 2 adds each method's within-star ``repeat`` and routes by it.
TRAIL_VALIDATION_VERSION = 2
#: The trail sum's largest median offset from the labels (mag) in a bin
#: it is chosen for: what a frame's aperture correction can still take
#: up, not charge the camera lost.
TRAIL_BIAS_TOLERANCE = 0.03
_TRAIL_STEP = 0.25  # dex of the saturation coordinate per bin
_TRAIL_COLUMNS = ('stamp', 'sky', 'saturation', 'fwhm', 'dx', 'dy')


def _read_rows(stamps, rows):
    """Return ``_TRAIL_COLUMNS`` of the rows ``rows`` of the table(s)."""
    from astropy.table import Table

    from satphotutils.stamps.table import iter_stamp_table

    rows = np.sort(np.asarray(rows))
    parts, start = [], 0
    for src in stamps if isinstance(stamps, (list, tuple)) else [stamps]:
        chunks = [src] if isinstance(src, Table) else iter_stamp_table(
            src, chunk_size=50_000, columns=list(_TRAIL_COLUMNS))
        for chunk in chunks:
            mine = rows[(rows >= start) & (rows < start + len(chunk))]
            if mine.size:
                parts.append({name: np.asarray(chunk[name])[mine - start]
                              for name in _TRAIL_COLUMNS})
            start += len(chunk)
    return {name: np.concatenate([p[name] for p in parts])
            for name in _TRAIL_COLUMNS}


def _trail_validation(model, data, columns, rows, stamps, *,
                      step=_TRAIL_STEP, min_rows=_MIN_CALIBRATION_ROWS):
    """
    Compare the network with the trail sum on the validation stamps.

    For a model of uncorrected frames: the validation stamps whose
    target has a saturated pixel in the signal region (the targets
    `~satphotutils.photometry.SaturatedStarPhotometry` may give to
    `~satphotutils.photometry.BleedTrailPhotometry`) are measured by the
    network and by ``BleedTrailPhotometry.measure_stamps`` (its trail
    sum on the stamp), in bins of the network's saturation coordinate.
    Stamps whose trail reaches the stamp's end are left out and
    counted: the network cannot measure them, the photometry always
    gives them to the trail sum on the frame.

    Returns
    -------
    record : dict
        ``metadata['trail_validation']``: ``version``, ``rule``,
        ``step``, ``min_rows``, ``rows`` (stamps compared),
        ``rows_trail_at_end``, ``bias_tolerance`` and ``bins``: ``lo``,
        ``hi``, ``n`` and per method (``network``, ``bleed_trail``) the
        ``bias`` (median of measured minus label, mag), the ``scatter``
        (half the 15-85 per cent range, mag), ``error`` (their
        quadrature sum) and ``repeat`` (the scatter about each star's
        median, over stars with two images or more; `None` without).

    Notes
    -----
    Version 1 chose by ``error``: on stamps the trail sum's level
    carries what only a frame corrects (neighbours on the trail are not
    split off without a catalogue, the wing light past the aperture has
    no aperture correction), 0.04-0.2 mag against the labels, so it was
    never chosen - although it repeated 3-5 times better than the
    network at g 8-9.5 on a raw camera and, on frames of that camera, was
    more accurate as well (single exposures 0.009 mag about each frame's
    median, against 0.021 for the version-1 hybrid and 0.032 for the
    network alone). Version 2 chooses by ``repeat``
    where the trail sum's median offset is within ``bias_tolerance``: a
    camera whose stored trails lose charge (an ADC below the full well)
    keeps the network.
    """
    from satphotutils.stamps._trailsum import (
        FALLBACK_MARGIN,
        TRAIL_DEFAULTS,
        stamp_trail_sums,
        trail_reaches_end,
    )

    record = {'version': TRAIL_VALIDATION_VERSION,
              'rule': ('per bin of the saturation coordinate of the '
                       "network's prediction: the trail sum where it "
                       'repeats better from image to image of a star '
                       "(repeat: the scatter about each star's median) "
                       'and its median offset from the labels is within '
                       f'{TRAIL_BIAS_TOLERANCE} mag; where a bin has no '
                       'star with two images, the method with the smaller '
                       'error = hypot(bias, scatter) against the labels; '
                       f'the network where a bin has fewer than {min_rows} '
                       'stamps'),
              'bias_tolerance': TRAIL_BIAS_TOLERANCE,
              'step': step, 'min_rows': min_rows,
              'rows': 0, 'rows_trail_at_end': 0, 'bins': []}
    if len(rows) == 0:
        return record
    table = _read_rows(stamps, rows)
    # The rows of _read_rows are sorted: so must the rest be.
    rows = np.sort(np.asarray(rows))
    level = np.asarray(table['saturation'], dtype=float)
    stamp = np.asarray(table['stamp'], dtype=float)
    with np.errstate(invalid='ignore'):
        own = ((stamp >= level[:, None, None])
               & model.features.signal_mask).any(axis=(1, 2))
    trail = np.full(len(rows), np.nan)
    flags = np.zeros(len(rows), dtype=np.int64)
    fwhm = np.asarray(table['fwhm'], dtype=float)[own]
    d = TRAIL_DEFAULTS
    # BleedTrailPhotometry().measure_stamps, without importing the
    # photometry (which sits above the network).
    trail[own], flags[own] = stamp_trail_sums(
        stamp[own], sky=np.asarray(table['sky'], float)[own],
        saturation=level[own],
        margin=FALLBACK_MARGIN * d['margin_fwhm'] * fwhm,
        radius=d['radius_fwhm'] * fwhm,
        level_fraction=d['level_fraction'],
        trail_fraction=d['trail_fraction'], gap=d['background_gap'],
        width=d['background_width'], match_radius=d['match_radius'],
        dx=np.asarray(table['dx'], float)[own],
        dy=np.asarray(table['dy'], float)[own])
    at_end = own & (trail_reaches_end(stamp, level,
                                      columns=model.features.radius)
                    | ((flags & SATPHOT_FLAGS.TRAIL_EDGE) != 0))
    use = own & ~at_end
    record['rows_trail_at_end'] = int(at_end.sum())
    record['rows'] = int(use.sum())
    if not use.any():
        return record
    x = data[rows[use]]
    pred = model.predict_prepared(x).log_counts
    trail = trail[use]
    label = columns['label'][rows[use]]
    star = np.asarray(columns['star_id'])[rows[use]] \
        if 'star_id' in columns else np.arange(len(label))
    where = model.saturation_coordinate(x, pred)
    good = np.isfinite(trail) & np.isfinite(pred)
    lo = np.floor(np.min(where) / step) * step
    for start in np.arange(lo, np.max(where) + step, step):
        sel = good & (where >= start) & (where < start + step)
        if sel.sum() < min_rows:
            continue
        entry = {'lo': float(start), 'hi': float(start + step),
                 'n': int(sel.sum())}
        for name, est in (('network', pred), ('bleed_trail', trail)):
            diff = -2.5 * (est[sel] - label[sel])
            bias, scatter = float(np.median(diff)), float(dispersion(diff))
            entry[name] = {'bias': bias, 'scatter': scatter,
                           'error': float(np.hypot(bias, scatter)),
                           'repeat': _repeat(diff, star[sel],
                                             min_rows=min_rows)}
        record['bins'].append(entry)
    return record


def _repeat(diff, star, *, min_rows):
    """
    Scatter (mag) of ``diff`` about each star's median, or `None`.

    A light curve's scatter: what a per-star constant (a neighbour on
    the trail, the wing light past the aperture, both of which a frame's
    catalogue and aperture correction take up and a stamp cannot) leaves
    alone. Stars with one image in the bin do not count; `None` when
    fewer than ``min_rows`` images remain.
    """
    from scipy import ndimage

    ids, inverse, counts = np.unique(star, return_inverse=True,
                                     return_counts=True)
    keep = counts[inverse] >= 2
    if keep.sum() < min_rows:
        return None
    medians = np.asarray(ndimage.median(diff, labels=inverse,
                                        index=np.arange(len(ids))))
    return float(dispersion((diff - medians[inverse])[keep]))


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
