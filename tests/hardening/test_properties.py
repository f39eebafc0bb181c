"""
Property-based tests of stamp extraction and the file readers, and a
small fuzz run of the readers (the long run is ``python -m benchmarks
--only fuzz_readers``).
"""

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.nddata import Cutout2D
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from satphotutils.frames import read_frame
from satphotutils.intercalibration import read_lightcurve
from satphotutils.photometry import AperturePhotometryBaseline
from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.flags import SATPHOT_FLAGS as F

DATA = Path(__file__).parents[1] / 'data' / 'asassn_lc'
FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


# -- stamp extraction ---------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(ny=st.integers(5, 60), nx=st.integers(5, 60),
       x=st.floats(-30, 90, allow_nan=False),
       y=st.floats(-30, 90, allow_nan=False))
def test_stamps_equal_astropy_cutouts(ny, nx, x, y):
    image = np.arange(ny * nx, dtype=float).reshape(ny, nx)
    phot = AperturePhotometryBaseline(stamp_size=11)
    stamps, flags, _, _ = phot._stamps(image, None, np.array([x]),
                                       np.array([y]), None)
    ix, iy = int(np.rint(x)), int(np.rint(y))
    inside = -5 <= ix <= nx + 4 and -5 <= iy <= ny + 4
    if not inside:
        assert flags[0] & F.NO_OVERLAP
        assert np.isnan(stamps[0]).all()
        return
    # The peer result: astropy's partial cutout centred on the pixel.
    cutout = Cutout2D(image, (ix, iy), (11, 11), mode='partial',
                      fill_value=np.nan).data
    np.testing.assert_array_equal(stamps[0], cutout.astype(np.float32))
    full = 5 <= ix <= nx - 6 and 5 <= iy <= ny - 6
    assert bool(flags[0] & F.PARTIAL_OVERLAP) == (not full)
    assert not flags[0] & F.NO_OVERLAP


@settings(max_examples=100, deadline=None)
@given(dtype=st.sampled_from(['<f4', '>f4', '<f8', '>f8', '<i4', '>i2']),
       x=st.floats(12, 28), y=st.floats(12, 28))
def test_stamps_do_not_depend_on_dtype_or_byte_order(dtype, x, y):
    image = np.random.default_rng(0).integers(0, 30000, (40, 40))
    phot = AperturePhotometryBaseline(stamp_size=11)
    ref = phot(image.astype(float), positions=[[x, y]])
    other = phot(image.astype(dtype), positions=[[x, y]])
    np.testing.assert_allclose(other['flux'], ref['flux'], rtol=1e-6)


# -- light-curve readers ------------------------------------------------------

SP1 = 'HJD,UT Date,Camera,FWHM,Limit,mag,mag_err,flux(mJy),flux_err,Filter\n'
_row = st.tuples(
    st.floats(2450000, 2460000, allow_nan=False),
    st.sampled_from(['ba', 'bb', 'bF{}', 'bc']),
    st.one_of(st.floats(3, 20, allow_nan=False).map(lambda v: f'{v:.3f}'),
              st.sampled_from(['>15.2', '<9', '99.99', 'nan', '', 'abc'])),
    st.one_of(st.floats(0.001, 0.5).map(lambda v: f'{v:.4f}'),
              st.sampled_from(['99.99', '0', '0.0', '-1', ''])),
    st.sampled_from(['V', 'g']))


def _valid(mag, err):
    try:
        m, e = float(mag), float(err)
    except ValueError:
        return False
    return np.isfinite(m) and m < 99 and 0 < e < 99


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(_row, max_size=40))
def test_sp1_reader_keeps_exactly_the_valid_rows_in_time_order(rows,
                                                               tmp_path):
    text = SP1 + ''.join(f'{t:.5f},x,{c},1,15,{m},{e},1,1,{f}\n'
                         for t, c, m, e, f in rows)
    path = tmp_path / 'lc.csv'
    path.write_text(text)
    lc = read_lightcurve(path)
    expected = sorted((round(t, 5), float(m)) for t, _, m, e, _ in rows
                      if _valid(m, e))
    assert len(lc) == len(expected)
    assert np.all(np.diff(lc['time'].jd) >= 0)
    np.testing.assert_allclose(sorted(lc['mag'].value),
                               sorted(m for _, m in expected))
    assert lc.meta['n_invalid'] == len(rows) - len(expected)
    assert set(np.unique(lc['camera'])) <= {'ba', 'bb', 'bF', 'bc'}


# -- fuzzing: mutated real files ---------------------------------------------

def _mutate(raw, data):
    raw = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 8))):
        kind = data.draw(st.sampled_from(['flip', 'cut', 'insert']))
        at = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if kind == 'flip' and raw:
            raw[at] = data.draw(st.integers(0, 255))
        elif kind == 'cut':
            del raw[at:at + data.draw(st.integers(1, 200))]
        else:
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=20))
    return bytes(raw)


@FUZZ
@given(data=st.data(), name=st.sampled_from(sorted(
    p.name for p in DATA.glob('*.csv'))))
def test_fuzzed_light_curves_read_or_fail_cleanly(data, name, tmp_path):
    path = tmp_path / name
    path.write_bytes(_mutate((DATA / name).read_bytes(), data))
    try:
        lc = read_lightcurve(path)
    except SatphotutilsError:
        return
    assert np.all(np.isfinite(lc['mag'].value))
    assert np.all(lc['mag_err'].value > 0)


@pytest.fixture(scope='module')
def fits_bytes(tmp_path_factory):
    from astropy.io import fits

    path = tmp_path_factory.mktemp('fuzz') / 'frame.fits'
    header = fits.Header({'MJD-OBS': 59000.0, 'ZP': 25.0})
    fits.PrimaryHDU(np.arange(400, dtype='>f4').reshape(20, 20),
                    header=header).writeto(path)
    return path.read_bytes()


@FUZZ
@given(data=st.data())
def test_fuzzed_fits_frames_read_or_fail_cleanly(data, fits_bytes,
                                                 tmp_path):
    path = tmp_path / 'frame.fits'
    path.write_bytes(_mutate(fits_bytes, data))
    with warnings.catch_warnings():
        # astropy reports header repairs of a damaged file as warnings.
        warnings.simplefilter('ignore')
        try:
            frame, _ = read_frame(path)
        except SatphotutilsError:
            return
    assert frame.ndim == 2
