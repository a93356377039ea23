"""CSV and XLSX exports of the dashboard's cases, one row per case. Both read the database
through a server-side cursor (QuerySet.iterator) so memory stays flat however many rows; the CSV
is streamed to the client as it is produced, the XLSX is written row by row (openpyxl write-only
mode) into a temporary file that is then streamed."""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import CharField, Func, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from ..models import Case, Category, Status

CHUNK = 2000


def export_header() -> list[str]:
    return [
        _("Tracking number"),
        _("Category"),
        _("Community"),
        _("Status"),
        _("Registered"),
        _("Accepted"),
        _("Hearing held"),
        _("Agreement reached"),
        _("Mediator"),
        _("Stage deadline"),
    ]


class _LocalMinute(Func):
    """A timestamp as local "YYYY-MM-DD HH:MM" text, formatted by PostgreSQL: parsing every
    timestamp into Python and formatting it again is most of an export's time."""

    output_field = CharField()

    def as_sql(self, compiler, connection, **extra_context):  # pragma: no cover - never used
        raise NotImplementedError("PostgreSQL only")

    def as_postgresql(self, compiler, connection, **extra_context):
        sql, params = compiler.compile(self.source_expressions[0])
        return (
            f"to_char({sql} AT TIME ZONE %s, 'YYYY-MM-DD HH24:MI')",
            [*params, settings.TIME_ZONE],
        )


TIME_FIELDS = (
    "created_at",
    "figures__accepted_at",
    "figures__hearing_at",
    "figures__agreed_at",
    "stage_deadline",
)


def export_rows(cases: QuerySet[Case]) -> Iterator[list[str]]:
    """One list of strings per case, oldest first, read in chunks from a server-side cursor.
    No phone numbers: the mediator appears by display name only."""
    in_sql = connection.vendor == "postgresql"
    rows = cases.order_by("pk")
    if in_sql:
        rows = rows.annotate(**{f"t{i}": _LocalMinute(name) for i, name in enumerate(TIME_FIELDS)})
    times = [f"t{i}" for i in range(len(TIME_FIELDS))] if in_sql else list(TIME_FIELDS)
    rows = rows.values_list(
        "tracking_number", "category", "community__name", "status", "expert__display_name", *times
    )
    # Labels and the time zone resolved once, not per row: the export is CPU-bound in Python.
    categories = {value: str(label) for value, label in Category.choices}
    statuses = {value: str(label) for value, label in Status.choices}
    tz = timezone.get_current_timezone()

    def local(value) -> str:
        if in_sql:
            return value or ""
        return value.astimezone(tz).strftime("%Y-%m-%d %H:%M") if value else ""

    for number, category, community, status, expert, reg, acc, hear, agr, deadline in rows.iterator(
        chunk_size=CHUNK
    ):
        yield [
            number,
            categories.get(category, category),
            community,
            statuses.get(status, status),
            local(reg),
            local(acc),
            local(hear),
            local(agr),
            expert or "",
            local(deadline),
        ]


class _Echo:
    """A file-like object whose write returns the line, for csv.writer inside a generator."""

    def write(self, value: str) -> str:
        return value


def csv_stream(cases: QuerySet[Case]) -> Iterator[str]:
    # A byte-order mark so that spreadsheet programs read the Chinese text as UTF-8.
    writer = csv.writer(_Echo())
    yield "\ufeff" + writer.writerow(export_header())
    for row in export_rows(cases):
        yield writer.writerow(row)


def xlsx_file(cases: QuerySet[Case]) -> Any:
    """A temporary file (rewound, deleted on close) holding the workbook."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(_("Cases"))
    sheet.append(export_header())
    _append_all(sheet, export_rows(cases))
    handle = tempfile.TemporaryFile(suffix=".xlsx")
    workbook.save(handle)
    handle.seek(0)
    return handle


def _append_all(sheet: Any, rows: Iterable[list[str]]) -> None:
    for row in rows:
        sheet.append(row)
