# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Subcommands of the network stage: ``train``, ``predict``, ``evaluate``."""

import sys

from satphotutils.utils._parameters import number_option

_count = number_option(integer=True, minimum=1)
_seed = number_option(integer=True, minimum=0)


def register(subparsers, formatter_class):
    """Add the ``train``, ``predict`` and ``evaluate`` subcommands."""
    train = subparsers.add_parser(
        'train', formatter_class=formatter_class,
        help='train a model on a labelled stamp table',
        description=('Train the network on a stamp table with log_counts '
                     'labels (star-grouped 60/20/20 split, reflections, '
                     'early stopping, checkpoints every epoch: rerun the '
                     'same command to resume after an interruption). '
                     'With --init, fine-tune a trained model instead, '
                     'for instance on a few hundred labelled stamps of a '
                     'new camera.'))
    train.add_argument('stamps', metavar='STAMPS.fits', nargs='+',
                       help='one or more stamp tables')
    train.add_argument('-o', '--output', required=True, metavar='MODEL_DIR',
                       help='directory for the model and its checkpoints')
    train.add_argument('--init', default=None, metavar='default|MODEL_DIR',
                       help=("fine-tune: start from this model ('default': "
                             'the bundled one) with its preprocessing and '
                             'input standardisation, one network per member'))
    train.add_argument('--preset', default=None,
                       choices=['default', 'paper', 'finetune'],
                       help=("option set (default: 'finetune' with --init, "
                             "else 'default'); 'paper' is Winecki & "
                             "Kochanek's recipe (Adam, lr 1e-4, batch 128, "
                             "MSE, 150 epochs, 24 seeds); 'finetune': lr "
                             '3e-3 one-cycle, batch 32, 15 epochs, 80/20 '
                             'train/validation split, a soup of 4 copies '
                             'per member below 1,500 training stamps'))
    train.add_argument('--epochs', type=_count, help='maximum epochs')
    train.add_argument('--seeds', type=_count,
                       help='networks trained from different seeds')
    train.add_argument('--soup', type=_count, metavar='N',
                       help='with --init: train N copies of each init '
                       'member (their own minibatch orders) and average '
                       "their weights into one network (the 'finetune' "
                       'preset: 4 below 1,500 training stamps, else 1; '
                       '1: no averaging)')
    train.add_argument('--batch-size', type=_count,
                       help='minibatch size (default preset: the largest '
                       'power of two from 16 to 256 that gives at least '
                       '500 steps per epoch)')
    train.add_argument('--lr', type=number_option(above=0),
                       help='(peak) learning rate')
    train.add_argument('--seed', type=_seed, help='base random seed')
    train.add_argument('--fwhm-jitter', type=number_option(minimum=0,
                                                            maximum=1),
                       metavar='SIGMA', dest='fwhm_jitter',
                       help='scatter (natural log) of the training jitter '
                       "of the frames' FWHM input (default 0.03, as the "
                       'bundled model was trained)')
    train.add_argument('--depth', type=_count, help='hidden layers')
    train.add_argument('--width', type=_count,
                       help='width of the hidden layers')
    train.add_argument('--architecture', default=None,
                       help=("registered architecture type: 'mlp' "
                             "(default) or 'cnn'"))
    train.add_argument('--device', default=None,
                       help=("torch device: 'cpu', 'cuda', 'mps' (default: "
                             'the GPU if present)'))
    train.add_argument('--no-resume', action='store_true',
                       help='ignore checkpoints of an interrupted run')
    train.add_argument('--overwrite', action='store_true',
                       help='replace a finished model in MODEL_DIR')
    train.set_defaults(func=_train)

    predict = subparsers.add_parser(
        'predict', formatter_class=formatter_class,
        help='predict log counts for a stamp table',
        description=('Write the stamp table with log_counts_pred, '
                     'log_counts_pred_err (calibrated 1-sigma, dex) and '
                     'pred_flags added; all input columns are kept.'))
    predict.add_argument('stamps', metavar='STAMPS.fits')
    predict.add_argument('-o', '--output', required=True,
                         metavar='OUT.fits')
    _model_options(predict)
    predict.add_argument('--overwrite', action='store_true',
                         help='replace an existing output file')
    predict.set_defaults(func=_predict)

    evaluate = subparsers.add_parser(
        'evaluate', formatter_class=formatter_class,
        help='evaluate a model on a labelled stamp table',
        description=("The paper's statistics (median, 68% and 95% "
                     'ranges, RMS, in 0.25-mag bins), light-curve '
                     'dispersions for multi-epoch data and the Fig. 3 and '
                     'Fig. 4 analogues, each against aperture photometry '
                     'of the same stamps.'))
    evaluate.add_argument('stamps', metavar='STAMPS.fits')
    evaluate.add_argument('--report', required=True, metavar='DIR',
                          help='directory for the report')
    _model_options(evaluate)
    evaluate.set_defaults(func=_evaluate)

    guard = subparsers.add_parser(
        'guard', formatter_class=formatter_class,
        help="fit a model's out-of-distribution guard",
        description=('Fit the out-of-distribution guard of an existing '
                     'model (satphot train fits one itself) to stamps like '
                     'its training stamps, calibrate it on half of them '
                     '(split by star) or on --valid, and rewrite the '
                     "model's files in place."))
    guard.add_argument('model_dir', metavar='MODEL_DIR')
    guard.add_argument('stamps', metavar='STAMPS.fits', nargs='+',
                       help='stamp tables like the training stamps')
    guard.add_argument('--valid', metavar='VALID.fits', default=None,
                       help='other such stamps to calibrate on')
    guard.add_argument('--false-positive-rate',
                       type=number_option(above=0, maximum=1), default=None,
                       help='fraction of in-distribution stamps flagged '
                            '(default 0.05)')
    guard.add_argument('--sigma-limit',
                       type=number_option(minimum=0), default=0.1,
                       metavar='MAG',
                       help="flag as well where the model's own "
                       'uncertainty exceeds this; 0 for the distance alone')
    guard.set_defaults(func=_guard)


