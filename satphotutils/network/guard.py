# Licensed under a 3-clause BSD style license - see LICENSE.rst
r"""
The out-of-distribution guard: how unlike the training stamps a stamp is.

A network trained on one camera answers confidently on any stamp; its
stated uncertainty was calibrated on stamps like its training set and
says nothing about a camera it never saw. The guard models where the
training stamps lie in each ensemble member's embedding (the last hidden
activations, which both heads read: ``embed`` in
``satphotutils.network.registry``) with one Gaussian per member, and
scores a new stamp by its Mahalanobis distance from it:

.. math::

    d^2 = \frac{1}{D} \frac{1}{M} \sum_m (h_m - \mu_m)^T
          \Sigma_m^{-1} (h_m - \mu_m)

over the M members that make the prediction (D is the embedding width),
with the covariance shrunk towards its mean variance so that directions
the training set hardly used cannot dominate. The score is ``ood_score
= d / d_threshold``, where ``d_threshold`` is the ``1 -
false_positive_rate`` quantile of ``d`` on validation stamps the
Gaussians were not fitted to: ``ood_score > 1`` is the flag
``out_of_distribution``, set on that fraction of in-distribution stamps
and, ideally, on most stamps of a camera the model does not know.

Numerical core only, no I/O: `Guard` holds the parameters and computes
the score; `fit_guard` fits one to a model; the model file stores it
(``guard.*`` tensors in ``model.safetensors``, ``guard`` in
``model.json``).
"""

import dataclasses
import logging
import math

import numpy as np

from satphotutils.utils.exceptions import SatphotutilsError

__all__ = ['Guard', 'fit_guard']

log = logging.getLogger(__name__)

#: Default fraction of in-distribution stamps flagged.
FALSE_POSITIVE_RATE = 0.05
_QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999)
_MODES = ('single', 'ensemble')


