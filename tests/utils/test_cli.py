import subprocess
import sys

import pytest

from satphotutils import __version__
from satphotutils.cli import build_parser, main
from satphotutils.utils.exceptions import SatphotutilsError


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(['--version'])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f'satphot {__version__}'


def test_help_lists_registered_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(['--help'])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    choices = _subcommands(build_parser())
    assert {'info', 'demo'} <= set(choices)
    for name in choices:
        assert name in out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert 'usage: satphot' in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(['no-such-command'])
    assert exc.value.code == 2
    assert 'invalid choice' in capsys.readouterr().err


def _subcommands(parser):
    return next(a for a in parser._actions if a.dest == 'command').choices


def _failing_parser(exc):
    """A parser whose 'info' handler raises ``exc``."""
    parser = build_parser()

    def fail(args):
        raise exc

    _subcommands(parser)['info'].set_defaults(func=fail)
    return parser


@pytest.mark.parametrize(('exc', 'expected'), [
    (SatphotutilsError('targets file x.ecsv has no ra column;\nadd one'),
     'satphot info: error: targets file x.ecsv has no ra column; add one'),
    (FileNotFoundError('no such file: frame.fits'),
     'satphot info: error: no such file: frame.fits'),
    (ZeroDivisionError('division by zero'),
     'satphot info: unexpected error (ZeroDivisionError: division by zero)'),
])
def test_errors_are_one_line_without_traceback(monkeypatch, capsys, exc,
                                               expected):
    monkeypatch.setattr('satphotutils.cli.build_parser',
                        lambda: _failing_parser(exc))
    assert main(['info']) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1
    assert err.startswith(expected)
    assert 'Traceback' not in err


def test_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setattr('satphotutils.cli.build_parser',
                        lambda: _failing_parser(ZeroDivisionError('x')))
    with pytest.raises(ZeroDivisionError):
        main(['--debug', 'info'])


def test_info_reports_versions(capsys):
    import numpy as np
    import torch

    assert main(['info']) == 0
    out = capsys.readouterr().out
    assert f'satphotutils: {__version__}' in out
    assert f'numpy: {np.__version__}' in out
    assert f'torch: {torch.__version__}' in out


def test_console_script_runs_as_a_program():
    # The installed entry point, in a fresh interpreter, exactly as a user
    # would call it.
    proc = subprocess.run(
        [sys.executable, '-c',
         'import sys; from satphotutils.cli import main; sys.exit(main())',
         'info'],
        capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert 'satphotutils' in proc.stdout