def _model_options(parser):
    parser.add_argument('--model', metavar='MODEL_DIR', default=None,
                        help='model directory (default: the bundled model)')
    parser.add_argument('--ensemble', action='store_true',
                        help='average all ensemble members')
    parser.add_argument('--reflections', action='store_true',
                        help='average the four reflections of each stamp')
    parser.add_argument('--hybrid', action='store_true',
                        help=('the model-level classical lookup: an '
                              'unsaturated star gets the classical estimate '
                              '(pixel-centre aperture or PSF-weighted sum '
                              'plus its offset) that beat the network on the '
                              "model's validation stars of its brightness; "
                              'flagged classical_lookup (not the '
                              "photometry's frame-level hybrid)"))
    parser.add_argument('--device', default=None,
                        help="torch device: 'cpu' (default), 'cuda', 'mps'")


def _load_model(args):
    from satphotutils.network import SaturatedStarModel

    if args.model is None:
        return SaturatedStarModel.default(device=args.device)
    return SaturatedStarModel.read(args.model, device=args.device)


def _train(args):
    import dataclasses

    from satphotutils.network import PRESETS, Trainer
    from satphotutils.utils.exceptions import SatphotutilsError

    shape = [name for name in ('depth', 'width', 'architecture')
             if getattr(args, name) is not None]
    if args.init is not None and shape:
        msg = (f'--{shape[0]} cannot be combined with --init: the '
               f'architecture is that of the init model {args.init}')
        raise SatphotutilsError(msg)
    if args.init is None and args.soup is not None and args.soup > 1:
        msg = (f'--soup {args.soup} needs --init: networks trained from '
               'random weights cannot be averaged (use --seeds for an '
               'ensemble)')
        raise SatphotutilsError(msg)
    changes = {name: getattr(args, name) for name in
               ('epochs', 'seeds', 'soup', 'batch_size', 'lr', 'seed',
                'fwhm_jitter', *shape)
               if getattr(args, name) is not None}
    preset = args.preset or ('default' if args.init is None else 'finetune')
    config = dataclasses.replace(PRESETS[preset], **changes)
    trainer = Trainer(config, init=args.init, device=args.device,
                      progress=True)
    stamps = args.stamps[0] if len(args.stamps) == 1 else args.stamps
    model = trainer(stamps, args.output, resume=not args.no_resume,
                    overwrite=args.overwrite,
                    provenance={'command': ' '.join(
                        ['satphot', *sys.argv[1:]])})
    val = model.metadata['validation']
    resumed = model.metadata['training'].get('resumed_after_epoch')
    if resumed:
        print('resumed from checkpoints: ' + ', '.join(
            f'seed {k} after epoch {e}' for k, e in resumed.items()))
    init = model.metadata['training'].get('init')
    if init:
        print(f"started from {init['source']} (created {init['created']}, "
              f"sha256 {init['sha256'][:12]})")
    print(f'wrote {args.output}: {model!r}')
    training = model.metadata['training']
    if training.get('soup', 1) > 1:
        kept = training['soup_kept']
        print(f"  {sum(kept)} of {len(kept)} member(s) the average of "
              f"{training['soup']} fine-tuned copies (--soup sets how many)"
              + ('; the others kept the init weights, which did better on '
                 'the validation stars' if not all(kept) else ''))
    print(f"  minibatch size {training['batch_size']}"
          + (' (chosen for the table: --batch-size sets it)'
             if training['config']['batch_size'] is None else ''))
    for group, stats in val.items():
        print(f"  validation {group}: dispersion {stats['dispersion']:.4f} "
              f"mag, median {stats['median']:+.4f} mag, "
              f"1-sigma coverage {stats['coverage_1sigma']:.2f}")


