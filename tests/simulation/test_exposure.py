import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from satphotutils.simulation import (
    Detector,
    MoffatPSF,
    bleed_columns,
    expose,
    expose_and_read,
    read_out,
    render_stars,
)


def _star_charge(g, *, zeropoint=25.5, gain=1.5, shape=(2048, 41)):
    psf = MoffatPSF(fwhm=1.7)
    flux = 10 ** (-0.4 * (g - zeropoint))
    image = render_stars(shape, [20.2], [shape[0] / 2 + 0.3], [flux], psf)
    return (image + 250.0) * gain


@pytest.mark.parametrize('g', [4.0, 6.0, 8.0, 10.0])
def test_bleeding_conserves_charge(g, rng):
    electrons = expose(_star_charge(g), rng)
    before = electrons.sum()
    lost = bleed_columns(electrons, 130000.0)
    assert lost == 0
    assert_allclose(electrons.sum(), before, rtol=1e-6)
    assert electrons.max() <= 130000.0 * (1 + 1e-12)


def test_charge_that_reaches_both_ends_is_counted_as_lost():
    column = np.full((10, 1), 50.0)
    column[5] = 5000.0
    total = column.sum()
    lost = bleed_columns(column, 100.0)
    assert_allclose(column.sum() + lost, total)
    assert np.all(column == 100.0)


def test_trail_length_is_proportional_to_excess_charge():
    full_well = 130000.0
    sky = 250.0 * 1.5
    lengths, star_charge = [], []
    for g in (4.0, 4.5, 5.0, 5.5, 6.0):
        charge = _star_charge(g)
        star_charge.append(charge[:, 20].sum() - sky * charge.shape[0])
        bleed_columns(charge, full_well)
        lengths.append((charge[:, 20] >= full_well).sum())
    # Every trail pixel is filled from its own sky level up to the full
    # well, so the trail holds (full well - sky) of the star per pixel.
    slope, intercept = np.polyfit(star_charge, lengths, 1)
    assert_allclose(slope, 1 / (full_well - sky), rtol=0.01)
    assert abs(intercept) < 3
    assert lengths[0] > 1000 > lengths[-1] > 200


def test_bleeding_runs_along_columns_only():
    charge = _star_charge(6.0)
    columns_before = (charge > 130000.0).any(axis=0)
    bleed_columns(charge, 130000.0)
    columns_after = (charge >= 130000.0).any(axis=0)
    assert np.array_equal(columns_before, columns_after)
    # Hundreds of rows long, a handful of columns wide.
    rows = (charge >= 130000.0).any(axis=1).sum()
    assert rows > 100
    assert columns_after.sum() < 12


def test_noise_statistics_of_the_raw_frame(rng):
    detector = Detector(shape=(200, 200), gain=1.5, read_noise=12.0,
                        bias=3000.0)
    electrons = expose(np.full(detector.shape, 450.0), rng)
    raw = read_out(electrons, detector, rng).astype(float)
    assert_allclose(raw.mean(), 3000.0 + 450.0 / 1.5, atol=0.2)
    expected_var = (450.0 + 12.0**2) / 1.5**2
    assert_allclose(raw.var(), expected_var, rtol=0.03)


def test_low_counts_are_poisson(rng):
    electrons = expose(np.full(100000, 3.0), rng)
    assert np.all(electrons == np.round(electrons))
    assert_allclose(electrons.mean(), 3.0, rtol=0.02)
    assert_allclose(electrons.var(), 3.0, rtol=0.03)


def test_readout_clips_at_the_adc_maximum(rng):
    detector = Detector(shape=(8, 8))
    raw = read_out(np.full(detector.shape, 1e6), detector, rng)
    assert raw.dtype == np.uint16
    assert np.all(raw == detector.adc_max)


def test_vignetting_flat():
    detector = Detector(shape=(2048, 2048), corner_throughput=0.5)
    assert_allclose(detector.flat(1023.5, 1023.5), 1.0)
    assert_allclose(detector.flat(0, 0), 0.5)
    assert_allclose(detector.flat(2047, 0), 0.5)
    # Raw saturation near 60,000 counts; in flat-fielded units the level
    # doubles in the corners.
    assert 58000 < detector.saturation_counts < 64000
    assert_allclose(detector.saturation_counts / detector.flat(0, 0),
                    2 * detector.saturation_counts)


