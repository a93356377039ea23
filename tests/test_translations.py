"""The message catalogs: English msgids, nothing fuzzy, and the committed .mo files say what the
.po files say (they are compiled into the repository, not at install)."""

import gettext
import re
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")
CATALOGS = sorted(
    path
    for path in Path(settings.BASE_DIR).glob("*/locale/*/LC_MESSAGES/*.po")
    if "node_modules" not in path.parts
)


def entries(po: Path):
    """(flags, msgid) of every entry, the msgid joined across its continuation lines."""
    flags, msgid, in_msgid = "", None, False
    for line in po.read_text(encoding="utf-8").splitlines() + [""]:
        if line.startswith("#,"):
            flags = line
        elif line.startswith("msgid "):
            msgid, in_msgid = line[7:-1], True
        elif in_msgid and line.startswith('"'):
            msgid += line[1:-1]
        elif not line.strip() and msgid is not None:
            yield flags, msgid
            flags, msgid, in_msgid = "", None, False
        else:
            in_msgid = False


def test_there_are_catalogs_for_every_app():
    apps = {path.parts[-5] for path in CATALOGS}
    assert {"accounts", "experts", "frontend", "mediation_room", "streaming", "voting"} <= apps


@pytest.mark.parametrize("po", CATALOGS, ids=lambda p: str(p.relative_to(settings.BASE_DIR)))
def test_catalog_has_no_fuzzy_entry_and_english_msgids(po):
    fuzzy = [msgid for flags, msgid in entries(po) if "fuzzy" in flags]
    chinese = [msgid for _, msgid in entries(po) if CJK.search(msgid)]
    assert not fuzzy, f"fuzzy entries are not compiled: {fuzzy}"
    assert not chinese, f"msgids must be English: {chinese}"


@pytest.mark.parametrize("po", CATALOGS, ids=lambda p: str(p.relative_to(settings.BASE_DIR)))
def test_committed_mo_matches_its_po(po, tmp_path):
    subprocess.run(["msgfmt", "--check", "-o", str(tmp_path / "fresh.mo"), str(po)], check=True)
    with (tmp_path / "fresh.mo").open("rb") as fresh, po.with_suffix(".mo").open("rb") as committed:
        assert (
            gettext.GNUTranslations(committed)._catalog == gettext.GNUTranslations(fresh)._catalog
        )
