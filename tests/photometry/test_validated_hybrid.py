# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The validated hybrid of uncorrected frames (issue 23, item 4)."""

import copy

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from satphotutils.network import SaturatedStarModel, Trainer, TrainingConfig
from satphotutils.network.training import _trail_validation
from satphotutils.photometry import (
    BleedTrailPhotometry,
    SaturatedStarPhotometry,
    trail_reaches_end,
)
from satphotutils.simulation import (
    Camera,
    Detector,
    FrameSimulator,
    Scene,
    StampSimulator,
    SurveyPipeline,
)
from satphotutils.utils.exceptions import SatphotutilsError

TALL = (81, 21)
# The default detector's ADC maximum is below its full well: a stored
# trail pixel holds less than the charge that ran into it.
LOSSY = dict(full_well=130000.0, corner_throughput=1.0)
# The full well below the ADC maximum: a trail pixel reads its charge.
CONSERVING = dict(full_well=80000.0, corner_throughput=1.0)


def _stamps(detector, n, seed):
    sim = StampSimulator(camera=Camera(detector=Detector(**detector)),
                         stamp_size=TALL,
                         pipeline=SurveyPipeline(correction=False),
                         g_range=(7.5, 13.0), images_per_star=2,
                         exposures_per_chunk=8)
    return sim(n, seed=seed)


@pytest.fixture(scope='module')
def lossy_model(tmp_path_factory):
    out = tmp_path_factory.mktemp('lossy')
    config = TrainingConfig(epochs=6, width=64, depth=2, batch_size=64)
    return Trainer(config, device='cpu')(_stamps(LOSSY, 300, 3), out)


def _frame(detector, seed):
    centre = SkyCoord(150, -40, unit='deg')
    rng = np.random.default_rng(seed)
    g = np.r_[np.linspace(8.0, 11.0, 12), np.linspace(12.0, 13.5, 12)]
    coord = centre.directional_offset_by(
        rng.uniform(0, 360, g.size) * u.deg,
        rng.uniform(1, 22, g.size) * u.arcmin)
    scene = Scene(coord, g, np.ones(g.size))
    camera = Camera(detector=Detector(shape=(500, 500), **detector))
    pipeline = SurveyPipeline(correction=False, misplace_rate=0.0,
                              lost_rate=0.0)
    frame, truth = FrameSimulator(camera=camera, pipeline=pipeline,
                                  pointing=centre)(scene, mjd=59000.0,
                                                   seed=seed)
    return frame, truth, scene


def _figures(model, stamps):
    """The model's trail_validation recomputed on other stamps."""
    kw = {name: np.asarray(stamps[name])
          for name in ('sky', 'dx', 'dy', 'saturation', 'fwhm')}
    data = model.features(np.asarray(stamps['stamp']), **kw)
    columns = {'label': np.asarray(stamps['log_counts'], float)}
    return _trail_validation(model, data, columns, np.arange(len(data)),
                             stamps, step=0.5, min_rows=10)


def _errors(detector, model, seed):
    """|mag - truth| of the saturated targets: hybrid, network, trails."""
    frame, truth, scene = _frame(detector, seed)
    out = {}
    for trails in ('auto', 'network', 'bleed-trail'):
        out[trails] = SaturatedStarPhotometry(
            model, fwhm=2.0, trails=trails, hybrid=False)(
                frame, skycoord=scene.coord)
    saturated = np.asarray(out['auto']['n_saturated']) > 0
    error = {k: np.abs((t['mag'] - truth['mag']).value)[saturated]
             for k, t in out.items()}
    return out['auto'], saturated, error


@pytest.mark.slow
@pytest.mark.parametrize(('detector', 'winner'),
                         [(LOSSY, 'network'), (CONSERVING, 'bleed_trail')])
