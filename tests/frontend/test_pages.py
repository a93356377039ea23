"""The pages as their users reach them: filing, consent, lookup, the coordinator's board."""

import pytest

from mediation_room.models import Case, CaseEvent, Party
from tests.factories import CommunityFactory, UserFactory, advance, make_case, make_coordinator

pytestmark = pytest.mark.django_db


def _valid_form(place, **overrides) -> dict:
    data = {
        "category": "unpaid_wages",
        "community": place.pk,
        "description": "装修队老板欠我两个月工资",
        "applicant_name": "王建国",
        "respondent_name": "李老板",
        "respondent_phone": "13912345678",
        "preferred_times": "周六上午",
        "consent_video": "on",
        "consent_livestream": "on",
    }
    data.update(overrides)
    return data


def test_resident_files_a_case_and_gets_a_tracking_number(
    client, resident, community, django_capture_on_commit_callbacks
):
    client.force_login(resident)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/cases/new/", _valid_form(community))
    case = Case.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/cases/{case.tracking_number}/"
    page = client.get(response["Location"]).content.decode()
    assert case.tracking_number in page
    applicant = case.parties.get(role="applicant")
    assert {c.kind: c.granted for c in applicant.consents.all()} == {
        "video": True,
        "livestream": True,
        "recording": False,
    }
    # The other party is texted a link to the case.
    from accounts.models import SmsOutboxMessage

    sms = SmsOutboxMessage.objects.get(phone="+8613912345678")
    assert f"/c/{case.parties.get(role='respondent').invite_token}/" in sms.body


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("description", "长" * 4001),
        ("respondent_phone", "12345"),
        ("respondent_phone", "+1 202 555 0100"),
        ("category", "witchcraft"),
        ("community", "999999"),
        ("community", "'; DROP TABLE cases; --"),
        ("applicant_name", "名" * 41),
        ("description", ""),
    ],
)
def test_bad_input_gives_an_error_and_writes_nothing(client, resident, community, field, value):
    client.force_login(resident)
    response = client.post("/cases/new/", _valid_form(community, **{field: value}))
    assert response.status_code == 400
    assert response.context["form"].errors
    assert not Case.objects.exists() and not CaseEvent.objects.exists()


def test_own_number_as_respondent_is_refused(client, resident, community):
    client.force_login(resident)
    response = client.post(
        "/cases/new/", _valid_form(community, respondent_phone=resident.phone[3:])
    )
    assert response.status_code == 400
    assert "respondent_phone" in response.context["form"].errors
    assert not Case.objects.exists()


def test_filing_needs_sign_in(client, community):
    response = client.post("/cases/new/", _valid_form(community))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert not Case.objects.exists()


def test_respondent_takes_up_the_invitation_and_consents(client, community):
    respondent = UserFactory()
    case = make_case(community=community)
    party = case.parties.get(role="respondent")
    party.phone = respondent.phone
    party.save(update_fields=["phone"])
    client.force_login(respondent)

    response = client.get(f"/c/{party.invite_token}/")
    assert response.status_code == 302
    response = client.post(
        f"/cases/{case.tracking_number}/consent/", {"video": "on", "recording": "on"}
    )
    assert response.status_code == 302
    party.refresh_from_db()
    assert party.user == respondent
    assert {c.kind: c.granted for c in party.consents.all()} == {
        "video": True,
        "livestream": False,
        "recording": True,
    }


def test_invitation_link_refuses_another_number(client, community):
    case = make_case(community=community)
    party = case.parties.get(role="respondent")
    client.force_login(UserFactory())
    response = client.get(f"/c/{party.invite_token}/")
    assert response.status_code == 403
    party.refresh_from_db()
    assert party.user is None


def test_forged_invitation_token_is_404(client, resident):
    client.force_login(resident)
    assert client.get("/c/not-a-real-token/").status_code == 404


def test_party_of_one_case_cannot_open_another(client, community):
    a = make_case(community=community)
    b = make_case(community=community)
    client.force_login(a.reporter)
    assert client.get(f"/cases/{a.tracking_number}/").status_code == 200
    assert client.get(f"/cases/{b.tracking_number}/").status_code == 404
    assert client.post(f"/cases/{b.tracking_number}/withdraw/").status_code == 404
    assert client.post(f"/cases/{b.tracking_number}/accept/").status_code == 404
    assert client.get("/cases/LP-1999-000001/").status_code == 404


def test_lookup_shows_progress_but_no_personal_data(client, community):
    case = make_case(community=community)
    respondent = case.parties.get(role="respondent")
    applicant = case.parties.get(role="applicant")

    response = client.get(
        "/lookup/", {"tracking_number": case.tracking_number, "last_four": applicant.phone[-4:]}
    )

    page = response.content.decode()
    assert case.tracking_number in page
    for secret in (
        respondent.name,
        respondent.phone,
        respondent.phone[3:],
        applicant.name,
        applicant.phone[3:],
        case.description,
    ):
        assert secret not in page


def test_lookup_with_wrong_digits_says_not_found(client, community):
    case = make_case(community=community)
    used = {p.phone[-4:] for p in case.parties.all()}
    wrong = next(f"{n:04d}" for n in range(10000) if f"{n:04d}" not in used)
    response = client.get("/lookup/", {"tracking_number": case.tracking_number, "last_four": wrong})
    assert response.context["not_found"] is True
    assert response.context["case"] is None