@dataclasses.dataclass
class Guard:
    """
    Gaussians in the embeddings of a model's members and their calibration.

    Made by `fit_guard`; read from a model file with the model
    (``SaturatedStarModel.guard``).

    Parameters
    ----------
    mean : `~numpy.ndarray`, shape (M, D)
        Mean embedding of each member on the fitting stamps.

    whiten : `~numpy.ndarray`, shape (M, D, D)
        ``W`` with ``(h - mean) @ W`` of unit covariance: the inverse
        transposed Cholesky factor of the (shrunk) covariance.

    threshold : dict
        ``{'single': d, 'ensemble': d}``: the distance (`distance`) at
        which ``ood_score`` is 1, for the best member alone and for the
        whole ensemble.

    false_positive_rate : float
        The fraction of validation stamps above the threshold.

    quantiles : dict
        Quantiles of the validation distances per mode, ``{'single':
        {'0.5': d, ...}, ...}`` (for the record).

    n_fit, n_valid : int
        Stamps the Gaussians were fitted to and calibrated on.

    shrinkage : float
        Weight of the mean variance in the shrunk covariance.

    sigma_limit : float or None, optional
        The model's own calibrated uncertainty (mag) at which
        ``ood_score`` reaches 1 as well: the score is the larger of the
        distance over its threshold and the uncertainty over this limit.
        A stamp unlike the training stamps is one kind of measurement
        likely to be badly off; one the model knows it cannot measure
        (noise, damage, a blend) is the other, and on cameras the model
        never saw the two together flag most of the badly-off
        measurements (the ``camera_transfer`` benchmark). `None`: the
        distance alone.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.network.guard import Guard
    >>> guard = Guard(mean=np.zeros((1, 2)), whiten=np.eye(2)[None] / 2,
    ...               threshold={'single': 1.0, 'ensemble': 1.0},
    ...               false_positive_rate=0.05, quantiles={}, n_fit=10,
    ...               n_valid=10, shrinkage=0.0)
    >>> d = guard.distance([np.array([[0.0, 0.0], [2.0, 2.0]])])
    >>> d.round(3).tolist()
    [0.0, 1.0]
    """

    mean: np.ndarray
    whiten: np.ndarray
    threshold: dict
    false_positive_rate: float
    quantiles: dict
    n_fit: int
    n_valid: int
    shrinkage: float
    sigma_limit: float | None = None

    @property
    def members(self):
        """Number of ensemble members the guard covers."""
        return int(self.mean.shape[0])

    @property
    def width(self):
        """Width D of the embeddings."""
        return int(self.mean.shape[1])

    def distance(self, embeddings):
        """
        Return the root mean squared Mahalanobis distance per stamp.

        Parameters
        ----------
        embeddings : list of array-like, each shape (N, D)
            The embeddings of the first ``len(embeddings)`` members
            (NumPy arrays or torch tensors).

        Returns
        -------
        d : `~numpy.ndarray` or `torch.Tensor`, shape (N,)
            ``sqrt(mean over members and dimensions of the squared
            whitened offsets)``: about 1 for a typical fitting stamp.
        """
        total = 0.0
        torch_input = not isinstance(embeddings[0], np.ndarray)
        for m, h in enumerate(embeddings):
            mean, whiten = self.mean[m], self.whiten[m]
            if torch_input:
                import torch

                mean = torch.as_tensor(mean, device=h.device)
                whiten = torch.as_tensor(whiten, device=h.device)
            z = (h - mean) @ whiten
            total = total + (z * z).sum(1)
        total = total / (len(embeddings) * self.width)
        return total.sqrt() if torch_input else np.sqrt(total)

    def score(self, distance, *, ensemble):
        """
        Return ``ood_score``: ``distance`` over the mode's threshold.

        Parameters
        ----------
        distance : array-like
            Output of `distance`.

        ensemble : bool
            Whether ``distance`` combined all members (else the best
            one only).
        """
        mode = 'ensemble' if ensemble and self.members > 1 else 'single'
        return np.asarray(distance, dtype=float) / self.threshold[mode]

    def combined_score(self, distance, sigma_mag, *, ensemble):
        """
        Return ``ood_score``: `score`, or the uncertainty over its limit.

        Parameters
        ----------
        distance : array-like
            Output of `distance`.

        sigma_mag : array-like
            The model's calibrated uncertainty of each measurement (mag).

        ensemble : bool
            As for `score`.
        """
        score = self.score(distance, ensemble=ensemble)
        if self.sigma_limit is None:
            return score
        return np.fmax(score, np.asarray(sigma_mag, dtype=float)
                       / self.sigma_limit)

    # -- model file ---------------------------------------------------------

    def to_tensors(self):
        """Return the arrays for ``model.safetensors`` (``guard.*``)."""
        return {'guard.mean': np.ascontiguousarray(self.mean, np.float32),
                'guard.whiten': np.ascontiguousarray(self.whiten,
                                                     np.float32)}

    def to_meta(self):
        """Return the ``guard`` entry of ``model.json``."""
        return {'method': 'mahalanobis_embedding',
                'members': self.members, 'width': self.width,
                'threshold': dict(self.threshold),
                'false_positive_rate': self.false_positive_rate,
                'quantiles': self.quantiles, 'n_fit': self.n_fit,
                'n_valid': self.n_valid, 'shrinkage': self.shrinkage,
                'sigma_limit': self.sigma_limit}

    @classmethod
    def from_file(cls, tensors, meta, *, members, widths, weights,
                  meta_path):
        """
        Rebuild a guard from a model file's tensors and ``guard`` entry.

        Parameters
        ----------
        tensors : dict of `~numpy.ndarray`
            ``guard.mean`` and ``guard.whiten``.

        meta : dict
            ``model.json``'s ``guard``.

        members : int
            The model's ensemble size.

        widths : set of int
            The members' embedding width (empty if the architecture has
            no ``embed``).

        weights, meta_path : path
            The files, for the messages.

        Raises
        ------
        SatphotutilsError
            For a field that is missing or out of range (the message
            names it and ``model.json``), or tensors of the wrong shape
            or with non-finite values (the message names
            ``model.safetensors``).
        """
        def fail(field, what, value):
            msg = (f'{meta_path}: guard.{field} must be {what}, got '
                   f'{value!r}; refit the guard (satphot guard) or delete '
                   'the guard entry and its tensors')
            raise SatphotutilsError(msg)

        if not isinstance(meta, dict):
            fail('', 'a JSON object', meta)
        if meta.get('method') != 'mahalanobis_embedding':
            fail('method', "'mahalanobis_embedding'", meta.get('method'))
        n = meta.get('members')
        if not _is_int(n) or n != members:
            fail('members', f"the model's number of members, {members}", n)
        width = meta.get('width')
        if not _is_int(width) or width not in widths:
            fail('width', f'the embedding width ({sorted(widths)})', width)
        threshold = meta.get('threshold')
        if not isinstance(threshold, dict) or set(threshold) != set(_MODES):
            fail('threshold', "an object with 'single' and 'ensemble'",
                 threshold)
        for mode in _MODES:
            if not _is_number(threshold[mode]) or threshold[mode] <= 0:
                fail(f'threshold.{mode}', 'a positive finite number',
                     threshold[mode])
        rate = meta.get('false_positive_rate')
        if not _is_number(rate) or not 0 < rate < 1:
            fail('false_positive_rate', 'a number between 0 and 1', rate)
        for name in ('n_fit', 'n_valid'):
            if not _is_int(meta.get(name)) or meta[name] < 1:
                fail(name, 'a positive integer', meta.get(name))
        shrink = meta.get('shrinkage')
        if not _is_number(shrink) or not 0 <= shrink <= 1:
            fail('shrinkage', 'a number from 0 to 1', shrink)
        limit = meta.get('sigma_limit')
        if limit is not None and (not _is_number(limit) or limit <= 0):
            fail('sigma_limit', 'a positive number (mag) or null', limit)
        expected = {'guard.mean': (n, width),
                    'guard.whiten': (n, width, width)}
        for key, shape in expected.items():
            value = tensors.get(key)
            got = 'is missing' if value is None else \
                f'has shape {tuple(value.shape)}'
            if value is None or tuple(value.shape) != shape:
                msg = (f'{weights}: the guard tensor {key} {got}, '
                       f'{meta_path} needs {shape}; refit the guard')
                raise SatphotutilsError(msg)
            if not np.isfinite(value).all():
                msg = (f'{weights}: the guard tensor {key} has non-finite '
                       'values; refit the guard')
                raise SatphotutilsError(msg)
        return cls(mean=tensors['guard.mean'],
                   whiten=tensors['guard.whiten'],
                   threshold={m: float(threshold[m]) for m in _MODES},
                   false_positive_rate=float(rate),
                   quantiles=meta.get('quantiles', {}),
                   n_fit=int(meta['n_fit']), n_valid=int(meta['n_valid']),
                   shrinkage=float(shrink),
                   sigma_limit=None if limit is None else float(limit))