def test_the_hybrid_takes_the_method_that_validated_better(
        lossy_model, detector, winner):
    model = copy.copy(lossy_model)
    model.metadata = dict(lossy_model.metadata)
    # The network learned the lossy camera; its figures and the trail
    # sum's on this camera's own validation stamps.
    model.metadata['trail_validation'] = _figures(
        lossy_model, _stamps(detector, 200, 11))
    bins = model.metadata['trail_validation']['bins']
    bright = [b for b in bins if b['lo'] >= 1.0]
    assert bright
    loser = 'bleed_trail' if winner == 'network' else 'network'
    for entry in bright:
        assert entry[winner]['error'] < entry[loser]['error']
    if winner == 'network':
        # Against the labels: the lossy camera's stored trails miss a
        # large share of the charge, the trail sum is far too faint.
        assert all(b['bleed_trail']['bias'] > 0.1 for b in bright)
    table, saturated, error = _errors(detector, model, 5)
    kind = table.meta['frame_kind']
    assert kind['saturated_targets'] == 'validated'
    assert kind['trail_validation'] == bins
    method = np.asarray(table['method'])[saturated]
    assert saturated.sum() >= 8
    assert (method == winner).sum() >= saturated.sum() // 2
    # No worse than either path alone, against the simulator's truth.
    hybrid = np.median(error['auto'])
    assert hybrid <= min(np.median(error['network']),
                         np.median(error['bleed-trail'])) + 0.005


def test_prefers_trail_sum_reads_the_bins():
    model = SaturatedStarModel.default()
    model.metadata = dict(model.metadata, trail_validation={
        'version': 1, 'bins': [
            {'lo': 1.0, 'hi': 1.5, 'n': 50,
             'network': {'bias': 0.0, 'scatter': 0.05, 'error': 0.05},
             'bleed_trail': {'bias': 0.01, 'scatter': 0.01,
                             'error': 0.0141}},
            {'lo': 1.5, 'hi': 2.0, 'n': 50,
             'network': {'bias': 0.0, 'scatter': 0.02, 'error': 0.02},
             'bleed_trail': {'bias': 0.3, 'scatter': 0.01,
                             'error': 0.3002}}]})

    class Headroom:
        log_headroom = np.full(4, 4.0)

    # Saturation coordinates 0.9 (no bin), 1.2, 1.7 and 2.5 (no bin).
    prefers = model.prefers_trail_sum(Headroom(), [4.9, 5.2, 5.7, 6.5])
    assert prefers.tolist() == [False, True, False, False]
    del model.metadata['trail_validation']
    assert not model.prefers_trail_sum(Headroom(), [5.2] * 4).any()


def test_trail_reaches_end_and_the_stamp_trail_sum():
    stamps = np.full((3, 41, 21), 100.0)
    stamps[0, 14:27, 10] = 6e4
    stamps[1, :, 10] = 6e4
    stamps[2, 0, 18] = 6e4  # beyond the central columns: a neighbour
    assert trail_reaches_end(stamps, np.full(3, 6e4)).tolist() == [
        False, True, False]
    log_counts, flags = BleedTrailPhotometry().measure_stamps(
        stamps[:2], sky=100.0, saturation=6e4, fwhm=2.0)
    # 13 pixels of 6e4 - 100 above the sky: the closed-form sum.
    assert 10 ** log_counts[0] == pytest.approx(13 * (6e4 - 100))
    from satphotutils.utils.flags import SATPHOT_FLAGS

    assert flags[0] == 0
    assert flags[1] & SATPHOT_FLAGS.TRAIL_EDGE


def test_prefers_trail_sum_by_repeatability_within_the_bias_tolerance():
    # Version 2: a trail sum that scatters more against the labels (its
    # level carries the neighbours and wing light only a frame corrects)
    # but repeats better from image to image, with a small median
    # offset, is chosen; a large offset (charge the camera lost) is not;
    # a bin without repeats falls back to the error.
    def entry(lo, trail_bias, trail_repeat, net_repeat=0.005):
        return {'lo': lo, 'hi': lo + 0.5, 'n': 50,
                'network': {'bias': 0.0, 'scatter': 0.015, 'error': 0.015,
                            'repeat': net_repeat},
                'bleed_trail': {'bias': trail_bias, 'scatter': 0.06,
                                'error': float(np.hypot(trail_bias, 0.06)),
                                'repeat': trail_repeat}}

    model = SaturatedStarModel.default()
    model.metadata = dict(model.metadata, trail_validation={
        'version': 2, 'bias_tolerance': 0.03, 'bins': [
            entry(1.0, -0.01, 0.002), entry(1.5, 0.12, 0.002),
            entry(2.0, 0.0, 0.008), entry(2.5, 0.0, None)]})

    class Headroom:
        log_headroom = np.full(4, 4.0)

    prefers = model.prefers_trail_sum(Headroom(), [5.2, 5.7, 6.2, 6.7])
    assert prefers.tolist() == [True, False, False, False]


