"""
The bad-input inventory: every row of docs/reference/bad_inputs.rst.

Each case feeds one bad input to a public entry point and asserts the
documented behaviour: the exception type and the words of its message
that name the argument and the fix, or the flag of a flagged row. The
last test checks that the documentation lists exactly these cases.
"""

import inspect
import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import CCDData, NDData
from astropy.table import Table
from astropy.wcs import WCS
from numpy.testing import assert_allclose

from satphotutils.cli import main
from satphotutils.frames import read_frame
from satphotutils.utils.exceptions import SatphotutilsError
from satphotutils.utils.flags import SATPHOT_FLAGS as F

DOC = Path(__file__).parents[2] / 'docs' / 'reference' / 'bad_inputs.rst'
CASES = {}
CENTRE = SkyCoord(60.0, -30.0, unit='deg')
STAR = (100.3, 150.2)  # pixel position of the g = 7 target


@pytest.fixture(scope='module')
def frame():
    """A simulated 300x200 CCDData frame with a saturated g = 7 star."""
    from satphotutils.simulation import Camera, Detector, FrameSimulator, Scene

    detector = Detector(shape=(300, 200))
    scene = Scene.random(CENTRE, radius=1.0 * u.deg, g_max=13.0, seed=2)
    coords = detector.wcs(CENTRE).pixel_to_world([STAR[0]], [STAR[1]])
    scene.add(coords, [7.0], [1.0], name=['t'])
    ccd, _ = FrameSimulator(camera=Camera(detector=detector),
                            pointing=CENTRE)(scene, mjd=59500.0, seed=4)
    ccd.data = np.nan_to_num(ccd.data)  # edges: clean pixels for the cases
    ccd.mask = None
    return ccd


@pytest.fixture(scope='module')
def phot():
    from satphotutils.photometry import SaturatedStarPhotometry

    return SaturatedStarPhotometry()



def case(key):
    def register(func):
        CASES[key] = func
        return func
    return register


def _with(frame, data=None, **kwargs):
    """A copy of the frame with other data, mask or WCS."""
    args = {'data': frame.data if data is None else data, 'unit': 'adu',
            'wcs': frame.wcs, 'meta': frame.meta} | kwargs
    return CCDData(**args)


def _flags(table, row=0):
    return int(table['flags'][row])


# -- pixels -------------------------------------------------------------------

@case('P01')
def nan_in_core(frame, phot, **_):
    data = frame.data.copy()
    data[150, 100] = np.nan
    table = phot(_with(frame, data), positions=[STAR])
    assert _flags(table) & F.NON_FINITE_DATA


@case('P02')
def inf_pixel(frame, phot, **_):
    data = frame.data.copy()
    data[151, 101] = np.inf
    table = phot(_with(frame, data), positions=[STAR])
    assert _flags(table) & F.NON_FINITE_DATA


@case('P03')
def masked_pixel(frame, phot, **_):
    mask = np.zeros(frame.shape, bool)
    mask[150, 100] = True
    table = phot(_with(frame, mask=mask), positions=[STAR])
    assert _flags(table) & F.MASKED_PIXELS
    assert not _flags(table) & F.NON_FINITE_DATA


@case('P04')
def all_zero_image(frame, phot, **_):
    # No star to measure the FWHM on: it is given.
    from satphotutils.photometry import SaturatedStarPhotometry

    phot = SaturatedStarPhotometry(fwhm=1.8, saturation_level=6e4)
    table = phot(np.zeros(frame.shape), positions=[STAR], zeropoint=25.5)
    assert _flags(table) & F.NO_SIGNAL
    assert np.isnan(table['flux'][0])
    assert np.isnan(table['mag'][0])


@case('P05')
def negative_image(frame, phot, **_):
    from satphotutils.photometry import SaturatedStarPhotometry

    phot = SaturatedStarPhotometry(fwhm=1.8, saturation_level=6e4)
    table = phot(-np.abs(frame.data), positions=[STAR], zeropoint=25.5)
    assert _flags(table) & F.NO_SIGNAL
    assert np.isnan(table['flux'][0])


@case('P06')
def integer_dtype(frame, phot, **_):
    data = np.clip(frame.data, 0, 2**31 - 1).astype(np.int32)
    ref = phot(_with(frame, data.astype(float)), positions=[STAR])
    table = phot(_with(frame, data), positions=[STAR])
    assert_allclose(table['flux'], ref['flux'])


@case('P07')
def big_endian(frame, phot, tmp_path, **_):
    path = tmp_path / 'be.fits'
    fits.PrimaryHDU(frame.data.astype('>f4'), header=frame.wcs.to_header()
                    ).writeto(path)
    from satphotutils.frames import read_frame

    be, _ = read_frame(path)
    ref = phot(_with(frame, frame.data.astype(np.float32)), positions=[STAR])
    table = phot(_with(frame, be.data), positions=[STAR])
    assert_allclose(table['flux'], ref['flux'])


@case('P08')
def three_d_array(phot, **_):
    with pytest.raises(ValueError, match='2D image, got shape'):
        phot(np.zeros((3, 50, 50)), positions=[[10, 10]])


@case('P09')
def one_d_array(phot, **_):
    with pytest.raises(ValueError, match='2D image, got shape'):
        phot(np.zeros(50), positions=[[10, 10]])


@case('P10')
def flux_density_units(frame, phot, **_):
    with pytest.raises(u.UnitsError, match=r'counts \(adu\)'):
        phot(frame.data * u.Jy, positions=[STAR])


@case('P11')
def electron_units(frame, phot, **_):
    with pytest.raises(u.UnitsError, match='divide by the gain'):
        phot(_with(frame, unit='electron'), positions=[STAR])


@case('P12')
def nddata_with_explicit_mask(frame, phot, **_):
    with pytest.raises(ValueError, match='must be None when data is an '
                       'NDData'):
        phot(NDData(frame.data), positions=[STAR],
             mask=np.zeros(frame.shape, bool))


@case('P13')
def mask_of_wrong_shape(frame, phot, **_):
    with pytest.raises(ValueError, match='mask must have the shape'):
        phot(frame.data, positions=[STAR], mask=np.zeros((3, 3), bool))


@case('P14')
def non_finite_zeropoint(frame, phot, **_):
    with pytest.raises(ValueError, match='zeropoint must be finite'):
        phot(frame, positions=[STAR], zeropoint=np.nan)


@case('P15')
def non_numeric_zeropoint_keyword(frame, phot, **_):
    bad = _with(frame, meta=dict(frame.meta) | {'ZP': 'unknown'})
    with pytest.raises(ValueError, match='ZP header keyword must be a '
                       'number'):
        phot(bad, positions=[STAR])


