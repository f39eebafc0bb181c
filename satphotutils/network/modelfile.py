# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Trained models: prediction, and the model directory format.

A model directory holds ``model.safetensors`` (the weights of each
ensemble member and the input standardisation; safetensors files hold
only arrays, so a model received from someone else cannot run code) and
``model.json`` (format version, preprocessing, feature names,
architecture, uncertainty calibration, training provenance, validation
metrics and the package version).

A model may carry an out-of-distribution guard
(``satphotutils.network.guard.Guard``): its tensors ``guard.mean`` (M, D)
and ``guard.whiten`` (M, D, D) in ``model.safetensors`` and its
calibration in ``model.json``'s ``guard``; both are checked on reading.
A model without one predicts ``ood_score`` NaN and never sets
``out_of_distribution``.

The architecture is ``model.json``'s ``architecture``: its ``type`` (a
key of ``satphotutils.network.registry``; ``'mlp'`` when absent, as in
files written before the registry), the options of the network's
``to_config``, ``n_features`` and ``members``. Every field is checked
on reading, and the weights' shapes are checked against the
architecture before any network is built.
"""

import concurrent.futures
import copy
import dataclasses
import datetime
import json
import logging
import math
import numbers
from importlib import resources
from pathlib import Path

import numpy as np

from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.flags import SATPHOT_FLAGS
from satphotutils.utils.io import atomic_output

from . import registry
from .features import StampFeatures, _RowsMixin

__all__ = ['MODEL_FORMAT', 'MODEL_FORMAT_VERSION', 'Prediction',
           'SaturatedStarModel', 'convert_v1_model']

log = logging.getLogger(__name__)

MODEL_FORMAT = 'satphotutils-model'
MODEL_FORMAT_VERSION = 1
_WEIGHTS = 'model.safetensors'
_META = 'model.json'
_MAX_MEMBERS = 64
_TRAINING_FRAMES = ('corrected', 'uncorrected', 'mixed')
# Feature version 1 had two more scalar inputs, both constant in the
# training of every model made with it.
# Version 1 converts to version 2: the same inputs less the constant two.
_V1_TARGET = 2
_V1_SCALARS = ('log_flux', 'log_peak', 'psf_ratio', 'ap2_ratio',
               'ap3_ratio', 'core_ratio', 'local_bkg', 'sky', 'zeropoint',
               'n_unity', 'dx', 'dy', 'has_position')
_V1_DROPPED = ('zeropoint', 'has_position')


def _torch():
    import torch

    return torch


def _torch_device(device):
    """
    Return a `torch.device` for a device name, checked.

    Parameters
    ----------
    device : str or `torch.device`
        ``'cpu'``, ``'cuda'`` (or ``'cuda:N'``) or ``'mps'``.

    Raises
    ------
    SatphotutilsError
        For an unknown name, or a device this machine does not have.

    Examples
    --------
    >>> from satphotutils.network.modelfile import _torch_device
    >>> _torch_device('cpu')
    device(type='cpu')
    >>> _torch_device('tpu')
    Traceback (most recent call last):
    ...
    satphotutils.utils.exceptions.SatphotutilsError: unknown device 'tpu'; ...
    """
    torch = _torch()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        msg = f"unknown device {device!r}; use 'cpu', 'cuda' or 'mps'"
        raise SatphotutilsError(msg) from None
    if dev.type == 'cuda':
        if not torch.cuda.is_available():
            msg = (f'device {str(device)!r} was asked for but no CUDA device '
                   "is available; use device 'cpu'")
            raise SatphotutilsError(msg)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            msg = (f'device {str(device)!r} was asked for but there are '
                   f'only {torch.cuda.device_count()} CUDA device(s)')
            raise SatphotutilsError(msg)
    elif dev.type == 'mps':
        if not torch.backends.mps.is_available():
            msg = (f'device {str(device)!r} was asked for but no MPS (Apple '
                   "GPU) device is available; use device 'cpu'")
            raise SatphotutilsError(msg)
    elif dev.type != 'cpu':
        msg = f"unsupported device {str(device)!r}; use 'cpu', 'cuda' or 'mps'"
        raise SatphotutilsError(msg)
    return dev


@dataclasses.dataclass(frozen=True)
class Prediction(_RowsMixin):
    """
    The model's result for a batch of stamps; all fields of length N.

    Attributes
    ----------
    log_counts : `~numpy.ndarray`
        Predicted log10 counts of each target.

    log_counts_err : `~numpy.ndarray`
        Its calibrated 1-sigma uncertainty (dex).

    flags : `~numpy.ndarray` of int64
        Bits of `~satphotutils.utils.flags.SATPHOT_FLAGS`.

    aperture_log_counts : `~numpy.ndarray`
        ``log10 A``, the 5-px aperture sum the network corrects.

    local_bkg : `~numpy.ndarray`
        The annulus background (counts per pixel).

    n_unity : `~numpy.ndarray` of int
        Pixels within the radius exactly equal to 1.

    saturated : `~numpy.ndarray` of bool
        Above the model's saturation boundary.

    method : `~numpy.ndarray` of str
        ``'network'``, or ``'lookup_<estimate>'`` for a star given a
        classical estimate by the model-level lookup (``hybrid=True`` of
        `~satphotutils.network.SaturatedStarModel.predict_prepared`).

    ood_score : `~numpy.ndarray`
        The out-of-distribution score (``satphotutils.network.guard``):
        above 1 the stamp is unlike the training stamps and flagged
        ``out_of_distribution``; NaN for a model without a guard.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.network import SaturatedStarModel
    >>> from satphotutils.simulation import StampSimulator
    >>> stamps = StampSimulator(images_per_star=1)(4, seed=5)
    >>> pred = SaturatedStarModel.default()(
    ...     np.asarray(stamps['stamp']), sky=stamps['sky'], dx=stamps['dx'],
    ...     dy=stamps['dy'], saturation=stamps['saturation'],
    ...     fwhm=stamps['fwhm'])
    >>> len(pred), pred[:2].log_counts.shape, pred.method[0]
    (4, (2,), np.str_('network'))
    """

    log_counts: np.ndarray
    log_counts_err: np.ndarray
    flags: np.ndarray
    aperture_log_counts: np.ndarray
    local_bkg: np.ndarray
    n_unity: np.ndarray
    saturated: np.ndarray
    method: np.ndarray
    ood_score: np.ndarray


class SaturatedStarModel:
    """
    A trained network (or ensemble) that predicts log counts of stars.

    Build one with `~satphotutils.network.Trainer`, or read one with
    `read` or `default`.

    Parameters
    ----------
    features : `~satphotutils.network.StampFeatures`
        The preprocessing the networks were trained with.

    networks : list of `torch.nn.Module`
        Ensemble members, best first: registered architectures (see
        ``satphotutils.network.registry``), all with the same
        configuration.

    input_mean, input_std : array-like
        Standardisation of the features.

    metadata : dict
        Calibration and provenance; see the module docstring. The keys
        used for prediction are ``uncertainty_scale`` (``{'single':
        {'saturated': s, 'unsaturated': s}, 'ensemble': {...}}``),
        ``saturation_log_counts``, ``label_range`` and ``classical``.

    guard : ``satphotutils.network.guard.Guard``, optional
        The out-of-distribution guard (``fit_guard`` makes one); without
        it ``ood_score`` is NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.network import SaturatedStarModel
    >>> from satphotutils.simulation import StampSimulator
    >>> model = SaturatedStarModel.default()
    >>> stamps = StampSimulator(images_per_star=1)(5, seed=3)
    >>> pred = model(np.asarray(stamps['stamp']), sky=stamps['sky'],
    ...              dx=stamps['dx'], dy=stamps['dy'],
    ...              saturation=stamps['saturation'], fwhm=stamps['fwhm'])
    >>> err = pred.log_counts - np.asarray(stamps['log_counts'])
    >>> bool(np.median(np.abs(err)) < 0.05)
    True
    """

    def __init__(self, features, networks, *, input_mean, input_std,
                 metadata, guard=None):
        self.features = features
        self.networks = list(networks)
        for net in self.networks:
            net.eval()
        self.input_mean = np.asarray(input_mean, dtype=np.float32)
        self.input_std = np.asarray(input_std, dtype=np.float32)
        self.metadata = dict(metadata)
        self.guard = guard
        self._device = 'cpu'
        self._said_unguarded = False

    def __repr__(self):
        config = self.networks[0].to_config()
        kind = config.pop('type')
        options = ', '.join(f'{k}={v}' for k, v in config.items())
        ny, nx = self.features.stamp_shape
        return (f'<SaturatedStarModel: {len(self.networks)} member(s) of '
                f'{kind}({options}), {ny} x {nx} stamps, '
                f'{self.features.n_features} features, cameras '
                f'{list(self.features.cameras) or "any"}>')

    @property
    def training_frames(self):
        """
        The frames the model was trained on, for photometry's routing.

        ``'corrected'`` (their pipeline replaced the bleed trails, as
        ASAS-SN's does), ``'uncorrected'`` (the trails stayed) or
        ``'mixed'``: ``metadata['training_frames']``, which training
        writes when its stamp table says (a ``corrected`` or
        ``family_correction`` column). A model without it (every model
        before tall stamps, the bundled one) is taken as trained on
        corrected frames if its stamps are square and on uncorrected
        ones if they are tall, which only such frames need.
        """
        said = self.metadata.get('training_frames')
        if said is not None:
            return said
        ny, nx = self.features.stamp_shape
        return 'uncorrected' if ny > nx else 'corrected'

    @property
    def saturation_log_counts(self):
        """
        Where the model treats a star as saturated.

        For feature version 2, log10 counts; for version 3, log10 of the
        counts over the frame's headroom (``Prepared.log_headroom``), so
        that the boundary follows each frame's saturation level.
        """
        return float(self.metadata.get('saturation_log_counts', 5.6))

    def is_saturated(self, x, log_counts, *, margin=0.0):
        """
        Return which predictions lie above the saturation boundary.

        Parameters
        ----------
        x : `~satphotutils.network.Prepared`
            The features the predictions came from.

        log_counts : array-like
            Predicted (or true) log10 counts.

        margin : float, optional
            Dex by which the boundary is lowered.

        Returns
        -------
        saturated : `~numpy.ndarray` of bool
        """
        return self.saturation_coordinate(x, log_counts) \
            > self.saturation_log_counts - margin

    def saturation_coordinate(self, x, log_counts):
        """
        Return log counts on the scale of `saturation_log_counts`.

        The log counts themselves for feature version 2; for version 3
        relative to each frame's headroom, so that the saturation
        boundary and the classical-lookup bins are the same on every
        camera.
        """
        log_counts = np.asarray(log_counts, dtype=float)
        if self.features.version >= 3:
            return log_counts - x.log_headroom
        return log_counts

    @property
    def device(self):
        """The torch device the networks run on (a `torch.device`)."""
        return _torch().device(self._device)

    def to(self, device):
        """
        Move the networks to a torch device, in place.

        Parameters
        ----------
        device : str or `torch.device`
            ``'cpu'``, ``'cuda'`` (``'cuda:N'``) or ``'mps'``.

        Returns
        -------
        model : `SaturatedStarModel`
            This model.

        Raises
        ------
        SatphotutilsError
            For an unknown device or one this machine does not have.

        Examples
        --------
        >>> from satphotutils.network import SaturatedStarModel
        >>> SaturatedStarModel.default().to('cpu').device
        device(type='cpu')
        """
        dev = _torch_device(device)
        for net in self.networks:
            net.to(dev)
        self._device = str(dev)
        return self

    # -- prediction -------------------------------------------------------

    def predict_features(self, x, *, ensemble=False, reflections=False,
                         batch_size=65536):
        """
        Run the networks on feature arrays (not yet standardised).

        Parameters
        ----------
        x : `~numpy.ndarray`, shape (N, n_features)
            Features from ``self.features`` (``Prepared.features``).

        ensemble : bool, optional
            Average all members (their spread adds to the uncertainty);
            otherwise the best member only.

        reflections : bool, optional
            Average the predictions for the four reflections of each
            stamp.

        batch_size : int, optional
            Rows per forward pass; bounds the memory.

        Returns
        -------
        delta, sigma : `~numpy.ndarray`
            The predicted correction to ``log10 A`` and its uncalibrated
            uncertainty (dex).
        """
        delta, sigma, _ = self._run(x, ensemble=ensemble,
                                    reflections=reflections,
                                    batch_size=batch_size, guard=False)
        return delta, sigma

    def embed_features(self, x, *, batch_size=65536):
        """
        Return each member's embedding of feature arrays.

        Parameters
        ----------
        x : `~numpy.ndarray`, shape (N, n_features)
            Features from ``self.features``, not yet standardised.

        batch_size : int, optional
            Rows per forward pass.

        Returns
        -------
        embeddings : list of `~numpy.ndarray`, each shape (N, D)
            The last hidden activations (``embed``) of every member.
        """
        torch = _torch()
        mean = torch.from_numpy(self.input_mean).to(self.device)
        std = torch.from_numpy(self.input_std).to(self.device)
        out = [[] for _ in self.networks]
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(
                    x[start:start + batch_size], dtype=np.float32)).to(
                        self.device)
                xb = (xb - mean) / std
                for k, net in enumerate(self.networks):
                    out[k].append(net.embed(xb).cpu().numpy())
        return [np.concatenate(parts) for parts in out]

    def _run(self, x, *, ensemble, reflections, batch_size, guard):
        """Run the networks and, with ``guard``, the guard's distance."""
        torch = _torch()
        device = self.device
        members = self.networks if ensemble else self.networks[:1]
        views = [(None, None)]
        if reflections:
            perms = torch.from_numpy(self.features.reflections()).to(device)
            signs = torch.from_numpy(
                self.features.reflection_signs()).to(device)
            views = list(zip(perms, signs, strict=True))
        mean = torch.from_numpy(self.input_mean).to(device)
        std = torch.from_numpy(self.input_std).to(device)
        guarded = (guard and self.guard is not None
                   and len(members) <= self.guard.members)
        out_mu, out_var, out_d = [], [], []
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(
                    x[start:start + batch_size], dtype=np.float32)).to(
                        device)
                mus, variances, dists = [], [], []
                for perm, sign in views:
                    xv = xb if perm is None else xb[:, perm] * sign
                    xv = (xv - mean) / std
                    embeddings = []
                    for net in members:
                        if guarded:
                            h = net.embed(xv)
                            embeddings.append(h)
                            mu, log_sigma = net.heads(h)
                        else:
                            mu, log_sigma = net(xv)
                        mus.append(mu)
                        variances.append(torch.exp(2 * log_sigma))
                    if guarded:
                        dists.append(self.guard.distance(embeddings))
                mus = torch.stack(mus)
                var = torch.stack(variances).mean(0)
                if len(members) > 1:
                    var = var + mus.var(0, unbiased=False)
                out_mu.append(mus.mean(0).cpu().numpy())
                out_var.append(var.cpu().numpy())
                if guarded:
                    out_d.append(torch.stack(dists).mean(0).cpu().numpy())
        if not out_mu:
            return np.zeros(0), np.zeros(0), np.zeros(0)
        distance = np.concatenate(out_d).astype(float) if guarded else \
            np.full(len(x), np.nan)
        return (np.concatenate(out_mu).astype(float),
                np.sqrt(np.concatenate(out_var)).astype(float), distance)

    def __call__(self, stamps, *, sky, dx, dy, camera=None, mask=None,
                 saturation=None, fwhm=None, ensemble=False,
                 reflections=False, batch_size=16384):
        """
        Predict the log10 counts of the targets of a batch of stamps.

        Parameters
        ----------
        stamps : array-like, shape (N, ny, nx)
            Stamps in counts, the target at the central pixel, of the
            model's shape (``features.stamp_shape``: 21 x 21 for the
            bundled model, tall for a model of uncorrected frames).

        sky : array-like, shape (N,)
            The frames' sky level.

        dx, dy : array-like, shape (N,)
            Offsets of the targets from the central pixel's centre.

        camera : array-like of str, optional
            ``'camera/filter'`` codes; unknown codes use the
            camera-agnostic encoding and are flagged.

        mask : array-like of bool, shape of ``stamps``, optional
            Pixels that are not data; see
            `~satphotutils.network.StampFeatures`.

        saturation, fwhm : array-like, shape (N,), optional
            The frames' saturation level (counts, sky included) and PSF
            FWHM (pixels); required by models of feature version 3 (see
            `~satphotutils.network.StampFeatures`).

        ensemble, reflections : bool, optional
            See `predict_features`.

        batch_size : int, optional
            Rows per forward pass.

        Returns
        -------
        prediction : `Prediction`
            Log counts, calibrated uncertainties, flags and the aperture
            estimate.

        Notes
        -----
        The zero point is not an input: the predicted counts are the same
        whatever the frame's calibration.
        """
        n = len(stamps)
        columns = {'sky': sky, 'dx': dx, 'dy': dy, 'camera': camera,
                   'mask': mask, 'saturation': saturation, 'fwhm': fwhm}
        columns = {k: None if v is None else np.broadcast_to(
            np.asarray(v), (n, *np.shape(v)[1:]) if k == 'mask' else (n,))
            for k, v in columns.items()}

        def prepare(start):
            sl = slice(start, start + batch_size)
            return self.features(
                stamps[sl], **{k: None if v is None else v[sl]
                               for k, v in columns.items()})

        # Preprocessing (NumPy, one thread) of the next batch overlaps the
        # network (torch, all threads) on the current one.
        starts = list(range(0, n, batch_size)) or [0]
        parts = []
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            future = pool.submit(prepare, starts[0])
            for i, _ in enumerate(starts):
                x = future.result()
                if i + 1 < len(starts):
                    future = pool.submit(prepare, starts[i + 1])
                parts.append(self.predict_prepared(
                    x, ensemble=ensemble, reflections=reflections,
                    batch_size=batch_size))
        if len(parts) == 1:
            return parts[0]
        return Prediction.concatenate(parts)

    def predict_prepared(self, x, *, ensemble=False, reflections=False,
                         hybrid=False, batch_size=65536):
        """
        Predict from the output of ``self.features``; see `__call__`.

        Parameters
        ----------
        x : `~satphotutils.network.Prepared`
            Features of a batch of stamps.

        ensemble, reflections : bool, optional
            See `predict_features`.

        hybrid : bool, optional
            The model-level classical lookup (``satphot predict`` and
            ``evaluate --hybrid``): an unsaturated star gets the
            classical estimate (pixel-centre aperture or PSF-weighted
            sum plus its median offset) that had a smaller dispersion
            than the network on the model's validation stars of its
            brightness, flagged ``classical_lookup``, with ``method``
            ``'lookup_<estimate>'``. It is not the frame-level hybrid of
            `~satphotutils.photometry.SaturatedStarPhotometry`, which
            calibrates an exact aperture against the network on each
            frame (flag ``hybrid_classical``).

        batch_size : int, optional
            Rows per forward pass.

        Returns
        -------
        prediction : `Prediction`
        """
        delta, sigma, distance = self._run(
            x.features, ensemble=ensemble, reflections=reflections,
            batch_size=batch_size, guard=True)
        log_counts = x.base + delta
        saturated = self.is_saturated(x, log_counts)
        scales = self.metadata.get('uncertainty_scale', {}).get(
            'ensemble' if ensemble and len(self.networks) > 1 else 'single',
            {})
        scale = np.where(saturated, scales.get('saturated', 1.0),
                         scales.get('unsaturated', 1.0))
        flags = np.zeros(len(log_counts), dtype=np.int64)
        flags[x.n_unity > 4] |= SATPHOT_FLAGS.DAMAGED_CORE
        flags[~x.finite] |= SATPHOT_FLAGS.NON_FINITE_DATA
        if self.features.cameras:
            flags[~x.known_camera] |= SATPHOT_FLAGS.UNKNOWN_CAMERA
        lo, hi = self.metadata.get('label_range', (-np.inf, np.inf))
        flags[(log_counts < lo) | (log_counts > hi)] |= \
            SATPHOT_FLAGS.OUTSIDE_TRAINING_RANGE
        err = sigma * scale
        ood_score = self._ood_score(distance, 2.5 * err, ensemble)
        # NaN > 1 is False: an unguarded model never sets the flag.
        flags[ood_score > 1] |= SATPHOT_FLAGS.OUT_OF_DISTRIBUTION
        method = np.full(len(log_counts), 'network', dtype='<U10')
        if hybrid:
            self._lookup(x, log_counts, err, saturated, flags, method)
        return Prediction(log_counts=log_counts, log_counts_err=err,
                          flags=flags, aperture_log_counts=x.base,
                          local_bkg=x.local_bkg, n_unity=x.n_unity,
                          saturated=saturated, method=method,
                          ood_score=ood_score)

    def prefers_trail_sum(self, x, log_counts):
        """
        Say where the trail sum beat the network on the validation stamps.

        For a model trained on uncorrected frames, training measured its
        validation stamps with a saturated target by the network and by
        `~satphotutils.photometry.BleedTrailPhotometry`'s trail sum, in
        bins of the saturation coordinate (``metadata['trail_validation']``,
        see `saturation_coordinate`).

        Parameters
        ----------
        x : `~satphotutils.network.Prepared`
            The features the predictions came from.

        log_counts : array-like
            The network's predicted log10 counts.

        Returns
        -------
        prefers : `~numpy.ndarray` of bool
            In the target's bin the trail sum repeated better from image
            to image of a star (``repeat``) with a median offset from the
            labels within the record's ``bias_tolerance``; in a bin
            without ``repeat`` (and in a version-1 record) it had the
            smaller ``error`` (the quadrature sum of bias and scatter
            against the labels). False outside the bins and for a model
            without the record.
        """
        where = self.saturation_coordinate(x, log_counts)
        prefers = np.zeros(where.shape, dtype=bool)
        record = self.metadata.get('trail_validation') or {}
        tolerance = record.get('bias_tolerance')
        for entry in record.get('bins', []):
            trail, net = entry['bleed_trail'], entry['network']
            if trail.get('repeat') is not None and \
                    net.get('repeat') is not None:
                better = trail['repeat'] < net['repeat'] and \
                    abs(trail['bias']) <= tolerance
            else:
                better = trail['error'] < net['error']
            if better:
                prefers |= (where >= entry['lo']) & (where < entry['hi'])
        return prefers

    def _ood_score(self, distance, sigma_mag, ensemble):
        if self.guard is None:
            if not self._said_unguarded:
                log.warning(
                    'the model has no out-of-distribution guard: ood_score '
                    'is NaN and out_of_distribution is never set (fit one '
                    'with satphot guard MODEL_DIR STAMPS or '
                    'satphotutils.network.guard.fit_guard)')
                self._said_unguarded = True
            return distance
        return self.guard.combined_score(
            distance, sigma_mag, ensemble=ensemble and len(self.networks) > 1)

    def _lookup(self, x, log_counts, err, saturated, flags, method):
        table = self.metadata.get('classical', [])
        if not table:
            return
        estimates = self.features.classical_estimates(x)
        where = self.saturation_coordinate(x, log_counts)
        for entry in table:
            scores = {name: value['dispersion']
                      for name, value in entry.items()
                      if isinstance(value, dict)
                      and np.isfinite(value['dispersion'])}
            if not scores:
                continue
            best = min(scores, key=scores.get)
            if not scores[best] < entry['network']:
                continue
            sel = (~saturated & (where >= entry['lo'])
                   & (where < entry['hi'])
                   & np.isfinite(estimates[best]))
            if not sel.any():
                continue
            ratio = scores[best] / entry['network']
            log_counts[sel] = estimates[best][sel] + entry[best]['offset']
            err[sel] *= ratio
            flags[sel] |= SATPHOT_FLAGS.CLASSICAL_LOOKUP
            method[sel] = f'lookup_{best}'

    # -- files --------------------------------------------------------------

    def architecture(self):
        """
        Return the ``architecture`` entry of ``model.json``.

        Raises
        ------
        SatphotutilsError
            If the members differ in architecture or are not of a
            registered one (the file could not be read back).
        """
        return _architecture_config(self.networks, self.features)

    def write(self, directory, *, overwrite=False):
        """
        Write the model to a directory (``model.safetensors``, ``model.json``).

        Parameters
        ----------
        directory : path-like
            Output directory, created if needed.

        overwrite : bool, optional
            Replace existing model files.
        """
        from safetensors.numpy import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {'input_mean': self.input_mean,
                   'input_std': self.input_std}
        for k, net in enumerate(self.networks):
            for name, value in net.state_dict().items():
                tensors[f'member{k}.{name}'] = value.detach().cpu().numpy()
        meta = dict(self.metadata)
        meta.pop('guard', None)
        if self.guard is not None:
            tensors.update(self.guard.to_tensors())
            meta['guard'] = self.guard.to_meta()
        meta.update({
            'format': MODEL_FORMAT, 'format_version': MODEL_FORMAT_VERSION,
            'features': self.features.to_dict(),
            'feature_names': list(self.features.names),
            'architecture': self.architecture()})
        meta.setdefault('created', datetime.datetime.now(
            datetime.UTC).isoformat(timespec='seconds'))
        with atomic_output(directory / _WEIGHTS, overwrite=overwrite) as tmp:
            save_file(tensors, str(tmp))
        with atomic_output(directory / _META, overwrite=overwrite) as tmp:
            Path(tmp).write_text(json.dumps(meta, indent=1, default=float))

    @classmethod
    def read(cls, directory, *, device=None):
        """
        Read a model directory.

        A model of feature version 1 is converted on reading (see
        `convert_v1_model`).

        Parameters
        ----------
        directory : path-like
            Directory with ``model.json`` and ``model.safetensors``.

        device : str, optional
            Torch device to put the networks on (the CPU if `None`).

        Returns
        -------
        model : `SaturatedStarModel`

        Raises
        ------
        SatphotutilsError
            If the files are missing, of another format or version, a
            field of ``model.json`` is invalid (the message names it),
            the architecture type is not registered, the weights do not
            match the architecture, or the features do not match this
            version of satphotutils.
        """
        directory = Path(directory)
        meta_path, weights = directory / _META, directory / _WEIGHTS
        if not meta_path.is_file() or not weights.is_file():
            msg = (f'{directory} is not a satphotutils model directory: it '
                   f'needs {_META} and {_WEIGHTS}')
            raise SatphotutilsError(msg)
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            msg = f'{meta_path} is not valid JSON: {exc}'
            raise SatphotutilsError(msg) from exc
        except RecursionError:
            # Thousands of nested brackets: hostile, never a model file.
            msg = (f'{meta_path} is not a satphotutils model file: its JSON '
                   'is nested too deeply to read')
            raise SatphotutilsError(msg) from None
        if not isinstance(meta, dict):
            msg = (f'{meta_path} must hold a JSON object at the top level, '
                   f'not a {type(meta).__name__}')
            raise SatphotutilsError(msg)
        if meta.get('format') != MODEL_FORMAT:
            msg = f'{meta_path} is not a {MODEL_FORMAT} file'
            raise SatphotutilsError(msg)
        if meta.get('format_version') != MODEL_FORMAT_VERSION:
            msg = (f'{directory} has model format version '
                   f'{meta.get("format_version")}; this satphotutils reads '
                   f'version {MODEL_FORMAT_VERSION}')
            raise SatphotutilsError(msg)
        features_config = meta.get('features')
        v1 = isinstance(features_config, dict) \
            and features_config.get('version') == 1
        try:
            features = StampFeatures.from_dict(
                {**features_config, 'version': _V1_TARGET} if v1
                else features_config)
        except ValueError as exc:
            msg = f'{meta_path}: {exc}'
            raise SatphotutilsError(msg) from None
        names = list(_v1_names(features) if v1 else features.names)
        if meta.get('feature_names') != names:
            msg = (f'{directory} was trained on features that differ from '
                   "this satphotutils version's; retrain it")
            raise SatphotutilsError(msg)
        _check_meta(meta, meta_path, features, v1=v1)
        model = cls._from_tensors(features, weights, meta, v1=v1)
        if device is not None:
            model.to(device)
        return model

    @classmethod
    def _from_tensors(cls, features, weights, meta, *, v1=False):
        from safetensors import SafetensorError, safe_open
        from safetensors.numpy import load_file

        torch = _torch()
        arch = dict(meta['architecture'])
        members = arch.pop('members')
        arch.pop('n_features', None)
        meta_path = weights.with_name(_META)
        kind = arch.setdefault('type', 'mlp')
        try:
            # On the meta device nothing is allocated: the shapes come
            # before any memory is spent on what a file claims.
            with torch.device('meta'):
                template = registry.build(arch, features=features)
        except KeyError as exc:
            msg = f'{meta_path}: architecture.type: {exc.args[0]}'
            raise SatphotutilsError(msg) from None
        except ValueError as exc:
            msg = f'{meta_path}: {exc}'
            raise SatphotutilsError(msg) from None
        if v1 and kind != 'mlp':
            msg = (f'{meta_path}: feature version 1 models are all '
                   f"architecture type 'mlp', not {kind!r}")
            raise SatphotutilsError(msg)
        n_in = len(_v1_names(features)) if v1 else features.n_features
        guard_meta = meta.get('guard')
        widths = set()
        if guard_meta is not None and callable(getattr(template, 'embed',
                                                       None)):
            # The embedding width, from a pass on the meta device.
            with torch.device('meta'):
                widths = {int(template.embed(torch.zeros(
                    (1, features.n_features))).shape[1])}
        expected = {'input_mean': (n_in,), 'input_std': (n_in,)}
        for name, value in template.state_dict().items():
            shape = tuple(value.shape)
            if v1 and name == 'body.0.weight':
                shape = (shape[0], n_in)
            for k in range(members):
                expected[f'member{k}.{name}'] = shape
        try:
            with safe_open(str(weights), 'np') as f:
                names = f.keys()
                shapes = {key: tuple(f.get_slice(key).get_shape())
                          for key in names}
        except (SafetensorError, OSError, ValueError) as exc:
            msg = f'{weights} is not a readable safetensors file: {exc}'
            raise SatphotutilsError(msg) from exc
        for key, shape in expected.items():
            if shapes.get(key) != shape:
                got = 'is missing' if key not in shapes else \
                    f'has shape {shapes[key]}'
                msg = (f'{weights} does not match its architecture '
                       f'({meta_path}: {kind}, {members} member(s)): {key} '
                       f'{got}, the architecture needs {shape}')
                raise SatphotutilsError(msg)
        extra = sorted(set(shapes) - set(expected)
                       - (set() if guard_meta is None else
                          {'guard.mean', 'guard.whiten'}))
        if extra:
            msg = (f'{weights} does not match its architecture: unexpected '
                   f'tensors {", ".join(extra[:5])}')
            raise SatphotutilsError(msg)
        try:
            tensors = load_file(str(weights))
        except (SafetensorError, OSError) as exc:
            msg = f'{weights} is not a readable safetensors file: {exc}'
            raise SatphotutilsError(msg) from exc
        mean, std = tensors['input_mean'], tensors['input_std']
        if not (np.isfinite(mean).all() and np.isfinite(std).all()
                and (std > 0).all()):
            msg = (f'{weights}: input_mean and input_std must be finite and '
                   'input_std positive')
            raise SatphotutilsError(msg)
        guard = None
        if guard_meta is not None:
            from .guard import Guard

            guard = Guard.from_file(tensors, guard_meta, members=members,
                                    widths=widths, weights=weights,
                                    meta_path=meta_path)
        if v1:
            tensors, meta = _fold_v1(tensors, meta, features, members,
                                     meta_path)
        networks = []
        for k in range(members):
            net = registry.build(arch, features=features)
            prefix = f'member{k}.'
            state = {name[len(prefix):]: torch.from_numpy(value)
                     for name, value in tensors.items()
                     if name.startswith(prefix)}
            try:
                net.load_state_dict(state)
            except RuntimeError as exc:
                msg = f'{weights} does not match its architecture: {exc}'
                raise SatphotutilsError(msg) from exc
            networks.append(net)
        return cls(features, networks, input_mean=tensors['input_mean'],
                   input_std=tensors['input_std'], metadata=meta,
                   guard=guard)

    @classmethod
    def default(cls, *, device=None):
        """
        Return the bundled default model.

        It was trained on simulated stamps from g = 3 to 15 of cameras
        drawn from `~satphotutils.simulation.CameraFamily` and of the
        simulator's ASAS-SN-like camera; the command that reproduces it
        is in its ``metadata['training']`` and in the documentation.

        Parameters
        ----------
        device : str, optional
            Torch device to put the networks on (the CPU if `None`).
        """
        root = resources.files('satphotutils.data') / 'default_model'
        with resources.as_file(root) as path:
            return cls.read(path, device=device)


