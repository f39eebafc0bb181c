"""Model files: the registry, field checks, the version-1 conversion."""

import json
import shutil
import time
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from safetensors.numpy import load_file, save_file

from satphotutils.network import (
    SaturatedStarModel,
    StampFeatures,
    StampMLP,
    convert_v1_model,
)
from satphotutils.simulation import StampSimulator
from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.flags import SATPHOT_FLAGS, decode_flags

V1_MODEL = Path(__file__).parent / 'data' / 'model_v1'


@pytest.fixture(scope='module')
def stamps():
    return StampSimulator(images_per_star=2)(150, seed=33)


@pytest.fixture(name='model_dir')
def fixture_model_dir(tmp_path):
    root = resources.files('satphotutils.data') / 'default_model'
    with resources.as_file(root) as path:
        return Path(shutil.copytree(path, tmp_path / 'model'))


def _kw(t):
    # Version-2 models ignore the frame descriptors; version 3 reads them.
    return {'sky': t['sky'], 'dx': t['dx'], 'dy': t['dy'],
            'saturation': t['saturation'], 'fwhm': t['fwhm'],
            'camera': np.full(len(t), 'bi/g')}


def _edit(directory, change):
    path = directory / 'model.json'
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))
    return path


# -- feature version 1 --------------------------------------------------------

def _v1_reference(stamps, member):
    """Version 1's prediction at Z = 25.5, from its own definition."""
    meta = json.loads((V1_MODEL / 'model.json').read_text())
    tensors = load_file(str(V1_MODEL / 'model.safetensors'))
    v2 = StampFeatures.from_dict(meta['features'] | {'version': 2})
    x2 = v2(np.asarray(stamps['stamp']), **_kw(stamps))
    constant = {'zeropoint': 25.5 - 25.0, 'has_position': 1.0}
    names = list(v2.names)
    x1 = np.column_stack([
        np.full(len(stamps), constant[name]) if name in constant
        else x2.features[:, names.index(name)]
        for name in meta['feature_names']]).astype(np.float32)
    xs = (x1 - tensors['input_mean']) / tensors['input_std']
    arch = meta['architecture']
    net = StampMLP(arch['n_features'], width=arch['width'],
                   depth=arch['depth'])
    prefix = f'member{member}.'
    net.load_state_dict({k[len(prefix):]: torch.from_numpy(v)
                         for k, v in tensors.items() if k.startswith(prefix)})
    with torch.no_grad():
        mu, log_sigma = net.eval()(torch.from_numpy(xs))
    return x2.base + mu.numpy(), np.exp(log_sigma.numpy())


def test_v1_model_converts_exactly(stamps, tmp_path):
    converted = convert_v1_model(V1_MODEL, tmp_path / 'v2')
    again = SaturatedStarModel.read(tmp_path / 'v2')
    assert again.metadata['features']['version'] == 2
    assert 'zeropoint' not in again.features.names
    record = again.metadata['training']['conversion']
    assert record['training_zeropoint'] == 25.5
    # The training command is kept next to it.
    assert again.metadata['training']['command'].startswith('satphot train')
    for model in (converted, again):
        for member, net in enumerate(model.networks):
            single = SaturatedStarModel(
                model.features, [net], input_mean=model.input_mean,
                input_std=model.input_std, metadata={})
            delta, sigma = single.predict_features(
                model.features(np.asarray(stamps['stamp']),
                               **_kw(stamps)).features)
            ref_mu, ref_sigma = _v1_reference(stamps, member)
            base = model.features(np.asarray(stamps['stamp']),
                                  **_kw(stamps)).base
            assert_allclose(base + delta, ref_mu, rtol=0, atol=1e-6)
            assert_allclose(sigma, ref_sigma, rtol=1e-6)


def test_bundled_model_is_camera_agnostic_and_guarded():
    bundled = SaturatedStarModel.default()
    assert bundled.features.version == 3
    assert bundled.features.cameras == ()
    assert bundled.metadata['architecture']['type'] == 'mlp'
    assert bundled.guard is not None
    assert bundled.guard.sigma_limit == 0.1
    assert 'satphot train' in bundled.metadata['training']['command']
    size = sum(p.stat().st_size for p in Path(
        resources.files('satphotutils.data') / 'default_model').iterdir())
    assert size < 5e6


