"""The example files shipped as package data (satphotutils.data)."""

from pathlib import Path

import pytest

from satphotutils.data import example_path
from satphotutils.utils.exceptions import SatphotutilsError

TEST_DATA = Path(__file__).parents[1] / 'data' / 'asassn_lc'


def test_example_is_the_real_sky_patrol_file():
    path = example_path('sp2web_352187470767.csv')
    # Byte-identical to the tests' copy of the real export.
    assert path.read_bytes() == \
        (TEST_DATA / 'sp2web_352187470767.csv').read_bytes()
    # Inside the installed package, not the source tree's tests.
    assert 'tests' not in path.relative_to(
        Path(__file__).parents[2]).parts


def test_example_reads_as_a_sky_patrol_v2_light_curve():
    from satphotutils.intercalibration import read_lightcurve

    lc = read_lightcurve(example_path('sp2web_352187470767.csv'))
    assert lc.meta['format'] == 'sp2web'
    assert sorted(set(lc['filter'].tolist())) == ['V', 'g']


@pytest.mark.parametrize('name', ['nothing.csv', '../__init__.py'])
def test_unknown_example_names_the_known_ones(name):
    with pytest.raises(SatphotutilsError,
                       match=r'the examples are: sp2web_352187470767\.csv'):
        example_path(name)
