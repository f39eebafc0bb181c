import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose

from satphotutils.simulation import (
    AXES,
    RANGES,
    Camera,
    CameraFamily,
    CoreHaloPSF,
    Detector,
    ExposureConditions,
    GaussianPSF,
    MoffatPSF,
    StampSimulator,
    SurveyPipeline,
    expose_and_read,
    observe,
    render_stars,
)
from satphotutils.stamps import read_stamp_table

# Taken on main before the families existed: the single-camera output
# must stay what it was, since the bundled model and its documented
# figures come from it. It was a SHA-256 of every column's bytes until
# 2026-12-02, when a machine with AVX-512 kernels gave other last bits
# from the same code (58bea30, which passed it before): now the column
# sums (float64) of that same output, to 1e-6 (a change of the draws or
# the physics moves them by orders of magnitude more).
_MAIN_SUMS = {
    'stamp': 4189510473.0, 'log_counts': 530.1237605686644,
    'sky': 24309.849139373404, 'g': 712.8517011842888,
    'true_log_counts': 530.102640655683, 'G': 668.2087110688029,
    'bp_rp': 78.20080908595429, 'f_c': 0.04895495922176125,
    'b_c': 924.0785198356446, 'transparency': 81.7746997723504,
    'fwhm_true': 144.35975633572787, 'mjd': 4728863.177643374,
    'x_ref': 81470.60515274799, 'y_ref': 85214.52046036771,
    'dx': -1.394847252013676, 'dy': -1.4795396323057162,
    'n_unity': 560.0, 'received': 0.0}


def _check_main_output(table):
    for name, total in _MAIN_SUMS.items():
        value = np.sum(np.asarray(table[name], dtype=np.float64))
        assert_allclose(value, total, rtol=1e-6, atol=1e-9, err_msg=name)
    assert len(table) == 80
    assert len(set(np.asarray(table['star_id']))) == 40


@pytest.fixture(scope='module', name='draws')
def fixture_draws():
    rng = np.random.default_rng(12)
    return [CameraFamily()(rng) for _ in range(300)]


def test_single_camera_output_is_unchanged():
    table = StampSimulator(images_per_star=2)(40, seed=2024)
    _check_main_output(table)
    # The new columns describe the single camera.
    detector = Detector()
    flat = detector.flat(table['y_ref'], table['x_ref'])
    # At the dithered position: the flat changes by up to 1.5% over the
    # dither.
    assert_allclose(table['saturation'], detector.saturation_counts / flat,
                    rtol=0.015)
    assert set(table['family_psf']) == {'moffat'}
    assert set(table['family_saturation']) == {'adc'}
    assert set(table['family_bleed']) == {'symmetric'}
    assert set(table['bleed_up']) == {0.5}


@pytest.mark.parametrize(('exclude', 'only'), [
    ({'psf': 'gaussian'}, None),
    (None, {'psf': 'gaussian'}),
    ({'correction': {'asas'}, 'filter': 'V'}, {'storage': ['float']}),
    ({'saturation': 'adc'}, {'psf': ('moffat', 'core_halo')}),
])
def test_exclude_and_only_are_honoured(exclude, only):
    rng = np.random.default_rng(5)
    family = CameraFamily(exclude=exclude, only=only)
    seen = {axis: set() for axis in AXES}
    for _ in range(200):
        draw = family(rng)
        for axis, name in draw.labels.items():
            seen[axis].add(name)
    for axis, names in AXES.items():
        allowed = set(names)
        for spec, keep in ((only, True), (exclude, False)):
            if spec and axis in spec:
                given = spec[axis]
                given = {given} if isinstance(given, str) else set(given)
                allowed = allowed & given if keep else allowed - given
        # Every allowed family is drawn, and nothing else.
        assert seen[axis] == allowed, axis


def test_bad_restrictions_are_refused():
    with pytest.raises(ValueError, match="unknown axis 'colour'"):
        CameraFamily(exclude={'colour': 'red'})
    with pytest.raises(ValueError, match="unknown 'psf' family airy"):
        CameraFamily(only={'psf': 'airy'})
    with pytest.raises(ValueError, match="leave no 'storage' family"):
        CameraFamily(exclude={'storage': {'uint16', 'float'}})
    with pytest.raises(TypeError, match='must be a dict'):
        CameraFamily(only='gaussian')