@case('P16')
def non_positive_transparency(frame, phot, **_):
    bad = _with(frame, meta=dict(frame.meta) | {'TRANSP': 0.0})
    with pytest.raises(ValueError, match='TRANSP header keyword must be '
                       'positive'):
        phot(bad, positions=[STAR])


# -- geometry -----------------------------------------------------------------

@case('G01')
def target_off_the_frame(frame, phot, **_):
    table = phot(frame, positions=[[5000.0, 5000.0]])
    assert _flags(table) == F.NO_OVERLAP
    assert np.isnan(table['flux'][0])
    assert np.isnan(table['mag'][0])


@case('G02')
def target_near_the_edge(frame, phot, **_):
    table = phot(frame, positions=[[4.0, 150.0]])
    assert _flags(table) & F.NEAR_EDGE
    assert _flags(table) & F.PARTIAL_OVERLAP


@case('G03')
def duplicated_targets(frame, phot, **_):
    table = phot(frame, positions=[STAR, STAR])
    assert len(table) == 2
    assert table['id'].tolist() == [1, 2]
    assert_allclose(table['flux'][0], table['flux'][1], rtol=1e-6)


@case('G04')
def empty_positions(frame, phot, **_):
    with pytest.raises(ValueError, match='no targets: positions is empty'):
        phot(frame, positions=np.empty((0, 2)))


@case('G05')
def empty_skycoord(frame, phot, **_):
    with pytest.raises(ValueError, match='no targets: skycoord is empty'):
        phot(frame, skycoord=SkyCoord([], [], unit='deg'))


@case('G06')
def nan_position(frame, phot, **_):
    table = phot(frame, positions=[[np.nan, 150.0], STAR])
    assert _flags(table, 0) == F.NO_OVERLAP
    assert np.isnan(table['flux'][0])
    assert np.isfinite(table['flux'][1])


@case('G07')
def outside_the_wcs_valid_region(frame, phot, **_):
    # The far side of the sky of a TAN projection has no pixel position.
    far = SkyCoord(240.0, 30.0, unit='deg')
    table = phot(frame, skycoord=far)
    assert _flags(table) == F.NO_OVERLAP


@case('G08')
def sip_distortion(frame, phot, **_):
    header = frame.wcs.to_header()
    header['CTYPE1'], header['CTYPE2'] = 'RA---TAN-SIP', 'DEC--TAN-SIP'
    # The reference pixel away from the star, where SIP terms are large.
    header['CRPIX1'] -= 80.0
    header['CRPIX2'] -= 100.0
    header.update({'A_ORDER': 2, 'B_ORDER': 2, 'A_2_0': 2e-5,
                   'B_0_2': -3e-5, 'AP_ORDER': 0, 'BP_ORDER': 0})
    wcs = WCS(header)
    assert wcs.sip is not None
    sky = wcs.pixel_to_world(*STAR)
    table = phot(_with(frame, wcs=wcs), skycoord=sky)
    # Positions go through the SIP polynomials, not the linear WCS alone.
    assert_allclose([table['x_center'][0], table['y_center'][0]], STAR,
                    atol=1e-3)
    linear = wcs.wcs_world2pix([[sky.ra.deg, sky.dec.deg]], 0)[0]
    assert np.hypot(*(linear - STAR)) > 0.2


@case('G09')
def skycoord_without_wcs(frame, phot, **_):
    with pytest.raises(ValueError, match='skycoord needs a WCS'):
        phot(frame.data, skycoord=SkyCoord(60.0, -30.0, unit='deg'))


@case('G10')
def positions_of_wrong_shape(frame, phot, **_):
    with pytest.raises(ValueError, match=r'shape \(N, 2\)'):
        phot(frame, positions=[[1.0, 2.0, 3.0]])


@case('G11')
def target_table_without_positions(frame, phot, **_):
    with pytest.raises(ValueError, match='init_params needs x/y columns'):
        phot(frame, init_params=Table({'name': ['a']}))


@case('G12')
def even_stamp_size(**_):
    from satphotutils.photometry import AperturePhotometryBaseline

    with pytest.raises(ValueError, match='stamp_size must be an odd'):
        AperturePhotometryBaseline(stamp_size=20)


# -- frames and files ---------------------------------------------------------

@pytest.fixture
def frames_dir(frame, tmp_path):
    directory = tmp_path / 'frames'
    directory.mkdir()
    frame.write(directory / 'good.fits')
    coord = frame.wcs.pixel_to_world(*STAR)
    targets = Table({'name': ['t'], 'ra': [coord.ra.deg],
                     'dec': [coord.dec.deg]})
    targets.write(tmp_path / 'targets.ecsv')
    return directory, targets


def _run_with(frames_dir, name, content):
    """A light-curve run over the good frame and one bad one."""
    from satphotutils.lightcurves import LightCurvePipeline

    directory, targets = frames_dir
    path = directory / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        content.writeto(path)
    run = LightCurvePipeline()(sorted(directory.glob('*.fit*')), targets)
    return run, str(path)


def _header_without(frame, *keys):
    hdu = fits.PrimaryHDU(frame.data.astype(np.float32),
                          header=frame.to_hdu()[0].header)
    for key in keys:
        hdu.header.remove(key, ignore_missing=True)
    return hdu