def _architecture_config(networks, features):
    """
    Return the ``architecture`` entry of ``model.json`` for networks.

    Parameters
    ----------
    networks : list of `torch.nn.Module`
        The ensemble members.

    features : `~satphotutils.network.StampFeatures`
        The preprocessing they read.

    Returns
    -------
    config : dict
        The members' ``to_config()`` with ``n_features`` and
        ``members``.

    Raises
    ------
    SatphotutilsError
        If the members differ in architecture or are not of a registered
        one, so that the file could not be read back.
    """
    name = type(networks[0]).__name__
    to_config = getattr(networks[0], 'to_config', None)
    if not callable(to_config):
        msg = (f'{name} has no to_config method; a network must be of an '
               'architecture registered with '
               'satphotutils.network.registry.register_architecture')
        raise SatphotutilsError(msg)
    configs = [net.to_config() for net in networks]
    if any(c != configs[0] for c in configs):
        msg = ('the ensemble members have different architectures: '
               f'{configs}; a model file holds one')
        raise SatphotutilsError(msg)
    config = dict(configs[0])
    kind = config.get('type')
    try:
        cls = registry.get_architecture(kind)
    except KeyError as exc:
        msg = (f'{name} is not of a registered architecture ({exc.args[0]}); '
               'register it with '
               'satphotutils.network.registry.register_architecture')
        raise SatphotutilsError(msg) from None
    if type(networks[0]) is not cls:
        msg = (f'{name} says architecture type {kind!r}, which is '
               f'registered for {cls.__name__}')
        raise SatphotutilsError(msg)
    config.update(n_features=features.n_features, members=len(networks))
    return config


