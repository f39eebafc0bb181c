"""Provenance metadata: one function for every output table."""

import numpy as np
import pytest
from astropy.table import QTable
from astropy.time import Time

import satphotutils
from satphotutils.utils._misc import get_meta
from satphotutils.utils.flags import SATPHOT_FLAGS


def test_meta_holds_date_versions_flags_and_config(tmp_path):
    meta = get_meta(config={'robust': True, 'window': 0.1},
                    model={'name': 'default'})
    assert list(meta) == ['date', 'version', 'flags', 'config', 'model']
    assert meta['date'].endswith(' UTC')
    assert meta['version']['satphotutils'] == satphotutils.__version__
    assert meta['flags'] == SATPHOT_FLAGS.to_meta()
    assert meta['config'] == {'robust': True, 'window': 0.1}
    # It survives an ECSV round trip unchanged.
    table = QTable({'time': Time([58000.0], format='mjd'), 'flags': [0]})
    table.meta.update(meta)
    table.write(tmp_path / 't.ecsv')
    assert QTable.read(tmp_path / 't.ecsv').meta == meta


def test_meta_flags_can_be_chosen_or_left_out():
    assert list(get_meta(flags='bad_quality')['flags']) == ['bad_quality']
    assert list(get_meta(flags=['no_signal', 'no_overlap'])['flags']) == [
        'no_overlap', 'no_signal']
    meta = get_meta(flags=None)
    assert 'flags' not in meta
    assert 'config' not in meta
    with pytest.raises(KeyError, match='unknown flag names'):
        get_meta(flags=['nonsense'])
    assert np.all([isinstance(k, str) for k in get_meta()])
