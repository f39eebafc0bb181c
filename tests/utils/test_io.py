import os

import pytest

from satphotutils.utils import atomic_output


def test_atomic_output_writes_on_success(tmp_path):
    out = tmp_path / 'a.ecsv'
    with atomic_output(out) as tmp:
        assert tmp.suffix == '.ecsv'
        assert tmp.parent == tmp_path
        tmp.write_text('x')
        assert not out.exists()
    assert out.read_text() == 'x'
    assert os.listdir(tmp_path) == ['a.ecsv']


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / 'a.ecsv'
    out.write_text('old')
    with pytest.raises(RuntimeError, match='killed'), \
            atomic_output(out, overwrite=True) as tmp:
        tmp.write_text('half')
        raise RuntimeError('killed')
    assert out.read_text() == 'old'
    assert os.listdir(tmp_path) == ['a.ecsv']


def test_atomic_output_refuses_to_overwrite(tmp_path):
    out = tmp_path / 'a.ecsv'
    out.write_text('old')
    with pytest.raises(FileExistsError, match='overwrite=True'), \
            atomic_output(out):
        pass
    assert out.read_text() == 'old'
