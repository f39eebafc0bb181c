# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Evaluation of models against aperture photometry of the same stamps.

The paper's statistics, light-curve dispersions and plots.
"""

import json
import warnings
from pathlib import Path

import numpy as np
from astropy.table import QTable

from satphotutils.utils.io import atomic_output
from satphotutils.utils.stats import dispersion

__all__ = ['Evaluation', 'lightcurve_dispersion', 'summary_statistics']

_APERTURES = (2.0, 3.0, 5.0)


def summary_statistics(diff):
    """
    Return the paper's statistics of magnitude differences.

    Parameters
    ----------
    diff : array-like
        Measured minus expected magnitude.

    Returns
    -------
    stats : dict
        ``n``, ``median``, ``range68`` and ``range95`` (the absolute
        difference about the median containing 68 and 95 per cent),
        ``rms`` and
        ``dispersion`` (half the 15-85 per cent range).

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.network.evaluate import summary_statistics
    >>> d = np.random.default_rng(2).normal(0.01, 0.1, 100000)
    >>> s = summary_statistics(d)
    >>> print(round(s['median'], 2), round(s['range68'], 2))
    0.01 0.1
    """
    diff = np.asarray(diff, dtype=float)
    diff = diff[np.isfinite(diff)]
    if diff.size == 0:
        return {'n': 0, 'median': np.nan, 'range68': np.nan,
                'range95': np.nan, 'rms': np.nan, 'dispersion': np.nan}
    med = float(np.median(diff))
    dev = np.abs(diff - med)
    return {'n': int(diff.size), 'median': med,
            'range68': float(np.percentile(dev, 68.27)),
            'range95': float(np.percentile(dev, 95.45)),
            'rms': float(np.sqrt(np.mean(diff**2))),
            'dispersion': float(dispersion(diff))}


def lightcurve_dispersion(star_id, epoch, mag, *, min_epochs=3):
    """
    Light-curve dispersion of each star, epochs combined by the median.

    Exposures of one epoch are combined by their median (the mean of
    two); the dispersion is half the 15-85 per cent range of the epoch
    values about the star's median, as in the paper's Fig. 4.

    Parameters
    ----------
    star_id, epoch : array-like
        Star and epoch of each exposure.

    mag : array-like
        Magnitude (or residual) of each exposure.

    min_epochs : int, optional
        Stars with fewer epochs get NaN.

    Returns
    -------
    stars : `~numpy.ndarray`
        The star ids.

    dispersion : `~numpy.ndarray`
        Their light-curve dispersions.

    n_epochs : `~numpy.ndarray`
        Their numbers of epochs.

    Examples
    --------
    >>> import numpy as np
    >>> from satphotutils.network import lightcurve_dispersion
    >>> star = np.repeat([1, 2], 12)
    >>> epoch = np.tile(np.repeat(np.arange(4), 3), 2)
    >>> # Star 1 is constant; star 2 varies from epoch to epoch.
    >>> mag = np.r_[np.full(12, 8.0), np.repeat([8.0, 8.1, 7.9, 8.2], 3)]
    >>> stars, disp, n = lightcurve_dispersion(star, epoch, mag)
    >>> stars.tolist(), disp.round(3).tolist(), n.tolist()
    ([1, 2], [0.0, 0.105], [4, 4])
    """
    from satphotutils.lightcurves.epochs import _group_index, _group_median

    star_id = np.asarray(star_id)
    epoch = np.asarray(epoch)
    mag = np.asarray(mag, dtype=float)
    good = np.isfinite(mag)
    star_id, epoch, mag = star_id[good], epoch[good], mag[good]
    # The groups are numbered in (star, epoch) order: a star's epochs are
    # contiguous.
    group, n_groups, order, new = _group_index(star_id, epoch)
    epoch_values = _group_median(group, mag, n_groups)[0]
    epoch_star = star_id[order[new]]
    stars, first, counts = np.unique(epoch_star, return_index=True,
                                     return_counts=True)
    out = np.full(len(stars), np.nan)
    for k, (i, c) in enumerate(zip(first, counts, strict=True)):
        if c >= min_epochs:
            v = epoch_values[i:i + c]
            out[k] = dispersion(v - np.median(v))
    return stars, out, counts


class Evaluation:
    """
    Evaluate a model on a labelled stamp table against aperture baselines.

    Parameters
    ----------
    model : `~satphotutils.network.SaturatedStarModel`
        The model.

    ensemble, reflections, hybrid : bool, optional
        Prediction options (see
        `~satphotutils.network.SaturatedStarModel.predict_prepared`).

    bin_width : float, optional
        Width (mag) of the magnitude bins of the statistics.

    Examples
    --------
    >>> from satphotutils.network import Evaluation, SaturatedStarModel
    >>> from satphotutils.simulation import StampSimulator
    >>> stamps = StampSimulator(images_per_star=3)(30, seed=4)
    >>> rows = Evaluation(SaturatedStarModel.default())(stamps)
    >>> {'diff_network', 'diff_ap2', 'z'} <= set(rows.colnames)
    True
    """

    def __init__(self, model, *, ensemble=False, reflections=False,
                 hybrid=False, bin_width=0.25):
        self.model = model
        self.hybrid = hybrid
        self.ensemble = ensemble
        self.reflections = reflections
        self.bin_width = bin_width

    def __call__(self, stamps):
        """
        Measure every row of a stamp table.

        Parameters
        ----------
        stamps : path-like or `~astropy.table.Table`
            Labelled stamps (``log_counts``).

        Returns
        -------
        rows : `~astropy.table.QTable`
            Per exposure: ``star_id``, ``epoch``, ``mag`` (the label's
            magnitude, or the ``g`` column when present), ``saturated``,
            ``diff_network`` and ``diff_ap<r>`` (measured minus label
            magnitude, the aperture baselines shifted by their median
            offset on unsaturated stars), ``z`` (residual over the
            uncertainty) and ``flags``.
        """
        from satphotutils.stamps.apertures import (
            stamp_aperture_photometry,
        )
        from satphotutils.stamps.table import iter_stamp_table

        from .dataset import features_of

        if isinstance(stamps, (str, Path)):
            chunks = iter_stamp_table(stamps, chunk_size=50_000)
        else:
            chunks = (stamps[i:i + 50_000]
                      for i in range(0, len(stamps), 50_000))
        parts = []
        for chunk in chunks:
            if 'log_counts' not in chunk.colnames:
                msg = 'evaluation needs labelled stamps (log_counts)'
                raise ValueError(msg)
            x = features_of(chunk, self.model.features)
            pred = self.model.predict_prepared(
                x, ensemble=self.ensemble, reflections=self.reflections,
                hybrid=self.hybrid)
            label = np.asarray(chunk['log_counts'], dtype=float)
            flux, _ = stamp_aperture_photometry(
                np.asarray(chunk['stamp']), _APERTURES,
                dx=np.asarray(chunk['dx']), dy=np.asarray(chunk['dy']))
            part = QTable()
            part['star_id'] = np.asarray(chunk['star_id'])
            part['epoch'] = (np.asarray(chunk['epoch'])
                             if 'epoch' in chunk.colnames
                             else np.arange(len(chunk)))
            zp = np.asarray(chunk['zeropoint'], dtype=float)
            part['mag'] = (np.asarray(chunk['g'], dtype=float)
                           if 'g' in chunk.colnames
                           else zp - 2.5 * label)
            part['saturated'] = (np.asarray(chunk['saturated'], dtype=bool)
                                 if 'saturated' in chunk.colnames
                                 else pred.saturated)
            part['diff_network'] = -2.5 * (pred.log_counts - label)
            with np.errstate(invalid='ignore', divide='ignore'):
                for j, r in enumerate(_APERTURES):
                    part[f'diff_ap{r:g}'] = -2.5 * (
                        np.log10(np.where(flux[:, j] > 0, flux[:, j],
                                          np.nan)) - label)
            part['z'] = (label - pred.log_counts) / pred.log_counts_err
            part['flags'] = pred.flags
            part['n_unity'] = pred.n_unity
            parts.append(part)
        from astropy.table import vstack

        rows = vstack(parts)
        unsat = ~rows['saturated']
        for r in _APERTURES:
            name = f'diff_ap{r:g}'
            offset = np.nanmedian(rows[name][unsat]) if unsat.any() else 0.0
            rows[name] -= offset
        return rows

    def statistics(self, rows, *, max_unity=4):
        """
        Summarise per-exposure rows from `__call__`.

        Parameters
        ----------
        rows : `~astropy.table.QTable`
            Output of `__call__`.

        max_unity : int, optional
            Rows with more exactly-1 pixels are left out, as in training.

        Returns
        -------
        summary : dict
            ``single`` (statistics of saturated and unsaturated stars
            for the network and each aperture), ``bias_by_mag`` (median
            difference of the network per 1-mag bin), ``coverage`` (the
            fraction of abs(z) < 1 per group), ``lightcurves`` (median
            light-curve dispersion per group and method, when stars
            have at least three epochs) and ``bins`` (a table of the
            statistics in ``bin_width`` bins).
        """
        rows = rows[rows['n_unity'] <= max_unity]
        methods = ['network'] + [f'ap{r:g}' for r in _APERTURES]
        groups = {'saturated': rows['saturated'],
                  'unsaturated': ~rows['saturated']}
        summary = {'single': {}, 'coverage': {}, 'lightcurves': {},
                   'bias_by_mag': {}}
        for gname, sel in groups.items():
            summary['single'][gname] = {
                m: summary_statistics(rows[f'diff_{m}'][sel])
                for m in methods}
            z = np.asarray(rows['z'][sel])
            summary['coverage'][gname] = float(np.mean(np.abs(z) < 1)) \
                if z.size else np.nan
        mag = np.asarray(rows['mag'])
        for lo in range(int(np.floor(mag.min())), int(np.ceil(mag.max()))):
            sel = (mag >= lo) & (mag < lo + 1)
            if sel.sum() >= 20:
                summary['bias_by_mag'][f'{lo}-{lo + 1}'] = float(
                    np.median(rows['diff_network'][sel]))
        # Every method on the same stars: a star can have no finite
        # measurement by one method (a 5-px aperture sum <= 0 in every
        # exposure) and lightcurve_dispersion then leaves it out.
        stars = np.unique(np.asarray(rows['star_id']))
        per_star = {}
        for m in methods:
            ids, disp, _ = lightcurve_dispersion(
                rows['star_id'], rows['epoch'], rows[f'diff_{m}'])
            per_star[m] = np.full(len(stars), np.nan)
            per_star[m][np.searchsorted(stars, ids)] = disp
        if np.isfinite(per_star['network']).any():
            star_mag, star_sat = _per_star(rows, stars)
            per_star['star_id'] = stars
            per_star['mag'] = star_mag
            per_star['saturated'] = star_sat
            for gname, sel in (('saturated', star_sat),
                               ('unsaturated', ~star_sat)):
                summary['lightcurves'][gname] = {
                    m: float(np.nanmedian(per_star[m][sel]))
                    if np.isfinite(per_star[m][sel]).any() else np.nan
                    for m in methods}
        summary['bins'] = self._bins(rows, methods)
        summary['per_star'] = per_star
        return summary

    def _bins(self, rows, methods):
        mag = np.asarray(rows['mag'])
        edges = np.arange(np.floor(mag.min()), np.ceil(mag.max())
                          + self.bin_width, self.bin_width)
        table = QTable()
        table['mag_lo'] = edges[:-1]
        table['mag_hi'] = edges[1:]
        idx = np.digitize(mag, edges) - 1
        table['n'] = np.bincount(idx, minlength=len(edges))[:-1]
        for m in methods:
            for stat in ('median', 'range68', 'range95', 'rms',
                         'dispersion'):
                table[f'{m}_{stat}'] = [
                    summary_statistics(rows[f'diff_{m}'][idx == k])[stat]
                    for k in range(len(edges) - 1)]
        return table

    def report(self, stamps, directory):
        """
        Evaluate and write a report.

        The report directory gets ``report.md``, ``summary.json``,
        ``bins.ecsv`` and the Fig. 3 and Fig. 4 analogues.

        Parameters
        ----------
        stamps : path-like or `~astropy.table.Table`
            Labelled stamps.

        directory : path-like
            Output directory.

        Returns
        -------
        summary : dict
            As from `statistics`.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        rows = self(stamps)
        summary = self.statistics(rows)
        with atomic_output(directory / 'bins.ecsv', overwrite=True) as tmp:
            summary['bins'].write(tmp, format='ascii.ecsv')
        figures = [_figure3(rows, directory / 'fig3_residuals.png')]
        if summary['lightcurves']:
            figures.append(_figure4(summary['per_star'],
                                    directory / 'fig4_lightcurves.png'))
        plain = {k: v for k, v in summary.items()
                 if k not in ('bins', 'per_star')}
        with atomic_output(directory / 'summary.json', overwrite=True) as tmp:
            Path(tmp).write_text(json.dumps(plain, indent=1, default=float))
        with atomic_output(directory / 'report.md', overwrite=True) as tmp:
            Path(tmp).write_text(_markdown(plain, figures, self))
        return summary