def test_the_repeat_is_the_scatter_about_each_stars_median():
    from satphotutils.network.training import _repeat

    rng = np.random.default_rng(3)
    star = np.repeat(np.arange(400), 6)
    # Per-star constants of 0.1 mag do not count, the 0.01 noise does.
    diff = rng.normal(0, 0.1, 400)[star] + rng.normal(0, 0.01, star.size)
    assert _repeat(diff, star, min_rows=10) == pytest.approx(0.01, rel=0.1)
    assert _repeat(diff[::6], star[::6], min_rows=10) is None


@pytest.mark.parametrize(('change', 'field'), [
    ({'version': 3}, 'trail_validation.version'),
    ({'version': 2}, 'trail_validation.bias_tolerance'),
    ({'version': 2, 'bias_tolerance': 0.03, 'bins': [
        {'lo': 0.5, 'hi': 1.0,
         'network': {'bias': 0.0, 'scatter': 0.0, 'error': 0.0,
                     'repeat': -1.0},
         'bleed_trail': {'bias': 0.0, 'scatter': 0.0, 'error': 0.0}}]},
     'trail_validation.bins[0].network.repeat'),
    ({'bins': 'x'}, 'trail_validation.bins'),
    ({'bins': [{'lo': 1.0, 'hi': 0.5}]}, 'trail_validation.bins[0].lo/hi'),
    ({'bins': [{'lo': 0.5, 'hi': 1.0,
                'network': {'bias': 0.0, 'scatter': -1.0, 'error': 1.0},
                'bleed_trail': {'bias': 0.0, 'scatter': 0.0,
                                'error': 0.0}}]},
     'trail_validation.bins[0].network.scatter')])
def test_a_bad_trail_validation_record_is_refused(tmp_path, change, field):
    import json
    from importlib import resources

    root = resources.files('satphotutils.data') / 'default_model'
    with resources.as_file(root) as path:
        model = SaturatedStarModel.read(path)
    model.metadata['trail_validation'] = {'version': 1, 'bins': [],
                                          **change}
    model.write(tmp_path)
    assert 'trail_validation' in json.loads(
        (tmp_path / 'model.json').read_text())
    with pytest.raises(SatphotutilsError, match=field.replace(
            '[', r'\[').replace(']', r'\]')):
        SaturatedStarModel.read(tmp_path)


def test_training_measures_trails_with_bleed_trail_photometry_defaults():
    import inspect

    from satphotutils.stamps._trailsum import TRAIL_DEFAULTS

    defaults = inspect.signature(BleedTrailPhotometry).parameters
    assert {k: defaults[k].default for k in TRAIL_DEFAULTS} == \
        TRAIL_DEFAULTS


def test_a_trail_target_that_owns_no_pixel_is_flagged_not_fatal():
    # A raw camera's frame (10% blooming, camera B of the session-19
    # check) raised IndexError in the trail sum: a target matched to a
    # saturated region whose division gave it no pixel. Now a NaN flux
    # flagged trail_merged, and the frame's other rows survive.
    from scipy import ndimage

    from satphotutils.stamps._trailsum import _one_trail
    from satphotutils.utils.flags import SATPHOT_FLAGS

    image = np.full((60, 30), 100.0)
    image[20:40, 15] = 6e4
    saturated = image >= 6e4
    labels, _ = ndimage.label(saturated)
    owner = np.where(saturated, 2, 0)  # all of it to star 1, not star 0
    objects = ndimage.find_objects(labels)[0]
    own = ndimage.find_objects(owner, max_label=2)[0]  # star 0's: None
    flux, _, _, _, area, flags = _one_trail(
        image, np.zeros_like(saturated), saturated, None, owner, objects,
        own, 0, margin=5.0, gap=2, width=6, sky=100.0)
    assert np.isnan(flux)
    assert area == 0.0
    assert flags & SATPHOT_FLAGS.TRAIL_MERGED