def _inside(value, name):
    lo, hi = RANGES[name]
    return lo - 1e-9 <= value <= hi + 1e-9


def test_every_draw_stays_within_the_documented_ranges(draws):
    rng = np.random.default_rng(3)
    for draw in draws:
        det, cond = draw.camera.detector, draw.conditions
        assert _inside(det.gain, 'gain')
        assert _inside(det.read_noise, 'read_noise')
        assert _inside(det.bias, 'bias')
        assert _inside(det.nonlinearity, 'nonlinearity')
        assert _inside(det.corner_throughput, 'corner_throughput')
        assert _inside(det.pixel_scale.value, 'pixel_scale')
        assert det.adc_max in (2**14 - 1, 2**16 - 1)
        ratio = det.full_well / ((det.adc_max - det.bias) * det.gain)
        assert _inside(ratio, 'full_well_ratio')
        # The saturation class is what the detector does.
        full_well_first = det.plateau_adu < det.adc_max
        assert full_well_first == (draw.labels['saturation'] == 'full_well')
        assert _inside(cond.zeropoint, 'zeropoint')
        assert _inside(draw.saturation_magnitude, 'saturation_magnitude')
        assert _inside(draw.crowding, 'crowding')
        pipe = draw.pipeline
        assert _inside(pipe.misplace_rate, 'misplace_rate')
        assert _inside(pipe.lost_rate, 'lost_rate')
        assert _inside(pipe.fwhm_factor, 'fwhm_factor')
        assert _inside(pipe.damage_fraction, 'damage_fraction')
        assert pipe.clip_storage == (draw.labels['storage'] == 'uint16')
        if draw.labels['storage'] == 'float':
            assert pipe.damage_fraction == 0
        for _ in range(5):
            c = cond(rng, mjd=59000.0)
            assert _inside(c.fwhm, 'fwhm')
            assert _inside(c.beta, 'beta')
            assert _inside(c.sky, 'sky')
            # The sky stays far below the saturation level.
            assert c.sky < 0.11 * det.plateau_counts
            assert _inside(c.transparency, 'transparency')
            assert _inside(c.ellipticity, 'ellipticity')
            assert _inside(c.ellipticity_gradient, 'ellipticity_gradient')
            assert _inside(c.fwhm_gradient, 'fwhm_gradient')
            assert c.psf_family == draw.labels['psf']
            if draw.labels['psf'] == 'core_halo':
                assert _inside(c.halo_fraction, 'halo_fraction')
                assert _inside(c.halo_scale, 'halo_scale')
    # The draws span the ranges, not a corner of them.
    zp = [d.conditions.zeropoint for d in draws]
    assert min(zp) < 22
    assert max(zp) > 26
    g_sat = [d.saturation_magnitude for d in draws]
    assert min(g_sat) < 8.5
    assert max(g_sat) > 12.5
    assert {d.camera.filter for d in draws} == {'g', 'V'}
    assert len({d.code for d in draws}) == len(draws)
    assert 'CameraDraw' in repr(draws[0])


def test_stars_saturate_at_the_saturation_magnitude(draws):
    # Noise-free peak pixel of a centred star at median conditions, from
    # the renderer: the plateau at g_sat, within the PSF rounding.
    for draw in draws[:40]:
        cond = draw.conditions
        det = draw.camera.detector
        conditions = ExposureConditions(
            mjd=0.0, zeropoint=cond.zeropoint,
            fwhm=float(np.sqrt(cond.fwhm[0] * cond.fwhm[1])),
            beta=float(np.mean(cond.beta)), ellipticity=0.0,
            psf_family=cond.psf_family, halo_fraction=cond.halo_fraction,
            halo_scale=cond.halo_scale)
        flux = conditions.counts(draw.saturation_magnitude)
        image = render_stars((41, 41), [20.0], [20.0], [flux],
                             conditions.psf(det))
        sky = np.sqrt(cond.sky[0] * cond.sky[1])
        assert_allclose(image.max() + sky, det.plateau_counts, rtol=0.03)


def _outside(psf, radius, size=301):
    c = size // 2
    image = render_stars((size, size), [c], [c], [1e4], psf) / 1e4
    yy, xx = np.mgrid[:size, :size] - c
    return float(image[np.hypot(xx, yy) > radius].sum())


