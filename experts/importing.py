"""Reading a coordinator's spreadsheet of experts (CSV or XLSX) into checked rows.

Only reading and checking lives here; `services.experts_import` writes. A file that is too big,
not a spreadsheet, or without the needed columns is refused as a whole; a bad row is reported
with its line number and reason and the other rows still count.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from accounts.models import Community
from accounts.phones import normalize_mobile
from cloudbench.errors import DomainError
from mediation_room.models import Category

from .models import ExpertKind
from .services import ProfileData

MAX_ROWS = 2000


def max_bytes() -> int:
    return settings.EXPERT_IMPORT_MAX_BYTES


class ImportRefused(DomainError):
    """A file of experts that cannot be read; the message says why."""


# Column headers, Chinese or English, to field names.
HEADERS = {
    "手机号": "phone",
    "手机": "phone",
    "phone": "phone",
    "姓名": "public_name",
    "公开名称": "public_name",
    "name": "public_name",
    "public_name": "public_name",
    "类别": "kind",
    "身份": "kind",
    "kind": "kind",
    "擅长": "specialties",
    "擅长领域": "specialties",
    "specialties": "specialties",
    "服务社区": "communities",
    "communities": "communities",
    "居住社区": "home_community",
    "home_community": "home_community",
    "语言": "languages",
    "语言方言": "languages",
    "languages": "languages",
    "简介": "bio",
    "bio": "bio",
    "最多案件": "load_cap",
    "同时最多案件": "load_cap",
    "load_cap": "load_cap",
}
REQUIRED = ("phone", "public_name", "kind")

KIND_NAMES = {
    "律师": ExpertKind.LAWYER,
    "人大代表": ExpertKind.NPC_DEPUTY,
    "党代表": ExpertKind.PARTY_DEPUTY,
    "政协委员": ExpertKind.CPPCC_MEMBER,
    "人民调解员": ExpertKind.PEOPLES_MEDIATOR,
    "调解员": ExpertKind.PEOPLES_MEDIATOR,
    "乡贤": ExpertKind.LOCAL_WORTHY,
    "心理咨询师": ExpertKind.COUNSELLOR,
    "法律工作者": ExpertKind.LEGAL_WORKER,
    "基层法律工作者": ExpertKind.LEGAL_WORKER,
}
SPECIALTY_NAMES = {
    "劳资纠纷": Category.UNPAID_WAGES,
    "欠薪": Category.UNPAID_WAGES,
    "拖欠工资": Category.UNPAID_WAGES,
    "邻里纠纷": Category.NEIGHBOURS,
    "邻里": Category.NEIGHBOURS,
    "物业纠纷": Category.PROPERTY,
    "物业": Category.PROPERTY,
    "婚姻家庭": Category.FAMILY,
    "家庭": Category.FAMILY,
    "消费纠纷": Category.CONSUMER,
    "消费": Category.CONSUMER,
    "房屋土地": Category.HOUSING_LAND,
    "房产": Category.HOUSING_LAND,
    "其他": Category.OTHER,
}
_LIST_SPLIT = re.compile(r"[、,，;；/\s]+")


@dataclass
class Row:
    line: int
    values: dict[str, str]


def read_rows(name: str, content: bytes) -> list[Row]:
    """The data rows of an uploaded file, with their line numbers (the header is line 1)."""
    if len(content) > max_bytes():
        raise ImportRefused(
            _("The file is larger than %(kb)d KB; split it into smaller files.")
            % {"kb": max_bytes() // 1024}
        )
    lower = (name or "").lower()
    if lower.endswith(".xlsx") and content[:4] == b"PK\x03\x04":
        table = _xlsx_table(content)
    elif lower.endswith(".csv") and b"\x00" not in content:
        table = _csv_table(content)
    else:
        raise ImportRefused(_("Upload a spreadsheet: an .xlsx or .csv file."))
    if not table:
        raise ImportRefused(_("The file is empty."))
    header = [HEADERS.get(str(h or "").strip().lower(), "") for h in table[0]]
    missing = [field for field in REQUIRED if field not in header]
    if missing:
        raise ImportRefused(
            _("The first row must name the columns; missing: %(cols)s.")
            % {"cols": ", ".join(missing)}
        )
    rows = []
    for index, cells in enumerate(table[1:], start=2):
        values = {
            field: str(cell if cell is not None else "").strip()
            for field, cell in zip(header, cells, strict=False)
            if field
        }
        if not any(values.values()):
            continue
        rows.append(Row(line=index, values=values))
        if len(rows) > MAX_ROWS:
            raise ImportRefused(_("At most %(n)d experts per file.") % {"n": MAX_ROWS})
    return rows


def _xlsx_table(content: bytes) -> list[list]:
    from openpyxl import load_workbook

    try:
        # A zip whose declared sizes are huge is a zip bomb, not a spreadsheet.
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            if sum(i.file_size for i in archive.infolist()) > 50 * max_bytes():
                raise ImportRefused(_("This file is not a spreadsheet we can read."))
        book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except ImportRefused:
        raise
    except Exception as exc:  # openpyxl raises many kinds for a broken or disguised file
        raise ImportRefused(_("This file is not a spreadsheet we can read.")) from exc
    sheet = book.worksheets[0] if book.worksheets else None
    if sheet is None:
        return []
    table = []
    for row in sheet.iter_rows(values_only=True):
        table.append(list(row))
        if len(table) > MAX_ROWS + 2:
            raise ImportRefused(_("At most %(n)d experts per file.") % {"n": MAX_ROWS})
    book.close()
    return table


def _csv_table(content: bytes) -> list[list]:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = content.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise ImportRefused(_("This file is not a spreadsheet we can read."))
    try:
        return [row for row in csv.reader(io.StringIO(text))]
    except csv.Error as exc:
        raise ImportRefused(_("This file is not a spreadsheet we can read.")) from exc


def _split(value: str) -> list[str]:
    return [part for part in _LIST_SPLIT.split(value or "") if part]


def _community(name: str, by_name: dict[str, list[Community]]) -> Community:
    found = by_name.get(name, [])
    if not found:
        raise ValidationError(_("Unknown community “%(name)s”.") % {"name": name})
    if len(found) > 1:
        raise ValidationError(
            _(
                "“%(name)s” names more than one community; write the street too, e.g. Nanyuan Street:%(name)s."
            )
            % {"name": name}
        )
    return found[0]


def community_index() -> dict[str, list[Community]]:
    """Every community under its own name and under "street:name", for unambiguous lookups."""
    index: dict[str, list[Community]] = {}
    for community in Community.objects.select_related("street"):
        index.setdefault(community.name, []).append(community)
        index.setdefault(f"{community.street.name}:{community.name}", []).append(community)
    return index


def parse_row(row: Row, communities: dict[str, list[Community]]) -> ProfileData:
    """The row's data, or ValidationError with the reason in words."""
    v = row.values
    try:
        phone = normalize_mobile(v.get("phone", ""))
    except ValidationError as exc:
        raise ValidationError(_("Mobile number: %(e)s") % {"e": " ".join(exc.messages)}) from exc
    kind_text = v.get("kind", "")
    kind = KIND_NAMES.get(kind_text) or (kind_text if kind_text in ExpertKind.values else None)
    if kind is None:
        raise ValidationError(_("Unknown kind of expert “%(kind)s”.") % {"kind": kind_text})
    specialties = []
    for item in _split(v.get("specialties", "")):
        code = SPECIALTY_NAMES.get(item) or (item if item in Category.values else None)
        if code is None:
            raise ValidationError(_("Unknown specialty “%(s)s”.") % {"s": item})
        specialties.append(code)
    served = [
        _community(name.replace("：", ":"), communities)
        for name in _split(v.get("communities", ""))
    ]
    home_name = v.get("home_community", "").replace("：", ":")
    home = _community(home_name, communities) if home_name else None
    cap_text = v.get("load_cap", "")
    try:
        load_cap = int(float(cap_text)) if cap_text else 5
    except ValueError as exc:
        raise ValidationError(_("“Most cases” must be a number.")) from exc
    if not 1 <= load_cap <= 50:
        raise ValidationError(_("“Most cases” must be between 1 and 50."))
    name = v.get("public_name", "")
    if not name or len(name) > 40:
        raise ValidationError(_("A name of 1 to 40 characters is needed."))
    bio = v.get("bio", "")
    if len(bio) > 1000:
        raise ValidationError(_("The bio is longer than 1000 characters."))
    return ProfileData(
        phone=phone,
        public_name=name,
        kind=kind,
        specialties=specialties,
        communities=served,
        home_community=home,
        languages=_split(v.get("languages", "")) or ["普通话"],
        bio=bio,
        load_cap=load_cap,
    )