def test_fused_exposure_matches_the_separate_steps(rng):
    detector = Detector(shape=(2048, 2048))
    sky = np.full((2, 300, 40), 450.0)
    star = _star_charge(6.0, shape=(300, 40))[None]
    expected = np.concatenate([sky, star])
    raw, lost, ends = expose_and_read(expected, detector, rng)
    assert raw.dtype == np.uint16
    # Sky columns: Poisson plus read noise, as expose + read_out give:
    # both against the analytic mean and variance (24,000 pixels, so the
    # standard error of the mean is 0.1 ADU).
    reference = read_out(expose(sky, rng), detector, rng).astype(float)
    fused = raw[:2].astype(float)
    mean = detector.bias + 450.0 / detector.gain
    var = (450.0 + detector.read_noise**2) / detector.gain**2 + 1 / 12
    for sample in (fused, reference):
        assert_allclose(sample.mean(), mean, atol=0.45)
        assert_allclose(sample.var(), var, rtol=0.03)
    # The star's columns bleed: the same trail as bleed_columns gives.
    electrons = expose(star[0], rng)
    total = electrons.sum()
    bleed_columns(electrons, detector.full_well)
    assert_allclose(electrons.sum(), total, rtol=1e-6)
    trail = (raw[2] == detector.adc_max).sum(axis=0)
    assert abs(trail.max() - (electrons >= detector.full_well).sum(
        axis=0).max()) <= 2
    assert np.all(lost == 0)
    assert not ends.any()


@settings(max_examples=60, deadline=None)
@given(stars=st.lists(st.tuples(st.integers(0, 299), st.integers(0, 2),
                                st.floats(1e3, 3e5)), min_size=1,
                      max_size=5),
       seed=st.integers(0, 2**32 - 1))
def test_bleeding_conserves_charge_and_caps_every_pixel(stars, seed):
    charge = np.random.default_rng(seed).uniform(0, 900, (300, 3))
    for row, col, q in stars:
        charge[row, col] += q
    total = charge.sum()
    lost = bleed_columns(charge, 1000.0)
    assert charge.max() <= 1000.0 * (1 + 1e-12)
    assert lost >= 0
    assert_allclose(charge.sum() + lost, total, rtol=1e-9)


@settings(max_examples=40, deadline=None)
@given(shape=st.tuples(st.integers(1, 200), st.integers(1, 12)),
       fill=st.floats(0.0, 1.0), seed=st.integers(0, 2**32 - 1))
def test_columns_bleed_together_as_one_by_one(shape, fill, seed):
    # Columns with one saturated run bleed together: whole electrons and
    # a whole full well, so the result must be the one-column spill's
    # (`_bleed_one`, which also merges runs) to the bit, lost charge
    # included; long runs reach the ends.
    from satphotutils.simulation.exposure import _bleed_one

    rng = np.random.default_rng(seed)
    charge = np.rint(rng.uniform(0, fill * 1000, shape)).astype(np.float32)
    for _ in range(rng.integers(1, 2 * shape[1] + 1)):
        j, i = rng.integers(shape[1]), rng.integers(shape[0])
        charge[i:i + rng.integers(1, 6), j] = np.rint(
            1000 * rng.uniform(1, 400))
    expected = charge.astype(np.float64)
    lost = sum(_bleed_one(column, 1000.0) for column in expected.T)
    assert bleed_columns(charge, 1000.0) == lost
    assert np.array_equal(charge, expected)


@pytest.mark.parametrize('faint_pixels', [False, True])
def test_faint_pixels_of_the_fused_route_are_poisson(rng, faint_pixels):
    # A faint sky beside a filling column: with faint_pixels the faint
    # columns take the fused route, and their pixels must still be
    # Poisson (no read noise, gain 1): P(0) = exp(-lambda), variance =
    # mean; as they are on the exact route.
    detector = Detector(shape=(400, 400), read_noise=0.0, gain=1.0,
                        bias=100.0, full_well=1000.0)
    lam = np.full((4, 400, 30), 2.5)
    lam[:, 200, 0] = 5e4
    raw, _, _ = expose_and_read(lam, detector, rng,
                                faint_pixels=faint_pixels)
    electrons = raw[:, :, 5:].astype(float) - 100.0
    assert abs(np.mean(electrons == 0) - np.exp(-2.5)) < 0.005
    assert_allclose(electrons.var(), electrons.mean(), rtol=0.03)
    assert np.all(electrons == np.rint(electrons))