def test_psf_families_differ_in_their_wings():
    fwhm = 2.0
    gauss = _outside(GaussianPSF(fwhm=fwhm, adaptive=True), 3 * fwhm)
    moffat = _outside(MoffatPSF(fwhm=fwhm, beta=1.5, adaptive=True),
                      3 * fwhm)
    # Closed forms: exp(-r^2 / 2 sigma^2) and (1 + (r/alpha)^2)^(1-beta).
    sigma = fwhm / (2 * np.sqrt(2 * np.log(2)))
    assert gauss < 10 * np.exp(-0.5 * (3 * fwhm / sigma) ** 2) + 1e-6
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / 1.5) - 1))
    expected = (1 + (3 * fwhm / alpha) ** 2) ** -0.5
    assert_allclose(moffat, expected, rtol=0.05)
    assert moffat > 0.15
    # A core-halo profile has the FWHM asked for and its halo's light far
    # out.
    psf = CoreHaloPSF(fwhm=fwhm, halo_fraction=0.15, halo_scale=6.0,
                      beta=2.0, adaptive=True)
    r = np.linspace(0, 3, 3001)
    profile = psf.evaluate(r, np.zeros_like(r))
    half = r[np.argmin(np.abs(profile - profile[0] / 2))]
    assert_allclose(2 * half, fwhm, atol=0.005)
    far = _outside(psf, 3 * fwhm)
    assert 0.1 * 0.15 < far < 0.15
    assert far > 100 * gauss


def test_drawn_conditions_render_their_family():
    rng = np.random.default_rng(2)
    kinds = {'gaussian': GaussianPSF, 'moffat': MoffatPSF,
             'core_halo': CoreHaloPSF}
    for name, kind in kinds.items():
        draw = CameraFamily(only={'psf': name})(rng)
        psf = draw.conditions(rng, mjd=0.0).psf(draw.camera.detector)
        assert type(psf) is kind


def _star_electrons(detector, peak_charge, *, shape=(400, 15)):
    psf = GaussianPSF(fwhm=2.0)
    image = render_stars(shape, [7.0], [200.0], [1.0], psf)
    return (image * peak_charge / image.max() + 100 * detector.gain)[None]


def test_adc_saturation_clips_without_bleeding():
    rng = np.random.default_rng(4)
    family = CameraFamily(only={'saturation': 'adc'})
    for _ in range(5):
        det = family(rng).camera.detector
        # Peak charge between the ADC range and the full well.
        adc_range = (det.adc_max - det.bias) * det.gain
        peak = np.sqrt(adc_range * det.full_well)
        raw, lost, _ = expose_and_read(_star_electrons(det, peak), det, rng)
        clipped = raw[0] == det.adc_max
        assert clipped.any()
        # Only the core clips: no pixel off the star's footprint rises.
        rows = np.flatnonzero(clipped.any(axis=1))
        assert np.ptp(rows) < 10
        assert lost[0] == 0


def test_full_well_saturation_bleeds_to_a_plateau_below_the_adc():
    rng = np.random.default_rng(6)
    family = CameraFamily(only={'saturation': 'full_well'})
    for _ in range(5):
        det = family(rng).camera.detector
        raw, _, _ = expose_and_read(_star_electrons(det, 8 * det.full_well),
                                    det, rng)
        raw = raw[0].astype(float)
        assert raw.max() < det.adc_max
        column = raw[:, 7]
        # A trail far longer than the core, at the plateau to the read
        # noise.
        plateau = column > det.bias + 0.97 * det.plateau_counts
        assert plateau.sum() > 12
        noise = 4 * det.read_noise / det.gain + 1
        # The last pixel at each end of the trail holds what is left of
        # the excess, up to a full well.
        inner = np.flatnonzero(plateau)[1:-1]
        assert_allclose(column[inner].mean(), det.plateau_adu, atol=noise)
        # The pipeline finds these pixels saturated.
        assert np.all(raw[plateau.nonzero()[0], 7]
                      >= SurveyPipeline.saturation_threshold(det))


def test_nonlinearity_rolls_off_near_the_full_well():
    det = Detector(shape=(8, 8), nonlinearity=0.04, read_noise=0.0,
                   gain=1.0, bias=100.0, full_well=40000.0)
    from satphotutils.simulation.exposure import read_out
    rng = np.random.default_rng(0)
    for fill in (0.25, 0.5, 1.0):
        raw = read_out(np.full((8, 8), fill * det.full_well), det, rng)
        expected = fill * det.full_well * (1 - 0.04 * fill**2) + 100.0
        assert_allclose(raw.astype(float), expected, atol=0.5)
    assert_allclose(det.plateau_adu, 100.0 + 40000.0 * 0.96)


