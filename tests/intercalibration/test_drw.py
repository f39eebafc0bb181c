from pathlib import Path

import numpy as np
import pytest
from astropy.table import QTable
from astropy.time import Time
from numpy.testing import assert_allclose

from satphotutils.cli import main
from satphotutils.intercalibration import (
    DRWIntercalibrator,
    marginal_log_likelihood,
    read_lightcurve,
)
from satphotutils.utils.flags import SATPHOT_FLAGS as F

from .conftest import OFFSETS, simulate_drw

SHARED = Path(__file__).parents[1] / 'data' / 'asassn_lc'


@pytest.mark.parametrize('seed', [1, 2])
def test_injected_offsets_are_recovered(seed):
    lc = simulate_drw(np.random.default_rng(seed))
    result = DRWIntercalibrator()(lc)
    off = {r['group']: (r['offset'].value, r['offset_err'].value)
           for r in result.offsets}
    ref = result.drw['reference']
    for group, true in OFFSETS.items():
        value, err = off[group]
        expected = true - OFFSETS[ref]
        assert abs(value - expected) < 0.005
        if group != ref:
            assert abs(value - expected) < 2.5 * err
    assert 0.1 < result.drw['sigma'] < 0.4
    # Every input row is in the output, intercalibrated.
    assert len(result.lightcurve) == len(lc)
    assert_allclose(result.lightcurve['mag'].value
                    - result.lightcurve['mag_raw'].value,
                    result.lightcurve['offset'].value)


def test_marginal_likelihood_equals_dense_computation(rng):
    from celerite2 import GaussianProcess, terms
    from scipy.stats import multivariate_normal

    t = np.sort(rng.uniform(0, 500, 300))
    y = rng.normal(0, 0.3, 300)
    err = np.full(300, 0.02)
    groups = rng.integers(0, 3, 300)
    design = np.column_stack([np.ones(300), groups == 1, groups == 2])
    kernel = terms.RealTerm(a=0.09, c=1 / 80.0)
    gp = GaussianProcess(kernel)
    gp.compute(t, diag=err**2)
    ll, beta, cov = marginal_log_likelihood(gp, y, design)
    # Dense: y ~ N(A beta, K); a wide Gaussian prior on beta approaches
    # the flat-prior restricted likelihood up to its normalisation.
    dense = kernel.to_dense(t, err**2)
    kinv = np.linalg.inv(dense)
    gls = np.linalg.solve(design.T @ kinv @ design, design.T @ kinv @ y)
    assert_allclose(beta, gls, rtol=1e-8, atol=1e-10)
    prior = 1e3
    wide = multivariate_normal(np.zeros(300), dense + prior
                               * design @ design.T,
                               allow_singular=True).logpdf(y)
    assert_allclose(ll - 1.5 * np.log(2 * np.pi),
                    wide + 1.5 * np.log(prior), atol=0.05)
    assert_allclose(cov, np.linalg.inv(design.T @ kinv @ design),
                    rtol=1e-6)


def test_paper_procedure_exactly():
    t = Time(2458000 + np.arange(40.0), format='jd')
    mag = np.r_[np.arange(20) * 0.01 + 10.0, np.arange(20) * 0.01 + 10.5]
    lc = QTable({'time': t, 'mag': mag, 'mag_err': np.full(40, 0.01),
                 'camera': ['bi'] * 20 + ['bj'] * 20,
                 'filter': ['g'] * 40})
    result = DRWIntercalibrator(method='paper', drop_faintest=0.1)(lc)
    # The faintest 10% (two points) of each group are dropped ...
    assert np.count_nonzero(result.lightcurve['flags']
                            & F.INTERCAL_FAINTEST) == 4
    # ... group means 10.085 and 10.585; reference their median, 10.335.
    off = dict(zip(result.offsets['group'], result.offsets['offset'].value,
                   strict=True))
    assert_allclose([off['bi/g'], off['bj/g']], [-0.25, 0.25], atol=1e-9)


