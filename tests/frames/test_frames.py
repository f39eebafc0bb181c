"""The one frame home: header keys, header values, reading and listing."""

import logging
import os

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS
from numpy.testing import assert_allclose, assert_array_equal

from satphotutils.frames import (
    HeaderKeys,
    InvalidHeaderError,
    frame_info,
    list_frames,
    read_frame,
    read_frame_data,
    read_frame_info,
)
from satphotutils.utils.exceptions import SatphotutilsError


def _wcs(sip=False):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ['RA---TAN-SIP', 'DEC--TAN-SIP'] if sip else \
        ['RA---TAN', 'DEC--TAN']
    wcs.wcs.crval = [150.0, -40.0]
    wcs.wcs.crpix = [32.0, 24.0]
    wcs.wcs.cd = [[-2.2e-3, 1e-5], [1e-5, 2.2e-3]]
    if sip:
        from astropy.wcs import Sip

        a = np.zeros((4, 4))
        b = np.zeros((4, 4))
        a[2, 0], a[0, 2], b[1, 1], b[3, 0] = 2e-5, -1e-5, 3e-5, 1e-7
        wcs.sip = Sip(a, b, None, None, wcs.wcs.crpix)
    return wcs


# -- HeaderKeys ---------------------------------------------------------------

def test_header_keys_parse_and_switch_off():
    keys = HeaderKeys.parse(['zeropoint=magzp', 'camera=INSTRUME', 'sky='])
    assert (keys.zeropoint, keys.camera, keys.sky) == ('MAGZP', 'INSTRUME',
                                                       None)
    assert keys.transparency == 'TRANSP'
    assert HeaderKeys.parse(['times-mark=mid']).times_mark == 'mid'


@pytest.mark.parametrize('item', ['zeropoint', 'zp=MAGZP', 'times_mark=end'])
def test_header_keys_parse_refuses_with_the_names(item):
    with pytest.raises(SatphotutilsError, match='--header-key'):
        HeaderKeys.parse([item])


# -- times --------------------------------------------------------------------

@pytest.mark.parametrize(('cards', 'mjd', 'source'), [
    # The FITS standard's mid-exposure keywords win.
    ({'MJD-AVG': 60000.5, 'MJD-OBS': 60000.0, 'EXPTIME': 60.0}, 60000.5,
     'MJD-AVG'),
    ({'DATE-AVG': '2023-02-25T12:00:00'}, 60000.5, 'DATE-AVG'),
    # Start times move to mid-exposure by half the exposure time.
    ({'MJD-OBS': 60000.0, 'EXPTIME': 864.0}, 60000.005,
     'MJD-OBS + EXPTIME/2'),
    ({'DATE-OBS': '2023-02-25T00:00:00', 'EXPTIME': 86.4}, 60000.0005,
     'DATE-OBS + EXPTIME/2'),
    ({'JD': 2460000.5, 'EXPTIME': 0.0}, 60000.0, 'JD + EXPTIME/2'),
])
def test_frame_time_rules(cards, mjd, source):
    info = frame_info(fits.Header(cards))
    assert_allclose(info.time.mjd, mjd, rtol=0, atol=1e-9)
    assert info.time.scale == 'utc'
    assert info.time_source == source


def test_frame_time_scale_from_timesys():
    info = frame_info(fits.Header({'MJD-AVG': 60000.0, 'TIMESYS': 'TT'}))
    assert info.time.scale == 'tt'
    # 69.184 s between TT and UTC in 2023.
    assert_allclose((info.time.tt.mjd - info.time.utc.mjd) * 86400, 69.184,
                    atol=1e-3)
    with pytest.raises(InvalidHeaderError, match='TIMESYS'):
        frame_info(fits.Header({'MJD-AVG': 60000.0, 'TIMESYS': 'GPS'}))


def test_start_time_without_exposure_time_is_used_and_said(caplog):
    with caplog.at_level(logging.WARNING):
        info = frame_info(fits.Header({'DATE-OBS': '2023-02-25T00:00:00'}))
    assert_allclose(info.time.mjd, 60000.0)
    assert info.time_source == 'DATE-OBS (start; no EXPTIME)'
    assert 'marks the start of the exposure' in caplog.text


def test_times_mark_mid_takes_start_keywords_as_they_are():
    keys = HeaderKeys(times_mark='mid')
    info = frame_info(fits.Header({'MJD-OBS': 60000.0, 'EXPTIME': 60.0}),
                      header_keys=keys)
    assert info.time.mjd == 60000.0


def test_unknown_values_are_none_not_defaults():
    info = frame_info(fits.Header({'NAXIS': 0}))
    for name in ('time', 'zeropoint', 'transparency', 'sky', 'gain',
                 'read_noise', 'saturation_level', 'camera', 'filter',
                 'exptime', 'epoch'):
        assert getattr(info, name) is None, name
    with pytest.raises(SatphotutilsError, match=r'no ZP keyword in f\.fits; '
                       'name the keyword with --header-key zeropoint='):
        frame_info(fits.Header(), path='f.fits').require('zeropoint')


