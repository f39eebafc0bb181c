"""The flag registry, and the table of bits in the user guide."""

import re
from pathlib import Path

import pytest

from satphotutils.utils.flags import SATPHOT_FLAGS, decode_flags

DOC = Path(__file__).parents[2] / 'docs' / 'user_guide' / 'photometry.rst'


def test_bits_are_distinct_powers_of_two():
    bits = [d.bit_value for d in SATPHOT_FLAGS.definitions]
    assert len(set(bits)) == len(bits)
    assert all(b & (b - 1) == 0 for b in bits)
    # photutils' aperture bits below 65536, ours above.
    assert {1, 2, 8, 16} <= set(bits)


def test_decode_round_trip():
    value = SATPHOT_FLAGS.NO_SIGNAL | SATPHOT_FLAGS.NEAR_EDGE | 2
    assert decode_flags(value) == ['partial_overlap', 'near_edge',
                                   'no_signal']


@pytest.mark.skipif(not DOC.is_file(), reason='documentation not present')
def test_user_guide_table_lists_every_bit():
    rows = re.findall(r'^(\d+)\s+``(\w+)``', DOC.read_text(), re.M)
    documented = {int(bit): name for bit, name in rows}
    registry = {d.bit_value: d.name for d in SATPHOT_FLAGS.definitions}
    assert documented == registry


def test_intercalibration_bits_have_their_own_names():
    # Issue #20: the intercalibration used bits 1/2/4/8 in the same
    # column, decoded as no_overlap, partial_overlap, (nothing),
    # masked_pixels.
    expected = {'intercal_faintest': 2**26, 'intercal_clipped': 2**27,
                'bad_quality': 2**28, 'small_group': 2**29,
                'rejected_group': 2**30}
    for name, bit in expected.items():
        assert getattr(SATPHOT_FLAGS, name.upper()) == bit
        assert decode_flags(bit) == [name]
    photometry = {d.bit_value for d in SATPHOT_FLAGS.definitions
                  if d.bit_value < 2**26}
    assert not photometry & set(expected.values())
    # Bit 2**25 is the model-level lookup's; 2**31 the guard's
    # (out_of_distribution), so the column needs 64 bits, which every
    # flags column has.
    assert SATPHOT_FLAGS.get_name(2**25) == 'classical_lookup'
    assert SATPHOT_FLAGS.get_name(2**31) == 'out_of_distribution'
    assert max(d.bit_value for d in SATPHOT_FLAGS.definitions) < 2**63


def test_to_meta_gives_every_bit_and_its_meaning():
    meta = SATPHOT_FLAGS.to_meta()
    assert [v['bit'] for v in meta.values()] == [
        d.bit_value for d in SATPHOT_FLAGS.definitions]
    assert meta['no_signal']['description'] == \
        SATPHOT_FLAGS.get_description(SATPHOT_FLAGS.NO_SIGNAL)
    assert list(SATPHOT_FLAGS.to_meta(['small_group', 'no_overlap'])) == [
        'no_overlap', 'small_group']
    with pytest.raises(KeyError, match=r"unknown flag names.*'clipped'"):
        SATPHOT_FLAGS.to_meta(['clipped'])
