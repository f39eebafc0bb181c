# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Start-up cost of the ``satphot`` program."""

import subprocess
import sys

from benchmarks import Metric, Result, benchmark, best_time


def _run(*args):
    subprocess.run([sys.executable, *args], check=True,
                   capture_output=True)


@benchmark('cli_startup', description=(
    'Wall time of `satphot --help` in a fresh interpreter, against the '
    'bare interpreter and against importing astropy.units, measured in '
    'the same run. `--help` must not import torch (about 2 s) and should '
    'answer within a second; it does import the subpackages that register '
    'commands, and with them astropy and scipy.'))
def cli_startup(ctx):
    import matplotlib.pyplot as plt

    repeat = 3 if ctx.quick else 7
    python = best_time(lambda: _run('-c', 'pass'), repeat=repeat)
    units = best_time(lambda: _run('-c', 'import astropy.units'),
                      repeat=repeat)
    help_ = best_time(lambda: _run('-m', 'satphotutils.cli', '--help'),
                      repeat=repeat)
    loaded = subprocess.run(
        [sys.executable, '-c',
         'import sys; from satphotutils.cli import build_parser; '
         'build_parser(); print("torch" in sys.modules)'],
        check=True, capture_output=True, text=True).stdout.strip()

    fig, ax = plt.subplots(figsize=(6, 2.5), layout='constrained')
    labels = ['python -c pass', 'import astropy.units', 'satphot --help']
    ax.barh(labels, [python, units, help_])
    ax.set_xlabel('best wall time of a fresh process [s]')
    path = ctx.figure_path('cli_startup')
    fig.savefig(path, dpi=100)
    plt.close(fig)

    return Result(metrics=[
        Metric('python -c pass', python, 's'),
        Metric('import astropy.units', units, 's'),
        Metric('satphot --help', help_, 's'),
        Metric('satphot --help / import astropy.units', help_ / units),
        Metric('satphot --help, absolute', help_, 's', '<= 1.0',
               help_ <= 1.0),
        Metric('torch imported by --help', loaded == 'True', '', 'False',
               loaded == 'False'),
    ], figures=[path])
