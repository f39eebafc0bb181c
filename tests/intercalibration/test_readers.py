"""read_lightcurve on the package's own light-curve files, flags in, out."""

from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import QTable, Table
from astropy.time import Time
from astropy.wcs import WCS

from satphotutils.cli import main
from satphotutils.intercalibration import DRWIntercalibrator, read_lightcurve
from satphotutils.lightcurves import REJECT_FLAGS, LightCurvePipeline
from satphotutils.photometry import SaturatedStarPhotometry
from satphotutils.simulation import (
    Camera,
    Detector,
    FrameSimulator,
    Scene,
    simulate_field,
)
from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.flags import SATPHOT_FLAGS as F
from satphotutils.utils.flags import decode_flags

DATA = Path(__file__).parents[1] / 'data' / 'asassn_lc'
CENTRE = SkyCoord(250.0, -45.0, unit='deg')
ZP_ERROR = 0.25  # added to camera bj's header zero points


@pytest.fixture(scope='module', name='run')
def fixture_run(tmp_path_factory):
    """
    Light curves made by the real pipeline from simulated frames of two
    cameras, bi and bj, whose headers put bj's zero point 0.25 mag wrong;
    one bi frame has NaN pixels on both stars.
    """
    top = tmp_path_factory.mktemp('lc_files')
    frames = top / 'frames'
    detector = Detector(shape=(200, 200))
    x, y = np.array([60.0, 140.0]), np.array([100.0, 90.0])
    coords = detector.wcs(CENTRE).pixel_to_world(x, y)
    scene = Scene(coords, [9.0, 10.5], [1.0, 1.0], name=['s9', 's10'])
    sims = [FrameSimulator(camera=Camera(name, detector=detector),
                           pointing=CENTRE) for name in ('bi', 'bj')]
    simulate_field(frames, scene, sims, n_epochs=24, exposures_per_epoch=1,
                   cadence=2.0, seed=3)
    for path in sorted(frames.glob('bj_*.fits')):
        with fits.open(path, mode='update') as hdul:
            hdul[0].header['ZP'] += ZP_ERROR
    damaged = sorted(frames.glob('bi_*.fits'))[2]
    with fits.open(damaged, mode='update') as hdul:
        # The frame's own WCS: exposures are dithered.
        wcs_xy = WCS(hdul[0].header).world_to_pixel(coords)
        for xc, yc in zip(*wcs_xy, strict=True):
            hdul[0].data[int(yc) - 1:int(yc) + 2,
                         int(xc) - 1:int(xc) + 2] = np.nan
    targets = Table({'name': ['s9', 's10'], 'ra': coords.ra.deg,
                     'dec': coords.dec.deg})
    # Two stars per frame: too few to measure the FWHM on, so it is given.
    pipeline = LightCurvePipeline(SaturatedStarPhotometry(fwhm=2.0))
    pipeline(sorted(frames.glob('*.fits')), targets, top / 'ecsv')
    run = pipeline(sorted(frames.glob('*.fits')), targets, top / 'fits',
                   output_format='fits')
    return top, run


@pytest.mark.parametrize('path', ['ecsv/s9.ecsv', 'fits/s9.fits',
                                  'ecsv/all.ecsv', 'fits/all.fits'])
def test_pipeline_files_are_read_and_intercalibrated(run, path):
    top, result = run
    lc = read_lightcurve(top / path, name='s9')
    written = result.lightcurves['s9']
    valid = np.isfinite(written['mag'].value) & (written['mag'].value < 99)
    assert len(lc) == valid.sum()
    assert lc.meta['name'] == 's9'
    assert lc['time'].scale == 'utc'
    np.testing.assert_allclose(lc['time'].mjd, written['time'].mjd[valid],
                               rtol=0, atol=1e-9)
    assert set(lc['camera']) == {'bi', 'bj'}
    np.testing.assert_array_equal(lc['flags'],
                                  np.asarray(written['flags'])[valid])
    fit = DRWIntercalibrator()(lc)
    off = dict(zip(fit.offsets['group'], fit.offsets['offset'].value,
                   strict=True))
    # The wrong zero point is found as the camera's offset.
    assert off['bj/g'] - off['bi/g'] == pytest.approx(ZP_ERROR, abs=0.03)
    assert fit.flagged_groups == {}


