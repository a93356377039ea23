import csv
import io

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from openpyxl import Workbook

from accounts.models import User
from experts.importing import ImportRefused, read_rows
from experts.models import ExpertProfile
from experts.services import experts_import
from tests.factories import CommunityFactory

HEADER = ["手机号", "姓名", "类别", "擅长", "服务社区", "居住社区", "语言", "简介", "最多案件"]


def _rows(community_name: str) -> list[list[str]]:
    return [
        HEADER,
        [
            "13600001111",
            "沈律师",
            "律师",
            "劳资纠纷、消费",
            community_name,
            "",
            "普通话 杭州话",
            "执业十年",
            "6",
        ],
        ["12345", "坏号码", "律师", "", "", "", "", "", ""],  # line 3: bad number
        [
            "13600002222",
            "陆调解员",
            "调解员",
            "邻里纠纷",
            community_name,
            community_name,
            "",
            "",
            "",
        ],
        ["13600003333", "钱代表", "宇航员", "", "", "", "", "", ""],  # line 5: unknown kind
        ["13600004444", "孔委员", "政协委员", "物业", "不存在社区", "", "", "", ""],  # line 6
        ["13600001111", "重复", "律师", "", "", "", "", "", ""],  # line 7: same number as line 2
        ["13600005555", "吕老师", "心理咨询师", "婚姻家庭", "", "", "", "", "99"],  # line 8: cap
    ]


def _csv(rows) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode("utf-8-sig")


def _xlsx(rows) -> bytes:
    book = Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_good_rows_are_imported_and_bad_rows_reported_by_line(coordinator):
    community = CommunityFactory(name="高地社区")
    report = experts_import(
        actor=coordinator, name="pool.xlsx", content=_xlsx(_rows(community.name))
    )

    assert (report.created, report.updated) == (2, 0)
    assert [line for line, _reason in report.errors] == [3, 5, 6, 7, 8]
    assert not any("1360000" in reason for _line, reason in report.errors)  # no numbers echoed
    lawyer = ExpertProfile.objects.get(user__phone="+8613600001111")
    assert lawyer.kind == "lawyer" and lawyer.specialty_list == ["consumer", "unpaid_wages"]
    assert list(lawyer.communities.all()) == [community] and lawyer.load_cap == 6
    assert lawyer.language_list == ["普通话", "杭州话"] and lawyer.user.has_role("expert")
    mediator = ExpertProfile.objects.get(user__phone="+8613600002222")
    assert mediator.home_community == community
    assert not User.objects.filter(phone="+8613600003333").exists()  # nothing half-imported


def test_csv_import_updates_an_existing_expert(coordinator):
    community = CommunityFactory(name="南苑社区")
    rows = _rows(community.name)
    experts_import(actor=coordinator, name="pool.csv", content=_csv(rows))
    rows[1][1] = "沈大律师"
    report = experts_import(actor=coordinator, name="pool.csv", content=_csv(rows))
    assert (report.created, report.updated) == (0, 2)
    assert ExpertProfile.objects.get(user__phone="+8613600001111").public_name == "沈大律师"


def test_non_spreadsheets_and_oversized_files_are_refused(settings):
    for name, content in [
        ("pool.xlsx", b"PK\x03\x04 this is not really a zip"),
        ("pool.xlsx", b"%PDF-1.4 pretending"),
        ("pool.pdf", b"%PDF-1.4"),
        ("pool.csv", b"\x00\x01\x02binary"),
        ("pool.csv", b""),
        ("pool.csv", "姓名,备注\n张三,x\n".encode()),  # no number or kind column
    ]:
        try:
            read_rows(name, content)
        except ImportRefused:
            continue
        raise AssertionError(f"{name} {content[:10]!r} was accepted")
    settings.EXPERT_IMPORT_MAX_BYTES = 1000
    try:
        read_rows("pool.csv", b"a" * 1001)
    except ImportRefused as exc:
        assert "KB" in exc.message
    else:
        raise AssertionError("oversized file accepted")


def test_import_page_for_coordinators_only(client, coordinator, resident):
    CommunityFactory(name="梅堰社区")
    url = reverse("experts:import")
    client.force_login(resident)
    assert client.get(url).status_code == 404
    client.force_login(coordinator)
    upload = SimpleUploadedFile("pool.csv", _csv(_rows("梅堰社区")), content_type="text/csv")
    page = client.post(url, {"file": upload})
    assert page.status_code == 200
    assert page.context["report"].created == 2
    refused = client.post(
        url, {"file": SimpleUploadedFile("x.exe", b"MZ\x90\x00", content_type="application/x")}
    )
    assert refused.status_code == 400
    assert ExpertProfile.objects.count() == 2
