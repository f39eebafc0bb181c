# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
satphotutils benchmarks.

Each ``bench_*.py`` module in this folder registers one or more
benchmarks with the `benchmark` decorator. ``python -m benchmarks``
runs them and writes a report (markdown, PNG figures and a JSON file with
every number) to a chosen directory. Speed and accuracy targets live
here, not in timed unit tests; every speed figure is quoted as a ratio
against a baseline measured in the same run, on the machine described at
the top of the report.
"""

import dataclasses
import time

__all__ = ['BENCHMARKS', 'Context', 'Metric', 'Result', 'benchmark',
           'best_time']

BENCHMARKS = {}


@dataclasses.dataclass
class Context:
    """What a benchmark is given: where to write and how hard to try."""

    output: object
    quick: bool = False

    def figure_path(self, name):
        """Return the path for a figure named ``name`` (PNG)."""
        return self.output / f'{name}.png'


@dataclasses.dataclass
class Metric:
    """One reported figure, with its target when the issue sets one."""

    name: str
    value: float
    unit: str = ''
    target: str = ''
    passed: bool | None = None


@dataclasses.dataclass
class Result:
    """What a benchmark returns."""

    metrics: list
    figures: list = dataclasses.field(default_factory=list)
    notes: str = ''


def benchmark(name, *, description):
    """
    Register the decorated function as a benchmark.

    The function takes a `Context` and returns a `Result`.
    """
    def decorator(func):
        if name in BENCHMARKS:
            msg = f'benchmark {name!r} is registered twice'
            raise ValueError(msg)
        BENCHMARKS[name] = (func, description)
        return func
    return decorator


def best_time(func, *, repeat=5, number=1):
    """Return the best wall time in seconds of ``number`` calls."""
    best = float('inf')
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            func()
        best = min(best, (time.perf_counter() - start) / number)
    return best
