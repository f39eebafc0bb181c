import numpy as np
import pytest
from astropy import units as u
from numpy.testing import assert_allclose

from satphotutils.calibration import (
    counts_to_magnitude,
    crowded_log_counts,
    expected_log_counts,
)


def test_eq1_zero_point_and_transparency():
    # A star at the zero point gives one count; each 2.5 mag is 10x.
    assert_allclose(expected_log_counts([25.5, 23.0, 13.0], 25.5),
                    [0.0, 1.0, 5.0])
    # t = 2 means half the counts.
    assert_allclose(expected_log_counts(13.0, 25.5, 2.0), 5 - np.log10(2))
    assert_allclose(expected_log_counts(13.0 * u.mag, 25.5 * u.mag), 5.0)


def test_inverse_round_trip_and_uncertainty(rng):
    mag = rng.uniform(3, 15, 100)
    zp = rng.normal(25.5, 0.1, 100)
    t = rng.uniform(0.8, 2.0, 100)
    back, err = counts_to_magnitude(expected_log_counts(mag, zp, t), zp, t,
                                    log_counts_err=np.full(100, 0.01))
    assert_allclose(back, mag, atol=1e-10)
    assert_allclose(err, 0.025)


def test_eq2_crowding():
    # 10^4 counts, 20% blended light, 500 counts of stellar background.
    assert_allclose(crowded_log_counts(4.0, 0.2, 500.0),
                    np.log10(1e4 * 1.2 - 500))
    # Lost in the background: NaN, not a log of a negative number.
    assert np.isnan(crowded_log_counts(1.0, 0.0, 100.0))


def test_transparency_must_be_positive():
    with pytest.raises(ValueError, match='transparency must be positive'):
        expected_log_counts(10.0, 25.5, 0.0)