def test_storage_classes():
    image = np.array([[10.4, 70000.0, 80000.0], [-3.0, 65535.0, 5.0]])
    corrected = np.array([[False, True, False], [False, False, False]])
    clip = SurveyPipeline(clip_storage=True)
    stored, bad = clip.store(image, damaged=False)
    assert stored.max() == 65535
    assert stored.min() == 0
    stored, bad = clip.store(image, damaged=True, corrected=corrected)
    assert stored[0, 1] == 1.0
    assert stored[0, 2] == 65535
    stored, bad = SurveyPipeline(damage_fraction=0.0).store(image,
                                                            damaged=False)
    assert stored.max() == 80000
    assert not bad.any()


@pytest.fixture(scope='module', name='family_stamps')
def fixture_family_stamps():
    sim = StampSimulator(family=CameraFamily(), stars_per_camera=12,
                         images_per_star=2, g_range=(3.0, 15.0))
    return sim, sim(36, seed=21)


def test_table_labels_match_the_draws(family_stamps):
    sim, table = family_stamps
    seqs = np.random.SeedSequence(21).spawn(3)
    codes = list(dict.fromkeys(table['camera']))
    assert len(codes) == 3
    for code, seq in zip(codes, seqs, strict=True):
        # A chunk draws its camera first from its own generator.
        draw = sim.family(np.random.default_rng(seq))
        rows = table[table['camera'] == code]
        assert draw.code == code
        for axis in ('psf', 'correction', 'saturation', 'storage',
                     'bleed'):
            assert set(rows[f'family_{axis}']) == {draw.labels[axis]}
        for name in ('bleed_up', 'bleed_loss', 'bloom_fraction'):
            assert set(rows[name]) == {getattr(draw.camera.detector, name)}
        assert set(rows['filter']) == {draw.labels['filter']}
        assert_allclose(rows['zeropoint'], draw.conditions.zeropoint)
        det = draw.camera.detector
        level = det.plateau_counts / det.flat(rows['y_ref'], rows['x_ref'])
        if draw.pipeline.clip_storage:
            level = np.minimum(level, 65535)
        assert_allclose(rows['saturation'], level, rtol=0.02)
        assert np.all((rows['fwhm_true'] >= RANGES['fwhm'][0])
                      & (rows['fwhm_true'] <= RANGES['fwhm'][1]))


def test_stored_values_follow_the_storage_family(family_stamps):
    _, table = family_stamps
    stamps = np.asarray(table['stamp'])
    uint16 = np.asarray(table['family_storage']) == 'uint16'
    assert np.nanmax(stamps[uint16], initial=0) <= 65535
    assert not table['damaged'][~uint16].any()
    assert np.all(table['n_unity'][~uint16] == 0)


def test_labels_are_eq1_of_the_true_counts_for_isolated_stars():
    # A Gaussian camera holds all the light of a star within 8 px, so the
    # sky-subtracted sum there is the label within the noise.
    sim = StampSimulator(family=CameraFamily(only={'psf': 'gaussian'}),
                         stars_per_camera=15, images_per_star=2,
                         g_range=(11.0, 15.0), latitude_range=(60, 90))
    table = sim(45, seed=8)
    sel = ~table['saturated'] & (table['f_c'] < 0.01)
    assert sel.sum() > 20
    # The label is Eq. 1 of the star's true counts (colour term zero).
    assert_allclose(table['log_counts'][sel],
                    np.log10(10 ** table['true_log_counts'][sel]
                             * (1 + table['f_c'][sel]) - table['b_c'][sel]),
                    atol=1e-9)
    yy, xx = np.mgrid[-10:11, -10:11]
    inner = np.hypot(xx, yy) <= 8
    ratios, pulls = [], []
    for row in table[sel]:
        stamp = np.asarray(row['stamp'], dtype=float)
        if not np.isfinite(stamp).all():
            continue
        sky = np.median(stamp[~inner])
        total = np.sum(stamp[inner] - sky)
        counts = 10 ** row['log_counts']
        noise = np.sqrt(counts + inner.sum() * sky * 3)
        ratios.append(total / counts)
        pulls.append((total - counts) / noise)
    assert abs(np.median(ratios) - 1) < 0.03
    assert np.median(np.abs(pulls)) < 3