@case('F01')
def truncated_fits(frame, frames_dir, **_):
    raw = (frames_dir[0] / 'good.fits').read_bytes()
    run, bad = _run_with(frames_dir, 'cut.fits', raw[:len(raw) // 2])
    assert 'truncated' in run.skipped[bad]
    assert run.lightcurves['t']['n_exposures'][0] == 1


@case('F02')
def not_a_fits_file(frames_dir, **_):
    run, bad = _run_with(frames_dir, 'junk.fits',
                         np.random.default_rng(1).bytes(5000))
    assert 'cannot read the frame' in run.skipped[bad]
    assert len(run.lightcurves['t']) == 1


@case('F03')
def tile_compressed_fits(frame, frames_dir, **_):
    header = frame.to_hdu()[0].header
    header['MJD-AVG'] = frame.meta['MJD-AVG'] + 1.0  # another epoch
    # Lossless (integer) compression: the same counts as the plain file.
    data = np.rint(np.clip(frame.data, 0, None)).astype(np.int32)
    (frames_dir[0] / 'good.fits').unlink()
    fits.PrimaryHDU(data, header=frame.to_hdu()[0].header).writeto(
        frames_dir[0] / 'plain.fits')
    run, _ = _run_with(frames_dir, 'comp.fits.fz', fits.HDUList(
        [fits.PrimaryHDU(), fits.CompImageHDU(data, header=header)]))
    assert not run.skipped
    mag = run.lightcurves['t']['mag'].value
    assert len(mag) == 2
    assert_allclose(mag[0], mag[1], atol=1e-6)


@case('F04')
def frame_without_wcs(frame, frames_dir, **_):
    hdu = fits.PrimaryHDU(frame.data.astype(np.float32))
    hdu.header.update({'MJD-OBS': 59501.0, 'ZP': 25.5})
    run, bad = _run_with(frames_dir, 'nowcs.fits', hdu)
    assert run.skipped[bad].startswith('SatphotutilsError: no celestial WCS')


@case('F05')
def missing_time_keyword(frame, frames_dir, **_):
    run, bad = _run_with(frames_dir, 'nomjd.fits', _header_without(
        frame, 'MJD-OBS', 'MJD-AVG', 'DATE-OBS', 'DATE-AVG'))
    assert run.skipped[bad].startswith(
        'SatphotutilsError: no MJD-AVG / DATE-AVG / MJD-OBS / DATE-OBS / JD '
        f'keyword in {bad}; name the keyword with --header-key mjd=')


@case('F06')
def missing_zeropoint_keyword(frame, frames_dir, **_):
    run, bad = _run_with(frames_dir, 'nozp.fits',
                         _header_without(frame, 'ZP'))
    assert f'no ZP keyword in {bad}' in run.skipped[bad]
    assert 'or give comparison stars' in run.skipped[bad]


@case('F07')
def non_ascii_header_value(frame, frames_dir, **_):
    hdu = _header_without(frame)
    hdu.header['MJD-AVG'] = frame.meta['MJD-AVG'] + 1.0
    hdu.header['OBSERVER'] = 'JOSE'
    path = frames_dir[0] / 'accent.fits'
    hdu.writeto(path)
    data = bytearray(path.read_bytes())
    at = data.find(b"'JOSE")
    data[at + 4] = 0xC9  # JOSÉ in Latin-1: not allowed in FITS headers
    path.write_bytes(bytes(data))
    from satphotutils.lightcurves import LightCurvePipeline

    with pytest.warns(Warning, match='non-ASCII characters'):
        run = LightCurvePipeline()(sorted(frames_dir[0].glob('*.fits')),
                                   frames_dir[1])
    # Read with the character replaced, and measured.
    assert not run.skipped
    assert len(run.lightcurves['t']) == 2


@case('F08')
def no_frames_found(frames_dir, tmp_path, **_):
    from satphotutils.lightcurves import LightCurvePipeline

    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(SatphotutilsError, match='no FITS frames found'):
        LightCurvePipeline()(empty, frames_dir[1])


@case('F09')
def duplicate_target_names(frames_dir, **_):
    from satphotutils.lightcurves import LightCurvePipeline

    targets = Table({'name': ['a', 'a'], 'ra': [1.0, 2.0],
                     'dec': [1.0, 2.0]})
    with pytest.raises(ValueError, match='target names must be unique'):
        LightCurvePipeline()(frames_dir[0], targets)


@case('F10')
def target_table_without_coordinates(frames_dir, **_):
    from satphotutils.lightcurves import LightCurvePipeline

    with pytest.raises(ValueError, match='needs ra and dec'):
        LightCurvePipeline()(frames_dir[0], Table({'name': ['a']}))


@case('F11')
def image_hdu_missing(tmp_path, **_):
    from satphotutils.frames import read_frame

    path = tmp_path / 'table.fits'
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(Table({'a': [1]}))]
                 ).writeto(path)
    with pytest.raises(SatphotutilsError, match='no 2-D image HDU'):
        read_frame(path)


@case('F12')
def damaged_frame_in_a_directory(frames_dir, **_):
    from satphotutils.lightcurves import LightCurvePipeline

    directory, targets = frames_dir
    bad = directory / 'damaged.fits'
    bad.write_bytes(b'SIMPLE  =                    T' + b'\0' * 100)
    # A directory, with and without header filters: the damaged file is
    # reported, not silently left out.
    for filters in ({}, {'FILTER': 'g'}):
        run = LightCurvePipeline()(directory, targets, **filters)
        assert str(bad) in run.skipped
        assert run.frames_measured == 1


# -- light-curve files --------------------------------------------------------

SP1 = 'HJD,UT Date,Camera,FWHM,Limit,mag,mag_err,flux(mJy),flux_err,Filter\n'


def _lc(tmp_path, text, name='lc.csv'):
    path = tmp_path / name
    path.write_bytes(text) if isinstance(text, bytes) else \
        path.write_text(text)
    return path


@case('L01')
def upper_limit_strings(tmp_path, **_):
    from satphotutils.intercalibration import read_lightcurve

    lc = read_lightcurve(_lc(tmp_path, SP1 + (
        '2458000.1,x,bb,1,15,>15.2,99.99,0,1,V\n'
        '2458001.1,x,bb,1,15,10.01,0.01,1,1,V\n')))
    assert len(lc) == 1
    assert lc.meta['n_invalid'] == 1


@case('L02')
def placeholder_values(tmp_path, **_):
    from satphotutils.intercalibration import read_lightcurve

    lc = read_lightcurve(_lc(tmp_path, SP1 + (
        '2458000.1,x,bb,1,15,99.99,0.01,0,1,V\n'
        '2458001.1,x,bb,1,15,10.01,0.0,1,1,V\n'
        '2458002.1,x,bb,1,15,10.02,0.01,1,1,V\n')))
    assert lc['mag'].value.tolist() == [10.02]


@case('L03')
def empty_file(tmp_path, **_):
    from satphotutils.intercalibration import read_lightcurve

    with pytest.raises(SatphotutilsError, match='is empty'):
        read_lightcurve(_lc(tmp_path, ''))


@case('L04')
def header_without_rows(tmp_path, **_):
    from satphotutils.intercalibration import (
        DRWIntercalibrator,
        read_lightcurve,
    )

    lc = read_lightcurve(_lc(tmp_path, SP1))
    assert len(lc) == 0
    with pytest.raises(SatphotutilsError, match='no valid points'):
        DRWIntercalibrator()(lc)


@case('L05')
def unsorted_rows(tmp_path, **_):
    from satphotutils.intercalibration import read_lightcurve

    lc = read_lightcurve(_lc(tmp_path, SP1 + (
        '2458003.1,x,bb,1,15,10.03,0.01,1,1,V\n'
        '2458001.1,x,bb,1,15,10.01,0.01,1,1,V\n'
        '2458002.1,x,bb,1,15,10.02,0.01,1,1,V\n')))
    assert np.all(np.diff(lc['time'].jd) > 0)
    assert lc['mag'].value.tolist() == [10.01, 10.02, 10.03]


@case('L06')
def missing_column(tmp_path, **_):
    from satphotutils.intercalibration import read_lightcurve

    text = SP1.replace('Camera,', '') + '2458000.1,x,1,15,10.0,0.01,1,1,V\n'
    with pytest.raises(SatphotutilsError, match="no 'Camera' column"):
        read_lightcurve(_lc(tmp_path, text))


