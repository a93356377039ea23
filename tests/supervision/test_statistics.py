import csv
import io
from datetime import datetime, timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from openpyxl import load_workbook

from accounts.models import User
from mediation_room.models import CaseFigures
from mediation_room.supervision import figures, statistics
from tests.factories import CommunityFactory, advance, make_case, make_coordinator

from . import dataset
from .dataset import NOW, SHANGHAI


@pytest.fixture(scope="module")
def _module_data(django_db_setup, django_db_blocker):
    # Built once for the module inside a transaction that is rolled back at the end; each test
    # runs in its own savepoint within it (pytest-django's `db`), so tests cannot leak data.
    with django_db_blocker.unblock():
        with transaction.atomic():
            yield dataset.build()
            transaction.set_rollback(True)


@pytest.fixture
def data(_module_data, db):
    return _module_data


def _board(user, **kwargs):
    with time_machine.travel(NOW, tick=False):
        return statistics.dashboard(statistics.coordinator_scope(user, **kwargs))


def _counts(rows):
    return {r["key"]: r["n"] for r in rows if r["n"]}


def test_street_figures_match_the_hand_count(data):
    board = _board(data["street1"])

    assert board["facts"] == {
        "total": 7,
        "agreed": 2,
        "not_agreed": 1,
        "withdrawn": 2,
        "concluded": 3,
        "agreement_rate": 66.7,
        # accepted after 1h, 2h, 20h, 3d -> (2h + 20h) / 2 = 11h
        "days_to_accept": round(11 / 24, 1),
        # hearings held after 9d, 7d, 5d; c4, c5, c6 and c8 never had one
        "days_to_hearing": 7.0,
        # agreed after 9d1h and 5d2h
        "days_to_agreement": 7.1,
    }
    assert _counts(board["by_status"]) == {
        "agreed": 1,
        "not_agreed": 1,
        "followed_up": 1,
        "withdrawn": 2,
        "registered": 1,
        "declined": 1,
    }
    assert _counts(board["by_category"]) == {
        "unpaid_wages": 1,
        "neighbours": 2,
        "property": 1,
        "family": 1,
        "consumer": 1,
        "other": 1,
    }
    assert {r["label"]: r["n"] for r in board["by_community"]} == {"A社区": 4, "B社区": 3}
    assert [(r["key"], r["n"]) for r in board["by_month"]] == [("2026-01", 1), ("2026-03", 6)]


def test_on_time_rates_per_stage(data):
    on_time = {r["stage"]: r for r in _board(data["street1"])["on_time"]}

    # registered: left on time by c1 c3 c4 c5 c8; late by c2; c6 still open and overdue
    assert (on_time["registered"]["on_time"], on_time["registered"]["late"]) == (5, 2)
    assert on_time["registered"]["open_late"] == 1
    assert on_time["registered"]["rate"] == 71.4
    assert on_time["accepted"]["rate"] == 100.0
    # matched: c1 waited from Monday 12:00 to the next Tuesday, past 5 working days
    assert (on_time["matched"]["on_time"], on_time["matched"]["late"]) == (3, 1)
    assert on_time["scheduled"]["rate"] == 100.0
    assert (on_time["agreed"]["on_time"], on_time["agreed"]["late"]) == (1, 0)


def test_agreement_performance_from_events_and_per_expert_figures(data):
    board = _board(data["street1"])
    e1, e2 = data["experts"]

    if statistics._follow_up_model() is None:
        # from the events: c3's follow-up was recorded on time
        assert board["performance"]["due"] == 1
        assert board["performance"]["rate"] == 100.0
    else:
        # from the agreements' follow-ups: none of these agreements has terms with due dates
        assert (board["performance"]["due"], board["performance"]["rate"]) == (0, None)
    experts = {row["name"]: row for row in board["experts"]}
    assert set(experts) == {"沈律师", "陆调解员"}
    assert (experts["沈律师"]["total"], experts["沈律师"]["agreed"]) == (2, 1)
    assert experts["沈律师"]["not_agreed"] == 1
    assert experts["沈律师"]["agreement_rate"] == 50.0
    assert experts["沈律师"]["days_to_agreement"] == 9.0
    assert (experts["陆调解员"]["withdrawn"], experts["陆调解员"]["agreement_rate"]) == (1, 100.0)
    assert board["satisfaction"]["available"] is (statistics._rating_model() is not None)