def _put_back_residual(fwhm_factor, rng):
    camera = Camera(detector=Detector(shape=(400, 81)))
    cond = ExposureConditions(mjd=0.0, zeropoint=25.5, fwhm=2.0, sky=200.0)
    flux = cond.counts(8.5)
    kw = {'window': (180, 20, 41, 41), 'camera': camera, 'conditions': cond,
          'rng': rng, 'trail_rows': 150, 'trail_cols': 10}
    obs = observe(np.array([40.3]), np.array([200.6]), np.array([flux]),
                  pipeline=SurveyPipeline(misplace_rate=0.0, lost_rate=0.0,
                                          damage_fraction=0.0,
                                          fwhm_factor=fwhm_factor), **kw)
    truth = render_stars((41, 41), [20.3], [20.6], [flux], cond.psf(
        camera.detector)) + cond.sky
    return np.sqrt(np.nanmean((obs.image - truth) ** 2))


def test_a_misset_correction_leaves_a_larger_residual():
    rng = np.random.default_rng(9)
    standard = _put_back_residual(1.0, rng)
    for factor in (0.7, 1.3):
        assert _put_back_residual(factor, rng) > 1.3 * standard
    # And the family's mis-set variant is mis-set.
    family = CameraFamily(only={'correction': 'asas_misset'})
    for _ in range(50):
        pipe = family(rng).pipeline
        assert abs(pipe.fwhm_factor - 1) >= 0.1 - 1e-12
        assert pipe.resample_order != 1
    assert CameraFamily(only={'correction': 'asas'})(rng).pipeline \
        .fwhm_factor == 1


def test_call_and_write_agree_and_cameras_change_per_chunk(tmp_path):
    sim = StampSimulator(family=CameraFamily(only={'psf': 'gaussian'}),
                         stars_per_camera=4, images_per_star=1,
                         g_range=(10.0, 14.0))
    table = sim(8, seed=3)
    path = tmp_path / 'family.fits'
    assert sim.write(path, 8, seed=3, n_workers=1) == 8
    written = read_stamp_table(path)
    for name in ('stamp', 'camera', 'family_storage', 'saturation'):
        assert np.array_equal(np.asarray(written[name]),
                              np.asarray(table[name])), name
    assert len(set(table['camera'])) == 2


def test_cli_simulate_stamps_with_a_family(tmp_path):
    out = tmp_path / 'fam.fits'
    proc = subprocess.run(
        [sys.executable, '-m', 'satphotutils.cli', 'simulate', 'stamps',
         str(out), '--n-stars', '4', '--images-per-star', '1', '--seed',
         '1', '--gmin', '10', '--gmax', '13', '--workers', '1', '--family',
         '--only', 'psf=gaussian', '--exclude', 'storage=uint16',
         '--stars-per-camera', '2'],
        capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    table = read_stamp_table(out)
    assert set(table['family_psf']) == {'gaussian'}
    assert set(table['family_storage']) == {'float'}
    assert len(set(table['camera'])) == 2


@pytest.mark.parametrize(('args', 'message'), [
    (['--family', '--only', 'psf=airy'], 'unknown psf family airy'),
    (['--family', '--exclude', 'colour=red'], 'AXIS one of psf'),
    (['--exclude', 'psf=gaussian'], '--exclude and --only need --family'),
    (['--family', '--camera', 'bi:g'], '--camera and --family exclude'),
    (['--family', '--exclude', 'storage=uint16,float'],
     "leave no 'storage' family"),
])
def test_cli_family_errors_are_one_line(args, message, capsys):
    from satphotutils.cli import main

    code = main(['simulate', 'stamps', 'x.fits', '--n-stars', '1', *args]) \
        if '=airy' not in args[-1] and 'colour' not in args[-1] else None
    if code is None:
        with pytest.raises(SystemExit) as exc:
            main(['simulate', 'stamps', 'x.fits', '--n-stars', '1', *args])
        assert exc.value.code == 2
    else:
        assert code != 0
    err = capsys.readouterr().err
    assert message in err
    assert 'Traceback' not in err