# -- model.json checks --------------------------------------------------------

def _is_number(value, *, finite=True):
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and (math.isfinite(value) or not finite))


def _check_meta(meta, path, features, *, v1=False):
    """Check the fields of ``model.json`` used for prediction."""
    def fail(field, what, value):
        msg = f'{path}: {field} must be {what}, got {value!r}'
        raise SatphotutilsError(msg)

    arch = meta.get('architecture')
    if not isinstance(arch, dict):
        fail('architecture', 'a JSON object', arch)
    members = arch.get('members')
    if isinstance(members, bool) or not isinstance(members, int) \
            or not 1 <= members <= _MAX_MEMBERS:
        fail('architecture.members', f'an integer from 1 to {_MAX_MEMBERS}',
             members)
    kind = arch.get('type', 'mlp')
    if not isinstance(kind, str):
        fail('architecture.type', 'a string', kind)
    n_in = len(_v1_names(features)) if v1 else features.n_features
    if 'n_features' in arch and (arch['n_features'] != n_in
                                 or isinstance(arch['n_features'], bool)):
        fail('architecture.n_features', f'the number of features, {n_in}',
             arch['n_features'])
    frames = meta.get('training_frames')
    if frames is not None and frames not in _TRAINING_FRAMES:
        fail('training_frames', f'one of {list(_TRAINING_FRAMES)} or null',
             frames)
    if 'saturation_log_counts' in meta and not _is_number(
            meta['saturation_log_counts']):
        fail('saturation_log_counts', 'a finite number',
             meta['saturation_log_counts'])
    if 'label_range' in meta:
        value = meta['label_range']
        if not (isinstance(value, list) and len(value) == 2
                and all(_is_number(v) for v in value)
                and value[0] <= value[1]):
            fail('label_range', 'two finite numbers, low and high', value)
    scales = meta.get('uncertainty_scale', {})
    if not isinstance(scales, dict):
        fail('uncertainty_scale', 'a JSON object', scales)
    for mode, groups in scales.items():
        if not isinstance(groups, dict):
            fail(f'uncertainty_scale.{mode}', 'a JSON object', groups)
        for group, value in groups.items():
            if not (_is_number(value) and value > 0):
                fail(f'uncertainty_scale.{mode}.{group}',
                     'a positive finite number', value)
    _check_trail_validation(meta, fail)
    table = meta.get('classical', [])
    if not isinstance(table, list):
        fail('classical', 'a list', table)
    for i, entry in enumerate(table):
        if not isinstance(entry, dict):
            fail(f'classical[{i}]', 'a JSON object', entry)
        for key in ('lo', 'hi', 'network'):
            if not _is_number(entry.get(key)):
                fail(f'classical[{i}].{key}', 'a finite number',
                     entry.get(key))
        for name, value in entry.items():
            if isinstance(value, dict):
                if name not in ('ap2', 'ap3', 'ap5', 'psf'):
                    fail(f'classical[{i}]', 'entries ap2, ap3, ap5 or psf',
                         name)
                for part in ('offset', 'dispersion'):
                    if not _is_number(value.get(part), finite=False):
                        fail(f'classical[{i}].{name}.{part}', 'a number',
                             value.get(part))