def _is_number(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _whitening(h, shrinkage):
    """Mean and whitening matrix of the shrunk covariance of ``h``."""
    h = np.asarray(h, dtype=np.float64)
    mean = h.mean(0)
    cov = np.cov(h - mean, rowvar=False)
    d = cov.shape[0]
    # Shrinkage towards the mean variance keeps dead or barely used units
    # (zero variance) from making any change there an infinite distance;
    # the floor keeps an all-constant embedding invertible.
    level = max(np.trace(cov) / d, 1e-12)
    cov = (1 - shrinkage) * cov + shrinkage * level * np.eye(d)
    chol = np.linalg.cholesky(cov)
    # d^2 = |L^-1 (h - mean)|^2, as rows: (h - mean) @ L^-T.
    whiten = np.linalg.inv(chol).T
    return mean.astype(np.float32), whiten.astype(np.float32)


def fit_guard(model, stamps, *, valid=None, false_positive_rate=None,
              shrinkage=0.01, max_rows=100_000, max_unity=4, seed=0,
              strict=True, sigma_limit=0.1):
    """
    Fit the out-of-distribution guard of a model, in place.

    Parameters
    ----------
    model : `~satphotutils.network.SaturatedStarModel`
        The model; its members must have ``embed`` (the registered
        ``'mlp'`` and ``'cnn'`` do).

    stamps : `~satphotutils.network.Prepared`, stamp table or path
        Stamps like the model's training stamps (its training set
        itself, ideally): the Gaussians are fitted to them. A table or
        path is read with `~satphotutils.network.load_features`.

    valid : `~satphotutils.network.Prepared`, stamp table or path, optional
        Other stamps from the same distribution to calibrate the
        threshold on. If `None`, ``stamps`` is split in halves (by
        ``star_id`` for a table that has it, so that the exposures of a
        star stay together).

    false_positive_rate : float, optional
        Fraction of in-distribution stamps to flag; 0.05 if `None`.

    shrinkage : float, optional
        Weight (0-1) of the mean variance in the covariance.

    max_rows : int, optional
        At most this many (randomly chosen) stamps of each set are used.

    max_unity : int, optional
        Stamps with more pixels exactly 1 (damaged cores, left out of
        training as well) are left out.

    seed : int, optional
        Random seed of the choice, the split and the reflections.

    strict : bool, optional
        With ``False`` (the trainer's choice), too few stamps or members
        without ``embed`` leave the model without a guard, with a logged
        warning, instead of raising.

    sigma_limit : float or None, optional
        Calibrated uncertainty (mag) above which a measurement is flagged
        as well (see `Guard`); `None` for the distance alone.

    Returns
    -------
    guard : `Guard` or None
        Also set as ``model.guard``; `SaturatedStarModel.write`
        stores it. `None` if ``strict`` is ``False`` and there were too
        few stamps.

    Raises
    ------
    SatphotutilsError
        If a member has no ``embed`` or there are too few stamps (fewer
        than twice the embedding width to fit, or 20 to calibrate).

    Notes
    -----
    Each fitting stamp is seen in one of its four reflections, chosen at
    random, as in training, so that the Gaussians cover what the network
    was trained on. Validation stamps are scored as predictions are, in
    their own orientation.

    Examples
    --------
    >>> from satphotutils.network import SaturatedStarModel
    >>> from satphotutils.network.guard import fit_guard
    >>> from satphotutils.simulation import StampSimulator
    >>> model = SaturatedStarModel.default()
    >>> stamps = StampSimulator(images_per_star=2)(600, seed=4)
    >>> guard = fit_guard(model, stamps)
    >>> guard.members, guard.false_positive_rate
    (2, 0.05)
    """
    from .dataset import load_features, split_by_star
    from .features import Prepared

    if false_positive_rate is None:
        false_positive_rate = FALSE_POSITIVE_RATE
    if not 0 < false_positive_rate < 1:
        msg = ('false_positive_rate must be between 0 and 1, got '
               f'{false_positive_rate!r}')
        raise ValueError(msg)
    if not 0 <= shrinkage <= 1:
        msg = f'shrinkage must be from 0 to 1, got {shrinkage!r}'
        raise ValueError(msg)
    for k, net in enumerate(model.networks):
        if not (callable(getattr(net, 'embed', None))
                and callable(getattr(net, 'heads', None))):
            msg = (f'ensemble member {k} ({type(net).__name__}) has no '
                   'embed/heads methods, so it cannot be guarded; see '
                   'satphotutils.network.registry')
            if strict:
                raise SatphotutilsError(msg)
            log.warning('%s; the model has no out-of-distribution guard',
                        msg)
            return None
    rng = np.random.default_rng(seed)

    def prepared(source):
        if isinstance(source, Prepared):
            return source, None
        data, columns = load_features(source, model.features,
                                      extra_columns=('star_id',))
        return data, columns.get('star_id')

    fit, star_id = prepared(stamps)
    if valid is None:
        key = np.arange(len(fit)) if star_id is None else star_id
        half = split_by_star(key, fractions=(0.5, 0.5, 0.0), seed=seed)
        fit, valid = fit[half == 0], fit[half == 1]
    else:
        valid, _ = prepared(valid)
    # As in training: the damaged cores (flagged damaged_core) are left
    # out, so that the guard describes the stamps the network learnt.
    fit = fit[fit.finite & (fit.n_unity <= max_unity)]
    valid = valid[valid.finite & (valid.n_unity <= max_unity)]

    def subsample(data):
        if len(data) > max_rows:
            data = data[np.sort(rng.choice(len(data), max_rows,
                                           replace=False))]
        return data

    fit, valid = subsample(fit), subsample(valid)
    if len(fit) < 2 or len(valid) < 20:
        return _too_few(len(fit), len(valid), 'the embedding width', strict)
    n_members = len(model.networks)
    views = rng.integers(0, 4, len(fit))
    perms = model.features.reflections()
    signs = model.features.reflection_signs()
    x_fit = np.take_along_axis(fit.features, perms[views], axis=1) \
        * signs[views]
    h_fit = model.embed_features(x_fit)
    width = h_fit[0].shape[1]
    if len(fit) < 2 * width:
        return _too_few(len(fit), len(valid), width, strict)
    means, whitens = zip(*(_whitening(h, shrinkage) for h in h_fit),
                         strict=True)
    guard = Guard(mean=np.stack(means), whiten=np.stack(whitens),
                  threshold={}, false_positive_rate=float(
                      false_positive_rate), quantiles={}, n_fit=len(fit),
                  n_valid=len(valid), shrinkage=float(shrinkage),
                  sigma_limit=None if sigma_limit is None
                  else float(sigma_limit))
    h_valid = model.embed_features(valid.features)
    for mode, n in (('single', 1), ('ensemble', n_members)):
        d = guard.distance(h_valid[:n])
        guard.threshold[mode] = float(np.quantile(
            d, 1 - false_positive_rate))
        guard.quantiles[mode] = {str(q): float(np.quantile(d, q))
                                 for q in _QUANTILES}
    model.guard = guard
    return guard


def _too_few(n_fit, n_valid, need, strict):
    msg = (f'too few usable stamps to fit the guard: {n_fit} to fit (it '
           f'needs twice {need}) and {n_valid} to calibrate (at least 20)')
    if strict:
        raise SatphotutilsError(msg)
    log.warning('%s; the model has no out-of-distribution guard', msg)
    return None