def test_rejecting_photometry_flags_make_bad_quality(run, tmp_path):
    top, result = run
    # The NaN pixels (non_finite_data) and the simulator's damaged cores
    # (damaged_core) on epochs of one exposure: the pipeline gives those
    # epochs no magnitude (NaN), and the reader counts them as invalid.
    written = result.lightcurves['s9']
    unusable = ~np.isfinite(written['mag'].value)
    wflags = np.asarray(written['flags'])
    assert np.count_nonzero(wflags[unusable] & F.NON_FINITE_DATA) == 1
    assert np.count_nonzero(wflags[unusable] & F.DAMAGED_CORE) >= 1
    lc = read_lightcurve(top / 'ecsv' / 's9.ecsv')
    assert lc.meta['n_invalid'] == np.count_nonzero(unusable)
    assert lc['quality'].all()
    # A file whose points carry rejecting flags with a magnitude (written
    # by hand, or by another tool): those points are bad quality.
    table = Table.read(top / 'ecsv' / 's9.ecsv', format='ascii.ecsv')
    good = np.flatnonzero(np.isfinite(np.asarray(table['mag'], float))
                          & ((np.asarray(table['flags'])
                              & F.LIGHTCURVE_OUTLIER) == 0))
    table['flags'][good[:3]] |= F.DAMAGED_CORE
    table['flags'][good[3]] |= F.NON_FINITE_DATA
    # Whether the light-curve stage clips any epoch here depends on the
    # bundled model's scatter; two more are marked as it marks them, so
    # that the check below never runs on nothing.
    table['flags'][good[4:6]] |= F.LIGHTCURVE_OUTLIER
    table.write(tmp_path / 'flagged.ecsv')
    lc = read_lightcurve(tmp_path / 'flagged.ecsv')
    flags = np.asarray(lc['flags'])
    bad = (flags & REJECT_FLAGS) != 0
    assert np.count_nonzero(bad) == 4
    np.testing.assert_array_equal(lc['quality'], ~bad)
    # Epochs the light-curve stage clipped (about the median of both
    # cameras, so the mis-calibrated camera's) stay good quality, or the
    # offset they need could not be fitted.
    outliers = (flags & F.LIGHTCURVE_OUTLIER) != 0
    assert np.count_nonzero(outliers) >= 2
    assert lc['quality'][outliers].all()
    out = DRWIntercalibrator()(lc).lightcurve
    decoded = [decode_flags(int(f)) for f in out['flags']]
    for names in decoded:
        rejecting = {'non_finite_data', 'damaged_core'} & set(names)
        assert ('bad_quality' in names) == bool(rejecting)


def test_a_table_of_several_targets_needs_a_name(run):
    top, _ = run
    with pytest.raises(SatphotutilsError, match=r'2 targets \(s9, s10\).*'
                       r'name='):
        read_lightcurve(top / 'ecsv' / 'all.ecsv')
    with pytest.raises(SatphotutilsError, match="no target named 'x'"):
        read_lightcurve(top / 'ecsv' / 'all.ecsv', name='x')
    with pytest.raises(SatphotutilsError, match=r"of 's9'.*'s10'"):
        read_lightcurve(top / 'ecsv' / 's9.ecsv', name='s10')
    assert len(read_lightcurve(top / 'ecsv' / 'all.ecsv', name='s10')) > 10


def test_command_on_a_pipeline_file(run, tmp_path, capsys):
    top, _ = run
    out = tmp_path / 'ic.ecsv'
    assert main(['intercalibrate', str(top / 'fits' / 'all.fits'),
                 '--name', 's10', '-o', str(out)]) == 0
    assert 'bj/g' in capsys.readouterr().out
    table = QTable.read(out)
    assert table.meta['input']['name'] == 's10'
    assert main(['intercalibrate', str(top / 'ecsv' / 'all.ecsv'),
                 '-o', str(tmp_path / 'x.ecsv')]) == 1
    assert '--name' in capsys.readouterr().err