#: ``metadata['trail_validation']`` versions this satphotutils reads.
_TRAIL_VALIDATION_VERSIONS = (1, 2)
_TRAIL_METHODS = ('network', 'bleed_trail')


def _check_trail_validation(meta, fail):
    """Check ``trail_validation``, which routes uncorrected frames."""
    record = meta.get('trail_validation')
    if record is None:
        return
    if not isinstance(record, dict):
        fail('trail_validation', 'a JSON object or absent', record)
    version = record.get('version')
    if isinstance(version, bool) or version not in \
            _TRAIL_VALIDATION_VERSIONS:
        fail('trail_validation.version',
             f'one of {list(_TRAIL_VALIDATION_VERSIONS)} (retrain the '
             'model or use a matching satphotutils)', version)
    bins = record.get('bins')
    if not isinstance(bins, list):
        fail('trail_validation.bins', 'a list', bins)
    for i, entry in enumerate(bins):
        where = f'trail_validation.bins[{i}]'
        if not isinstance(entry, dict):
            fail(where, 'a JSON object', entry)
        if not (_is_number(entry.get('lo')) and _is_number(entry.get('hi'))
                and entry['lo'] < entry['hi']):
            fail(f'{where}.lo/hi', 'two finite numbers, lo < hi',
                 [entry.get('lo'), entry.get('hi')])
        for name in _TRAIL_METHODS:
            figures = entry.get(name)
            if not isinstance(figures, dict):
                fail(f'{where}.{name}', 'a JSON object', figures)
            for part in ('bias', 'scatter', 'error'):
                value = figures.get(part)
                if not _is_number(value) or (part != 'bias' and value < 0):
                    fail(f'{where}.{name}.{part}',
                         'a finite number' if part == 'bias'
                         else 'a finite number >= 0', value)
            if version >= 2:
                value = figures.get('repeat')
                if value is not None and not (_is_number(value)
                                              and value >= 0):
                    fail(f'{where}.{name}.repeat',
                         'a finite number >= 0 or null', value)
    if version >= 2 and not (_is_number(record.get('bias_tolerance'))
                             and record['bias_tolerance'] >= 0):
        fail('trail_validation.bias_tolerance', 'a finite number >= 0',
             record.get('bias_tolerance'))