@pytest.mark.parametrize('name', ['zeropoint', 'has_position'])
def test_v1_model_with_a_varying_input_is_refused(name, tmp_path):
    out = Path(shutil.copytree(V1_MODEL, tmp_path / 'v1'))
    meta = json.loads((out / 'model.json').read_text())
    tensors = load_file(str(out / 'model.safetensors'))
    tensors['input_std'][meta['feature_names'].index(name)] = 0.37
    save_file(tensors, str(out / 'model.safetensors'))
    with pytest.raises(SatphotutilsError, match=f'{name}.*retrain'):
        SaturatedStarModel.read(out)
    with pytest.raises(SatphotutilsError, match='retrain'):
        convert_v1_model(out, tmp_path / 'v2')


def test_only_v1_models_are_converted(model_dir, tmp_path):
    with pytest.raises(SatphotutilsError, match='not a feature-version-1'):
        convert_v1_model(model_dir, tmp_path / 'out')


def test_predicted_counts_do_not_depend_on_the_zero_point():
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    from satphotutils.photometry import SaturatedStarPhotometry
    from satphotutils.simulation import (
        Camera,
        Detector,
        FrameSimulator,
        Scene,
    )

    centre = SkyCoord(150, -40, unit='deg')
    scene = Scene(centre.directional_offset_by(
        [0, 90, 180, 270] * u.deg, [1, 3, 2, 2.5] * u.arcmin),
        [6.5, 8.0, 10.0, 12.5], [1.0] * 4)
    camera = Camera(detector=Detector(shape=(240, 240)))
    frame, _ = FrameSimulator(camera=camera, pointing=centre)(
        scene, mjd=59000.0, seed=4)
    # Four stars: too few to measure the FWHM on, so it is given.
    phot = SaturatedStarPhotometry(fwhm=2.0)
    tables = {z: phot(frame, skycoord=scene.coord, zeropoint=z)
              for z in (20.0, 25.5, 28.0)}
    ref = tables[25.5]
    assert np.isfinite(ref['log_counts']).all()
    for z, table in tables.items():
        assert_allclose(table['log_counts'], ref['log_counts'], rtol=0,
                        atol=0)
        assert_allclose(table['flux'].value, ref['flux'].value, rtol=0)
        # Only the magnitudes move, by the zero point.
        assert_allclose((table['mag'] - ref['mag']).value, z - 25.5,
                        atol=1e-9)


# -- the registry and the checks of model.json --------------------------------

def test_unknown_architecture_type_names_file_type_and_registry(model_dir):
    path = _edit(model_dir, lambda m: m['architecture'].update(
        type='transformer'))
    with pytest.raises(SatphotutilsError) as info:
        SaturatedStarModel.read(model_dir)
    text = str(info.value)
    assert str(path) in text
    assert "'transformer'" in text
    assert 'cnn' in text
    assert 'mlp' in text


def test_architecture_without_type_is_an_mlp(model_dir, stamps):
    _edit(model_dir, lambda m: m['architecture'].pop('type'))
    model = SaturatedStarModel.read(model_dir)
    assert isinstance(model.networks[0], StampMLP)
    ref = SaturatedStarModel.default()
    assert_allclose(model(np.asarray(stamps['stamp']),
                          **_kw(stamps)).log_counts,
                    ref(np.asarray(stamps['stamp']),
                        **_kw(stamps)).log_counts)


@pytest.mark.parametrize(('field', 'value'), [
    ('width', 1e8), ('width', 100_000_000), ('depth', 1e6),
    ('depth', 1_000_000), ('width', 0), ('depth', True), ('width', 'wide')])
def test_hostile_architecture_sizes_are_refused_quickly(model_dir, field,
                                                        value):
    path = _edit(model_dir, lambda m: m['architecture'].update(
        {field: value}))
    start = time.perf_counter()
    with pytest.raises(SatphotutilsError,
                       match=f'architecture.{field} must be an integer'
                       ) as info:
        SaturatedStarModel.read(model_dir)
    assert time.perf_counter() - start < 5
    assert str(path) in str(info.value)


def test_shapes_are_checked_before_networks_are_built(model_dir,
                                                      monkeypatch):
    # The largest allowed MLP (4096 x 16, 1 GB of weights) against a
    # 1.5 MB file: refused from the header, without building it.
    _edit(model_dir, lambda m: m['architecture'].update(width=4096,
                                                         depth=16))
    built = []
    original = StampMLP.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        built.append(next(self.parameters()).device.type)

    monkeypatch.setattr(StampMLP, '__init__', spy)
    with pytest.raises(SatphotutilsError, match='does not match its '
                       r'architecture.*member0.body.0.weight has shape'):
        SaturatedStarModel.read(model_dir)
    assert built == ['meta']


