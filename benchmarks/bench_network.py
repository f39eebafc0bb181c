# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Benchmarks of the network.

Accuracy on a simulated verification set, inference and training speed,
and a user training a model on their own stamps.
"""

import json
import time

import numpy as np

from benchmarks import Metric, Result, benchmark, best_time

# The verification set: never used in training (its own seed), constant
# stars with ten epochs of three exposures.
_VERIFY = {'n_stars': 3000, 'images': 30, 'per_epoch': 3, 'seed': 2}
_USER = {'n_stars': 6250, 'images': 4, 'seed': 3}


def _stamps(ctx, name, *, n_stars, images, seed, per_epoch=1):
    """Simulate a stamp set once per report directory."""
    from satphotutils.simulation import StampSimulator

    n_stars = max(n_stars // (6 if ctx.quick else 1), 60)
    path = ctx.output / 'data' / f'{name}_{n_stars}.fits'
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pool = per_epoch * -(-max(24, 2 * images) // per_epoch)
        StampSimulator(images_per_star=images, exposures_per_epoch=per_epoch,
                       exposures_per_chunk=pool).write(
            path, n_stars, seed=seed, chunk_stars=250, n_workers=2)
    return path


def _evaluate(model, path, *, ensemble=False):
    from satphotutils.network.evaluate import Evaluation

    evaluation = Evaluation(model, ensemble=ensemble)
    rows = evaluation(path)
    return evaluation, rows, evaluation.statistics(rows)


@benchmark('network_accuracy', description=(
    'The bundled default model (both ensemble members, as '
    'SaturatedStarPhotometry uses it, and the best member alone) on a '
    'simulated verification set never used in training (3,000 constant '
    'stars, g = 3-15, ten epochs of three exposures), against aperture '
    'photometry (2, 3 and 5 px, local background) of the same stamps. '
    'Targets (issue #5): saturated '
    'single-exposure dispersion <= 0.02 mag and |median bias| <= 0.005 mag '
    'in every 1-mag bin from g = 4 to 14; saturated light-curve dispersion '
    '<= 0.01 mag; unsaturated (11.5-14.5) light curves <= 0.9x the best '
    'aperture; 68% of |residual/uncertainty| < 1 within 0.63-0.73 for '
    'saturated and unsaturated stars.'))
def network_accuracy(ctx):
    from satphotutils.network import SaturatedStarModel
    from satphotutils.network.evaluate import _figure3, _figure4

    path = _stamps(ctx, 'verify', n_stars=_VERIFY['n_stars'],
                   images=_VERIFY['images'], seed=_VERIFY['seed'],
                   per_epoch=_VERIFY['per_epoch'])
    model = SaturatedStarModel.default()
    _, rows, stats = _evaluate(model, path, ensemble=True)
    _, single_rows, single = _evaluate(model, path)
    metrics = _accuracy_metrics(rows, stats, 'ensemble (default): ')
    metrics += [m for m in _accuracy_metrics(single_rows, single,
                                             'best member only: ')
                if 'saturated' in m.name]
    return Result(metrics=metrics, figures=[
        _figure3(rows, ctx.figure_path('network_fig3')),
        _figure4(stats['per_star'], ctx.figure_path('network_fig4'))])


def _accuracy_metrics(rows, stats, prefix):
    single = stats['single']
    lc = stats['lightcurves']
    sat = single['saturated']['network']
    metrics = [
        Metric(f'{prefix}saturated single-exposure dispersion',
               sat['dispersion'], 'mag', '<= 0.02', sat['dispersion'] <= 0.02),
        Metric(f'{prefix}saturated, 2-px aperture dispersion',
               single['saturated']['ap2']['dispersion'], 'mag'),
        Metric(f'{prefix}saturated, 5-px aperture dispersion',
               single['saturated']['ap5']['dispersion'], 'mag'),
        Metric(f'{prefix}unsaturated single-exposure dispersion',
               single['unsaturated']['network']['dispersion'], 'mag')]
    mag = np.asarray(rows['mag'])
    keep = np.asarray(rows['n_unity']) <= 4
    worst = 0.0
    for lo in range(4, 14):
        sel = keep & (mag >= lo) & (mag < lo + 1)
        worst = max(worst, abs(float(np.median(rows['diff_network'][sel]))))
    metrics.append(Metric(f'{prefix}worst |median bias|, 1-mag bins 4-14',
                          worst, 'mag', '<= 0.005', worst <= 0.005))
    if lc:
        s, u = lc['saturated'], lc['unsaturated']
        best_u = min(u['ap2'], u['ap3'], u['ap5'])
        best_s = min(s['ap2'], s['ap3'], s['ap5'])
        metrics += [
            Metric(f'{prefix}saturated light-curve dispersion',
                   s['network'], 'mag', '<= 0.01', s['network'] <= 0.01),
            Metric(f'{prefix}saturated light curves, best aperture',
                   best_s, 'mag'),
            Metric(f'{prefix}unsaturated light-curve dispersion',
                   u['network'], 'mag'),
            Metric(f'{prefix}unsaturated light curves, best aperture',
                   best_u, 'mag'),
            Metric(f'{prefix}unsaturated light curves, network / best '
                   'aperture', u['network'] / best_u, '', '<= 0.9',
                   u['network'] / best_u <= 0.9)]
    for group, cov in stats['coverage'].items():
        metrics.append(Metric(f'{prefix}{group}: fraction |z| < 1', cov, '',
                              '0.63-0.73', 0.63 <= cov <= 0.73))
    return metrics


@benchmark('network_speed', description=(
    'Batched inference of the bundled model (preprocessing included) on '
    '100,000 stamps, against 5-px exact-overlap aperture photometry of '
    'the same stamps in the same run; training throughput. Target: >= '
    '100,000 stamps/s on 2 CPU cores.'))
def network_speed(ctx):
    import torch

    from satphotutils.network import SaturatedStarModel
    from satphotutils.network.training import Trainer, TrainingConfig
    from satphotutils.simulation import StampSimulator
    from satphotutils.stamps import stamp_aperture_photometry

    model = SaturatedStarModel.default()
    base = StampSimulator()(250, seed=7)
    n = 20_000 if ctx.quick else 100_000
    reps = -(-n // len(base))
    stamps = np.tile(np.asarray(base['stamp']), (reps, 1, 1))[:n]
    sky = np.tile(np.asarray(base['sky']), reps)[:n]
    dx = np.tile(np.asarray(base['dx']), reps)[:n]
    dy = np.tile(np.asarray(base['dy']), reps)[:n]
    cam = np.full(n, 'bi/g')
    # The frame descriptors feature version 3 reads.
    frame = {key: np.tile(np.asarray(base[key], dtype=float), reps)[:n]
             for key in ('saturation', 'fwhm')}

    def infer():
        model(stamps, sky=sky, dx=dx, dy=dy, camera=cam, **frame)

    def features():
        model.features(stamps, sky=sky, dx=dx, dy=dy, camera=cam, **frame)

    def aperture():
        stamp_aperture_photometry(stamps, [5.0], dx=dx, dy=dy)

    t_infer = best_time(infer, repeat=3)
    # The same with the out-of-distribution guard (fitted on other stamps
    # of the simulator): its cost is one (D x D) product per member.
    from satphotutils.network.guard import fit_guard

    guarded = SaturatedStarModel.default()
    fit_guard(guarded, StampSimulator(images_per_star=2)(800, seed=9))

    def infer_guarded():
        guarded(stamps, sky=sky, dx=dx, dy=dy, camera=cam, **frame)

    t_guarded = best_time(infer_guarded, repeat=3)
    t_feat = best_time(features, repeat=3)
    t_ap = best_time(aperture, repeat=2)
    rate = n / t_infer

    small = StampSimulator()(500, seed=8)
    start = time.perf_counter()
    # A fixed batch: a throughput comparable from run to run (the
    # default sizes it to the table).
    trained = Trainer(TrainingConfig(epochs=2, batch_size=256))(
        small, ctx.output / 'data' / 'speed_model', overwrite=True)
    history = trained.metadata['training']
    train_rate = history['rows_used']['train'] * 2 / (
        time.perf_counter() - start)
    return Result(metrics=[
        Metric('inference (features + network)', rate, 'stamps/s',
               '>= 100000', rate >= 100_000),
        Metric('inference with the out-of-distribution guard',
               n / t_guarded, 'stamps/s', '>= 100000',
               n / t_guarded >= 100_000),
        Metric('cost of the guard', (t_guarded / t_infer - 1) * 100, '%'),
        Metric('of which preprocessing', t_feat / t_infer * 100, '%'),
        Metric('5-px aperture photometry (exact overlaps)', n / t_ap,
               'stamps/s'),
        Metric('inference / aperture speed', t_ap / t_infer),
        Metric('training throughput (incl. validation, 2 epochs)',
               train_rate, 'stamps/s'),
        Metric('torch threads', torch.get_num_threads())])


@benchmark('network_user_training', description=(
    'A user trains on their own camera: 25,000 simulated stamps (6,250 '
    'stars, four exposures; four reflections as augmentation) with the '
    'default options and 15 epochs (`satphot train --epochs 15`), then the '
    'model is evaluated on the verification set. Targets: under 10 minutes '
    'on 2 cores; saturated light-curve dispersion <= 0.015 mag; calibrated '
    'uncertainties (0.63-0.73).'))
def network_user_training(ctx):
    from satphotutils.network import Trainer, TrainingConfig

    train = _stamps(ctx, 'user', n_stars=_USER['n_stars'],
                    images=_USER['images'], seed=_USER['seed'])
    verify = _stamps(ctx, 'verify', n_stars=_VERIFY['n_stars'],
                     images=_VERIFY['images'], seed=_VERIFY['seed'],
                     per_epoch=_VERIFY['per_epoch'])
    start = time.perf_counter()
    model = Trainer(TrainingConfig(epochs=15))(
        train, ctx.output / 'data' / 'user_model', overwrite=True)
    minutes = (time.perf_counter() - start) / 60
    _, rows, stats = _evaluate(model, verify)
    metrics = [Metric('training time, 25k stamps x 15 epochs', minutes,
                      'min', '< 10', minutes < 10)]
    for m in _accuracy_metrics(rows, stats, 'user model: '):
        # This scenario's targets: saturated light curves and calibrated
        # uncertainties; the bundled model's other targets do not apply.
        if 'saturated light-curve dispersion' in m.name \
                and 'unsaturated' not in m.name:
            m.target, m.passed = '<= 0.015', m.value <= 0.015
        elif 'fraction' not in m.name:
            m.target, m.passed = '', None
        metrics.append(m)
    (ctx.output / 'network_user_training.json').write_text(
        json.dumps(model.metadata['validation'], indent=1))
    return Result(metrics=metrics)


_ARCH_TRAIN = {'n_stars': 3000, 'images': 4, 'seed': 11}
_ARCH_HELD_OUT = {'n_stars': 1000, 'images': 4, 'seed': 12}


@benchmark('network_architectures', description=(
    'The extension point: the MLP (type "mlp", 3 x 256) and the small CNN '
    '(type "cnn": two 3 x 3 convolutions of 16 channels over the 5-px '
    'circle scattered back onto its 11 x 11 grid, then 2 x 128 dense '
    'layers) trained the same way (default options, 10 epochs, one seed) '
    'on the same 12,000 simulated stamps (3,000 stars, four exposures), '
    'evaluated on 4,000 held-out stamps (1,000 other stars, own seed): '
    'single-exposure dispersion of saturated and unsaturated stars and the '
    'training time. No target: a comparison.'))
def network_architectures(ctx):
    import dataclasses

    import torch

    from satphotutils.network import Trainer, TrainingConfig

    train = _stamps(ctx, 'arch_train', n_stars=_ARCH_TRAIN['n_stars'],
                    images=_ARCH_TRAIN['images'], seed=_ARCH_TRAIN['seed'])
    held_out = _stamps(ctx, 'arch_held_out',
                       n_stars=_ARCH_HELD_OUT['n_stars'],
                       images=_ARCH_HELD_OUT['images'],
                       seed=_ARCH_HELD_OUT['seed'])
    # The batch the documented figures were measured with (the default
    # now sizes it to the table: 16 for these 7,200 training rows).
    base = TrainingConfig(epochs=10, seeds=1, batch_size=256)
    configs = {'mlp': base,
               'cnn': dataclasses.replace(base, architecture='cnn',
                                          width=128, depth=2)}
    metrics, summary = [], {}
    for name, config in configs.items():
        start = time.perf_counter()
        # One training run at a time: the machine's cores are shared.
        model = Trainer(config)(train, ctx.output / 'data' / f'arch_{name}',
                                overwrite=True)
        minutes = (time.perf_counter() - start) / 60
        _, _, stats = _evaluate(model, held_out)
        single = stats['single']
        n_params = sum(p.numel() for p in model.networks[0].parameters())
        sat = single['saturated']['network']['dispersion']
        unsat = single['unsaturated']['network']['dispersion']
        metrics += [
            Metric(f'{name}: saturated single-exposure dispersion', sat,
                   'mag'),
            Metric(f'{name}: unsaturated single-exposure dispersion', unsat,
                   'mag'),
            Metric(f'{name}: training time (10 epochs)', minutes, 'min'),
            Metric(f'{name}: parameters', n_params)]
        summary[name] = {
            'architecture': model.networks[0].to_config(),
            'saturated_dispersion': sat, 'unsaturated_dispersion': unsat,
            'saturated_5px_dispersion':
                single['saturated']['ap5']['dispersion'],
            'training_minutes': minutes, 'parameters': n_params,
            'validation': model.metadata['validation']}
    metrics += [
        Metric('cnn / mlp saturated dispersion',
               summary['cnn']['saturated_dispersion']
               / summary['mlp']['saturated_dispersion']),
        Metric('cnn / mlp unsaturated dispersion',
               summary['cnn']['unsaturated_dispersion']
               / summary['mlp']['unsaturated_dispersion']),
        Metric('cnn / mlp training time',
               summary['cnn']['training_minutes']
               / summary['mlp']['training_minutes']),
        Metric('torch threads', torch.get_num_threads())]
    (ctx.output / 'network_architectures.json').write_text(
        json.dumps(summary, indent=1, default=float))
    return Result(metrics=metrics)
