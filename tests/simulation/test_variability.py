import numpy as np
import pytest
from numpy.testing import assert_allclose

from satphotutils.simulation import (
    Constant,
    DampedRandomWalk,
    EclipsingBinary,
    PulsatingStar,
)


def test_pulsator_period_amplitude_and_asymmetry():
    star = PulsatingStar.cepheid(period=5.37, amplitude=0.8, t0=100.0)
    t = np.linspace(100.0, 100.0 + 3 * 5.37, 30001)
    m = star(t)
    assert_allclose(m.max() - m.min(), 0.8, atol=1e-6)
    assert_allclose(star(t), star(t + 5.37), atol=1e-9)
    # Fast rise: minimum light 30% of the cycle before maximum.
    phase_min = np.mod(t[np.argmax(m)] - 100.0, 5.37) / 5.37
    assert_allclose(phase_min, 0.7, atol=0.01)


def test_mira_crosses_the_saturation_limit():
    mira = PulsatingStar.mira(period=330.0, amplitude=5.0)
    mean_g = 10.0
    g = mean_g + mira(np.linspace(0, 330, 1000))
    assert g.min() < 11.5 < g.max()


def test_eclipses_are_narrow_and_have_the_given_depths():
    eb = EclipsingBinary(period=2.0, primary_depth=0.6, secondary_depth=0.2,
                         width=0.08, t0=0.0)
    t = np.linspace(0, 2.0, 20001)
    m = eb(t)
    assert_allclose(m.max(), 0.6, atol=1e-6)
    assert_allclose(eb(1.0), 0.2, atol=1e-6)
    assert_allclose(np.mean(m > 0), 2 * 0.08, atol=0.002)


def test_drw_has_the_requested_variance_and_correlation():
    drw = DampedRandomWalk(sigma=0.3, tau=20.0, t_start=0, t_stop=40000,
                           seed=3)
    t = np.arange(0, 40000, 1.0)
    y = drw(t)
    assert_allclose(y.std(), 0.3, rtol=0.1)
    lag = 20
    corr = np.corrcoef(y[:-lag], y[lag:])[0, 1]
    assert_allclose(corr, np.exp(-1), atol=0.07)
    assert np.array_equal(drw(t[:50]), DampedRandomWalk(
        sigma=0.3, tau=20.0, t_start=0, t_stop=40000, seed=3)(t[:50]))


def test_constant():
    assert np.all(Constant()(np.arange(5.0)) == 0)


@pytest.mark.parametrize(('cls', 'kwargs'), [
    (PulsatingStar, {'period': -1, 'amplitude': 1}),
    (EclipsingBinary, {'period': 1, 'primary_depth': 1, 'width': 0.7}),
    (DampedRandomWalk, {'sigma': 1, 'tau': 0}),
])
def test_invalid_models(cls, kwargs):
    with pytest.raises(ValueError, match='must'):
        cls(**kwargs)