# -- feature version 1 --------------------------------------------------------

def _v1_names(features):
    """Feature names of version 1 for the same preprocessing."""
    n = features.n_pixels
    names = list(features.names)
    scalars = len(features.scalar_names)
    return (*names[:2 * n], *_V1_SCALARS, *names[2 * n + scalars:])


def _fold_v1(tensors, meta, features, members, path):
    """
    Drop version 1's constant inputs, folding them into the first layer.

    A version-1 input that was constant in training has the placeholder
    standard deviation 1 (``satphotutils.network.training`` sets it where
    the spread is below 1e-6) and its mean is the constant. Its
    standardised value at the constant, ``(value - mean) / std``, times
    its column of the first layer's weights is added to that layer's
    bias and the column is removed: for the training value the network
    computes exactly what it did.
    """
    names = _v1_names(features)
    drop = [names.index(name) for name in _V1_DROPPED]
    mean, std = tensors['input_mean'], tensors['input_std']
    for name, j in zip(_V1_DROPPED, drop, strict=True):
        if std[j] != 1.0:
            value = ('zero points' if name == 'zeropoint'
                     else 'stamps with and without dx/dy')
            msg = (f'{path} is a feature-version-1 model trained on '
                   f'varying {value} (input {name!r} has a spread of '
                   f'{std[j]:.3g}); its predictions depend on an input '
                   'this satphotutils no longer provides: retrain it')
            raise SatphotutilsError(msg)
    keep = np.setdiff1d(np.arange(len(names)), drop)
    value = mean[drop]  # the constant each dropped input had in training
    standardised = (value - mean[drop]) / std[drop]
    out = {key: v for key, v in tensors.items()}
    out['input_mean'] = np.ascontiguousarray(mean[keep])
    out['input_std'] = np.ascontiguousarray(std[keep])
    for k in range(members):
        weight = tensors[f'member{k}.body.0.weight']
        bias = tensors[f'member{k}.body.0.bias']
        out[f'member{k}.body.0.bias'] = (
            bias + weight[:, drop] @ standardised).astype(bias.dtype)
        out[f'member{k}.body.0.weight'] = np.ascontiguousarray(
            weight[:, keep])
    meta = copy.deepcopy(meta)
    meta['features'] = features.to_dict()
    meta['feature_names'] = list(features.names)
    meta['architecture']['n_features'] = features.n_features
    meta.setdefault('training', {})['conversion'] = {
        'from_feature_version': 1, 'to_feature_version': _V1_TARGET,
        # The constant feature values: zeropoint was Z - 25.
        'dropped_inputs': {
            name: float(v) for name, v in zip(_V1_DROPPED, value,
                                              strict=True)},
        'training_zeropoint': float(value[0]) + 25.0,
        'converter': 'satphotutils.network.convert_v1_model',
        'method': ("the constant inputs' standardised values times their "
                   "weight columns added to the first layer's bias, the "
                   'columns removed; predictions equal version 1 at the '
                   'training values'),
        'satphotutils': _version()}
    return out, meta


