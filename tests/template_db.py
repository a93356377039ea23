"""Test databases cloned from a migrated template (docs/testing.md, "The test databases").

Running the migrations takes about 17 s of CPU (Django renders the model states of every
migration), and `make test` needs three test databases: one per xdist worker and one for the
serial group. The first pytest process that needs a test database migrates it as before and then
copies it to a template database, `test_<name>_tpl_<fingerprint>`; every later one is created with
`CREATE DATABASE ... TEMPLATE`, which takes a second. The fingerprint is a hash of Django's version
and of every installed app's migration files, so a new or edited migration makes a new template
(the old ones of that name are dropped); `--reuse-db` and other database engines keep Django's way.
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import django
from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.db.backends.postgresql.creation import DatabaseCreation

_migrate_and_create = DatabaseCreation.create_test_db


def migrations_fingerprint() -> str:
    digest = hashlib.sha256(django.get_version().encode())
    for config in sorted(apps.get_app_configs(), key=lambda config: config.label):
        folder = Path(config.path) / "migrations"
        for path in sorted(folder.glob("*.py")):
            digest.update(f"{config.label}/{path.name}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def create_test_db(self, verbosity=1, autoclobber=False, serialize=True, keepdb=False):
    if keepdb:
        return _migrate_and_create(self, verbosity, autoclobber, serialize, keepdb)
    base = f"test_{self.connection.settings_dict['NAME']}_tpl_"[:50]
    template = base + migrations_fingerprint()
    name = self._get_test_db_name()
    # one lock for every test run on this server that clones from templates of this name
    lock = zlib.crc32(base.encode())
    with self._nodb_cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [lock])
        try:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [template])
            if cursor.fetchone() is None:
                name = _migrate_and_create(self, verbosity, autoclobber, serialize, keepdb)
                self.connection.close()  # a template may have no session open on it
                cursor.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s",
                    [base.replace("_", r"\_") + "%"],
                )
                for (stale,) in cursor.fetchall():
                    cursor.execute(f"DROP DATABASE IF EXISTS {_quoted(stale)}")
                cursor.execute(f"CREATE DATABASE {_quoted(template)} TEMPLATE {_quoted(name)}")
                self.connection.ensure_connection()
                return name
            if verbosity >= 1:
                self.log(f"Cloning test database {name} from {template}...")
            cursor.execute(f"DROP DATABASE IF EXISTS {_quoted(name)}")
            cursor.execute(f"CREATE DATABASE {_quoted(name)} TEMPLATE {_quoted(template)}")
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [lock])
    # what Django's create_test_db does after `migrate`
    self.connection.close()
    settings.DATABASES[self.connection.alias]["NAME"] = name
    self.connection.settings_dict["NAME"] = name
    if serialize:
        self.connection._test_serialized_contents = self.serialize_db_to_string()
    call_command("createcachetable", database=self.connection.alias)
    self.connection.ensure_connection()
    return name


def install() -> None:
    DatabaseCreation.create_test_db = create_test_db


def end_other_connections(connection) -> None:
    """Database work that ran in threads of an ASGI loop, a request or a Celery worker that has
    ended left those threads' connections open (one per thread, reused as in a server): they keep
    a test database from being dropped. End them before it is."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