@case('L07')
def non_numeric_time(tmp_path, **_):
    from satphotutils.intercalibration import read_lightcurve

    with pytest.raises(SatphotutilsError, match='Sky Patrol v1 CSV file but '
                       'cannot be read'):
        read_lightcurve(_lc(tmp_path, SP1 + 'abc,x,bb,1,15,10,0.01,1,1,V\n'))


@case('L08')
def unrecognised_table(tmp_path, **_):
    from satphotutils.intercalibration import read_lightcurve

    with pytest.raises(SatphotutilsError, match='lacks the columns'):
        read_lightcurve(_lc(tmp_path, 'a,b\n1,2\n'))


@case('L09')
def binary_file_as_light_curve(tmp_path, **_):
    from satphotutils.intercalibration import read_lightcurve

    with pytest.raises(SatphotutilsError, match='cannot read'):
        read_lightcurve(_lc(tmp_path, b'\x89\xd6\x00\xff' * 50))


@case('L10')
def junk_magnitude_cell(tmp_path, **_):
    from satphotutils.intercalibration import read_lightcurve

    lc = read_lightcurve(_lc(tmp_path, SP1 + (
        '2458000.1,x,bb,1,15,abc,0.01,1,1,V\n'
        '2458001.1,x,bb,1,15,10.01,0.01,1,1,V\n')))
    assert len(lc) == 1
    assert lc.meta['n_invalid'] == 1


@case('L11')
def magnitude_beyond_float_range(tmp_path, recwarn, **_):
    from satphotutils.intercalibration import read_lightcurve

    lc = read_lightcurve(_lc(tmp_path, SP1 + (
        '2458000.1,x,bb,1,15,1e999,0.01,1,1,V\n'
        '2458001.1,x,bb,1,15,10.01,0.01,1,1,V\n')))
    assert lc['mag'].value.tolist() == [10.01]
    assert lc.meta['n_invalid'] == 1
    assert not recwarn.list


@case('L12')
def time_beyond_float_range(tmp_path, recwarn, **_):
    from satphotutils.intercalibration import read_lightcurve

    # A damaged digit, as found by the fuzzing test: '.' became 'e'.
    with pytest.raises(SatphotutilsError, match='must be finite'):
        read_lightcurve(_lc(tmp_path, SP1 + (
            '2457655e883053,x,bb,1,15,10.0,0.01,1,1,V\n'
            '2458001.1,x,bb,1,15,10.01,0.01,1,1,V\n')))
    assert not recwarn.list


@case('L13')
def row_with_a_missing_field(tmp_path, **_):
    """#25 item 14: the values used to shift into the wrong columns."""
    from satphotutils.intercalibration import read_lightcurve

    lc = read_lightcurve(_lc(tmp_path, SP1 + (
        '2458000.1,x,bb,1,15,10.02,0.01,1,1\n'
        '2458001.1,x,bb,1,15,10.01,0.01,1,1,V\n'
        '2458002.1,x,bb,1,15,10.03,0.01,1,1,V\n')))
    assert lc['filter'].tolist() == ['V', 'V']
    assert lc.meta['n_invalid'] == 1
    assert lc.meta['n_malformed'] == 1


@case('L14')
def another_delimiter(tmp_path, **_):
    from satphotutils.intercalibration import read_lightcurve

    with pytest.raises(SatphotutilsError, match=r"2 of 2 rows do not have "
                       r"the header's 10 comma-separated fields"):
        read_lightcurve(_lc(tmp_path, SP1 + (
            '2458000.1;x;bb;1;15;10.02;0.01;1;1;V\n'
            '2458001.1;x;bb;1;15;10.01;0.01;1;1;V\n')))


@case('L15')
def too_few_points_for_any_offset(tmp_path, **_):
    """#25 item 24: 'array of sample points is empty' with --robust."""
    from satphotutils.intercalibration import (
        DRWIntercalibrator,
        read_lightcurve,
    )

    lc = read_lightcurve(_lc(tmp_path, SP1 + ''.join(
        f'245800{k}.1,x,bb,1,15,10.0{k},0.01,1,1,V\n' for k in range(3))))
    for robust in (False, True):
        with pytest.raises(SatphotutilsError, match=r"min_points=5 usable "
                           r"points an offset needs \(usable points per "
                           r"group: \{'bb/V': 3\}"):
            DRWIntercalibrator(robust=robust)(lc)


@case('L16')
def intercalibrate_over_an_existing_second_output(tmp_path, capsys, **_):
    """#25 item 24: out.ecsv was written before out.offsets.ecsv failed."""
    path = _lc(tmp_path, SP1 + ''.join(
        f'24580{k:02d}.1,x,b{"ab"[k % 2]},1,15,10.0{k % 7},0.01,1,1,V\n'
        for k in range(40)))
    (tmp_path / 'out.offsets.ecsv').write_text('keep me')
    _cli_fails(capsys, ['intercalibrate', str(path), '-o',
                        str(tmp_path / 'out.ecsv')],
               'out.offsets.ecsv already exists')
    assert not (tmp_path / 'out.ecsv').exists()
    assert (tmp_path / 'out.offsets.ecsv').read_text() == 'keep me'


@case('L17')
def robust_intercalibration_memory(**_):
    """#25 item 19: --robust built an N x N matrix (1 GB at 5,000 rows,
    MemoryError at 20,000)."""
    import tracemalloc

    from astropy.table import QTable
    from astropy.time import Time

    from satphotutils.intercalibration import DRWIntercalibrator

    rng = np.random.default_rng(12)
    n = 20_000
    t = np.sort(rng.uniform(0, 3000, n))
    walk = np.cumsum(rng.normal(0, 0.01, n))
    group = rng.integers(0, 4, n)
    lc = QTable({'time': Time(2458000 + t, format='jd'),
                 'mag': 11 + walk + 0.1 * group + rng.normal(0, 0.02, n),
                 'mag_err': np.full(n, 0.02),
                 'camera': [f'b{"abcd"[g]}' for g in group],
                 'filter': np.full(n, 'g')})
    tracemalloc.start()
    try:
        DRWIntercalibrator(robust=True)(lc)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 150e6


# -- model files --------------------------------------------------------------

@pytest.fixture
def model_dir(tmp_path):
    from importlib import resources

    root = resources.files('satphotutils.data') / 'default_model'
    with resources.as_file(root) as path:
        return Path(shutil.copytree(path, tmp_path / 'model'))


class _Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _read(path):
    from satphotutils.network import SaturatedStarModel

    return SaturatedStarModel.read(path)