def _per_star(rows, stars):
    order = np.argsort(np.asarray(rows['star_id']), kind='stable')
    sid = np.asarray(rows['star_id'])[order]
    first = np.searchsorted(sid, stars)
    mag = np.asarray(rows['mag'])[order][first]
    sat = np.asarray(rows['saturated'])[order]
    # A star is saturated if most of its exposures are.
    frac = np.add.reduceat(sat.astype(float), first) / np.diff(
        np.append(first, len(sid)))
    return mag, frac > 0.5


def _figure3(rows, path, *, max_unity=4):
    # A bare Figure, not pyplot: the caller's backend and figures are
    # left alone.
    from matplotlib.figure import Figure

    # Damaged cores are left out, as in the statistics and in training.
    rows = rows[rows['n_unity'] <= max_unity]
    mag = np.asarray(rows['mag'])
    fig = Figure(figsize=(10, 4), layout='constrained')
    axes = fig.subplots(1, 2, sharey=True)
    for ax, name, label in ((axes[0], 'diff_network', 'network'),
                            (axes[1], 'diff_ap2', '2-px aperture')):
        d = np.asarray(rows[name])
        ax.plot(mag, d, ',', alpha=0.3, color='0.5')
        edges = np.arange(np.floor(mag.min()), np.ceil(mag.max()) + 0.25,
                          0.25)
        centre = 0.5 * (edges[1:] + edges[:-1])
        idx = np.digitize(mag, edges) - 1
        with np.errstate(invalid='ignore'):
            stats = np.array([np.nanpercentile(d[idx == k], [15, 50, 85])
                              if np.any(idx == k) else [np.nan] * 3
                              for k in range(len(centre))])
        ax.plot(centre, stats[:, 1], 'r-', label='median')
        ax.plot(centre, stats[:, 0], 'r--', label='15-85%')
        ax.plot(centre, stats[:, 2], 'r--')
        ax.axvline(11.5, color='k', lw=0.5)
        ax.set_title(label)
        ax.set_xlabel('g [mag]')
    axes[0].set_ylabel('measured - expected [mag]')
    axes[0].set_ylim(-0.5, 0.5)
    axes[0].legend()
    fig.savefig(path, dpi=110)
    return path