def test_period_filter(data):
    start = datetime(2026, 3, 1, tzinfo=SHANGHAI)
    board = _board(data["street1"], period=statistics.Period(start=start))

    assert board["facts"]["total"] == 6
    assert [r["key"] for r in board["by_month"]] == ["2026-03"]
    registered = next(r for r in board["on_time"] if r["stage"] == "registered")
    assert (registered["on_time"], registered["late"]) == (4, 2)


def test_coordinators_see_only_their_communities(data):
    a, b, c = data["communities"]

    local = _board(data["local_a"])
    assert local["facts"]["total"] == 4  # c1 c2 c5 c6
    assert (local["facts"]["agreed"], local["facts"]["not_agreed"]) == (1, 1)
    assert {r["label"] for r in local["by_community"]} == {"A社区"}

    other_street = _board(data["street2"])
    assert other_street["facts"]["total"] == 1
    assert other_street["facts"]["agreement_rate"] == 100.0
    assert [e["name"] for e in other_street["experts"]] == ["沈律师"]

    # Asking for a community of another street gives nothing, not that community's figures.
    foreign = _board(data["local_a"], community_id=c.pk)
    assert foreign["facts"]["total"] == 0


def test_public_headline_counts_everything_anonymously(data, client):
    with time_machine.travel(NOW, tick=False):
        figures = statistics.public_headline()
        response = client.get("/stats/public/")
    assert (figures["agreed"], figures["concluded"], figures["total"]) == (3, 4, 8)
    assert figures["agreement_rate"] == 75.0
    page = response.content.decode()
    assert response.status_code == 200 and "75%" in page
    assert "沈律师" not in page and "A社区" not in page


def test_dashboard_page_and_its_query_count_is_constant(data, client, django_assert_num_queries):
    client.force_login(data["street1"])
    url = "/stats/?start=2026-01-01"
    with time_machine.travel(NOW, tick=False):
        response = client.get(url)
        assert response.status_code == 200
        assert "66.7%" in response.content.decode()
        with CaptureQueriesContext(connection) as small:
            client.get(url)

        # More cases, communities and mediators: the same number of queries.
        a, b, _c = data["communities"]
        for community in (a, b, CommunityFactory(street=a.street)):
            case = make_case(community=community)
            advance(case, "agreed", coordinator=data["street1"])
        with CaptureQueriesContext(connection) as large:
            client.get(url)
        assert len(large) == len(small)

        # the scope with its community names, savepoint, SET LOCAL, the breakdowns, the
        # figures (overall and per mediator in one statement), release; when the voting app
        # rates mediations, 2 more for the ratings
        expected = (
            6
            + (2 if statistics._rating_model() is not None else 0)
            + (1 if statistics._follow_up_model() is not None else 0)
        )
        with django_assert_num_queries(expected):
            statistics.dashboard(statistics.coordinator_scope(data["street1"]))


def test_dashboard_is_for_coordinators_only(data, client):
    client.force_login(User.objects.filter(display_name="沈律师").get())
    assert client.get("/stats/").status_code == 404
    assert client.get("/stats/export.csv").status_code == 404


def test_csv_export_is_streamed_and_scoped(data, client):
    client.force_login(data["street1"])
    with time_machine.travel(NOW, tick=False):
        response = client.get("/stats/export.csv?start=2026-01-01")

    assert response.status_code == 200 and response.streaming
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    numbers = {row[0] for row in rows[1:]}
    c = data["cases"]
    assert numbers == {case.tracking_number for case in (*c[:6], c[7])}
    by_number = {row[0]: row for row in rows[1:]}
    c1 = by_number[c[0].tracking_number]
    assert c1[4] == "2026-03-02 09:00" and c1[6] == "2026-03-11 09:00" and c1[8] == "沈律师"
    assert by_number[c[3].tracking_number][6] == ""  # withdrawn, never heard
    assert "+86" not in text


def test_xlsx_export(data, client):
    client.force_login(data["local_a"])
    with time_machine.travel(NOW, tick=False):
        response = client.get("/stats/export.xlsx")

    assert response.status_code == 200
    workbook = load_workbook(io.BytesIO(b"".join(response.streaming_content)), read_only=True)
    rows = list(workbook.active.iter_rows(values_only=True))
    assert len(rows) == 1 + 4
    assert {r[0] for r in rows[1:]} == {data["cases"][i].tracking_number for i in (0, 1, 4, 5)}


