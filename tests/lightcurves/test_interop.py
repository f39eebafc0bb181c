"""Light curves for other tools: lightkurve and Sky Patrol v2 CSV."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.time import Time
from astropy.timeseries import TimeSeries
from numpy.testing import assert_allclose, assert_array_equal

from satphotutils.intercalibration import read_lightcurve
from satphotutils.lightcurves import to_lightkurve, write_skypatrol
from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.flags import SATPHOT_FLAGS

SKYPATROL = (Path(__file__).parents[1] / 'data' / 'asassn_lc'
             / 'sp2web_352187470767.csv')
HAS_LIGHTKURVE = importlib.util.find_spec('lightkurve') is not None


def _lightcurve(n=40):
    rng = np.random.default_rng(1)
    t = 59000.0 + np.sort(rng.uniform(0, 100, n))
    ts = TimeSeries(time=Time(t, format='mjd', scale='utc'))
    mag = 8.0 + 0.4 * np.sin(2 * np.pi * t / 5.3)
    mag[min(5, n - 1)] = np.nan  # an epoch without a value
    ts['mag'] = mag * u.mag
    ts['mag_err'] = np.where(np.isnan(mag), np.nan, 0.01) * u.mag
    ts['flux'] = 10 ** (-0.4 * (mag - 25.0)) * u.adu
    ts['flux_err'] = ts['flux'] * 0.01 * np.log(10) / 2.5
    ts['camera'] = np.where(np.arange(n) % 2, 'bi', 'bj')
    ts['filter'] = np.full(n, 'g')
    ts['n_exposures'] = np.full(n, 3)
    ts['n_rejected'] = np.zeros(n, int)
    flags = np.zeros(n, np.int64)
    flags[7] = SATPHOT_FLAGS.DAMAGED_CORE       # keeps it out of fits
    flags[9] = SATPHOT_FLAGS.LIGHTCURVE_OUTLIER  # does not
    ts['flags'] = flags
    ts.meta.update(name='cep', ra=120.0, dec=-50.0)
    return ts


def test_skypatrol_csv_has_the_real_exports_header(tmp_path):
    path = tmp_path / 'cep.csv'
    assert write_skypatrol(_lightcurve(), path) == 39
    real = next(ln for ln in SKYPATROL.read_text().splitlines()
                if ln and not ln.startswith('#'))
    ours = next(ln for ln in path.read_text().splitlines()
                if ln and not ln.startswith('#'))
    assert ours == real
    assert '# name: cep' in path.read_text()


def test_skypatrol_csv_round_trips_through_the_reader(tmp_path):
    ts = _lightcurve()
    path = tmp_path / 'cep.csv'
    write_skypatrol(ts, path)
    back = read_lightcurve(path)
    assert back.meta['format'] == 'sp2web'
    keep = np.isfinite(ts['mag'].value)
    assert_allclose(back['time'].jd, ts['time'].jd[keep], rtol=0,
                    atol=1e-8)
    assert_array_equal(back['mag'].value, ts['mag'].value[keep])
    assert_array_equal(back['mag_err'].value, ts['mag_err'].value[keep])
    assert back['camera'].tolist() == ts['camera'][keep].tolist()
    # Quality: bad where a flag keeps the epoch out of the fits (the
    # damaged core), good for an outlier flag, which does not.
    quality = np.asarray(back['quality'])
    index = np.flatnonzero(keep)
    assert not quality[index == 7].any()
    assert quality[index == 9].all()
    assert quality.sum() == keep.sum() - 1


def test_skypatrol_flux_is_ab_millijansky(tmp_path):
    ts = _lightcurve(10)[:3]
    ts['mag'] = [10.0, 12.5, 15.0] * u.mag
    ts['mag_err'] = [0.01, 0.02, 0.1] * u.mag
    path = tmp_path / 'f.csv'
    write_skypatrol(ts, path)
    rows = [ln.split(',') for ln in path.read_text().splitlines()
            if ln and not ln.startswith('#')][1:]
    flux = np.array([float(r[1]) for r in rows])
    # 3631 Jy at magnitude 0.
    assert_allclose(flux, 3631e3 * 10 ** (-0.4 * np.array([10, 12.5, 15])),
                    rtol=1e-5)
    err = np.array([float(r[2]) for r in rows])
    assert_allclose(err / flux, 0.4 * np.log(10) * np.array([0.01, 0.02,
                                                             0.1]),
                    rtol=1e-5)


def test_skypatrol_writer_refuses_to_overwrite_and_names_columns(tmp_path):
    path = tmp_path / 'cep.csv'
    write_skypatrol(_lightcurve(), path)
    with pytest.raises(SatphotutilsError, match='exists; pass overwrite'):
        write_skypatrol(_lightcurve(), path)
    assert write_skypatrol(_lightcurve(), path, overwrite=True) == 39
    ts = _lightcurve()
    ts.remove_column('camera')
    with pytest.raises(SatphotutilsError, match='lacks camera'):
        write_skypatrol(ts, tmp_path / 'other.csv')


def test_to_lightkurve_without_lightkurve_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'lightkurve', None)
    with pytest.raises(ImportError, match=r'satphotutils\[lightkurve\]'):
        to_lightkurve(_lightcurve())


@pytest.mark.skipif(not HAS_LIGHTKURVE, reason='needs lightkurve')
def test_to_lightkurve_folds_and_bins():
    ts = _lightcurve()
    lc = to_lightkurve(ts)
    assert type(lc).__name__ == 'LightCurve'
    assert_array_equal(lc.flux.value, ts['flux'].value)
    assert lc.flux.unit == u.adu
    assert_array_equal(np.asarray(lc['quality']), ts['flags'])
    assert_array_equal(lc['mag'].value, ts['mag'].value)
    assert lc.meta['LABEL'] == 'cep'
    assert lc.meta['CAMERAS'] == ['bi', 'bj']
    assert lc.meta['FILTERS'] == ['g']
    # Folded on the period, the phases are the closed-form ones.
    folded = lc.remove_nans().fold(period=5.3, epoch_time=ts['time'][0])
    t = ts['time'].mjd[np.isfinite(ts['flux'].value)]
    phase = (t - ts['time'].mjd[0] + 2.65) % 5.3 - 2.65
    assert_allclose(np.sort(folded.time.value), np.sort(phase), atol=1e-6)
    binned = lc.remove_nans().bin(time_bin_size=10 * u.day)
    assert 8 <= len(binned) <= 11
