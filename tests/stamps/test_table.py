import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from satphotutils.stamps import (
    STAMP_FORMAT_VERSION,
    StampTableWriter,
    iter_stamp_table,
    read_stamp_table,
)
from satphotutils.utils.exceptions import (
    SatphotutilsError,
    SatphotutilsUserWarning,
)


def _chunk(n, rng, start=0):
    return {'stamp': rng.normal(size=(n, 21, 21)).astype(np.float32),
            'star_id': np.arange(start, start + n),
            'zeropoint': np.full(n, 25.5), 'sky': rng.uniform(150, 450, n),
            'log_counts': rng.uniform(3, 8, n),
            'camera': np.array(['bi', 'bA'] * (n // 2) + ['bi'] * (n % 2)),
            'saturated': rng.random(n) < 0.5,
            'extra': rng.integers(0, 9, (n, 3))}


def test_round_trip_is_lossless(tmp_path, rng):
    path = tmp_path / 's.fits'
    chunks = [_chunk(7, rng), _chunk(5, rng, start=7)]
    with StampTableWriter(path, meta={'SIMSEED': 3}) as writer:
        for chunk in chunks:
            writer.write(chunk)
    table = read_stamp_table(path)
    for name in chunks[0]:
        expected = np.concatenate([c[name] for c in chunks])
        assert np.array_equal(np.asarray(table[name]), expected), name
    header = fits.getheader(path, 'STAMPS')
    assert header['STAMPVER'] == STAMP_FORMAT_VERSION
    assert header['SIMSEED'] == 3
    # Any FITS reader sees a normal binary table.
    assert len(Table.read(path, hdu='STAMPS')) == 12


def test_output_appears_only_when_complete(tmp_path, rng):
    path = tmp_path / 's.fits'
    with pytest.raises(RuntimeError, match='killed'), \
            StampTableWriter(path) as writer:
        writer.write(_chunk(4, rng))
        raise RuntimeError('killed')
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_chunks_must_agree(tmp_path, rng):
    with pytest.raises(SatphotutilsError, match='differ from the first'), \
            StampTableWriter(tmp_path / 's.fits') as writer:
        writer.write(_chunk(2, rng))
        chunk = _chunk(2, rng)
        del chunk['extra']
        writer.write(chunk)


@pytest.mark.parametrize('missing', ['stamp', 'star_id', 'zeropoint',
                                     'sky'])
def test_required_columns(tmp_path, rng, missing):
    chunk = _chunk(2, rng)
    del chunk[missing]
    with pytest.raises(SatphotutilsError, match=f"needs a '{missing}'"), \
            StampTableWriter(tmp_path / 's.fits') as writer:
        writer.write(chunk)


def test_even_stamps_are_refused(tmp_path, rng):
    chunk = _chunk(2, rng)
    chunk['stamp'] = chunk['stamp'][:, :20, :20]
    with pytest.raises(SatphotutilsError, match='odd size'), \
            StampTableWriter(tmp_path / 's.fits') as writer:
        writer.write(chunk)


def test_empty_writer_is_an_error(tmp_path):
    with pytest.raises(SatphotutilsError, match='no rows'), \
            StampTableWriter(tmp_path / 's.fits'):
        pass
    assert not (tmp_path / 's.fits').exists()


def test_reader_errors(tmp_path, rng):
    with pytest.raises(SatphotutilsError, match='does not exist'):
        read_stamp_table(tmp_path / 'nope.fits')
    (tmp_path / 'text.fits').write_text('not a fits file')
    with pytest.raises(SatphotutilsError, match='not a readable FITS'):
        read_stamp_table(tmp_path / 'text.fits')
    fits.PrimaryHDU(np.zeros((3, 3))).writeto(tmp_path / 'image.fits')
    with pytest.raises(SatphotutilsError, match='not a stamp table'):
        read_stamp_table(tmp_path / 'image.fits')
    path = tmp_path / 'v9.fits'
    with StampTableWriter(path, meta={'STAMPVER': 9}) as writer:
        writer.write(_chunk(2, rng))
    with pytest.raises(SatphotutilsError, match='format version 9'):
        read_stamp_table(path)


def test_chunked_reading_selects_columns(tmp_path, rng):
    path = tmp_path / 's.fits'
    with StampTableWriter(path) as writer:
        writer.write(_chunk(10, rng))
    chunks = list(iter_stamp_table(path, chunk_size=4,
                                   columns=['star_id', 'sky']))
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert chunks[0].colnames == ['star_id', 'sky']
    with pytest.raises(SatphotutilsError, match='no columns'):
        list(iter_stamp_table(path, columns=['nope']))


def test_a_table_written_by_astropy_is_a_stamp_table(tmp_path, rng):
    # Table.write: no STAMPS extension name, no STAMPVER keyword.
    chunk = _chunk(6, rng)
    path = tmp_path / 'astropy.fits'
    Table(chunk).write(path)
    with pytest.warns(SatphotutilsUserWarning,
                      match=r'astropy\.fits has no STAMPVER.*version 1'):
        table = read_stamp_table(path)
    for name, value in chunk.items():
        np.testing.assert_array_equal(table[name], value)
    with pytest.warns(SatphotutilsUserWarning, match='no STAMPVER'):
        chunks = list(iter_stamp_table(path, chunk_size=4,
                                       columns=['stamp', 'star_id']))
    assert [len(c) for c in chunks] == [4, 2]
    np.testing.assert_array_equal(chunks[1]['stamp'], chunk['stamp'][4:])


def test_the_first_table_with_the_required_columns_is_read(tmp_path, rng):
    chunk = _chunk(3, rng)
    path = tmp_path / 'two.fits'
    other = fits.BinTableHDU(Table({'a': [1, 2]}), name='OTHER')
    stamps = fits.BinTableHDU(Table(chunk), name='MYSTAMPS')
    stamps.header['STAMPVER'] = STAMP_FORMAT_VERSION
    fits.HDUList([fits.PrimaryHDU(), other, stamps]).writeto(path)
    table = read_stamp_table(path)  # versioned: no warning
    np.testing.assert_array_equal(table['star_id'], chunk['star_id'])
    # A binary table without the required columns is not a stamp table,
    # and the message says what a stamp table needs.
    fits.HDUList([fits.PrimaryHDU(), other]).writeto(tmp_path / 'o.fits')
    with pytest.raises(SatphotutilsError,
                       match=r"\['a'\].*not a stamp table.*'stamp'"):
        read_stamp_table(tmp_path / 'o.fits')