def _version():
    from satphotutils.utils._misc import get_versions

    return get_versions().get('satphotutils')


def convert_v1_model(source, output_dir, *, overwrite=False):
    """
    Convert a feature-version-1 model directory to the current version.

    Version 1 fed the network ``zeropoint - 25`` and a ``has_position``
    indicator. Where both were constant in training (the bundled model's
    stamps all had Z = 25.5 and offsets) they carried no information,
    while any other zero point shifted the predicted counts. The
    conversion folds them into the first layer's bias
    (`~satphotutils.network.SaturatedStarModel.read` applies it on
    reading): the converted model predicts what the original did at the
    training values, now whatever the zero point. The conversion is
    recorded in ``metadata['training']['conversion']``.

    Parameters
    ----------
    source : path-like
        A model directory with feature version 1.

    output_dir : path-like
        Directory for the converted model.

    overwrite : bool, optional
        Replace model files in ``output_dir``.

    Returns
    -------
    model : `SaturatedStarModel`
        The converted model.

    Raises
    ------
    SatphotutilsError
        If ``source`` is not a version-1 model, or one trained on varying
        zero points (retrain it).

    Examples
    --------
    The bundled model is of feature version 3, not a version-1 model:

    >>> from importlib import resources
    >>> from satphotutils.network import convert_v1_model
    >>> from satphotutils.utils.exceptions import SatphotutilsError
    >>> source = resources.files('satphotutils.data') / 'default_model'
    >>> try:
    ...     convert_v1_model(source, 'out')
    ... except SatphotutilsError as exc:
    ...     print(str(exc).split('(')[1])
    features.version is 3)
    """
    source = Path(source)
    try:
        version = json.loads((source / _META).read_text())['features'][
            'version']
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        version = None
    if version != 1:
        msg = (f'{source} is not a feature-version-1 model directory '
               f'(features.version is {version!r})')
        raise SatphotutilsError(msg)
    model = SaturatedStarModel.read(source)
    model.write(output_dir, overwrite=overwrite)
    return model
