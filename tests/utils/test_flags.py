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