def _predict(args):
    import numpy as np

    from satphotutils.network.dataset import features_of
    from satphotutils.stamps.table import StampTableWriter, iter_stamp_table

    model = _load_model(args)
    n = 0
    with StampTableWriter(args.output, overwrite=args.overwrite,
                          meta={'MODEL': str(args.model or 'default')[:60]}
                          ) as writer:
        for chunk in iter_stamp_table(args.stamps, chunk_size=100_000):
            pred = model.predict_prepared(
                features_of(chunk, model.features), ensemble=args.ensemble,
                reflections=args.reflections, hybrid=args.hybrid)
            columns = {name: np.asarray(chunk[name])
                       for name in chunk.colnames}
            columns['log_counts_pred'] = pred.log_counts
            columns['log_counts_pred_err'] = pred.log_counts_err
            columns['pred_flags'] = pred.flags
            columns['ood_score'] = pred.ood_score
            writer.write(columns)
            n += len(chunk)
    print(f'wrote {n} predictions to {args.output}')


def _guard(args):
    from satphotutils.network import SaturatedStarModel
    from satphotutils.network.guard import fit_guard

    model = SaturatedStarModel.read(args.model_dir)
    stamps = args.stamps[0] if len(args.stamps) == 1 else args.stamps
    guard = fit_guard(model, stamps, valid=args.valid,
                      false_positive_rate=args.false_positive_rate,
                      sigma_limit=args.sigma_limit or None)
    model.write(args.model_dir, overwrite=True)
    print(f'wrote the guard of {args.model_dir}: fitted on {guard.n_fit} '
          f'stamps, threshold (rms Mahalanobis distance) '
          f"{guard.threshold['single']:.3g} single, "
          f"{guard.threshold['ensemble']:.3g} ensemble, flagging "
          f'{guard.false_positive_rate:.0%} of {guard.n_valid} validation '
          'stamps')


def _evaluate(args):
    from satphotutils.network.evaluate import Evaluation

    model = _load_model(args)
    summary = Evaluation(model, ensemble=args.ensemble,
                         reflections=args.reflections,
                         hybrid=args.hybrid).report(
        args.stamps, args.report)
    for group, methods in summary['single'].items():
        s = methods['network']
        print(f"{group}: single-exposure dispersion {s['dispersion']:.4f} "
              f"mag (2-px aperture {methods['ap2']['dispersion']:.4f}), "
              f"median {s['median']:+.4f}")
    for group, methods in summary['lightcurves'].items():
        print(f"{group}: light-curve dispersion {methods['network']:.4f} "
              f"mag (best aperture "
              f"{min(v for k, v in methods.items() if k != 'network'):.4f})")
    print(f'report: {args.report}/report.md')
