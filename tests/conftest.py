import fcntl
import hashlib
import os
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command

from accounts.models import Community, User
from streaming.node.ice import confine_host_addresses
from tests import fast_flush, template_db
from tests.factories import CommunityFactory, UserFactory, make_coordinator, make_expert
from tests.netns import needs_namespaces, veth_namespace

# Media in tests goes over loopback only: the in-process media node gathers, offers and answers
# ICE on 127.0.0.1 alone, and so does every server or node process a test starts (they inherit
# the environment). See streaming.node.internals.aioice_private.
LOOPBACK = "127.0.0.1"
os.environ["ICE_HOST_ADDRESSES"] = LOOPBACK
settings.ICE_HOST_ADDRESSES = [LOOPBACK]
confine_host_addresses()  # this process's peers: the node's and the tests' own

# Test databases are cloned from a migrated template once one run has migrated (tests/template_db.py).
template_db.install()
# Transactional tests end with DELETE rather than TRUNCATE (tests/fast_flush.py).
fast_flush.install()


def _static_sources_stamp() -> str:
    """What collectstatic's output depends on: every source file found (name, size, time), the
    storage class's module and Django's version."""
    import django
    from django.contrib.staticfiles import finders
    from django.utils.module_loading import import_string

    digest = hashlib.sha256(f"{django.get_version()} {settings.STATIC_ROOT}".encode())
    storage_module = sys.modules[
        import_string(settings.STORAGES["staticfiles"]["BACKEND"]).__module__
    ]
    sources = [(Path(storage_module.__file__), "storage")]
    for finder in finders.get_finders():
        for path, storage in finder.list(["CVS", ".*", "*~"]):
            sources.append((Path(storage.path(path)), path))
    for source, name in sorted(sources, key=lambda item: (item[1], str(item[0]))):
        stat = source.stat()
        digest.update(f"{name}\0{source}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _collect_static_files() -> None:
    """Pages name static files by their hashed names from collectstatic's manifest, as in
    production: collect them (into STATIC_ROOT, which the test servers inherit) unless the last
    collection was of these very sources, as for the second xdist worker and the serial group."""
    root = Path(settings.STATIC_ROOT)
    root.parent.mkdir(parents=True, exist_ok=True)
    stamp = root.parent / ".collectstatic.stamp"
    with open(root.parent / ".collectstatic.lock", "w") as lock:  # pytest-xdist workers queue here
        fcntl.flock(lock, fcntl.LOCK_EX)
        sources = _static_sources_stamp()
        manifest = root / "staticfiles.json"
        if manifest.exists() and stamp.exists() and stamp.read_text() == sources:
            return
        stamp.unlink(missing_ok=True)
        call_command("collectstatic", interactive=False, verbosity=0)
        stamp.write_text(sources)


# Before any test module is imported: a module that builds the ASGI application at import has
# WhiteNoise index STATIC_ROOT then, and a server forked from this process later serves that index.
_collect_static_files()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """After a transactional test Django empties every table, and its post_migrate handlers then
    write the content types and permissions again, app by app: about a hundred queries, seconds
    on a loaded machine, after each such test. Put back the rows the migrations wrote instead,
    with the same ids, in two queries. A real `migrate` still runs the handlers."""
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.management import create_contenttypes
    from django.contrib.contenttypes.models import ContentType
    from django.db.models.signals import post_migrate

    with django_db_blocker.unblock():
        content_types = list(ContentType.objects.order_by("pk"))
        permissions = list(Permission.objects.order_by("pk"))

    def after_flush_or_migrate(sender, app_config, using, **kwargs):
        if "plan" in kwargs:  # sent by migrate
            create_contenttypes(app_config, using=using, **kwargs)
            create_permissions(app_config, using=using, **kwargs)
        elif app_config.label == "contenttypes":  # sent by flush, once for each app
            ContentType.objects.using(using).bulk_create(content_types)
            Permission.objects.using(using).bulk_create(permissions)

    auth_uid = "django.contrib.auth.management.create_permissions"
    post_migrate.disconnect(create_contenttypes)
    post_migrate.disconnect(create_permissions, dispatch_uid=auth_uid)
    post_migrate.connect(
        after_flush_or_migrate, weak=False, dispatch_uid="tests.after_flush_or_migrate"
    )
    yield
    post_migrate.disconnect(dispatch_uid="tests.after_flush_or_migrate")
    post_migrate.connect(create_contenttypes)
    post_migrate.connect(create_permissions, dispatch_uid=auth_uid)
    from django.db import connection

    with django_db_blocker.unblock():
        template_db.end_other_connections(connection)


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Rate-limit counters live in the cache (Redis under test): start every test from zero.
    cache.clear()
    yield


@pytest.fixture
def community(db) -> Community:
    return CommunityFactory()


@pytest.fixture
def resident(db) -> User:
    return UserFactory()


@pytest.fixture
def other_resident(db) -> User:
    return UserFactory()


@pytest.fixture
def coordinator(community) -> User:
    return make_coordinator(community)


@pytest.fixture
def expert(db) -> User:
    return make_expert()


@pytest.fixture
def celery_worker_real(transactional_db):
    """A real Celery worker (threads) consuming from Redis, not eager execution."""
    from celery.contrib.testing.worker import start_worker

    from cloudbench.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = False
    app.control.purge()
    with start_worker(
        app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=10
    ) as worker:
        yield worker
    app.conf.task_always_eager = previous


def pytest_sessionfinish(session, exitstatus):
    """A test that failed half-way can leave an aiortc peer connection open, and with it its
    receivers' decoder threads, which are not daemons: the run would print its summary and then
    never exit. Each such thread waits on its queue for None (what RTCRtpReceiver.stop() sends);
    send it to the ones still waiting."""
    import threading

    for thread in threading.enumerate():
        if thread.name in ("audio-decoder", "video-decoder") and thread.is_alive():
            queue = getattr(thread, "_args", (None, None))[1]
            if queue is not None:
                queue.put(None)


@pytest.fixture
def namespace():
    """A network namespace joined to this one by a veth pair (tests/netns.py): (name, host-side
    device, this side's address, the namespace's address); skipped without root, ip and tc."""
    needs_namespaces()
    with veth_namespace() as made:
        yield made
