"""Emptying the test database after a transactional test with DELETE instead of TRUNCATE
(docs/testing.md, "The test databases").

Django empties every table after each transactional test with one `TRUNCATE` of all of them. On
PostgreSQL a TRUNCATE gives each table new files and takes an exclusive lock on it, which costs
about a second for this project's hundred tables even when they hold a few rows; a DELETE of a
few rows costs almost nothing. Django's foreign keys on PostgreSQL are `DEFERRABLE INITIALLY
DEFERRED`, so one transaction may delete the tables in any order and the keys are checked at its
end. Should a key not be deferrable, the transaction fails and the TRUNCATE runs as before.
Sequences are kept either way (Django's flush does not reset them unless asked).
"""

from __future__ import annotations

from django.db import DatabaseError
from django.db.backends.postgresql.operations import DatabaseOperations

_MARK = "-- delete, else truncate"
_sql_flush = DatabaseOperations.sql_flush
_execute_sql_flush = DatabaseOperations.execute_sql_flush


def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
    truncate = _sql_flush(
        self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
    )
    if not tables or reset_sequences or allow_cascade:
        return truncate
    # table names from the models, quoted
    deletes = [f"DELETE FROM {self.quote_name(table)};" for table in sorted(tables)]  # noqa: S608
    return [_MARK, *deletes, _MARK, *truncate]


def execute_sql_flush(self, sql_list):
    if not sql_list or sql_list[0] != _MARK:
        return _execute_sql_flush(self, sql_list)
    end = sql_list.index(_MARK, 1)
    deletes, truncate = sql_list[1:end], sql_list[end + 1 :]
    try:
        # one transaction: the deferred foreign keys are checked when it commits
        return _execute_sql_flush(self, deletes)
    except DatabaseError:
        return _execute_sql_flush(self, truncate)


def install() -> None:
    DatabaseOperations.sql_flush = sql_flush
    DatabaseOperations.execute_sql_flush = execute_sql_flush