@case('M01')
def pickle_as_weights(model_dir, tmp_path, **_):
    marker = tmp_path / 'code-was-executed'
    (model_dir / 'model.safetensors').write_bytes(
        pickle.dumps(_Payload(marker)))
    with pytest.raises(SatphotutilsError, match='not a readable '
                       'safetensors file'):
        _read(model_dir)
    assert not marker.exists()


@case('M02')
def pickle_as_model_directory(tmp_path, **_):
    marker = tmp_path / 'code-was-executed'
    path = tmp_path / 'model.pkl'
    path.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(SatphotutilsError, match='not a satphotutils model '
                       'directory'):
        _read(path)
    assert not marker.exists()


@case('M03')
def arbitrary_file_as_model(tmp_path, **_):
    path = tmp_path / 'notes.txt'
    path.write_text('hello')
    with pytest.raises(SatphotutilsError, match='not a satphotutils model '
                       'directory'):
        _read(path)


@case('M04')
def wrong_feature_count(model_dir, **_):
    meta = json.loads((model_dir / 'model.json').read_text())
    meta['feature_names'] = meta['feature_names'][:-3]
    (model_dir / 'model.json').write_text(json.dumps(meta))
    with pytest.raises(SatphotutilsError, match='features that differ'):
        _read(model_dir)


@case('M05')
def wrong_format_version(model_dir, **_):
    meta = json.loads((model_dir / 'model.json').read_text())
    (model_dir / 'model.json').write_text(json.dumps(
        meta | {'format_version': 99}))
    with pytest.raises(SatphotutilsError, match='format version 99'):
        _read(model_dir)


