"""How the suite shares the machine (docs/testing.md): the serial group, and what each
pytest-xdist worker keeps to itself.

Loaded with `-p tests.parallel` (pyproject.toml) so that it runs before pytest-django reads the
settings: `cloudbench/settings.py` takes REDIS_URL and CHANNEL_PREFIX from the environment when it
is imported, and the servers and workers the tests start inherit that environment.

- Database: pytest-django gives each worker its own test database (`test_<name>_gw0`, ...).
- Redis: worker `gwN` uses database `FIRST_WORKER_REDIS_DB + N` on the same server as REDIS_URL
  (cache, Celery broker) and a channel prefix of its own (Redis pub/sub ignores database numbers).
- The serial group: tests that need the whole machine (a browser, services killed on purpose,
  nginx) get the `serial` mark from their marks or their folder, and `make test` runs them after the
  others on two workers, where those that count frames or deliveries against the clock (`media`,
  `realtime`) share one xdist group and so run one at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

# Marks and folders (under tests/) whose tests run in the serial group.
# `media`: aiortc peers encode and decode in real time; beside other CPU-heavy tests on two cores
# their frames arrive late and their waits run out. `realtime`: a test that counts deliveries of
# live server processes against the clock.
SERIAL_MARKS = frozenset({"e2e", "faults", "deploy", "media", "realtime"})
SERIAL_FOLDERS = frozenset({"e2e", "faults", "deploy"})
# `signalling`: a test of a `media` module that only exchanges signalling with the in-process
# media node (refusals, bad frames, bad offers): no media flows and nothing is timed, so it runs in
# the parallel group. It lifts the `media` mark alone; the other serial marks and folders still hold.
PARALLEL_MARK = "signalling"

# Within the serial group, which runs on two workers (`--dist loadgroup`): tests with these marks
# measure frames or deliveries against the clock, so they go to one xdist group and run one after
# the other, never beside each other; the rest of the group (browsers, killed services, nginx)
# runs beside them on the other worker.
EXCLUSIVE_MARKS = frozenset({"media", "realtime"})
EXCLUSIVE_GROUP = "one-at-a-time"

# `alone`: a serial test that nothing may run beside, on either worker (it measures how long the
# members of rooms it does not touch go without frames, or needs a browser's full frame rate).
# While it runs the other worker waits; it waits for the other worker's test to end first.
ALONE_MARK = "alone"

# Workers take Redis databases 10, 11, ... (a default Redis has 16: at most six workers).
FIRST_WORKER_REDIS_DB = 10
REDIS_DATABASES = 16


def worker_redis_url(url: str, worker: int) -> str:
    db = FIRST_WORKER_REDIS_DB + worker
    if db >= REDIS_DATABASES:
        raise pytest.UsageError(
            f"xdist worker gw{worker} would need Redis database {db}: run at most "
            f"{REDIS_DATABASES - FIRST_WORKER_REDIS_DB} workers"
        )
    parts = urlsplit(url)
    if parts.path.strip("/") and int(parts.path.strip("/")) >= FIRST_WORKER_REDIS_DB:
        raise pytest.UsageError(
            f"REDIS_URL uses database {parts.path.strip('/')}; databases "
            f"{FIRST_WORKER_REDIS_DB}-{REDIS_DATABASES - 1} are kept for the xdist workers"
        )
    return urlunsplit(parts._replace(path=f"/{db}"))


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    """Before pytest-django imports the settings: this worker's Redis database and prefix."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    redis_url = os.environ.get("REDIS_URL")
    if not worker or not redis_url:
        return
    number = int(worker.removeprefix("gw"))
    base_db = urlsplit(redis_url).path.strip("/") or "0"
    prefix = os.environ.get("CHANNEL_PREFIX") or f"cloudbench{base_db}"
    url = worker_redis_url(redis_url, number)
    os.environ["REDIS_URL"] = url
    os.environ["CHANNEL_PREFIX"] = f"{prefix}-{worker}"
    if os.environ.get("CELERY_BROKER_URL") == redis_url:
        os.environ["CELERY_BROKER_URL"] = url


def _marks(item: pytest.Item) -> set[str]:
    marks = {mark.name for mark in item.iter_markers()}
    if PARALLEL_MARK in marks:
        marks.discard("media")
    return marks


def is_serial(item: pytest.Item) -> bool:
    if _marks(item) & SERIAL_MARKS:
        return True
    tests = Path(__file__).parent
    path = Path(item.path)
    return path.is_relative_to(tests) and path.relative_to(tests).parts[0] in SERIAL_FOLDERS


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Before `-m` selects: mark the serial group, and its tests that run one at a time."""
    for item in items:
        if is_serial(item):
            item.add_marker(pytest.mark.serial)
            if _marks(item) & EXCLUSIVE_MARKS:
                item.add_marker(pytest.mark.xdist_group(EXCLUSIVE_GROUP))


@contextlib.contextmanager
def machine_share(run: str, *, alone: bool) -> Iterator[None]:
    """The serial group's share of the machine, across its workers: a test `alone` holds it
    exclusively, every other test shares it. A turnstile in front keeps a waiting `alone` test
    from being passed by the tests the other worker keeps starting."""
    base = Path(tempfile.gettempdir()) / f"cloudbench-serial-{run}"
    with open(f"{base}.turnstile", "a") as turnstile, open(f"{base}.machine", "a") as machine:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(machine, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(machine, fcntl.LOCK_UN)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """In the serial group on xdist workers: setup, call and teardown within the test's share
    of the machine."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run or item.get_closest_marker("serial") is None:
        yield
        return
    with machine_share(run, alone=item.get_closest_marker(ALONE_MARK) is not None):
        yield