def test_empty_scope_gives_empty_figures(db):
    coordinator = make_coordinator(CommunityFactory())
    board = _board(coordinator)
    assert board["facts"]["total"] == 0 and board["facts"]["agreement_rate"] is None
    assert board["experts"] == [] and board["by_month"] == []
    assert all(r["rate"] is None for r in board["on_time"])


def test_default_period_starts_eleven_months_back(data, client):
    with time_machine.travel(NOW + timedelta(days=300), tick=False):
        client.force_login(data["street1"])
        response = client.get("/stats/")
    assert response.status_code == 200
    assert 'value="2026-02-01"' in response.content.decode()


def test_figures_rebuilt_from_the_events_equal_the_live_ones(data):
    def snapshot():
        return sorted(
            CaseFigures.objects.values_list(*[f.attname for f in CaseFigures._meta.fields])
        )

    live = snapshot()
    assert len(live) == 7  # every case but c6, which has not moved since registration

    assert figures.figures_rebuild() == 7
    assert snapshot() == live
    figures.CaseFigures.objects.all().delete()
    assert figures._rebuild_python() == 7  # the path the SQLite demo takes
    assert snapshot() == live


def test_a_coordinator_of_every_community_counts_everything_unfiltered(data):
    admin = User.objects.create_superuser(username="chief", email="chief@example.test")

    scope = statistics.coordinator_scope(admin)
    board = _board(admin)

    assert scope.community_ids is None
    assert (board["facts"]["total"], board["facts"]["agreed"]) == (8, 3)
    assert {r["label"] for r in board["by_community"]} == {"A社区", "B社区", "C社区"}


def test_satisfaction_from_the_parties_ratings(data):
    if statistics._rating_model() is None:
        pytest.skip("the voting app's ratings are not installed")
    from voting.services.ratings import rating_give

    c1, _c2, c3, *_rest = data["cases"]
    for case, score in ((c1, 5), (c3, 3)):
        case.refresh_from_db()
        rating_give(case=case, user=case.reporter, score=score)

    board = _board(data["street1"])

    assert board["satisfaction"] == {
        "available": True,
        "average": 4.0,
        "count": 2,
        "by_expert": {
            data["experts"][0].pk: {"avg": 5.0, "n": 1},
            data["experts"][1].pk: {"avg": 3.0, "n": 1},
        },
    }
    assert {e["name"]: e["rating"] for e in board["experts"]}["陆调解员"] == {"avg": 3.0, "n": 1}


def _scopes(data):
    a, b, c = data["communities"]
    march = statistics.Period(start=datetime(2026, 3, 1, tzinfo=SHANGHAI))
    yield statistics.coordinator_scope(data["street1"])
    yield statistics.coordinator_scope(data["local_a"])
    yield statistics.coordinator_scope(data["street2"])
    yield statistics.coordinator_scope(data["street1"], period=march)
    yield statistics.Scope(community_ids=None)
    yield statistics.Scope(community_ids=(b.pk,), period=march)
    yield statistics.Scope(community_ids=())


def _by_expert(rows):
    overall = next(r for r in rows if r["overall"])
    return overall, {r["expert_id"]: r for r in rows if not r["overall"]}


def _same_figures(sql_row, python_row, *, skip=()):
    for key, value in python_row.items():
        if key in ("overall", "display_name", "username", *skip) or key.startswith("expert_"):
            continue
        if isinstance(value, float):
            assert float(sql_row[key]) == pytest.approx(value, rel=1e-12), key
        else:
            assert sql_row[key] == value, key


# Every scope's medians through the duration indexes, or through sorting the scope's values.
MEDIAN_PATHS = pytest.mark.parametrize("median_share", [0.0, 1e12], ids=["index", "sort"])


@MEDIAN_PATHS
def test_sql_figures_equal_the_python_ones_in_every_scope(data, monkeypatch, median_share):
    """The one-statement figures (medians read from the duration indexes, overall summed from
    the per-mediator groups) against a plain Python count of the same rows."""
    monkeypatch.setattr(statistics, "MEDIAN_INDEX_SHARE", median_share)
    for scope in _scopes(data):
        sql_overall, sql_experts = _by_expert(statistics._figures_postgres(scope))
        py_overall, py_experts = _by_expert(statistics._figures_python(scope))

        _same_figures(sql_overall, py_overall)
        assert set(sql_experts) == set(py_experts)
        for expert_id, row in py_experts.items():
            # a mediator's row has the mean time to agreement only
            _same_figures(sql_experts[expert_id], row, skip=("to_accept", "to_hearing"))
            assert sql_experts[expert_id]["display_name"] == row["display_name"]


