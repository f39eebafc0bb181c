# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Run the registered benchmarks and write a report: python -m benchmarks."""

import argparse
import importlib
import json
import os
import pkgutil
import platform
import sys
import time
import traceback
from pathlib import Path

from benchmarks import BENCHMARKS, Context


def _discover():
    package = Path(__file__).parent
    for info in pkgutil.iter_modules([str(package)]):
        if info.name.startswith('bench_'):
            importlib.import_module(f'benchmarks.{info.name}')


def _machine():
    """Describe the machine, so that numbers can be compared."""
    from satphotutils.utils._misc import get_versions

    cpu = platform.processor() or 'unknown'
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {
        'cpu': cpu,
        'cores available': len(os.sched_getaffinity(0)),
        'torch threads': torch.get_num_threads(),
        'platform': platform.platform(),
        'date': time.strftime('%Y-%m-%d %H:%M:%S %Z'),
        **{k: v for k, v in get_versions().items() if v is not None},
    }


def _fmt(value):
    if isinstance(value, float):
        return f'{value:.4g}'
    return str(value)


def _write_report(output, machine, results):
    lines = ['# satphotutils benchmark report', '', '## Machine', '']
    lines += [f'- **{k}**: {v}' for k, v in machine.items()]
    for name, (description, result, error, elapsed) in results.items():
        lines += ['', f'## {name}', '', description, '',
                  f'Wall time of the benchmark: {elapsed:.1f} s', '']
        if error:
            lines += ['**FAILED**', '', '```', error, '```']
            continue
        lines += ['| metric | value | unit | target | met |',
                  '|---|---|---|---|---|']
        for m in result.metrics:
            met = {True: 'yes', False: '**no**', None: ''}[m.passed]
            lines.append(f'| {m.name} | {_fmt(m.value)} | {m.unit} | '
                         f'{m.target} | {met} |')
        if result.notes:
            lines += ['', result.notes]
        for fig in result.figures:
            lines += ['', f'![{Path(fig).stem}]({Path(fig).name})']
    text = '\n'.join(lines) + '\n'
    tmp = output / '.report.md.tmp'
    tmp.write_text(text)
    os.replace(tmp, output / 'report.md')

    data = {'machine': machine, 'benchmarks': {}}
    for name, (description, result, error, elapsed) in results.items():
        entry = {'description': description, 'elapsed_s': elapsed,
                 'error': error}
        if result is not None:
            entry['metrics'] = [vars(m) for m in result.metrics]
            entry['figures'] = [Path(f).name for f in result.figures]
        data['benchmarks'][name] = entry
    tmp = output / '.results.json.tmp'
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, output / 'results.json')


def main(argv=None):
    """Run the benchmarks; return 1 if any failed or missed its target."""
    _discover()
    parser = argparse.ArgumentParser(prog='python -m benchmarks',
                                     description=__doc__)
    parser.add_argument('--output', '-o', type=Path,
                        default=Path('benchmark-report'),
                        help='directory for report.md, results.json and '
                             'the figures (default: %(default)s)')
    parser.add_argument('--only', nargs='+', metavar='NAME',
                        choices=sorted(BENCHMARKS),
                        help='run only these benchmarks')
    parser.add_argument('--quick', action='store_true',
                        help='smaller problem sizes, for a smoke test')
    parser.add_argument('--list', action='store_true',
                        help='list the benchmarks and exit')
    args = parser.parse_args(argv)
    if args.list:
        for name, (_, description) in sorted(BENCHMARKS.items()):
            print(f'{name}: {description}')
        return 0

    args.output.mkdir(parents=True, exist_ok=True)
    ctx = Context(output=args.output, quick=args.quick)
    machine = _machine()
    results = {}
    status = 0
    for name in args.only or sorted(BENCHMARKS):
        func, description = BENCHMARKS[name]
        print(f'running {name} ...', flush=True)
        start = time.perf_counter()
        try:
            result, error = func(ctx), None
        except Exception:
            result, error = None, traceback.format_exc()
            status = 1
        elapsed = time.perf_counter() - start
        if result is not None and any(m.passed is False
                                      for m in result.metrics):
            status = 1
        results[name] = (description, result, error, elapsed)
        print(f'  done in {elapsed:.1f} s' + (' (FAILED)' if error else ''))
        # Rewrite after every benchmark so a long run loses nothing.
        _write_report(args.output, machine, results)
    print(f'report: {args.output / "report.md"}')
    return status


if __name__ == '__main__':
    sys.exit(main())