@case('M06')
def truncated_weights(model_dir, **_):
    weights = model_dir / 'model.safetensors'
    raw = weights.read_bytes()
    weights.write_bytes(raw[:len(raw) // 3])
    with pytest.raises(SatphotutilsError, match='safetensors'):
        _read(model_dir)


@case('M07')
def invalid_model_json(model_dir, **_):
    (model_dir / 'model.json').write_text('{"format": ')
    with pytest.raises(SatphotutilsError, match='is not valid JSON'):
        _read(model_dir)


@case('M08')
def architecture_does_not_match_weights(model_dir, **_):
    meta = json.loads((model_dir / 'model.json').read_text())
    meta['architecture']['width'] += 8
    (model_dir / 'model.json').write_text(json.dumps(meta))
    with pytest.raises(SatphotutilsError, match='does not match its '
                       'architecture'):
        _read(model_dir)


# -- stamp tables -------------------------------------------------------------

@case('S01')
def stamp_table_missing_column(tmp_path, **_):
    from satphotutils.stamps import StampTableWriter

    with pytest.raises(SatphotutilsError, match="needs a 'star_id' "
                       'column'), \
            StampTableWriter(tmp_path / 's.fits') as writer:
        writer.write({'stamp': np.zeros((2, 21, 21), np.float32)})


@case('S02')
def fits_file_that_is_not_a_stamp_table(frame, tmp_path, **_):
    from satphotutils.stamps import read_stamp_table

    path = tmp_path / 'frame.fits'
    frame.write(path)
    with pytest.raises(SatphotutilsError, match='it is not a stamp table'):
        read_stamp_table(path)


# -- light-curve runs: the output directory ------------------------------

def _two_nights(frames_dir, tmp_path):
    """The good frame as two nights, ten days apart, of one file name."""
    frames = []
    for night, shift in (('n1', 0.0), ('n2', 10.0)):
        (tmp_path / night).mkdir()
        with fits.open(frames_dir[0] / 'good.fits') as hdul:
            for key in ('DATE-OBS', 'MJD-AVG', 'DATE-AVG'):
                hdul[0].header.remove(key, ignore_missing=True)
            hdul[0].header['MJD-OBS'] = 59500.0 + shift
            hdul.writeto(tmp_path / night / 'good.fits')
        frames.append(tmp_path / night / 'good.fits')
    return frames


@case('R08')
def frame_with_a_non_finite_time(frame, frames_dir, **_):
    """#25 item 3: one frame with MJD-OBS = NaN made every run fail after
    measuring everything; it is skipped and named, the run goes on."""
    hdu = _header_without(frame, 'DATE-OBS', 'MJD-AVG', 'DATE-AVG')
    # FITS cannot store a NaN number: archives write it as text.
    hdu.header['MJD-OBS'] = 'NaN'
    run, path = _run_with(frames_dir, 'nan_time.fits', hdu)
    assert run.frames_measured == 1
    assert 'MJD-OBS' in run.skipped[path]
    assert len(run.lightcurves['t']) == 1


@case('R09')
def comparison_table_without_magnitudes(frames_dir, tmp_path, capsys, **_):
    """#25 item 23: every frame was skipped ("KeyError: 'mag'") and the run
    exited 0; a configuration error stops it at once."""
    from satphotutils.lightcurves import LightCurvePipeline

    directory, targets = frames_dir
    stars = Table({'ra': targets['ra'], 'dec': targets['dec']})
    with pytest.raises(SatphotutilsError, match='comparison table lacks '
                       'the column'):
        LightCurvePipeline(comparison=stars)
    stars.write(tmp_path / 'comparison.ecsv')
    _cli_fails(capsys, ['lightcurve', str(directory), '--targets',
                        str(tmp_path / 'targets.ecsv'), '--comparison',
                        str(tmp_path / 'comparison.ecsv'), '-o',
                        str(tmp_path / 'out')], 'comparison table lacks')
    assert not (tmp_path / 'out').exists()


@case('R01')
def same_named_frames_in_two_directories(frames_dir, tmp_path, **_):
    from satphotutils.lightcurves import LightCurvePipeline

    frames = _two_nights(frames_dir, tmp_path)
    out = tmp_path / 'out'
    LightCurvePipeline()(frames, frames_dir[1], out)
    run = LightCurvePipeline()(frames, frames_dir[1], out, resume=True)
    assert run.frames_resumed == 2
    lc = run.lightcurves['t']
    assert list(lc['n_exposures']) == [1, 1]
    assert np.ptp(lc['time'].mjd) == pytest.approx(10.0, abs=1e-6)


@case('R02')
def resume_with_another_target_table(frames_dir, tmp_path, **_):
    from satphotutils.lightcurves import LightCurvePipeline

    directory, targets = frames_dir
    out = tmp_path / 'out'
    LightCurvePipeline()(directory, targets, out)
    more = Table(targets)
    more.insert_row(0, ['u', targets['ra'][0] + 0.01, targets['dec'][0]])
    with pytest.raises(SatphotutilsError,
                       match='other inputs: the target table'):
        LightCurvePipeline()(directory, more, out, resume=True)


@case('R03')
def target_names_unfit_for_file_names(frames_dir, tmp_path, **_):
    from satphotutils.lightcurves import LightCurvePipeline

    directory, targets = frames_dir
    names = ['all', 'report', 'a/b', 'a_b', '', '.hidden', 'x' * 300]
    many = Table({'name': names, 'ra': [targets['ra'][0]] * len(names),
                  'dec': [targets['dec'][0]] * len(names)})
    out = tmp_path / 'out'
    run = LightCurvePipeline()(directory, many, out)
    files = json.loads((out / 'report.json').read_text())['files']
    assert files == run.files
    assert sorted(files) == sorted(names)
    assert len(set(files.values())) == len(names)
    assert files['a_b'] == 'a_b.ecsv'
    for name, file in files.items():
        assert not file.startswith('.')
        assert len(file) <= 120
        assert Table.read(out / file).meta['name'] == name
    assert Table.read(out / 'all.ecsv')['file'][0] in files.values()


@case('R04')
def user_dot_files_in_the_output_directory(frames_dir, tmp_path, **_):
    from satphotutils.lightcurves import LightCurvePipeline

    directory, targets = frames_dir
    out = tmp_path / 'out'
    out.mkdir()
    (out / '.notes.ecsv.bak').write_text('keep')
    (out / '.satphot-tmp-t.fits.x1y2.fits').write_text('half')
    LightCurvePipeline()(directory, targets, out, output_format='fits')
    assert (out / '.notes.ecsv.bak').read_text() == 'keep'
    assert not (out / '.satphot-tmp-t.fits.x1y2.fits').exists()


@case('R05')
def two_runs_into_one_output_directory(frames_dir, tmp_path, **_):
    import os
    import socket

    from satphotutils.lightcurves import LightCurvePipeline

    directory, targets = frames_dir
    out = tmp_path / 'out'
    out.mkdir()
    (out / '.satphot.lock').write_text(
        f'{os.getppid()} {socket.gethostname()}')
    with pytest.raises(SatphotutilsError,
                       match=f'pid {os.getppid()}.* is writing to'):
        LightCurvePipeline()(directory, targets, out)
    assert not (out / 'report.json').exists()


@case('R06')
def light_curve_numeric_options(frames_dir, tmp_path, capsys, **_):
    from satphotutils.lightcurves import LightCurvePipeline

    for kwargs, words in (({'epoch_window': np.nan}, 'epoch_window'),
                          ({'clip_sigma': 0}, 'clip_sigma must be > 0'),
                          ({'min_comparison': 2.5}, 'whole number')):
        with pytest.raises(ValueError, match=words):
            LightCurvePipeline(**kwargs)
    with pytest.raises(SystemExit):
        main(['lightcurve', str(frames_dir[0]), '--targets',
              str(tmp_path / 'targets.ecsv'), '-o', str(tmp_path / 'o'),
              '--epoch-window=nan'])
    assert '--epoch-window: must be a finite number' in \
        capsys.readouterr().err


@case('R07')
def light_curve_targets_that_place_nothing(frames_dir, tmp_path, **_):
    from satphotutils.lightcurves import LightCurvePipeline
    from satphotutils.lightcurves.pipeline import NothingMeasuredError

    directory = frames_dir[0]
    with pytest.raises(ValueError, match='target table has no rows'):
        LightCurvePipeline()(directory, Table({'ra': np.array([], float),
                                               'dec': np.array([], float)}))
    with pytest.raises(ValueError, match='no target has a finite position'):
        LightCurvePipeline()(directory, Table({'ra': [np.nan],
                                               'dec': [np.nan]}))
    far = Table({'ra': [CENTRE.ra.deg + 180], 'dec': [-CENTRE.dec.deg]})
    with pytest.raises(NothingMeasuredError,
                       match='no target lies on any frame'):
        LightCurvePipeline()(directory, far, tmp_path / 'out')


# -- the command line ---------------------------------------------------------

def _cli_fails(capsys, argv, words):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1, err
    assert 'Traceback' not in err
    assert words in err
    return err


@case('C01')
def cli_corrupt_image(frames_dir, tmp_path, capsys, **_):
    bad = tmp_path / 'junk.fits'
    bad.write_bytes(b'SIMPLE = nonsense' * 200)
    _cli_fails(capsys, ['photometry', str(bad), '--targets',
                        str(tmp_path / 'targets.ecsv'), '-o',
                        str(tmp_path / 'out.ecsv')],
               f'cannot read the frame {bad}')
    assert not (tmp_path / 'out.ecsv').exists()


@case('C02')
def cli_missing_targets_file(frames_dir, tmp_path, capsys, **_):
    _cli_fails(capsys, ['photometry', str(frames_dir[0] / 'good.fits'),
                        '--targets', str(tmp_path / 'none.ecsv'), '-o',
                        str(tmp_path / 'out.ecsv')],
               'cannot read the target table')


@case('C03')
def cli_targets_without_positions(frames_dir, tmp_path, capsys, **_):
    Table({'foo': [1]}).write(tmp_path / 'foo.ecsv')
    _cli_fails(capsys, ['photometry', str(frames_dir[0] / 'good.fits'),
                        '--targets', str(tmp_path / 'foo.ecsv'), '-o',
                        str(tmp_path / 'out.ecsv')],
               'init_params needs x/y columns')


@case('C04')
def cli_image_without_wcs(frame, frames_dir, tmp_path, capsys, **_):
    path = tmp_path / 'nowcs.fits'
    fits.PrimaryHDU(frame.data).writeto(path)
    _cli_fails(capsys, ['photometry', str(path), '--targets',
                        str(tmp_path / 'targets.ecsv'), '-o',
                        str(tmp_path / 'out.ecsv')], 'needs a WCS')


@case('C05')
def cli_output_exists(frames_dir, tmp_path, capsys, **_):
    (tmp_path / 'out.ecsv').write_text('keep me')
    _cli_fails(capsys, ['photometry', str(frames_dir[0] / 'good.fits'),
                        '--targets', str(tmp_path / 'targets.ecsv'), '-o',
                        str(tmp_path / 'out.ecsv')], '--overwrite')
    assert (tmp_path / 'out.ecsv').read_text() == 'keep me'


@case('C06')
def cli_lightcurve_no_frames(frames_dir, tmp_path, capsys, **_):
    (tmp_path / 'nothing').mkdir()
    _cli_fails(capsys, ['lightcurve', str(tmp_path / 'nothing'),
                        '--targets', str(tmp_path / 'targets.ecsv'), '-o',
                        str(tmp_path / 'lc')], 'no FITS frames found')


@case('C07')
def cli_intercalibrate_empty_light_curve(tmp_path, capsys, **_):
    _cli_fails(capsys, ['intercalibrate', str(_lc(tmp_path, SP1)), '-o',
                        str(tmp_path / 'out.ecsv')], 'no valid points')


@case('C08')
def cli_model_is_a_pickle(frames_dir, tmp_path, capsys, **_):
    marker = tmp_path / 'code-was-executed'
    path = tmp_path / 'model.pkl'
    path.write_bytes(pickle.dumps(_Payload(marker)))
    _cli_fails(capsys, ['photometry', str(frames_dir[0] / 'good.fits'),
                        '--targets', str(tmp_path / 'targets.ecsv'),
                        '--model', str(path), '-o',
                        str(tmp_path / 'out.ecsv')],
               'not a satphotutils model directory')
    assert not marker.exists()


@case('C09')
def cli_missing_stamp_table(tmp_path, capsys, **_):
    _cli_fails(capsys, ['train', str(tmp_path / 'none.fits'), '-o',
                        str(tmp_path / 'm')], 'does not exist')


# -- issue 25, second round: each case is its own test ------------------------

@case('C10')
@pytest.mark.parametrize('argv', [
    ['simulate', 'frames', 'OUT', '--n-epochs', '0'],
    ['simulate', 'frames', 'OUT', '--g-max', 'nan'],
    ['simulate', 'frames', 'OUT', '--dec', '-91'],
    ['simulate', 'stamps', 'OUT', '--n-stars', '5', '--damage-fraction',
     '2'],
    ['train', 'STAMPS', '-o', 'OUT', '--lr', 'inf'],
    ['train', 'STAMPS', '-o', 'OUT', '--batch-size', '0'],
    ['train', 'STAMPS', '-o', 'OUT', '--epochs', '2.5'],
    ['photometry', 'IMAGE', '--targets', 'T', '-o', 'OUT', '--fwhm', '-1'],
    ['stamps', 'IMAGE', '--gaia', '-o', 'OUT', '--g-max', 'nan'],
    ['stamps', 'IMAGE', '--gaia', '-o', 'OUT', '--edge', '-5'],
    ['lightcurve', 'IMAGE', '--targets', 'T', '-o', 'OUT',
     '--epoch-window', 'nan'],
])
def test_item09_numeric_options_of_every_command(argv, tmp_path, capsys):
    # A usage error before any work: nothing is simulated, queried or
    # written.
    argv = [str(tmp_path / 'out') if a == 'OUT' else a for a in argv]
    option = next(a for a in argv if a.startswith('--') and a not in (
        '--gaia', '--targets', '--n-stars'))
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f'argument {option}: must be' in err
    assert 'Traceback' not in err
    assert not (tmp_path / 'out').exists()


def test_item09_numeric_arguments_of_the_api(tmp_path):
    from satphotutils.network import TrainingConfig
    from satphotutils.photometry import SaturatedStarPhotometry
    from satphotutils.simulation import FrameSimulator, simulate_field

    for kwargs in ({'lr': np.inf}, {'weight_decay': np.nan},
                   {'huber_delta': -1.0}):
        with pytest.raises(ValueError, match=f'{next(iter(kwargs))}='):
            TrainingConfig(**kwargs)
    with pytest.raises(ValueError, match='n_epochs must be at least 1'):
        simulate_field(tmp_path, None, [FrameSimulator(pointing=CENTRE)],
                       n_epochs=0)
    with pytest.raises(ValueError, match='batch_size must be at least 1'):
        SaturatedStarPhotometry(batch_size=0)


@case('P17')
def test_item11_masked_array_mask_is_honoured(frame):
    # The same pixels masked by mask= are the independent answer; the
    # mask covers part of the core, so ignoring it changes the result.
    from satphotutils.photometry import SaturatedStarPhotometry

    # A plain array has no header: its saturation level and FWHM given.
    phot = SaturatedStarPhotometry(saturation_level=frame.meta['SATURATE'],
                                   fwhm=1.8)
    bad = np.zeros(frame.shape, bool)
    bad[148:152, 98:103] = True
    data = np.ma.masked_array(frame.data, mask=bad)
    table = phot(data, positions=[STAR], zeropoint=25.5)
    expected = phot(frame.data, positions=[STAR], zeropoint=25.5, mask=bad)
    ignored = phot(frame.data, positions=[STAR], zeropoint=25.5)
    assert _flags(table) & F.MASKED_PIXELS
    assert _flags(table) == _flags(expected)
    assert_allclose(table['flux'].value, expected['flux'].value)
    assert not np.allclose(table['flux'].value, ignored['flux'].value,
                           equal_nan=True)
    # Joined to an explicit mask.
    other = np.zeros(frame.shape, bool)
    other[150, 100] = True
    joined = phot(np.ma.masked_array(frame.data, mask=other),
                  positions=[STAR], zeropoint=25.5, mask=bad)
    both = phot(frame.data, positions=[STAR], zeropoint=25.5,
                mask=bad | other)
    assert_allclose(joined['flux'].value, both['flux'].value)


@case('G13')
def test_item15_ambiguous_or_sexagesimal_target_positions(frame, phot):
    coord = frame.wcs.pixel_to_world(*STAR)
    both = Table({'x': [STAR[0]], 'y': [STAR[1]],
                  'ra': [coord.ra.deg + 0.1], 'dec': [coord.dec.deg]})
    with pytest.raises(ValueError, match=r'both pixel \(x, y\) and sky '
                       r'\(ra, dec\)'):
        phot(frame, init_params=both)
    # A table whose two positions agree, such as a photometry result fed
    # back, is measured where both put the target.
    again = phot(frame, init_params=phot(frame, positions=[STAR]))
    assert_allclose([again['x_center'][0], again['y_center'][0]], STAR)
    # Sexagesimal text is hours and degrees, as catalogues write it: the
    # target lands where its decimal degrees put it.
    text = Table({'ra': [coord.ra.to_string('hourangle', sep=':',
                                            precision=4)],
                  'dec': [coord.dec.to_string(sep=':', precision=3)]})
    table = phot(frame, init_params=text)
    assert_allclose([table['x_center'][0], table['y_center'][0]], STAR,
                    atol=0.01)
    with pytest.raises(ValueError, match="ra column holds 'ten'"):
        phot(frame, init_params=Table({'ra': ['ten'], 'dec': ['-30']}))


@case('P18')
def test_item16_implausible_zero_points(frame, phot, tmp_path, capsys):
    with pytest.raises(ValueError, match=r'zeropoint is -25.*outside the '
                       r'plausible range 5-45'):
        phot(frame, positions=[STAR], zeropoint=-25)
    (tmp_path / 'out.ecsv').write_text('keep me')
    path = tmp_path / 'f.fits'
    frame.write(path)
    Table({'x': [STAR[0]], 'y': [STAR[1]]}).write(tmp_path / 'xy.ecsv')
    _cli_fails(capsys, ['photometry', str(path), '--targets',
                        str(tmp_path / 'xy.ecsv'), '--zeropoint', '-25',
                        '-o', str(tmp_path / 'out.ecsv'), '--overwrite'],
               'outside the plausible range')
    assert (tmp_path / 'out.ecsv').read_text() == 'keep me'
    # In the header: ZP = T (a FITS boolean) and ZP = -25 are named.
    for value, words in ((True, 'ZP header keyword of .* must be a number'),
                         (-25.0, 'ZP header keyword of .* outside')):
        with fits.open(path, mode='update') as hdul:
            hdul[0].header['ZP'] = value
        with pytest.raises(SatphotutilsError, match=words):
            read_frame(path)


@case('M09')
def test_item18_hostile_model_json(model_dir, frames_dir, tmp_path, capsys):
    meta = model_dir / 'model.json'
    for text, words in ((b'[' * 200_000 + b']' * 200_000,
                         'nested too deeply'),
                        (b'{"format": "\xff\xfe"}', 'is not valid JSON')):
        meta.write_bytes(text)
        with pytest.raises(SatphotutilsError, match=words) as info:
            _read(model_dir)
        assert str(meta) in str(info.value)
        _cli_fails(capsys, ['photometry', str(frames_dir[0] / 'good.fits'),
                            '--targets', str(tmp_path / 'targets.ecsv'),
                            '--model', str(model_dir), '-o',
                            str(tmp_path / 'out.ecsv')], str(meta))


def _stamp_chunk(n, **columns):
    return {'stamp': np.zeros((n, 21, 21), np.float32),
            'star_id': np.arange(n, dtype=np.int16),
            'zeropoint': np.full(n, 25.5), 'sky': np.full(n, 200.0),
            **columns}


@case('S03')
def test_item13_later_stamp_chunks_are_never_truncated(tmp_path):
    from satphotutils.stamps import StampTableWriter, read_stamp_table

    path = tmp_path / 's.fits'
    big = 2**40 + 5  # a Gaia-sized identifier after int16 ones
    with StampTableWriter(path) as writer:
        writer.write(_stamp_chunk(2, camera=np.array(['b', 'b']),
                                  file=np.array(['f1.fits'] * 2)))
        writer.write(_stamp_chunk(1, camera=np.array(['bc']),
                                  file=np.array(['f10.fits']),
                                  star_id=np.array([big])))
    table = read_stamp_table(path)
    assert list(table['camera']) == ['b', 'b', 'bc']
    assert list(table['file']) == ['f1.fits', 'f1.fits', 'f10.fits']
    assert list(table['star_id']) == [0, 1, big]
    # Beyond the width: refused, naming the column and the fix.
    with pytest.raises(SatphotutilsError, match=r"column 'file' .* 40 "
                       r'characters.*string_width=40'), \
            StampTableWriter(tmp_path / 't.fits') as writer:
        writer.write(_stamp_chunk(1, file=np.array(['a.fits'])))
        writer.write(_stamp_chunk(1, file=np.array(['n' * 35 + '.fits'])))
    assert not (tmp_path / 't.fits').exists()
    with pytest.raises(SatphotutilsError,
                       match=r"'star_id' .* not integers"), \
            StampTableWriter(tmp_path / 'u.fits') as writer:
        writer.write(_stamp_chunk(1))
        writer.write(_stamp_chunk(1, star_id=np.array([2.5])))


@case('S04')
def test_item22_truncated_stamp_table(tmp_path, capsys):
    from satphotutils.stamps import StampTableWriter, read_stamp_table

    path = tmp_path / 's.fits'
    with StampTableWriter(path) as writer:
        writer.write(_stamp_chunk(50))
    cut = tmp_path / 'cut.fits'
    cut.write_bytes(path.read_bytes()[:2 * path.stat().st_size // 3])
    with pytest.raises(SatphotutilsError,
                       match=f'stamp table {cut} is truncated'):
        read_stamp_table(cut)
    for argv in (['predict', str(cut), '-o', str(tmp_path / 'p.fits')],
                 ['train', str(cut), '-o', str(tmp_path / 'm')]):
        _cli_fails(capsys, argv, f'stamp table {cut} is truncated')


@case('F13')
def test_item20_frame_larger_than_the_size_cap(frame, frames_dir, tmp_path,
                                               capsys, monkeypatch):
    from satphotutils.frames import reader
    from satphotutils.lightcurves import LightCurvePipeline

    # Not a 1.6 GB file: a 240 kB image against a 100 kB cap, checked
    # from the header before the pixels are decompressed.
    directory, targets = frames_dir
    path = directory / 'big.fits.gz'
    frame.write(path)
    with pytest.raises(SatphotutilsError, match=f'the frame {path} holds a '
                       r'200 x 300 image .* more than .*max_bytes'):
        read_frame(path, max_bytes=100_000)
    assert read_frame(path)[0].shape == frame.shape
    monkeypatch.setattr(reader, 'MAX_FRAME_BYTES', 100_000)
    with pytest.raises(SatphotutilsError, match='no frame of 2 gave'):
        LightCurvePipeline()(directory, targets)
    _cli_fails(capsys, ['photometry', str(path), '--targets',
                        str(tmp_path / 'targets.ecsv'), '-o',
                        str(tmp_path / 'out.ecsv')], 'more than the')


@case('F14')
@pytest.mark.skipif(not hasattr(__import__('os'), 'mkfifo'),
                    reason='no FIFOs here')
def test_item08_fifo_among_filtered_frames(frames_dir):
    import os

    from satphotutils.frames import list_frames
    from satphotutils.lightcurves import LightCurvePipeline

    # With header filters every file is opened to read its header: a
    # FIFO blocked there forever (without filters it was skipped).
    directory, targets = frames_dir
    os.mkfifo(directory / 'pipe.fits')
    assert directory / 'pipe.fits' in list_frames(directory, CAMERA='bi')
    run = LightCurvePipeline()(directory, targets, CAMERA='bi')
    assert 'not a regular file' in run.skipped[str(directory / 'pipe.fits')]
    assert run.frames_measured == 1


# -- the tests ----------------------------------------------------------------

@pytest.mark.parametrize('key', sorted(
    k for k, f in CASES.items() if not f.__name__.startswith('test_')))
def test_bad_input(key, request):
    func = CASES[key]
    wanted = [p.name for p in inspect.signature(func).parameters.values()
              if p.kind is p.POSITIONAL_OR_KEYWORD]
    func(**{n: request.getfixturevalue(n) for n in wanted})


@pytest.mark.skipif(not DOC.is_file(), reason='documentation not present')
def test_inventory_is_documented():
    documented = re.findall(r'^   \* - ([A-Z]\d\d)$', DOC.read_text(),
                            re.M)
    assert len(documented) == len(set(documented))
    assert sorted(documented) == sorted(CASES)
    assert len(CASES) >= 40