@MEDIAN_PATHS
@pytest.mark.parametrize("seed", range(4))
def test_medians_equal_percentile_cont_for_odd_even_tied_and_missing_durations(
    db, monkeypatch, median_share, seed
):
    import random
    import statistics as pystats

    monkeypatch.setattr(statistics, "MEDIAN_INDEX_SHARE", median_share)
    rng = random.Random(seed)
    community = CommunityFactory()
    other = CommunityFactory(street=community.street)
    cases = [make_case(community=rng.choice((community, other))) for _ in range(9)]
    for n in range(len(cases) + 1):  # none, one, two, ... values in the scope
        CaseFigures.objects.all().delete()
        CaseFigures.objects.bulk_create(
            CaseFigures(
                case=case,
                community=case.community,
                registered_at=case.created_at,
                # ties are likely: few distinct values
                seconds_to_accept=rng.choice((60, 3600, 3600, 7200, 86400)) if i < n else None,
                seconds_to_hearing=rng.randint(0, 10**6) if rng.random() < 0.7 else None,
                seconds_to_agreement=rng.randint(0, 10**6),
            )
            for i, case in enumerate(cases)
        )
        for scope in (
            statistics.Scope(community_ids=None),
            statistics.Scope(community_ids=(community.pk,)),
        ):
            overall, _experts = _by_expert(statistics._figures_postgres(scope))
            rows = scope.figures()
            for key, column in statistics.MEDIAN_COLUMNS.items():
                values = [v for v in rows.values_list(column, flat=True) if v is not None]
                with connection.cursor() as cursor:
                    cursor.execute(
                        f"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY {column}) "  # noqa: S608
                        f"FROM {CaseFigures._meta.db_table} WHERE case_id = ANY(%s)",
                        [list(rows.values_list("pk", flat=True))],
                    )
                    expected = cursor.fetchone()[0]
                assert overall[key] == expected, (seed, n, key)
                assert expected == (pystats.median(values) if values else None)


def test_months_split_at_local_midnight_like_the_orm_count(db):
    """The breakdown by month finds each case's month among the local month starts; cases
    registered on either side of local midnight at a month's turn, and across a gap of months
    and years, land where Django's TruncMonth in the local time zone puts them."""
    community = CommunityFactory()
    moments = [
        datetime(2026, 1, 31, 23, 59, 59, tzinfo=SHANGHAI),
        datetime(2026, 2, 1, 0, 0, 0, tzinfo=SHANGHAI),  # 2026-01-31 16:00 UTC
        datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=SHANGHAI),
        datetime(2026, 5, 1, 0, 0, 0, tzinfo=SHANGHAI),
        datetime(2027, 12, 31, 23, 0, 0, tzinfo=SHANGHAI),
    ]
    for moment in moments:
        case = make_case(community=community)
        type(case).objects.filter(pk=case.pk).update(created_at=moment)
    now = datetime(2028, 1, 1, tzinfo=SHANGHAI)
    board = statistics.dashboard(statistics.Scope(community_ids=(community.pk,)), now=now)

    assert [(r["key"], r["n"]) for r in board["by_month"]] == [
        ("2026-01", 1),
        ("2026-02", 2),
        ("2026-05", 1),
        ("2027-12", 1),
    ]
    for scope in (
        statistics.Scope(community_ids=(community.pk,)),
        statistics.Scope(
            community_ids=None,
            period=statistics.Period(
                datetime(2026, 2, 1, tzinfo=SHANGHAI), datetime(2026, 6, 1, tzinfo=SHANGHAI)
            ),
        ),
    ):
        sql = statistics._breakdowns_postgres(scope, now)
        orm = statistics._breakdowns_orm(scope, now)
        for part in ("status", "category", "community"):
            assert sorted(sql[part]) == sorted(orm[part]), part
        assert sorted((m.strftime("%Y-%m"), n) for m, n in sql["month"]) == sorted(
            (m.strftime("%Y-%m"), n) for m, n in orm["month"]
        )
        assert {s: n for s, n in sql["late"] if n} == dict(orm["late"])