def test_outputs_carry_flag_meanings_and_provenance(rng):
    t = np.sort(rng.uniform(0, 400, 300))
    cam = np.where(rng.uniform(size=300) < 0.5, 'bi', 'bj')
    lc = QTable({'time': Time(58000 + t, format='mjd'),
                 'mag': 10 + 0.05 * np.sin(t / 30) + rng.normal(0, 0.01, 300),
                 'mag_err': np.full(300, 0.01) * u.mag, 'camera': cam,
                 'filter': np.full(300, 'g')})
    lc.meta.update({'name': 'star', 'junk': object()})
    result = DRWIntercalibrator(robust=True)(lc)
    for table in (result.lightcurve, result.offsets):
        meta = table.meta
        assert list(meta)[:4] == ['date', 'version', 'flags', 'config']
        assert meta['version']['satphotutils']
        assert meta['flags']['intercal_clipped'] == {
            'bit': F.INTERCAL_CLIPPED,
            'description': F.to_meta()['intercal_clipped']['description']}
        assert meta['config']['robust'] is True
        assert meta['config']['max_offset'] == 1.0
        assert meta['drw']['reference'] in {'bi/g', 'bj/g'}
        assert meta['input'] == {'name': 'star'}
        assert meta['flagged_groups'] == {}


def test_decoded_flags_of_an_intercalibrated_light_curve(rng):
    # Issue #20: the intercalibration's own bits 1/2/4/8 were decoded as
    # the photometry's no_overlap, partial_overlap, ... or as nothing.
    t = np.sort(rng.uniform(0, 400, 300))
    mag = 10 + 0.05 * np.sin(t / 30) + rng.normal(0, 0.01, 300)
    mag[10] -= 2.0
    lc = QTable({'time': Time(58000 + t, format='mjd'), 'mag': mag,
                 'mag_err': np.full(300, 0.01),
                 'camera': np.where(np.arange(300) % 2, 'bi', 'bj'),
                 'filter': np.full(300, 'g'),
                 'quality': np.arange(300) != 20})
    out = DRWIntercalibrator(robust=True, drop_faintest=0.05)(lc).lightcurve
    order = np.argsort(t, kind='stable')
    rows = {k: int(out['flags'][np.flatnonzero(order == k)[0]])
            for k in (10, 20)}
    assert 'intercal_clipped' in decode_flags(rows[10])
    assert decode_flags(rows[20]) == ['bad_quality']
    faint = [decode_flags(int(f)) for f in out['flags']
             if f & F.INTERCAL_FAINTEST]
    assert faint
    assert all('intercal_faintest' in d for d in faint)
    decoded = {n for f in out['flags'] for n in decode_flags(int(f))}
    assert decoded <= {'intercal_faintest', 'intercal_clipped',
                       'bad_quality'}


def test_format_table_is_read_as_a_table(tmp_path):
    path = tmp_path / 'lc.ecsv'
    QTable({'time': Time([58000.0, 58001.0], format='mjd'),
            'mag': [10.0, 10.1], 'mag_err': [0.01, 0.01],
            'camera': ['bi', 'bi'], 'filter': ['g', 'g']}).write(path)
    assert len(read_lightcurve(path, format='table')) == 2
    with pytest.raises(ValueError, match="format must be 'sp1'"):
        read_lightcurve(path, format='csv')


def test_byte_order_mark_of_a_spreadsheet_csv(tmp_path):
    # Issue #25 item 24: refused with a misleading 'lacks the columns'.
    text = (DATA / 'sp1_V765Cas_EB.csv').read_text()
    path = tmp_path / 'bom.csv'
    path.write_bytes(b'\xef\xbb\xbf' + text.encode())
    assert len(read_lightcurve(path)) == len(
        read_lightcurve(DATA / 'sp1_V765Cas_EB.csv'))