@pytest.mark.parametrize(('key', 'value', 'match'), [
    ('ZP', True, 'must be a number'),        # ZP = T, which float() takes
    ('ZP', -25.0, 'outside the plausible range'),
    ('ZP', 'high', 'must be a number'),
    ('SKY', 'high', 'SKY header keyword of f.fits must be a number'),
    ('TRANSP', 0.0, 'must be positive'),
    ('GAIN', -2.0, 'must be positive'),
    ('RDNOISE', -1.0, 'must not be negative'),
    ('SATURATE', 0.0, 'must be positive'),
    ('MJD-OBS', 'yesterday', 'must be a number'),
    ('DATE-OBS', 'yesterday', 'not an ISO date'),
])
def test_bad_header_values_are_named(key, value, match):
    header = fits.Header({'EXPTIME': 30.0})
    header[key] = value
    with pytest.raises(InvalidHeaderError, match=match):
        frame_info(header, path='f.fits')


def test_non_finite_header_value_is_named():
    # FITS cannot hold NaN; an in-memory header (a dict) can.
    with pytest.raises(InvalidHeaderError, match='SKY header keyword must be '
                       'finite'):
        frame_info({'SKY': float('nan')})


def test_switched_off_key_is_not_read():
    info = frame_info(fits.Header({'GAIN': -2.0}),
                      header_keys=HeaderKeys(gain=None))
    assert info.gain is None


# -- reading ------------------------------------------------------------------

def _header(**extra):
    header = _wcs().to_header()
    header.update({'DATE-OBS': '2023-02-25T00:00:00', 'EXPTIME': 60.0,
                   'ZP': 25.0, 'CAMERA': 'bi', 'FILTER': 'g', **extra})
    return header


def test_read_plain_and_tile_compressed_alike(tmp_path):
    data = np.random.default_rng(1).integers(0, 60000, (48, 64))
    plain = tmp_path / 'a.fits'
    fits.PrimaryHDU(data.astype(np.int32), header=_header()).writeto(plain)
    packed = tmp_path / 'a.fits.fz'
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(
        data.astype(np.int32), header=_header())]).writeto(packed)
    (a, ia), (b, ib) = read_frame(plain), read_frame(packed)
    assert_array_equal(a.data, b.data)
    assert_array_equal(a.data, data)
    assert ia.time == ib.time
    assert ia.camera_code == ib.camera_code == 'bi/g'
    assert str(b.unit) == 'adu'
    assert ib.shape == (48, 64)
    assert ib.wcs is not None


def test_read_scaled_integers(tmp_path):
    # uint16 stored as int16 + BZERO 32768, and BSCALE 0.5.
    values = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    path = tmp_path / 'u16.fits'
    fits.PrimaryHDU(values).writeto(path)
    assert fits.getheader(path)['BZERO'] == 32768
    frame, _ = read_frame(path)
    assert_array_equal(frame.data, values)
    hdu = fits.PrimaryHDU(np.array([[2, 4]], dtype=np.int16))
    hdu.scale('int16', bscale=0.5, bzero=10.0)
    hdu.writeto(tmp_path / 'scaled.fits')
    frame, _ = read_frame(tmp_path / 'scaled.fits')
    assert_allclose(frame.data, [[2, 4]])


def test_pixels_alone_are_the_frames_pixels_copied_or_mapped(tmp_path):
    # read_frame_data gives read_frame's pixels for plain, scaled and
    # tile-compressed files; without a copy they are a read-only view
    # that outlives the closed file (a memory map for plain files).
    rng = np.random.default_rng(4)
    data = rng.integers(0, 60000, (48, 64)).astype(np.int32)
    plain = tmp_path / 'a.fits'
    fits.PrimaryHDU(data, header=_header()).writeto(plain)
    packed = tmp_path / 'a.fits.fz'
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(
        data, header=_header())]).writeto(packed)
    scaled = tmp_path / 'u16.fits'
    fits.PrimaryHDU(data.astype(np.uint16)).writeto(scaled)
    for path in (plain, packed, scaled):
        frame, _ = read_frame(path)
        as_float = read_frame_data(path, dtype=np.float32)
        assert as_float.dtype == np.float32
        assert as_float.flags.writeable
        assert_array_equal(as_float, frame.data)
        mapped = read_frame_data(path, copy=False)
        assert not mapped.flags.writeable
        assert_array_equal(mapped, frame.data)
        with pytest.raises(ValueError, match='read-only'):
            mapped[0, 0] = 1
    # Read after the file was closed (and moved away).
    mapped = read_frame_data(plain, copy=False)
    plain.rename(tmp_path / 'moved.fits')
    assert_array_equal(mapped[10:20, 5:9], data[10:20, 5:9])


