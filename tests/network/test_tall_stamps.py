# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tall stamps (issue 23, item 2): the stamp shape from table to model."""

import json
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import CCDData
from numpy.testing import assert_allclose, assert_array_equal

from satphotutils.network import SaturatedStarModel, StampFeatures
from satphotutils.network.model import StampCNN
from satphotutils.photometry import (
    AperturePhotometryBaseline,
    SaturatedStarPhotometry,
)
from satphotutils.simulation import (
    Camera,
    Detector,
    FrameSimulator,
    Scene,
    StampSimulator,
    SurveyPipeline,
)
from satphotutils.stamps import (
    StampBuilder,
    StampTableWriter,
    iter_stamp_table,
    read_stamp_table,
    stamp_shape,
    stamp_table_shape,
)
from satphotutils.utils.exceptions import SatphotutilsError

TALL = (81, 21)
DATA = Path(__file__).parent / 'data'


def _chunk(n, rng, shape=TALL):
    return {'stamp': rng.normal(200, 10, (n, *shape)).astype(np.float32),
            'star_id': np.arange(n), 'zeropoint': np.full(n, 25.5),
            'sky': np.full(n, 200.0), 'log_counts': rng.uniform(3, 7, n)}


def _raw_camera():
    # The full well below the ADC maximum: a trail pixel reads its charge.
    return Camera(detector=Detector(full_well=80000.0,
                                    corner_throughput=1.0))


@pytest.fixture(scope='module')
def raw_tall_stamps():
    sim = StampSimulator(camera=_raw_camera(), stamp_size=TALL,
                         pipeline=SurveyPipeline(correction=False),
                         g_range=(6.0, 14.0), images_per_star=2,
                         exposures_per_chunk=8)
    return sim(160, seed=7)


# -- the stamp table ----------------------------------------------------------

