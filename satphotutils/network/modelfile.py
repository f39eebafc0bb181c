# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Trained models: prediction, and the model directory format.

A model directory holds ``model.safetensors`` (the weights of each
ensemble member and the input standardisation; safetensors files hold
only arrays, so a model received from someone else cannot run code) and
``model.json`` (format version, preprocessing, feature names,
architecture, uncertainty calibration, training provenance, validation
metrics and the package version).
"""

import concurrent.futures
import datetime
import json
from importlib import resources
from pathlib import Path

import numpy as np

from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.flags import SATPHOT_FLAGS
from satphotutils.utils.io import atomic_output

from .features import StampFeatures

__all__ = ['MODEL_FORMAT', 'MODEL_FORMAT_VERSION', 'SaturatedStarModel']

MODEL_FORMAT = 'satphotutils-model'
MODEL_FORMAT_VERSION = 1
_WEIGHTS = 'model.safetensors'
_META = 'model.json'


def _torch():
    import torch

    return torch


class SaturatedStarModel:
    """
    A trained network (or ensemble) that predicts log counts of stars.

    Build one with `~satphotutils.network.Trainer`, or read one with
    `read` or `default`.

    Parameters
    ----------
    features : `~satphotutils.network.StampFeatures`
        The preprocessing the networks were trained with.

    networks : list of `~satphotutils.network.StampMLP`
        Ensemble members, best first.

    input_mean, input_std : array-like
        Standardisation of the features.

    metadata : dict
        Calibration and provenance; see the module docstring. The keys
        used for prediction are ``uncertainty_scale`` (``{'single':
        {'saturated': s, 'unsaturated': s}, 'ensemble': {...}}``),
        ``saturation_log_counts`` and ``label_range``.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.network import SaturatedStarModel
    >>> from satphotutils.simulation import StampSimulator
    >>> model = SaturatedStarModel.default()
    >>> stamps = StampSimulator(images_per_star=1)(5, seed=3)
    >>> pred = model(np.asarray(stamps['stamp']),
    ...              zeropoint=stamps['zeropoint'], sky=stamps['sky'],
    ...              dx=stamps['dx'], dy=stamps['dy'])
    >>> err = pred['log_counts'] - np.asarray(stamps['log_counts'])
    >>> bool(np.median(np.abs(err)) < 0.05)
    True
    """

    def __init__(self, features, networks, *, input_mean, input_std,
                 metadata):
        self.features = features
        self.networks = list(networks)
        for net in self.networks:
            net.eval()
        self.input_mean = np.asarray(input_mean, dtype=np.float32)
        self.input_std = np.asarray(input_std, dtype=np.float32)
        self.metadata = dict(metadata)

    def __repr__(self):
        net = self.networks[0]
        return (f'<SaturatedStarModel: {len(self.networks)} member(s) of '
                f'{net.depth}x{net.width}, {self.features.n_features} '
                f'features, cameras {list(self.features.cameras) or "any"}>')

    @property
    def saturation_log_counts(self):
        """log10 counts above which a star is treated as saturated."""
        return float(self.metadata.get('saturation_log_counts', 5.6))

    # -- prediction -------------------------------------------------------

    def predict_features(self, x, *, ensemble=False, reflections=False,
                         batch_size=65536):
        """
        Run the networks on standardised-or-not feature arrays.

        Parameters
        ----------
        x : `~numpy.ndarray`, shape (N, n_features)
            Features from ``self.features``.

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
        torch = _torch()
        members = self.networks if ensemble else self.networks[:1]
        views = [(None, None)]
        if reflections:
            perms = self.features.reflections()
            signs = self.features.reflection_signs()
            views = list(zip(perms, signs, strict=True))
        mean = torch.from_numpy(self.input_mean)
        std = torch.from_numpy(self.input_std)
        out_mu, out_var = [], []
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(
                    x[start:start + batch_size], dtype=np.float32))
                mus, variances = [], []
                for perm, sign in views:
                    xv = xb if perm is None else \
                        xb[:, perm] * torch.from_numpy(sign)
                    xv = (xv - mean) / std
                    for net in members:
                        mu, log_sigma = net(xv)
                        mus.append(mu)
                        variances.append(torch.exp(2 * log_sigma))
                mus = torch.stack(mus)
                var = torch.stack(variances).mean(0)
                if len(members) > 1:
                    var = var + mus.var(0, unbiased=False)
                out_mu.append(mus.mean(0).numpy())
                out_var.append(var.numpy())
        if not out_mu:
            return np.zeros(0), np.zeros(0)
        return (np.concatenate(out_mu).astype(float),
                np.sqrt(np.concatenate(out_var)).astype(float))

    def __call__(self, stamps, *, zeropoint, sky, dx=None, dy=None,
                 camera=None, ensemble=False, reflections=False,
                 batch_size=16384):
        """
        Predict the log10 counts of the targets of a batch of stamps.

        Parameters
        ----------
        stamps : array-like, shape (N, 21, 21)
            Stamps in counts, the target at the central pixel.

        zeropoint, sky : array-like, shape (N,)
            The frames' zero point and sky level.

        dx, dy : array-like, optional
            Offsets of the targets from the central pixel's centre.

        camera : array-like of str, optional
            ``'camera/filter'`` codes; unknown codes use the
            camera-agnostic encoding and are flagged.

        ensemble, reflections : bool, optional
            See `predict_features`.

        batch_size : int, optional
            Rows per forward pass.

        Returns
        -------
        result : dict of `~numpy.ndarray`
            ``log_counts``, ``log_counts_err`` (calibrated 1-sigma),
            ``flags`` (bits of `~satphotutils.utils.flags.SATPHOT_FLAGS`),
            ``aperture_log_counts`` (the 5-px aperture sum the network
            corrects), ``local_bkg`` and ``n_unity``.
        """
        n = len(stamps)
        columns = {'zeropoint': zeropoint, 'sky': sky, 'dx': dx, 'dy': dy,
                   'camera': camera}
        columns = {k: None if v is None else np.broadcast_to(
            np.asarray(v), (n,)) for k, v in columns.items()}

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
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def predict_prepared(self, x, *, ensemble=False, reflections=False,
                         hybrid=False, batch_size=65536):
        """
        Predict from the output of ``self.features``; see `__call__`.

        With ``hybrid``, an unsaturated star gets the classical estimate
        (aperture or PSF-weighted sum, offset-corrected) that had a
        smaller dispersion than the network on the validation stars of
        its brightness, flagged ``hybrid_classical``; ``method`` says
        which estimate each row got.
        """
        delta, sigma = self.predict_features(
            x['features'], ensemble=ensemble, reflections=reflections,
            batch_size=batch_size)
        log_counts = x['base'] + delta
        saturated = log_counts > self.saturation_log_counts
        scales = self.metadata.get('uncertainty_scale', {}).get(
            'ensemble' if ensemble and len(self.networks) > 1 else 'single',
            {})
        scale = np.where(saturated, scales.get('saturated', 1.0),
                         scales.get('unsaturated', 1.0))
        flags = np.zeros(len(log_counts), dtype=np.int64)
        flags[x['n_unity'] > 4] |= SATPHOT_FLAGS.DAMAGED_CORE
        flags[~x['finite']] |= SATPHOT_FLAGS.NON_FINITE_DATA
        if self.features.cameras:
            flags[~x['known_camera']] |= SATPHOT_FLAGS.UNKNOWN_CAMERA
        lo, hi = self.metadata.get('label_range', (-np.inf, np.inf))
        flags[(log_counts < lo) | (log_counts > hi)] |= \
            SATPHOT_FLAGS.OUTSIDE_TRAINING_RANGE
        err = sigma * scale
        method = np.full(len(log_counts), 'network', dtype='<U7')
        if hybrid:
            self._hybrid(x, log_counts, err, saturated, flags, method)
        return {'log_counts': log_counts, 'log_counts_err': err,
                'flags': flags, 'aperture_log_counts': x['base'],
                'local_bkg': x['local_bkg'], 'n_unity': x['n_unity'],
                'saturated': saturated, 'method': method}

    def _hybrid(self, x, log_counts, err, saturated, flags, method):
        table = self.metadata.get('classical', [])
        if not table:
            return
        estimates = self.features.classical_estimates(x)
        for entry in table:
            scores = {name: value['dispersion']
                      for name, value in entry.items()
                      if isinstance(value, dict)}
            best = min(scores, key=scores.get)
            if scores[best] >= entry['network']:
                continue
            sel = (~saturated & (log_counts >= entry['lo'])
                   & (log_counts < entry['hi'])
                   & np.isfinite(estimates[best]))
            if not sel.any():
                continue
            ratio = scores[best] / entry['network']
            log_counts[sel] = estimates[best][sel] + entry[best]['offset']
            err[sel] *= ratio
            flags[sel] |= SATPHOT_FLAGS.HYBRID_CLASSICAL
            method[sel] = best

    # -- files --------------------------------------------------------------

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
        net = self.networks[0]
        meta = dict(self.metadata)
        meta.update({
            'format': MODEL_FORMAT, 'format_version': MODEL_FORMAT_VERSION,
            'features': self.features.to_dict(),
            'feature_names': list(self.features.names),
            'architecture': {'n_features': net.n_features,
                             'width': net.width, 'depth': net.depth,
                             'members': len(self.networks)}})
        meta.setdefault('created', datetime.datetime.now(
            datetime.UTC).isoformat(timespec='seconds'))
        with atomic_output(directory / _WEIGHTS, overwrite=overwrite) as tmp:
            save_file(tensors, str(tmp))
        with atomic_output(directory / _META, overwrite=overwrite) as tmp:
            Path(tmp).write_text(json.dumps(meta, indent=1, default=float))

    @classmethod
    def read(cls, directory):
        """
        Read a model directory.

        Parameters
        ----------
        directory : path-like
            Directory with ``model.json`` and ``model.safetensors``.

        Returns
        -------
        model : `SaturatedStarModel`

        Raises
        ------
        SatphotutilsError
            If the files are missing, of another format or version, or
            their features do not match this version of satphotutils.
        """
        directory = Path(directory)
        meta_path, weights = directory / _META, directory / _WEIGHTS
        if not meta_path.is_file() or not weights.is_file():
            msg = (f'{directory} is not a satphotutils model directory: it '
                   f'needs {_META} and {_WEIGHTS}')
            raise SatphotutilsError(msg)
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            msg = f'{meta_path} is not valid JSON: {exc}'
            raise SatphotutilsError(msg) from exc
        if meta.get('format') != MODEL_FORMAT:
            msg = f'{meta_path} is not a {MODEL_FORMAT} file'
            raise SatphotutilsError(msg)
        if meta.get('format_version') != MODEL_FORMAT_VERSION:
            msg = (f'{directory} has model format version '
                   f'{meta.get("format_version")}; this satphotutils reads '
                   f'version {MODEL_FORMAT_VERSION}')
            raise SatphotutilsError(msg)
        try:
            features = StampFeatures.from_dict(meta['features'])
        except (KeyError, ValueError) as exc:
            msg = f'{directory}: {exc}'
            raise SatphotutilsError(msg) from exc
        if list(features.names) != list(meta.get('feature_names', [])):
            msg = (f'{directory} was trained on features that differ from '
                   "this satphotutils version's; retrain it")
            raise SatphotutilsError(msg)
        return cls._from_tensors(features, weights, meta)

    @classmethod
    def _from_tensors(cls, features, weights, meta):
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        from .model import StampMLP

        torch = _torch()
        try:
            tensors = load_file(str(weights))
        except (SafetensorError, OSError) as exc:
            msg = f'{weights} is not a readable safetensors file: {exc}'
            raise SatphotutilsError(msg) from exc
        arch = meta['architecture']
        networks = []
        for k in range(arch['members']):
            net = StampMLP(arch['n_features'], width=arch['width'],
                           depth=arch['depth'])
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
                   input_std=tensors['input_std'], metadata=meta)

    @classmethod
    def default(cls):
        """
        Return the bundled default model.

        It was trained on simulated ASAS-SN-like data from g = 3 to 15;
        the command that reproduces it is in its ``metadata['training']``
        and in the documentation.
        """
        root = resources.files('satphotutils.data') / 'default_model'
        with resources.as_file(root) as path:
            return cls.read(path)