def _set_tensor(name, value):
    def change(directory):
        path = directory / 'model.safetensors'
        tensors = load_file(str(path))
        tensors[name] = value(tensors[name])
        save_file(tensors, str(path))
        return path
    return change


def _set_json(*keys, value):
    def change(directory):
        def edit(meta):
            target = meta
            for key in keys[:-1]:
                target = target[key]
            target[keys[-1]] = value
        return _edit(directory, edit)
    return change


@pytest.mark.parametrize(('change', 'field'), [
    (_set_json('architecture', 'members', value=0), 'architecture.members'),
    (_set_json('architecture', 'members', value='two'),
     'architecture.members'),
    (_set_json('architecture', 'members', value=1000),
     'architecture.members'),
    (_set_json('architecture', 'n_features', value=12),
     'architecture.n_features'),
    (_set_json('architecture', value=[256, 3]), 'architecture'),
    (_set_json('features', 'psf_fwhm', value=0.0), 'features.psf_fwhm'),
    (_set_json('features', 'psf_fwhm', value=float('nan')),
     'features.psf_fwhm'),
    (_set_json('features', 'stamp_size', value='21'), 'features.stamp_size'),
    (_set_json('label_range', value=[4.0]), 'label_range'),
    (_set_json('label_range', value=[float('nan'), 9.0]), 'label_range'),
    (_set_json('label_range', value=[9.0, 4.0]), 'label_range'),
    (_set_json('saturation_log_counts', value='5.7'),
     'saturation_log_counts'),
    (_set_json('uncertainty_scale', 'single', 'saturated', value=-1.0),
     'uncertainty_scale.single.saturated'),
    (_set_json('uncertainty_scale', 'ensemble', value=0.5),
     'uncertainty_scale.ensemble'),
    (_set_json('classical', value={'lo': 1}), 'classical'),
    (_set_json('classical', 0, 'lo', value=None), r'classical\[0\].lo'),
    (_set_json('classical', 0, 'psf', 'offset', value='x'),
     r'classical\[0\].psf.offset'),
    (_set_tensor('input_std', lambda v: np.zeros_like(v)), 'input_std'),
    (_set_tensor('input_mean', lambda v: np.full_like(v, np.nan)),
     'input_mean'),
    (_set_tensor('input_mean', lambda v: v[:-1]), 'input_mean'),
])
def test_every_model_json_field_is_checked(model_dir, change, field):
    path = change(model_dir)
    with pytest.raises(SatphotutilsError, match=field) as info:
        SaturatedStarModel.read(model_dir)
    assert str(path) in str(info.value)


def test_top_level_must_be_an_object(model_dir):
    (model_dir / 'model.json').write_text('[1, 2, 3]')
    with pytest.raises(SatphotutilsError, match='JSON object at the top'):
        SaturatedStarModel.read(model_dir)


def test_registering_a_taken_type_is_refused():
    from satphotutils.network import register_architecture

    class Other(StampMLP):
        architecture_type = 'mlp'

    with pytest.raises(ValueError, match="'mlp' is already registered"):
        register_architecture(Other)


# -- prediction ---------------------------------------------------------------

def test_model_level_lookup_has_its_own_flag_and_method(stamps):
    model = SaturatedStarModel.default()
    model.metadata['classical'] = [{
        'lo': -9.0, 'hi': 9.0, 'network': 0.5,
        'psf': {'offset': 0.01, 'dispersion': 0.05},
        'ap2': {'offset': 0.0, 'dispersion': 0.2}}]
    x = model.features(np.asarray(stamps['stamp']), **_kw(stamps))
    plain = model.predict_prepared(x)
    pred = model.predict_prepared(x, hybrid=True)
    used = pred.method == 'lookup_psf'
    assert used.any()
    assert np.array_equal(used, ~plain.saturated & (pred.flags
                          & SATPHOT_FLAGS.CLASSICAL_LOOKUP != 0))
    assert not (pred.flags & SATPHOT_FLAGS.HYBRID_CLASSICAL).any()
    assert set(pred.method[~used]) == {'network'}
    # The value is the PSF-weighted flux (a unit-flux Gaussian matched
    # filter of the frame's FWHM over the 5-px circle) plus the offset.
    yy, xx = np.mgrid[-10:11, -10:11]
    circle = np.hypot(xx, yy) <= 5
    for i in np.flatnonzero(used)[:20]:
        sig2 = (float(stamps['fwhm'][i]) / 2.3548) ** 2
        pix = np.asarray(stamps['stamp'][i], float)[circle] - x.local_bkg[i]
        d2 = (xx[circle] - stamps['dx'][i])**2 + (yy[circle]
                                                  - stamps['dy'][i])**2
        prof = np.exp(-0.5 * d2 / sig2) / (2 * np.pi * sig2)
        flux = np.sum(prof * pix) / np.sum(prof**2)
        assert_allclose(pred.log_counts[i], np.log10(flux) + 0.01,
                        atol=1e-5)
    assert_allclose(pred.log_counts_err[used],
                    plain.log_counts_err[used] * 0.05 / 0.5)
    assert decode_flags(33554432) == ['classical_lookup']