def test_lookup_guessing_is_rate_limited(client, community, time_machine):
    # Frozen clock: the ten guesses and the eleventh fall in one rate-limit window.
    time_machine.move_to("2026-11-30 10:00:05+00:00", tick=False)
    case = make_case(community=community)
    for n in range(10):
        client.get("/lookup/", {"tracking_number": case.tracking_number, "last_four": f"{n:04d}"})
    response = client.get(
        "/lookup/",
        {"tracking_number": case.tracking_number, "last_four": case.parties.first().phone[-4:]},
    )
    assert response.context["case"] is None
    assert response.context["form"].non_field_errors()


def test_board_lists_only_the_coordinators_communities_overdue_first(
    client, community, django_assert_max_num_queries
):
    coordinator = make_coordinator(community)
    mine = [make_case(community=community) for _ in range(3)]
    Case.objects.filter(pk=mine[1].pk).update(stage_deadline="2020-01-01T00:00:00Z")
    elsewhere = make_case(community=CommunityFactory())
    client.force_login(coordinator)

    with django_assert_max_num_queries(12):
        response = client.get("/board/")

    listed = [c.tracking_number for c in response.context["page"]]
    assert listed[0] == mine[1].tracking_number
    assert set(listed) == {c.tracking_number for c in mine}
    assert elsewhere.tracking_number not in response.content.decode()


def test_board_query_count_does_not_grow_with_cases(
    client, community, django_assert_max_num_queries
):
    coordinator = make_coordinator(community)
    for _ in range(30):
        make_case(community=community)
    client.force_login(coordinator)
    with django_assert_max_num_queries(12):
        client.get("/board/")


def test_board_is_hidden_from_residents(client, resident):
    client.force_login(resident)
    assert client.get("/board/").status_code == 404


def test_coordinator_accepts_and_declines_from_the_case_page(client, community):
    coordinator = make_coordinator(community)
    a, b = make_case(community=community), make_case(community=community)
    client.force_login(coordinator)
    client.post(f"/cases/{a.tracking_number}/accept/")
    client.post(f"/cases/{b.tracking_number}/decline/", {"reason": "属于法院受理范围"})
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.status, b.status) == ("accepted", "declined")
    # The applicant sees the reason.
    client.force_login(b.reporter)
    assert "属于法院受理范围" in client.get(f"/cases/{b.tracking_number}/").content.decode()


def test_decline_without_reason_is_refused(client, community):
    coordinator = make_coordinator(community)
    case = make_case(community=community)
    client.force_login(coordinator)
    client.post(f"/cases/{case.tracking_number}/decline/", {"reason": ""})
    case.refresh_from_db()
    assert case.status == "registered"


def test_wrong_transition_from_page_is_a_message_not_an_error(client, community):
    coordinator = make_coordinator(community)
    case = make_case(community=community, respondent=UserFactory())
    advance(case, "accepted", coordinator=coordinator)
    client.force_login(coordinator)
    response = client.post(f"/cases/{case.tracking_number}/accept/", follow=True)
    assert response.status_code == 200
    assert list(response.context["messages"])


def test_party_names_of_the_other_side_are_masked_for_parties(client, community):
    respondent = UserFactory()
    case = make_case(community=community, respondent=respondent)
    client.force_login(case.reporter)
    page = client.get(f"/cases/{case.tracking_number}/").content.decode()
    other = Party.objects.get(case=case, role="respondent")
    assert other.phone not in page and other.phone[3:] not in page


def test_csrf_is_enforced_on_forms(community, resident):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(resident)
    response = strict.post("/cases/new/", _valid_form(community))
    assert response.status_code == 403
    assert not Case.objects.exists()


def test_pages_send_a_strict_content_security_policy(client):
    response = client.get("/")
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert "unsafe-inline" not in response["Content-Security-Policy"]


def test_oversized_note_is_refused_and_nothing_changes(client, community):
    coordinator = make_coordinator(community)
    case = make_case(community=community)
    client.force_login(coordinator)
    response = client.post(
        f"/cases/{case.tracking_number}/accept/", {"note": "长" * 501}, follow=True
    )
    case.refresh_from_db()
    assert case.status == "registered"
    assert [m.level_tag for m in response.context["messages"]] == ["error"]


def test_unknown_case_action_is_404(client, community):
    coordinator = make_coordinator(community)
    case = make_case(community=community)
    client.force_login(coordinator)
    assert client.post(f"/cases/{case.tracking_number}/explode/").status_code == 404


def test_progress_names_the_public_steps_that_change_no_status(client, community):
    from mediation_room.services import case_event_record

    case = make_case(community=community)
    case_event_record(case=case, actor=None, kind="panel_drawn", note="seed 1234", public=True)
    applicant = case.parties.get(role="applicant")

    page = client.get(
        "/lookup/", {"tracking_number": case.tracking_number, "last_four": applicant.phone[-4:]}
    ).content.decode()

    assert "已抽取板凳评议团" in page
    assert "seed 1234" not in page
