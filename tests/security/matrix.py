"""Reading the matrices written in the tests: one row per line, columns separated by spaces."""

from __future__ import annotations

from .world import ROLES


def parse_table(text: str, *, key_columns: int) -> dict[tuple[str, ...], dict[str, str]]:
    """{(key columns...): {role: expected}}. The first non-blank line is the header."""
    lines = [
        line for line in text.strip().splitlines() if line.strip() and not line.startswith("#")
    ]
    header = lines[0].split()
    roles = header[key_columns:]
    assert tuple(roles) == ROLES, f"matrix columns {roles} are not {ROLES}"
    table: dict[tuple[str, ...], dict[str, str]] = {}
    for line in lines[1:]:
        cells = line.split()
        assert len(cells) == key_columns + len(ROLES), f"malformed row: {line!r}"
        key = tuple(cells[:key_columns])
        assert key not in table, f"duplicate row {key}"
        table[key] = dict(zip(ROLES, cells[key_columns:], strict=True))
    return table


def format_rows(rows: dict[tuple[str, ...], dict[str, str]]) -> str:
    out = []
    for key, cells in rows.items():
        out.append(
            " ".join(f"{k:<44}" if i == 0 else f"{k:<6}" for i, k in enumerate(key))
            + " "
            + " ".join(f"{cells[r]:<9}" for r in ROLES)
        )
    return "\n".join(out)