def test_prediction_is_typed_and_concatenates(stamps):
    from satphotutils.network import Prediction

    model = SaturatedStarModel.default()
    whole = model(np.asarray(stamps['stamp']), **_kw(stamps))
    batched = model(np.asarray(stamps['stamp']), **_kw(stamps),
                    batch_size=64)
    assert isinstance(whole, Prediction)
    assert len(whole) == len(stamps)
    assert_allclose(batched.log_counts, whole.log_counts, atol=1e-6)
    assert list(batched.method) == list(whole.method)


def test_nan_pixels_flagged_only_where_the_network_reads_them():
    from satphotutils.photometry import SaturatedStarPhotometry

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:80, 0:80]
    s = 1.8 / 2.3548
    image = 300.0 + rng.normal(0, 5, (80, 80)) + 2e5 * np.exp(
        -0.5 * ((xx - 40.2)**2 + (yy - 39.9)**2) / s**2) / (2 * np.pi * s**2)
    phot = SaturatedStarPhotometry(hybrid=False, saturation_level=6e4,
                                   fwhm=1.8)
    ref = phot(image, positions=[[40.2, 39.9]])
    corner = image.copy()
    corner[50, 50] = np.nan  # r = 14 px: not read
    got = phot(corner, positions=[[40.2, 39.9]])
    assert not got['flags'][0] & SATPHOT_FLAGS.NON_FINITE_DATA
    assert_allclose(got['log_counts'], ref['log_counts'])
    annulus = image.copy()
    annulus[40, 48] = np.nan  # r = 8 px, |x| > 2: in the background
    got = phot(annulus, positions=[[40.2, 39.9]])
    assert got['flags'][0] & SATPHOT_FLAGS.NON_FINITE_DATA


# -- devices ------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason='a CUDA device exists')
def test_unavailable_device_is_refused():
    from satphotutils.photometry import SaturatedStarPhotometry

    model = SaturatedStarModel.default()
    with pytest.raises(SatphotutilsError, match="'cuda' was asked for but "
                       'no CUDA device is available'):
        model.to('cuda')
    with pytest.raises(SatphotutilsError, match='no CUDA device'):
        SaturatedStarPhotometry(device='cuda')
    with pytest.raises(SatphotutilsError, match="unknown device 'gpu0'"):
        SaturatedStarModel.default(device='gpu0')
    assert model.device.type == 'cpu'


def test_cpu_device_is_used(stamps):
    model = SaturatedStarModel.default(device='cpu')
    assert model.device == torch.device('cpu')
    assert all(p.device.type == 'cpu' for net in model.networks
               for p in net.parameters())
    pred = model(np.asarray(stamps['stamp']), **_kw(stamps))
    assert np.isfinite(pred.log_counts).all()


def test_cli_device_option(tmp_path, capsys):
    from satphotutils.cli import main
    from satphotutils.stamps import StampTableWriter

    t = StampSimulator()(20, seed=2)
    path = tmp_path / 'stamps.fits'
    with StampTableWriter(path) as writer:
        writer.write({name: np.asarray(t[name]) for name in t.colnames})
    assert main(['predict', str(path), '-o', str(tmp_path / 'p.fits'),
                 '--device', 'cpu']) == 0
    if not torch.cuda.is_available():
        assert main(['predict', str(path), '-o', str(tmp_path / 'q.fits'),
                     '--device', 'cuda']) == 1
        assert 'no CUDA device is available' in capsys.readouterr().err


def test_stamp_table_without_offsets_is_refused(stamps):
    from satphotutils.network.dataset import features_of

    table = stamps.copy()
    table.remove_columns(['dx', 'dy'])
    with pytest.raises(SatphotutilsError, match='no dx, dy column'):
        features_of(table, StampFeatures())