def test_read_multi_extension_picks_the_image(tmp_path):
    path = tmp_path / 'mef.fits'
    fits.HDUList([fits.PrimaryHDU(),
                  fits.BinTableHDU.from_columns(
                      [fits.Column('a', 'E', array=[1.0])]),
                  fits.ImageHDU(np.full((20, 30), 7.0, 'f4'),
                                header=_header(), name='SCI')]).writeto(path)
    frame, info = read_frame(path)
    assert frame.shape == (20, 30)
    assert info.zeropoint == 25.0
    assert read_frame(path, hdu='SCI')[0].shape == (20, 30)
    with pytest.raises(SatphotutilsError, match=r'HDU 1 of .* not a 2-D'):
        read_frame(path, hdu=1)
    info = read_frame_info(path)
    assert info.shape == (20, 30)
    assert info.camera == 'bi'


def test_read_keeps_sip_distortion(tmp_path):
    wcs = _wcs(sip=True)
    header = wcs.to_header(relax=True)
    header['DATE-AVG'] = '2023-02-25T00:00:30'
    path = tmp_path / 'sip.fits.fz'
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(
        np.zeros((48, 64), np.int32), header=header)]).writeto(path)
    frame, info = read_frame(path)
    x, y = np.array([0.0, 63.0, 10.0]), np.array([0.0, 47.0, 40.0])
    truth = wcs.pixel_to_world(x, y)
    for got in (frame.wcs.pixel_to_world(x, y),
                info.wcs.pixel_to_world(x, y),
                read_frame_info(path).wcs.pixel_to_world(x, y)):
        assert_allclose(got.separation(truth).to_value(u.arcsec), 0,
                        atol=1e-6)
    # The distortion is real: without SIP the corner moves.
    plain = WCS(_wcs().to_header())
    assert plain.pixel_to_world(63.0, 47.0).separation(truth[1]) > \
        0.01 * u.arcsec
    assert info.time == Time('2023-02-25T00:00:30')


def test_mid_exposure_keywords_survive_ccddata_read(tmp_path):
    # CCDData.read moves DATE-AVG/MJD-AVG into its WCS; the frame's time
    # must still be the mid-exposure one.
    path = tmp_path / 'mid.fits'
    fits.PrimaryHDU(np.zeros((10, 10), 'f4'),
                    header=_header(**{'MJD-AVG': 60000.25})).writeto(path)
    _, info = read_frame(path)
    assert info.time.mjd == 60000.25
    assert info.time_source == 'MJD-AVG'


@pytest.mark.skipif(not hasattr(os, 'mkfifo'), reason='no FIFOs here')
def test_fifo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / 'pipe.fits'
    os.mkfifo(fifo)
    with pytest.raises(SatphotutilsError, match='not a regular file'):
        read_frame(fifo)


def test_missing_and_damaged_files_name_the_file(tmp_path):
    with pytest.raises(SatphotutilsError, match=r'missing\.fits: no such'):
        read_frame(tmp_path / 'missing.fits')
    junk = tmp_path / 'junk.fits'
    junk.write_bytes(b'not a FITS file' * 100)
    with pytest.raises(SatphotutilsError, match=r'junk\.fits'):
        read_frame_info(junk)


def test_bad_header_value_names_the_file(tmp_path):
    path = tmp_path / 'bad.fits'
    fits.PrimaryHDU(np.zeros((4, 4)), header=_header(ZP=True)).writeto(path)
    with pytest.raises(InvalidHeaderError, match=r'ZP header keyword of .*'
                       r'bad\.fits must be a number'):
        read_frame(path)


# -- listing ------------------------------------------------------------------

def test_list_frames_patterns_duplicates_and_links(tmp_path, caplog):
    for name in ('a.fits', 'b.fit', 'c.fts', 'd.fits.fz', '.hidden.fits',
                 'notes.txt'):
        fits.PrimaryHDU(header=fits.Header({'FILTER': 'g'})).writeto(
            tmp_path / name) if name != 'notes.txt' else \
            (tmp_path / name).write_text('x')
    (tmp_path / 'link.fits').symlink_to(tmp_path / 'a.fits')
    found = list_frames(tmp_path)
    names = [p.name for p in found]
    assert names == ['a.fits', 'b.fit', 'c.fts', 'd.fits.fz']
    with caplog.at_level(logging.WARNING):
        again = list_frames([tmp_path / 'a.fits', tmp_path / 'a.fits',
                             str(tmp_path / 'c.*')])
    assert [p.name for p in again] == ['a.fits', 'c.fts']
    assert 'same file' in caplog.text