def test_tall_table_round_trips_whole_and_chunked(tmp_path):
    rng = np.random.default_rng(1)
    first, second = _chunk(3, rng), _chunk(4, rng)
    path = tmp_path / 'tall.fits'
    with StampTableWriter(path) as writer:
        writer.write(first)
        writer.write(second)
    table = read_stamp_table(path)
    assert table['stamp'].shape == (7, *TALL)
    assert_array_equal(table['stamp'],
                       np.concatenate([first['stamp'], second['stamp']]))
    chunks = list(iter_stamp_table(path, chunk_size=3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert_array_equal(np.concatenate([c['stamp'] for c in chunks]),
                       table['stamp'])
    assert chunks[0].meta['STAMPNY'] == 81
    assert chunks[0].meta['STAMPNX'] == 21
    # STAMPSZ means a square's size: not written for a tall stamp.
    assert 'STAMPSZ' not in chunks[0].meta
    assert stamp_table_shape(path) == TALL


def test_square_tables_keep_stampsz(tmp_path):
    path = tmp_path / 'square.fits'
    with StampTableWriter(path) as writer:
        writer.write(_chunk(2, np.random.default_rng(2), shape=(21, 21)))
    header = fits.getheader(path, 'STAMPS')
    assert (header['STAMPSZ'], header['STAMPNY'], header['STAMPNX']) == \
        (21, 21, 21)


def test_a_header_that_contradicts_the_stamps_is_refused(tmp_path):
    path = tmp_path / 'tall.fits'
    with StampTableWriter(path) as writer:
        writer.write(_chunk(2, np.random.default_rng(3)))
    with fits.open(path, mode='update') as hdul:
        hdul['STAMPS'].header['STAMPNY'] = 21
    with pytest.raises(SatphotutilsError, match='STAMPNY, STAMPNX'):
        read_stamp_table(path)


@pytest.mark.parametrize(('shape', 'match'), [
    ((80, 21), 'odd size'), ((81, 20), 'odd size'),
    ((21, 81), r'ny < nx.*give \(81, 21\)')])
def test_stamp_shapes_are_checked_everywhere(tmp_path, shape, match):
    with pytest.raises(ValueError, match=f'stamp_size.*{match}'):
        stamp_shape(shape)
    for make in (lambda: StampFeatures(stamp_size=shape),
                 lambda: StampSimulator(stamp_size=shape),
                 lambda: StampBuilder(stamp_size=shape),
                 lambda: AperturePhotometryBaseline(stamp_size=shape)):
        with pytest.raises(ValueError, match=f'stamp_size.*{match}'):
            make()
    with pytest.raises(SatphotutilsError, match=match), \
            StampTableWriter(tmp_path / 'bad.fits') as writer:
        writer.write(_chunk(1, np.random.default_rng(4), shape=shape))


# -- features -----------------------------------------------------------------

def _star(shape, flux, dx, dy, sky=150.0, fwhm=2.0):
    ny, nx = shape
    yy, xx = np.mgrid[-(ny // 2):ny // 2 + 1, -(nx // 2):nx // 2 + 1]
    sig = fwhm / 2.3548
    return (sky + flux / (2 * np.pi * sig**2) * np.exp(
        -((xx - dx)**2 + (yy - dy)**2) / (2 * sig**2))).astype(np.float32)


def test_tall_features_are_the_squares_on_a_uniform_sky():
    # A star without a trail on a uniform sky: every feature centred on
    # the target is the square stamp's; the stadium adds zero pixels.
    tall, square = StampFeatures(stamp_size=TALL), StampFeatures()
    offsets = [(0.0, 0.0), (0.3, -0.2), (-0.45, 0.4)]
    stamps = np.stack([_star(TALL, 3e4, dx, dy) for dx, dy in offsets])
    kw = {'sky': np.full(3, 150.0), 'dx': [o[0] for o in offsets],
          'dy': [o[1] for o in offsets], 'saturation': 6e4, 'fwhm': 2.0}
    xt = tall(stamps, **kw)
    xs = square(stamps[:, 30:51], **kw)
    assert_allclose(xt.base, xs.base, rtol=0, atol=1e-6)
    assert_array_equal(xt.local_bkg, xs.local_bkg)
    names_t, names_s = list(tall.names), list(square.names)
    for name in ('log_flux_sat', 'log_peak_sat', 'psf_ratio', 'ap2_ratio',
                 'ap3_ratio', 'core_ratio', 'bkg_excess', 'log_sky_sat',
                 'n_unity', 'dx', 'dy'):
        assert_allclose(xt.features[:, names_t.index(name)],
                        xs.features[:, names_s.index(name)], atol=1e-6,
                        err_msg=name)
    # The square's circle pixels in the tall block, the rest zero.
    dy_t, dx_t = tall.pixel_offsets
    dy_s, dx_s = square.pixel_offsets
    where = {(a, b): k for k, (a, b) in enumerate(zip(dy_t, dx_t,
                                                      strict=True))}
    inner = [where[a, b] for a, b in zip(dy_s, dx_s, strict=True)]
    assert_allclose(xt.features[:, inner], xs.features[:, :square.n_pixels],
                    atol=1e-6)
    outer = np.setdiff1d(np.arange(tall.n_pixels), inner)
    assert np.all(np.abs(xt.features[:, outer]) < 1e-6)


def test_tall_region_holds_the_trail():
    # A trail in the central column (charge conserved) plus a star: the
    # aperture sum is the stadium's, the background the columns beside
    # it, both computed here from their definitions.
    rng = np.random.default_rng(5)
    stamp = rng.normal(300.0, 12.0, TALL).astype(np.float32)
    stamp[10:71, 9:12] += 5e4
    stamp += _star(TALL, 2e4, 0.1, -0.2, sky=0.0)
    tall = StampFeatures(stamp_size=TALL)
    x = tall(stamp[None], sky=[300.0], dx=[0.1], dy=[-0.2],
             saturation=[6e4], fwhm=[2.0])
    yy, xx = np.mgrid[-40:41, -10:11]
    along = np.maximum(np.abs(yy) - 30, 0)
    region = xx**2 + along**2 <= 25
    ring = (np.hypot(xx, along) >= 7) & (np.hypot(xx, along) <= 10) \
        & (np.abs(xx) > 2)
    values = np.sort(stamp[ring])
    bkg = values[len(values) // 2]  # the upper median
    assert x.local_bkg[0] == bkg
    assert tall.n_pixels == region.sum() == 741
    assert_allclose(x.aperture_sum[0],
                    np.sum(stamp[region] - bkg, dtype=float), rtol=1e-6)
    # It holds the trail and the star: 61 rows x 3 columns x 5e4 + 2e4,
    # but for the star's wings beyond 5 px and the noise.
    assert_allclose(x.aperture_sum[0], 61 * 3 * 5e4 + 2e4, rtol=2e-3)


def test_reflections_are_flips_never_transposes():
    rng = np.random.default_rng(6)
    tall = StampFeatures(stamp_size=TALL)
    stamp = rng.normal(300.0, 12.0, TALL).astype(np.float32)
    stamp[5:60, 10] += 4e4  # an asymmetric trail
    stamp[38:43, 12:15] += 3e3
    kw = {'sky': [300.0], 'saturation': [6e4], 'fwhm': [2.0]}
    x = tall(stamp[None], dx=[0.2], dy=[-0.3], **kw).features[0]
    perms, signs = tall.reflections(), tall.reflection_signs()
    flips = [(stamp, 0.2, -0.3), (stamp[:, ::-1], -0.2, -0.3),
             (stamp[::-1], 0.2, 0.3), (stamp[::-1, ::-1], -0.2, 0.3)]
    for perm, sign, (image, dx, dy) in zip(perms, signs, flips,
                                           strict=True):
        flipped = tall(np.ascontiguousarray(image)[None], dx=[dx], dy=[dy],
                       **kw).features[0]
        assert_allclose(x[perm] * sign, flipped, atol=1e-5)
    # A transposed stamp is not a stamp of this model.
    with pytest.raises(ValueError, match=r'\(N, 81, 21\)'):
        tall(stamp.T[None], dx=[0.0], dy=[0.0], **kw)


def test_cnn_grid_follows_the_tall_region():
    tall = StampFeatures(stamp_size=TALL)
    net = StampCNN(tall, channels=2, conv_layers=1, width=8, depth=1)
    # The segment's 61 rows and 5 px beyond each end, by 11 columns.
    assert net.grid_shape == (71, 11)
    grid = np.full(71 * 11, -1)
    grid[net.grid_index.numpy()] = np.arange(tall.n_pixels)
    dy, dx = tall.pixel_offsets
    assert_array_equal(grid.reshape(71, 11)[dy + 35, dx + 5],
                       np.arange(tall.n_pixels))


def test_features_config_records_the_shape():
    tall = StampFeatures(stamp_size=TALL)
    assert tall.to_dict()['stamp_size'] == [81, 21]
    assert StampFeatures.from_dict(tall.to_dict()) == tall
    # A square is the int it always was (old model files read unchanged).
    assert StampFeatures(stamp_size=(21, 21)) == StampFeatures()
    assert StampFeatures().to_dict()['stamp_size'] == 21
    with pytest.raises(ValueError, match=r'features\.stamp_size'):
        StampFeatures.from_dict(tall.to_dict() | {'stamp_size': [21, 81]})


# -- square stamps: bit-identical to before -----------------------------------

def _unhex(values):
    return np.array([float.fromhex(v) for v in values])


def test_square_stamps_and_models_give_what_they_gave(tmp_path):
    # The outputs of main at 097db21, before tall stamps (the same code
    # run there): the bundled model, the features and the photometry of
    # a synthetic frame. The model's predictions and the photometry were
    # re-taken when the bundled model was retrained (2026-12-03, the code
    # otherwise unchanged; the feature sum is still 097db21's). To a few
    # float32 ulps: the last bits differ
    # between CPUs (numpy's and torch's SIMD kernels; an AVX-512 machine
    # differs from the one the reference was taken on by ~1e-9), a change
    # of behaviour by orders of magnitude more.
    reference = json.loads((DATA / 'square_reference.json').read_text())
    rng = np.random.default_rng(23)
    yy, xx = np.mgrid[-10:11, -10:11]
    dx = rng.uniform(-0.5, 0.5, 12)
    dy = rng.uniform(-0.5, 0.5, 12)
    flux = 10 ** rng.uniform(3, 6.5, 12)
    sig = 2.0 / 2.3548
    stamps = 200 + flux[:, None, None] / (2 * np.pi * sig**2) * np.exp(
        -((xx - dx[:, None, None])**2 + (yy - dy[:, None, None])**2)
        / (2 * sig**2))
    stamps = np.minimum(stamps + rng.normal(0, 15, stamps.shape),
                        6e4).astype(np.float32)
    model = SaturatedStarModel.default()
    pred = model(stamps, sky=200.0, dx=dx, dy=dy, saturation=6e4, fwhm=2.0,
                 ensemble=True, reflections=True)
    assert_allclose(pred.log_counts, _unhex(reference['pred']), rtol=1e-6)
    assert_allclose(pred.log_counts_err, _unhex(reference['err']),
                    rtol=1e-6)
    feat = StampFeatures()(stamps, sky=np.full(12, 200.0), dx=dx, dy=dy,
                           saturation=6e4, fwhm=2.0)
    assert_allclose(np.sum(feat.features.astype(np.float64)),
                    float.fromhex(reference['feat_sum']), rtol=1e-6)
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:160, :160]
    x = rng.uniform(20, 140, 25)
    y = rng.uniform(20, 140, 25)
    flux = 10 ** rng.uniform(3.5, 6.3, 25)
    image = np.full((160, 160), 300.0)
    for xi, yi, f in zip(x, y, flux, strict=True):
        image += f / (2 * np.pi * sig**2) * np.exp(
            -((xx - xi)**2 + (yy - yi)**2) / (2 * sig**2))
    image = np.minimum(image + rng.normal(0, 17, image.shape), 6e4)
    ccd = CCDData(image, unit='adu', meta=fits.Header(
        {'SATURATE': 6e4, 'SKY': 300.0, 'REFGRID': True}))
    table = SaturatedStarPhotometry(fwhm=2.0)(
        ccd, positions=np.column_stack([x, y]))
    assert_allclose(np.asarray(table['log_counts']),
                    _unhex(reference['phot']), rtol=1e-6)
    assert list(table['method']) == reference['method']
    assert list(table['flags']) == reference['flags']
    assert list(table['n_saturated']) == reference['nsat']


# -- training and photometry --------------------------------------------------

def test_simulated_tall_stamps_hold_the_trails(raw_tall_stamps):
    stamps = np.asarray(raw_tall_stamps['stamp'])
    assert stamps.shape[1:] == TALL
    level = np.asarray(raw_tall_stamps['saturation'])[:, None]
    column = stamps[:, :, 10] >= 0.9 * level
    g = np.asarray(raw_tall_stamps['g'])
    # A g < 8 star's trail runs well past a 21-row stamp.
    assert np.all(column[g < 8].sum(axis=1) > 21)
    # The stadium's sum holds the charge: within a few hundredths of a
    # dex of the truth for the bright stars whose trails (of any column)
    # end within the stamp, where the 21 x 21 circle misses most of it.
    ends = stamps[:, [0, 1, -2, -1], :] >= 0.5 * level[:, :, None]
    inside = (g < 8.5) & ~ends.any(axis=(1, 2))
    assert inside.sum() >= 10
    kw = {name: np.asarray(raw_tall_stamps[name])[inside]
          for name in ('sky', 'dx', 'dy', 'saturation', 'fwhm')}
    truth = np.asarray(raw_tall_stamps['true_log_counts'])[inside]
    tall = StampFeatures(stamp_size=TALL)(stamps[inside], **kw)
    square = StampFeatures()(stamps[inside][:, 30:51], **kw)
    assert np.median(np.abs(tall.base - truth)) < 0.03
    assert np.median(truth - square.base) > 0.3


def test_satphot_train_on_tall_stamps(raw_tall_stamps, tmp_path,
                                      monkeypatch):
    from satphotutils.cli import main

    path = tmp_path / 'tall.fits'
    with StampTableWriter(path) as writer:
        writer.write(raw_tall_stamps)
    out = tmp_path / 'model'
    main(['--threads', '1', 'train', str(path), '-o', str(out),
          '--epochs', '2', '--width', '32', '--depth', '1',
          '--batch-size', '64', '--device', 'cpu'])
    meta = json.loads((out / 'model.json').read_text())
    assert meta['features']['stamp_size'] == [81, 21]
    # The simulator's raw camera: the model knows it saw trails.
    assert meta['training_frames'] == 'uncorrected'
    assert len(meta['feature_names']) == 2 * 741 + 13
    model = SaturatedStarModel.read(out)
    assert model.features.stamp_shape == TALL
    assert '81 x 21 stamps' in repr(model)

    # On a raw frame the photometry cuts stamps of the model's shape.
    centre = SkyCoord(150, -40, unit='deg')
    scene = Scene(centre.directional_offset_by(
        [0, 90, 180] * u.deg, [1, 5, 3] * u.arcmin), [7.5, 10.0, 12.0],
        [1.0, 1.0, 1.0])
    frame, _ = FrameSimulator(
        camera=Camera(detector=Detector(shape=(300, 200),
                                        full_well=80000.0,
                                        corner_throughput=1.0)),
        pipeline=SurveyPipeline(correction=False),
        pointing=centre)(scene, mjd=59000.0, seed=2)
    import satphotutils.photometry.core as core

    shapes = []
    original = core.cut_stamps

    def spy(array, x, y, shape, **kw):
        shapes.append(tuple(shape))
        return original(array, x, y, shape, **kw)

    monkeypatch.setattr(core, 'cut_stamps', spy)
    phot = SaturatedStarPhotometry(model, fwhm=2.0)
    assert phot.stamp_shape == TALL
    table = phot(frame, skycoord=scene.coord)
    assert shapes
    assert set(shapes) == {TALL}
    assert table.meta['config']['stamp_size'] == [81, 21]
    # A model of uncorrected frames: its saturated stars per target by
    # the method that did better on the model's validation stamps.
    kind = table.meta['frame_kind']
    assert kind['corrected'] is False
    assert kind['saturated_targets'] == 'validated'
    assert kind['trail_validation'] == meta['trail_validation']['bins']
    assert meta['trail_validation']['rows'] > 0
    by_trail = kind['n_trail_leaves_stamp'] + kind['n_trail_by_validation']
    assert (table['method'] == 'bleed_trail').sum() == by_trail
    assert set(table['method']) <= {'network', 'bleed_trail'}