def test_robust_mode_survives_outliers_and_a_wild_group(rng):
    lc = simulate_drw(rng, n=1500)
    groups = np.char.add(np.char.add(lc['camera'].astype(str), '/'),
                         lc['filter'].astype(str))
    # A group six magnitudes off, and a group with 40% garbage.
    wild = groups == 'bE/g'
    lc['mag'][wild] += 6.0
    junk = (groups == 'bm/g') & (rng.uniform(size=len(lc)) < 0.4)
    lc['mag'][junk] += rng.uniform(0.5, 3.0, junk.sum())
    plain = DRWIntercalibrator(keep_flagged_groups=True)(lc)
    robust = DRWIntercalibrator(robust=True, keep_flagged_groups=True)(lc)
    off = {r['group']: r['offset'].value for r in robust.offsets}
    ref = robust.drw['reference']
    assert abs(off['bE/g'] - (6.03 - OFFSETS[ref])) < 0.01
    assert abs(off['bm/g'] - (-0.07 - OFFSETS[ref])) < 0.01
    plain_off = {r['group']: r['offset'].value for r in plain.offsets}
    assert abs(plain_off['bm/g'] - (-0.07 - OFFSETS[ref])) > 0.05
    # The wild group is named, not silently combined.
    assert list(robust.flagged_groups) == ['bE/g']
    # Rejected points are flagged, not lost.
    out = robust.lightcurve
    assert len(out) == len(lc)
    sorted_junk = junk[np.argsort(lc['time'].jd, kind='stable')]
    assert np.mean((out['flags'][sorted_junk] & F.INTERCAL_CLIPPED) > 0) \
        > 0.9


@pytest.mark.parametrize('name', ['sp1_V765Cas_EB.csv',
                                  'sp1_ASASSN-J060000.76-310027.83.csv',
                                  'sp2api_VXMen.csv',
                                  'sp2web_352187470767.csv'])
def test_readers_on_real_files(name):
    path = SHARED / name
    lc = read_lightcurve(path)
    expected = {'sp1_V765Cas_EB.csv': 2764,
                'sp1_ASASSN-J060000.76-310027.83.csv': 2719,
                'sp2api_VXMen.csv': 1065, 'sp2web_352187470767.csv': 2659}
    assert len(lc) == expected[name]
    assert np.all(np.diff(lc['time'].jd) >= 0)
    assert np.all(lc['mag_err'].value > 0)
    assert np.all(lc['mag'].value < 30)
    if name.startswith('sp2web'):
        assert set(lc['filter']) == {'g', 'V'}
        assert not lc['quality'].all()


def test_real_multi_filter_file_pairs_agree_after(tmp_path):
    path = SHARED / 'sp1_ASASSN-J060000.76-310027.83.csv'
    result = DRWIntercalibrator(robust=True)(read_lightcurve(path))
    out = result.lightcurve
    jd, group = out['time'].jd, np.asarray(out['group'])

    def pair_median(mag):
        diffs = []
        for i in range(len(jd)):
            j = i + 1
            while j < len(jd) and jd[j] - jd[i] < 0.1:
                if group[j] != group[i]:
                    diffs.append(abs(mag[j] - mag[i]))
                j += 1
        return np.median(diffs)

    before = pair_median(out['mag_raw'].value)
    after = pair_median(out['mag'].value)
    assert after < 0.5 * before
    # The V and g groups differ by the star's g - V colour.
    off = dict(zip(result.offsets['group'], result.offsets['offset'].value,
                   strict=True))
    assert 0.5 < off['bi/g'] - off['be/V'] < 0.65


def test_command(tmp_path, capsys):
    path = SHARED / 'sp2web_352187470767.csv'
    out = tmp_path / 'lc.ecsv'
    assert main(['intercalibrate', str(path), '-o', str(out), '--plot',
                 str(tmp_path / 'p.png'), '--drop-faintest', '0.1',
                 '--robust']) == 0
    table = QTable.read(out)
    for name in ('time', 'mag', 'mag_err', 'camera', 'filter', 'offset',
                 'flags'):
        assert name in table.colnames
    assert (tmp_path / 'lc.offsets.ecsv').is_file()
    assert (tmp_path / 'p.png').is_file()
    assert main(['intercalibrate', str(tmp_path / 'missing.csv'), '-o',
                 str(tmp_path / 'x.ecsv')]) == 1