def test_list_frames_filters_on_the_image_header(tmp_path):
    # A tile-compressed frame keeps its keywords in the image HDU, not in
    # the empty primary one.
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(
        np.zeros((4, 4), np.int32), header=fits.Header({'FILTER': 'V'}))]
    ).writeto(tmp_path / 'v.fits.fz')
    fits.PrimaryHDU(np.zeros((4, 4)), header=fits.Header(
        {'FILTER': 'g'})).writeto(tmp_path / 'g.fits')
    assert [p.name for p in list_frames(tmp_path, FILTER='V')] == \
        ['v.fits.fz']
    assert [p.name for p in list_frames(tmp_path / '*.fits*', FILTER='g')] \
        == ['g.fits']


def test_simulated_frames_carry_standard_times():
    from satphotutils.simulation import Camera, Detector, FrameSimulator, Scene

    centre = SkyCoord(150, -40, unit='deg')
    sim = FrameSimulator(camera=Camera(detector=Detector(shape=(64, 64))),
                         pointing=centre)
    frame, _ = sim(Scene(centre.reshape(1), [9.0], [1.0]), mjd=60000.5,
                   seed=1)
    info = frame_info(frame)
    assert_allclose(info.time.mjd, 60000.5, atol=1e-9)
    start = frame_info(frame, header_keys=HeaderKeys(mjd_mid=None,
                                                     date_mid=None))
    # From the start plus half the exposure: the same time.
    assert_allclose(start.time.mjd, 60000.5, atol=1e-8)


def test_damaged_header_card_is_a_clean_error(tmp_path):
    # Found by the fuzzing test: a NUL byte inside the MJD-OBS card fails
    # when the value is parsed, after the file was opened.
    path = tmp_path / 'damaged.fits'
    fits.PrimaryHDU(np.zeros((4, 4), 'f4'), header=_header(
        **{'MJD-OBS': 59000.0})).writeto(path)
    raw = bytearray(path.read_bytes())
    at = raw.find(b'MJD-OBS =') + 28
    raw[at] = 0
    path.write_bytes(bytes(raw))
    with pytest.raises(SatphotutilsError, match='MJD-OBS'):
        read_frame(path)


def test_saturation_level_falls_back_to_satlevel():
    # A pipeline that writes SATLEVEL instead of SATURATE.
    info = frame_info(fits.Header({'SATLEVEL': 52000.0}))
    assert info.saturation_level == 52000.0
    # SATURATE, when present, is the saturation level.
    info = frame_info(fits.Header({'SATURATE': 60000.0,
                                   'SATLEVEL': 52000.0}))
    assert info.saturation_level == 60000.0
    # Both are named when neither is there, and the fallback is
    # configured like any other keyword (and switched off with None).
    with pytest.raises(SatphotutilsError, match='no SATURATE / SATLEVEL'):
        frame_info(fits.Header()).require('saturation_level')
    keys = HeaderKeys.parse(['saturation_fallback=SATUR'])
    assert frame_info(fits.Header({'SATUR': 4e4}),
                      header_keys=keys).saturation_level == 4e4
    keys = HeaderKeys(saturation_fallback=None)
    assert frame_info(fits.Header({'SATLEVEL': 52000.0}),
                      header_keys=keys).saturation_level is None
    with pytest.raises(InvalidHeaderError, match='SATLEVEL header keyword '
                       r'of f\.fits must be positive'):
        frame_info(fits.Header({'SATLEVEL': -1.0}), path='f.fits')


@pytest.mark.parametrize(('value', 'expected'), [
    (True, True), (False, False), ('T', True), ('F', False), (1, True),
    (0, False)])
def test_reference_grid_keyword(value, expected):
    info = frame_info(fits.Header({'REFGRID': value}))
    assert info.reference_grid is expected
    assert info.to_meta()['reference_grid'] is expected


def test_reference_grid_absent_or_unusable():
    assert frame_info(fits.Header()).reference_grid is None
    with pytest.raises(InvalidHeaderError, match='REFGRID header keyword of '
                       r'f\.fits must be a FITS boolean'):
        frame_info(fits.Header({'REFGRID': 'maybe'}), path='f.fits')


def test_simulated_frames_declare_their_reference_grid(tmp_path):
    from satphotutils.simulation import (
        Camera,
        Detector,
        FrameSimulator,
        Scene,
    )

    centre = SkyCoord(30.0, -10.0, unit='deg')
    sim = FrameSimulator(camera=Camera(detector=Detector(shape=(64, 64))),
                         pointing=centre)
    frame, _ = sim(Scene(centre, [9.0], [1.0]), mjd=60000.0, seed=1)
    frame.write(tmp_path / 'f.fits')
    # It survives the file: the pipeline reads frames from disk.
    assert read_frame_info(tmp_path / 'f.fits').reference_grid is True