def _figure4(per_star, path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout='constrained')
    ax = fig.subplots()
    with warnings.catch_warnings():
        # Stars without any aperture light curve are simply not drawn.
        warnings.simplefilter('ignore', RuntimeWarning)
        best = np.nanmin(np.column_stack([per_star[f'ap{r:g}']
                                          for r in _APERTURES]), axis=1)
    ax.semilogy(per_star['mag'], best, 's', ms=2, color='k',
                label='best aperture')
    ax.semilogy(per_star['mag'], per_star['network'], '^', ms=2,
                color='r', label='network')
    ax.axvline(11.5, color='k', lw=0.5)
    ax.set_xlabel('g [mag]')
    ax.set_ylabel('light-curve dispersion [mag]')
    ax.legend()
    fig.savefig(path, dpi=110)
    return path


def _markdown(summary, figures, evaluation):
    lines = ['# satphotutils evaluation', '',
             f'Model: `{evaluation.model!r}`; ensemble='
             f'{evaluation.ensemble}, reflections={evaluation.reflections}, '
             f'hybrid={evaluation.hybrid}.',
             '', 'Differences are measured minus expected magnitude; '
             'dispersion is half the 15-85% range; the aperture baselines '
             'are shifted by their median offset on unsaturated stars.', '',
             '## Single exposures', '',
             '| group | method | n | median | 68% | 95% | rms | dispersion |',
             '|---|---|---|---|---|---|---|---|']
    for group, methods in summary['single'].items():
        for m, s in methods.items():
            lines.append(
                f"| {group} | {m} | {s['n']} | {s['median']:.4f} | "
                f"{s['range68']:.4f} | {s['range95']:.4f} | {s['rms']:.4f} "
                f"| {s['dispersion']:.4f} |")
    lines += ['', '## Uncertainty calibration', '',
              '| group | fraction of abs(z) < 1 |', '|---|---|']
    lines += [f'| {g} | {c:.3f} |' for g, c in summary['coverage'].items()]
    lines += ['', '## Median bias of the network by magnitude', '',
              '| g | median |', '|---|---|']
    lines += [f'| {b} | {v:.4f} |' for b, v in
              summary['bias_by_mag'].items()]
    if summary['lightcurves']:
        lines += ['', '## Light curves (median of per-star dispersions)', '',
                  '| group | ' + ' | '.join(
                      next(iter(summary['lightcurves'].values()))) + ' |',
                  '|---|' + '---|' * len(
                      next(iter(summary['lightcurves'].values())))]
        for group, values in summary['lightcurves'].items():
            lines.append(f'| {group} | ' + ' | '.join(
                f'{v:.4f}' for v in values.values()) + ' |')
    lines += [''] + [f'![{Path(f).stem}]({Path(f).name})' for f in figures]
    return '\n'.join(lines) + '\n'
