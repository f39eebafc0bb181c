# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Names the documentation's doctests can use."""

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _docs_namespace(doctest_namespace):
    # The real ASAS-SN Sky Patrol files shipped with the tests, found from
    # the source tree whether or not the package is installed from it.
    doctest_namespace['TEST_DATA'] = (Path(__file__).parents[1] / 'tests'
                                      / 'data')
