"""CPU time of each test, for finding where the suite's time goes on a machine that other work
keeps busy (there a test's wall time says more about the machine than about the test).

A pytest plugin: after the run it prints, for the 60 heaviest tests and then for every file, the
CPU seconds of the pytest process, of the child processes it waited for (daphne, Celery, nginx
started by a test and stopped by it) and the wall time.

Usage:  pytest -p bench.suite_cpu -m serial tests/streaming
        (no `-n`: with xdist each worker prints nothing of its own)
"""

from __future__ import annotations

import resource
import time

import pytest

_rows: list[tuple[float, float, float, str]] = []


def _cpu() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    own, children = _cpu()
    started = time.monotonic()
    yield
    own_after, children_after = _cpu()
    _rows.append(
        (own_after - own, children_after - children, time.monotonic() - started, item.nodeid)
    )


def pytest_terminal_summary(terminalreporter):
    write = terminalreporter.write_line
    terminalreporter.write_sep("=", "CPU seconds per test: own, children, wall")
    for own, children, wall, nodeid in sorted(_rows, key=lambda row: -(row[0] + row[1]))[:60]:
        write(f"{own:7.2f} {children:7.2f} {wall:7.2f}  {nodeid}")
    files: dict[str, list[float]] = {}
    for own, children, wall, nodeid in _rows:
        total = files.setdefault(nodeid.split("::")[0], [0.0, 0.0, 0.0, 0])
        total[0] += own
        total[1] += children
        total[2] += wall
        total[3] += 1
    terminalreporter.write_sep("=", "CPU seconds per file: own, children, wall, tests")
    for path, (own, children, wall, count) in sorted(
        files.items(), key=lambda item: -(item[1][0] + item[1][1])
    ):
        write(f"{own:7.1f} {children:7.1f} {wall:7.1f} {count:4d}  {path}")
    own = sum(row[0] for row in _rows)
    children = sum(row[1] for row in _rows)
    wall = sum(row[2] for row in _rows)
    write(
        f"total: own {own:.1f} s, children {children:.1f} s, wall {wall:.1f} s, {len(_rows)} tests"
    )
