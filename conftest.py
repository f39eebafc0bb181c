# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Test configuration shared by the tests, the doctests and the docs."""

import os

os.environ.setdefault('MPLBACKEND', 'agg')


def pytest_configure(config):
    """Configure the test header and keep astropy offline."""
    from astropy.utils import iers

    # No network in tests: never try to download IERS tables.
    iers.conf.auto_download = False

    config.option.astropy_header = True
    try:
        from pytest_astropy_header.display import (
            PYTEST_HEADER_MODULES,
            TESTED_VERSIONS,
        )
    except ImportError:  # the plugin is optional
        return
    PYTEST_HEADER_MODULES.clear()
    for name in ('numpy', 'scipy', 'astropy', 'photutils', 'torch',
                 'celerite2', 'matplotlib'):
        PYTEST_HEADER_MODULES[name] = name
    from satphotutils import __version__
    TESTED_VERSIONS['satphotutils'] = __version__
