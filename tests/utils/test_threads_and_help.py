import pytest

from satphotutils.cli import build_parser, main
from satphotutils.utils.threads import default_threads, limit_threads


def _helps():
    parser = build_parser()
    yield 'satphot', parser.format_help()
    sub = next(a for a in parser._actions if a.dest == 'command')
    for name, subparser in sub.choices.items():
        yield name, subparser.format_help()


def test_every_help_says_each_default_once_and_cleanly():
    for name, text in _helps():
        flat = ' '.join(text.split())
        assert '(default: None)' not in flat, name
        assert '(default: False)' not in flat, name
        assert '%%' not in flat, name
        assert ') (default: the' not in flat, name
    # A real default is still shown.
    help_text = dict(_helps())['demo']
    assert '(default: satphot_demo.png)' in ' '.join(help_text.split())


def test_info_names_the_torch_device(capsys):
    assert main(['info']) == 0
    out = capsys.readouterr().out
    assert 'torch device: cpu' in out


def test_limit_threads_caps_blas_and_torch():
    import torch
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    with limit_threads(1) as n:
        assert n == 1
        assert torch.get_num_threads() == 1
        assert all(p['num_threads'] == 1 for p in threadpool_info())
    assert torch.get_num_threads() == before
    assert default_threads() >= 1


@pytest.mark.parametrize('value', ['0', 'two', '-1'])
def test_threads_option_refuses_nonsense(value, capsys):
    with pytest.raises(SystemExit):
        main(['--threads', value, 'info'])
    assert 'must be a whole number >= 1' in capsys.readouterr().err


def test_commands_without_torch_do_not_import_it(tmp_path):
    """--threads wrapped every command and imported torch (1.8 s) even
    for intercalibrate."""
    import subprocess
    import sys
    from pathlib import Path

    data = Path(__file__).parents[1] / 'data' / 'asassn_lc'
    code = ('import sys; from satphotutils.cli import main; '
            f"main(['--threads', '1', 'intercalibrate', "
            f"'{data / 'sp2web_352187470767.csv'}', '-o', "
            f"'{tmp_path / 'out.ecsv'}']); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, '-c', code], check=True,
                         capture_output=True, text=True).stdout
    assert out.strip().splitlines()[-1] == 'False'


def test_flags_say_no_default_and_zero_defaults_are_shown(capsys):
    """``--no-jitter`` said "(default: True)"; ``--drop-faintest``'s 0.0
    was hidden because ``0.0 == False``."""
    with pytest.raises(SystemExit):
        main(['intercalibrate', '--help'])
    text = ' '.join(capsys.readouterr().out.split())
    assert '(default: True)' not in text
    assert '(default: False)' not in text
    assert '(the paper: 0.1) (default: 0.0)' in text
    assert '(0-3) (default: 0)' in text
