"""
Bleeding as a drawn camera does it: the split between up and down the
column, the charge lost along the trail and blooming into the columns
beside it, each measured on a rendered trail against closed-form charge
bookkeeping; and how `CameraFamily` draws them.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from satphotutils.simulation import (
    RANGES,
    CameraFamily,
    Detector,
    GaussianPSF,
    bleed_columns,
    expose_and_read,
    render_stars,
)

# Gain 4: the full well (40,000 counts) reads below the ADC maximum, so
# the raw frame gives back every electron (to the 4-electron step).
_GAIN, _BIAS, _FULL_WELL = 4.0, 1000.0, 1.6e5
_ROW, _COL = 1000, 7


def _detector(**bleeding):
    return Detector(shape=(2000, 15), gain=_GAIN, bias=_BIAS,
                    read_noise=5.0, full_well=_FULL_WELL, **bleeding)


def _star(flux=2e8, sky=100.0):
    """Expected electrons of a star on a 2000 x 15 strip, and the sky."""
    image = render_stars((1, 2000, 15), [float(_COL)], [float(_ROW)],
                         [flux], GaussianPSF(fwhm=2.0), item=[0])
    return image + sky, sky


def _electrons(raw):
    return (raw[0].astype(float) - _BIAS) * _GAIN


def test_the_split_between_up_and_down_is_measured_on_the_trail():
    expected, _ = _star()
    raw, lost, _ = expose_and_read(expected, _detector(bleed_up=0.72),
                                   np.random.default_rng(1))
    assert lost[0] == 0
    column = expected[0, :, _COL]
    run = np.flatnonzero(column > _FULL_WELL)
    start, stop = run[0], run[-1]
    excess = column[run].sum() - _FULL_WELL * run.size
    charge = _electrons(raw)[:, _COL]
    # What each side holds beyond what the star put there itself.
    up = charge[stop + 1:].sum() - column[stop + 1:].sum()
    down = charge[:start].sum() - column[:start].sum()
    assert_allclose(up / excess, 0.72, atol=0.01)
    assert_allclose(down / excess, 0.28, atol=0.01)
    # The trail is longer on the favoured side, in that ratio.
    full = np.flatnonzero(charge > 0.99 * _FULL_WELL)
    assert_allclose((full.max() - stop) / (start - full.min()), 0.72 / 0.28,
                    rtol=0.02)


def test_the_column_holds_the_star_less_the_charge_lost_on_the_trail():
    expected, _ = _star()
    detector = _detector(bleed_up=0.4, bleed_loss=1e-3)
    raw, lost, _ = expose_and_read(expected, detector,
                                   np.random.default_rng(2))
    total = expected.sum()
    # Charge conservation: the frame's electrons plus the stated loss are
    # the star's and the sky's (to the Poisson noise of the total).
    assert_allclose(_electrons(raw).sum() + lost[0], total,
                    atol=5 * np.sqrt(total))
    # The loss is real: a trail of several hundred pixels loses tens of
    # per cent of the excess it carries.
    column = expected[0, :, _COL]
    excess = np.sum(np.clip(column - _FULL_WELL, 0, None))
    assert 0.1 * excess < lost[0] < 0.5 * excess


def test_the_loss_along_the_trail_follows_the_transfer_closed_form():
    # One over-full pixel in an empty column: each side gets its share A
    # of the excess and fills pixels of room R, keeping (1 - loss) of what
    # flows past each. Filling n pixels takes an inflow of
    # R (k^-n - 1) / (k^-1 - 1) with k = 1 - loss; the first pixel that
    # cannot be filled keeps k^n times what is left.
    loss, up, background, excess = 2e-3, 0.7, 1e3, 3e2 * _FULL_WELL
    column = np.full((4000, 1), background)
    column[2000] = _FULL_WELL + excess
    lost = bleed_columns(column, _FULL_WELL, up=up, loss=loss)
    k, room = 1 - loss, _FULL_WELL - background
    expected_lost = 0.0
    # Each side outwards from the over-full pixel.
    for share, near in ((up, column[2001:, 0]), (1 - up, column[1999::-1, 0])):
        amount = share * excess
        n = int(np.floor(np.log(1 + amount * (1 / k - 1) / room)
                         / -np.log(k)))
        inflow = room * (k**-n - 1) / (1 / k - 1)
        partial = k**n * (amount - inflow)
        expected_lost += amount - n * room - partial
        # The side holds n full pixels, then the partial one.
        assert np.all(near[:n] == _FULL_WELL)
        assert_allclose(near[n], background + partial, rtol=1e-9)
        assert np.all(near[n + 1:] == background)
    assert_allclose(lost, expected_lost, rtol=1e-9)


def test_blooming_into_the_neighbouring_columns_is_measured_there():
    detector = _detector(bloom_fraction=0.12)
    expected = np.full((1, 2000, 15), 100.0)
    expected[0, _ROW, _COL] = 300 * _FULL_WELL
    raw, lost, _ = expose_and_read(expected, detector,
                                   np.random.default_rng(3))
    charge = _electrons(raw)
    excess = expected[0, _ROW, _COL] - _FULL_WELL
    for col in (_COL - 1, _COL + 1):
        # Each neighbour receives half the bloomed share of the excess,
        # and bleeds it along its own column.
        received = charge[:, col].sum() - expected[0, :, col].sum()
        assert_allclose(received, 0.06 * excess, rtol=0.01)
        assert (charge[:, col] > 0.99 * _FULL_WELL).sum() > 10
    # Nothing leaves the window but float32 rounding of the spill.
    assert lost[0] < 1e-6 * excess
    assert_allclose(charge.sum(), expected.sum(),
                    atol=5 * np.sqrt(expected.sum()))


@pytest.fixture(scope='module', name='draws')
def fixture_draws():
    rng = np.random.default_rng(31)
    family = CameraFamily(only={'correction': ('asas', 'asas_misset',
                                               'raw')})
    return [family(rng) for _ in range(300)]


def test_drawn_bleeding_stays_within_the_documented_ranges(draws):
    detectors = [d.camera.detector for d in draws]
    labels = [d.labels['bleed'] for d in draws]
    assert set(labels) == {'symmetric', 'asymmetric'}
    lo, hi = RANGES['bleed_share']
    for draw, det in zip(draws, detectors, strict=True):
        share = max(det.bleed_up, 1 - det.bleed_up)
        if draw.labels['bleed'] == 'symmetric':
            assert det.bleed_up == 0.5
        else:
            assert lo <= share <= hi
        assert det.bleed_loss == 0 or (
            RANGES['bleed_loss'][0] <= det.bleed_loss
            <= RANGES['bleed_loss'][1])
        assert det.bloom_fraction == 0 or (
            RANGES['bloom_fraction'][0] <= det.bloom_fraction
            <= RANGES['bloom_fraction'][1])
        raw = draw.labels['correction'] == 'raw'
        for key in ('antiblooming', 'register_full_well'):
            level = getattr(det, key)
            # The extra ceilings are for raw cameras only.
            assert level is None or raw
            if level is not None:
                assert RANGES[key][0] <= level / det.full_well \
                    <= RANGES[key][1]
    # Both sides are favoured, and every knob is drawn both ways.
    ups = np.array([d.bleed_up for d in detectors])
    assert (ups > 0.5).any()
    assert (ups < 0.5).any()
    for key in ('bleed_loss', 'bloom_fraction'):
        values = np.array([getattr(d, key) for d in detectors])
        assert 0.3 < np.mean(values == 0) < 0.7
    raw = [d for d, draw in zip(detectors, draws, strict=True)
           if draw.labels['correction'] == 'raw']
    assert any(d.antiblooming is not None for d in raw)
    assert any(d.register_full_well is not None for d in raw)


def test_bleeding_draws_are_reproducible_and_can_be_held_out():
    first = CameraFamily()(np.random.default_rng(8))
    again = CameraFamily()(np.random.default_rng(8))
    for key in ('bleed_up', 'bleed_loss', 'bloom_fraction'):
        assert getattr(first.camera.detector, key) == getattr(
            again.camera.detector, key)
    rng = np.random.default_rng(9)
    held_out = CameraFamily(exclude={'bleed': 'asymmetric'})
    assert all(held_out(rng).camera.detector.bleed_up == 0.5
               for _ in range(20))
