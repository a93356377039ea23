"""Authorisation matrix of every page and API: each route against each role, the expected answer
written below. Routes come from the URL resolver, so a new page without a row fails
`test_every_route_has_a_matrix_row`.

Cells: 200, 204, 400, 403, 404, 405 the status; `login` a redirect to the sign-in page; `302`
any other redirect (a form that sends you back with a message, or on to the next page).
Requests are made with no form data: an allowed role gets the page, the form's errors or a
redirect with a message; a refused role gets 403/404 and the request changes nothing. Each
cell runs in a savepoint that is rolled back, so cells do not see each other's effects.
"""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from privacy.models import ErasureRequest

from .matrix import format_rows, parse_table
from .world import ROLES, World

pytestmark = pytest.mark.django_db

# Routes not in the matrix, and why. Django's admin (every model, add/change/delete/history) is
# checked wholesale by test_admin_is_for_staff_only below and tests/test_deploy.py. /readyz
# answers by the state of the services, the same to everyone (tests/operations/test_health.py).
NOT_IN_MATRIX = {"admin:*", "readyz"}

EXPECTED = """
route                                        method anon      viewer    party     expert    coord     o_party   o_expert  o_coord   moderator admin
healthz                                      GET    200       200       200       200       200       200       200       200       200       200
healthz                                      POST   405       405       405       405       405       405       405       405       405       405
metrics                                      GET    200       200       200       200       200       200       200       200       200       200
metrics                                      POST   405       405       405       405       405       405       405       405       405       405
hls_playlist_seen                            GET    400       400       400       400       400       400       400       400       400       400
hls_playlist_seen                            POST   400       400       400       400       400       400       400       400       400       400
set_language                                 GET    302       302       302       302       302       302       302       302       302       302
set_language                                 POST   302       302       302       302       302       302       302       302       302       302
account_login                                GET    200       302       302       302       302       302       302       302       302       302
account_login                                POST   200       302       302       302       302       302       302       302       302       302
account_logout                               GET    302       200       200       200       200       200       200       200       200       200
account_logout                               POST   302       302       302       302       302       302       302       302       302       302
account_inactive                             GET    200       200       200       200       200       200       200       200       200       200
account_signup                               GET    200       302       302       302       302       302       302       302       302       302
account_signup                               POST   200       302       302       302       302       302       302       302       302       302
account_reauthenticate                       GET    login     200       200       200       200       200       200       200       200       200
account_reauthenticate                       POST   login     200       200       200       200       200       200       200       200       200
account_request_reauthentication_code        GET    login     200       200       200       200       200       200       200       200       200
account_request_reauthentication_code        POST   login     200       200       200       200       200       200       200       200       200
account_confirm_reauthentication_code        GET    login     302       302       302       302       302       302       302       302       302
account_confirm_reauthentication_code        POST   login     302       302       302       302       302       302       302       302       302
account_email                                GET    login     200       200       200       200       200       200       200       200       200
account_email                                POST   login     302       302       302       302       302       302       302       302       302
account_email_verification_sent              GET    200       200       200       200       200       200       200       200       200       200
account_change_password                      GET    login     200       200       200       200       200       200       200       200       200
account_change_password                      POST   login     200       200       200       200       200       200       200       200       200
account_set_password                         GET    login     302       302       302       302       302       302       302       302       302
account_set_password                         POST   login     302       302       302       302       302       302       302       302       302
account_reset_password                       GET    200       200       200       200       200       200       200       200       200       200
account_reset_password                       POST   200       200       200       200       200       200       200       200       200       200
account_confirm_login_code                   GET    login     302       302       302       302       302       302       302       302       302
account_confirm_login_code                   POST   login     302       302       302       302       302       302       302       302       302
account_confirm_email                        GET    200       200       200       200       200       200       200       200       200       200
account_confirm_email                        POST   404       404       404       404       404       404       404       404       404       404
account_verify_phone                         GET    login     302       302       302       302       302       302       302       302       302
account_verify_phone                         POST   login     302       302       302       302       302       302       302       302       302
account_change_phone                         GET    login     200       200       200       200       200       200       200       200       200
account_change_phone                         POST   login     200       200       200       200       200       200       200       200       200
account_reset_password_from_key_done         GET    200       200       200       200       200       200       200       200       200       200
account_reset_password_from_key              GET    200       200       200       200       200       200       200       200       200       200
account_reset_password_from_key              POST   200       200       200       200       200       200       200       200       200       200
account_reset_password_done                  GET    200       200       200       200       200       200       200       200       200       200
account_request_login_code                   GET    200       302       302       302       302       302       302       302       302       302
account_request_login_code                   POST   200       302       302       302       302       302       302       302       302       302
mfa_index                                    GET    login     200       200       200       200       200       200       200       200       200
mfa_index                                    POST   login     405       405       405       405       405       405       405       405       405
mfa_authenticate                             GET    login     302       302       302       302       302       302       302       302       302
mfa_authenticate                             POST   login     302       302       302       302       302       302       302       302       302
mfa_reauthenticate                           GET    login     302       302       302       302       302       302       302       302       302
mfa_reauthenticate                           POST   login     302       302       302       302       302       302       302       302       302
mfa_activate_totp                            GET    login     302       302       302       302       302       302       302       302       302
mfa_activate_totp                            POST   login     302       302       302       302       302       302       302       302       302
mfa_deactivate_totp                          GET    login     404       404       404       404       404       404       404       404       404
mfa_deactivate_totp                          POST   login     404       404       404       404       404       404       404       404       404
mfa_view_recovery_codes                      GET    login     404       404       404       404       404       404       404       404       404
mfa_view_recovery_codes                      POST   login     405       405       405       405       405       405       405       405       405
mfa_generate_recovery_codes                  GET    login     302       302       302       302       302       302       302       302       302
mfa_generate_recovery_codes                  POST   login     302       302       302       302       302       302       302       302       302
mfa_download_recovery_codes                  GET    login     404       404       404       404       404       404       404       404       404
mfa_download_recovery_codes                  POST   login     404       404       404       404       404       404       404       404       404
mediation_room:agreement                     GET    login     404       200       200       200       404       404       404       404       200
mediation_room:agreement                     POST   login     404       200       200       200       404       404       404       404       200
mediation_room:agreement_start               GET    login     405       405       405       405       405       405       405       405       405
mediation_room:agreement_start               POST   login     404       302       302       302       404       404       404       404       302
mediation_room:agreement_edit                GET    login     404       404       404       404       404       404       404       404       404
mediation_room:agreement_edit                POST   login     404       404       404       404       404       404       404       404       404
mediation_room:agreement_version             GET    login     404       200       200       200       404       404       404       404       200
mediation_room:agreement_version             POST   login     404       200       200       200       404       404       404       404       200
mediation_room:agreement_comment             GET    login     405       405       405       405       405       405       405       405       405
mediation_room:agreement_comment             POST   login     404       302       302       302       404       404       404       404       302
mediation_room:agreement_submit              GET    login     405       405       405       405       405       405       405       405       405
mediation_room:agreement_submit              POST   login     404       302       302       302       404       404       404       404       302
mediation_room:agreement_sign                GET    login     404       200       200       200       404       404       404       404       200
mediation_room:agreement_sign                POST   login     404       400       400       400       404       404       404       404       400
mediation_room:agreement_refuse              GET    login     405       405       405       405       405       405       405       405       405
mediation_room:agreement_refuse              POST   login     404       302       302       302       404       404       404       404       302
mediation_room:agreement_pdf                 GET    login     404       200       200       200       404       404       404       404       200
mediation_room:agreement_pdf                 POST   login     404       200       200       200       404       404       404       404       200
mediation_room:agreement_bundle              GET    login     404       404       404       200       404       404       404       404       200
mediation_room:agreement_bundle              POST   login     404       404       404       200       404       404       404       404       200
mediation_room:follow_up                     GET    login     404       200       404       404       404       404       404       404       404
mediation_room:follow_up                     POST   login     404       400       404       404       404       404       404       404       404
mediation_room:verify                        GET    200       200       200       200       200       200       200       200       200       200
mediation_room:verify                        POST   200       200       200       200       200       200       200       200       200       200
mediation_room:verify_code                   GET    200       200       200       200       200       200       200       200       200       200
mediation_room:verify_code                   POST   200       200       200       200       200       200       200       200       200       200
mediation_room:supervision                   GET    login     404       404       404       200       404       404       200       404       200
mediation_room:supervision                   POST   login     404       404       404       200       404       404       200       404       200
mediation_room:notices_mine                  GET    login     200       200       200       200       200       200       200       200       200
mediation_room:notices_mine                  POST   login     200       200       200       200       200       200       200       200       200
mediation_room:notice_detail                 GET    login     404       404       200       200       404       404       404       404       200
mediation_room:notice_detail                 POST   login     404       404       400       404       404       404       404       404       404
mediation_room:notice_new                    GET    login     404       404       404       200       404       404       404       404       200
mediation_room:notice_new                    POST   login     404       404       404       400       404       404       404       404       400
mediation_room:hearing_reschedule            GET    login     404       404       200       200       404       404       404       404       200
mediation_room:hearing_reschedule            POST   login     404       404       400       400       404       404       404       404       400
mediation_room:stats                         GET    login     404       404       404       200       404       404       200       404       200
mediation_room:stats                         POST   login     404       404       404       200       404       404       200       404       200
mediation_room:stats_csv                     GET    login     404       404       404       200       404       404       200       404       200
mediation_room:stats_csv                     POST   login     404       404       404       200       404       404       200       404       200
mediation_room:stats_xlsx                    GET    login     404       404       404       200       404       404       200       404       200
mediation_room:stats_xlsx                    POST   login     404       404       404       200       404       404       200       404       200
mediation_room:stats_public                  GET    200       200       200       200       200       200       200       200       200       200
mediation_room:stats_public                  POST   200       200       200       200       200       200       200       200       200       200
experts:directory                            GET    200       200       200       200       200       200       200       200       200       200
experts:directory                            POST   200       200       200       200       200       200       200       200       200       200
experts:dashboard                            GET    login     404       404       200       404       404       200       404       404       404
experts:dashboard                            POST   login     404       404       200       404       404       200       404       404       404
experts:import                               GET    login     404       404       404       200       404       404       200       404       200
experts:import                               POST   login     404       404       404       200       404       404       200       404       200
experts:invitation_accept                    GET    login     405       405       405       405       405       405       405       405       405
experts:invitation_accept                    POST   login     404       404       302       404       404       404       404       404       404
experts:invitation_decline                   GET    login     405       405       405       405       405       405       405       405       405
experts:invitation_decline                   POST   login     404       404       302       404       404       404       404       404       404
experts:slot_add                             GET    login     405       405       405       405       405       405       405       405       405
experts:slot_add                             POST   login     302       302       302       302       302       302       302       302       302
experts:slot_remove                          GET    login     405       405       405       405       405       405       405       405       405
experts:slot_remove                          POST   login     302       302       302       302       302       302       302       302       302
experts:exception_add                        GET    login     405       405       405       405       405       405       405       405       405
experts:exception_add                        POST   login     302       302       302       302       302       302       302       302       302
experts:exception_remove                     GET    login     405       405       405       405       405       405       405       405       405
experts:exception_remove                     POST   login     302       302       302       302       302       302       302       302       302
experts:conflict_add                         GET    login     405       405       405       405       405       405       405       405       405
experts:conflict_add                         POST   login     302       302       302       302       302       302       302       302       302
experts:detail                               GET    200       200       200       200       200       200       200       200       200       200
experts:detail                               POST   200       200       200       200       200       200       200       200       200       200
experts:candidates                           GET    login     404       404       404       200       404       404       404       404       200
experts:candidates                           POST   login     404       404       404       200       404       404       404       404       200
experts:invite                               GET    login     405       405       405       405       405       405       405       405       405
experts:invite                               POST   login     404       404       404       302       404       404       404       404       302
experts:invitation_cancel                    GET    login     405       405       405       405       405       405       405       405       405
experts:invitation_cancel                    POST   login     404       404       404       302       404       404       404       404       302
streaming:room                               GET    login     403       410       410       410       403       403       403       403       410
streaming:room                               POST   login     405       405       405       405       405       405       405       405       405
streaming:room_check                         GET    login     403       410       410       410       403       403       403       403       410
streaming:room_check                         POST   login     405       405       405       405       405       405       405       405       405
streaming:evidence_upload                    GET    login     405       405       405       405       405       405       405       405       405
streaming:evidence_upload                    POST   login     400       400       400       400       400       400       400       400       400
streaming:evidence_file                      GET    login     404       200       200       200       404       404       404       404       200
streaming:evidence_file                      POST   login     405       405       405       405       405       405       405       405       405
streaming:recording_file                     GET    login     404       200       200       200       404       404       404       404       200
streaming:recording_file                     POST   login     405       405       405       405       405       405       405       405       405
streaming:hls_file                           GET    200       200       200       200       200       200       200       200       200       200
streaming:hls_file                           POST   200       200       200       200       200       200       200       200       200       200
voting:live_room                             GET    200       200       200       200       200       200       200       200       200       200
voting:live_room                             POST   200       200       200       200       200       200       200       200       200       200
voting:live_events                           GET    200       200       200       200       200       200       200       200       200       200
voting:live_comment                          GET    login     405       405       405       405       405       405       405       405       405
voting:live_comment                          POST   login     302       302       302       302       302       302       302       302       302
voting:live_vote                             GET    login     405       405       405       405       405       405       405       405       405
voting:live_vote                             POST   login     302       302       302       302       302       302       302       302       302
voting:moderate                              GET    login     404       404       200       200       404       404       404       200       200
voting:moderate                              POST   login     404       404       200       200       404       404       404       200       200
voting:moderate_action[mute]                 GET    login     405       405       405       405       405       405       405       405       405
voting:moderate_action[mute]                 POST   login     404       404       404       404       404       404       404       404       404
voting:sensitive_words                       GET    login     403       403       403       200       403       403       200       200       200
voting:sensitive_words                       POST   login     403       403       403       302       403       403       302       302       302
voting:panel_volunteer                       GET    login     200       200       200       200       200       200       200       200       200
voting:panel_volunteer                       POST   login     404       404       404       404       404       404       404       404       404
voting:panel_verify                          GET    200       200       200       200       200       200       200       200       200       200
voting:panel_verify                          POST   200       200       200       200       200       200       200       200       200       200
voting:panel_evaluate                        GET    login     404       404       404       404       404       404       404       404       404
voting:panel_evaluate                        POST   login     404       404       404       404       404       404       404       404       404
voting:case_panel                            GET    login     404       404       404       200       404       404       404       404       200
voting:case_panel                            POST   login     404       404       404       302       404       404       404       404       302
voting:case_rate                             GET    login     404       200       404       404       404       404       404       404       404
voting:case_rate                             POST   login     404       400       404       404       404       404       404       404       404
voting:consultation_list                     GET    login     200       200       200       200       200       200       200       200       200
voting:consultation_list                     POST   login     200       200       200       200       200       200       200       200       200
voting:consultation_new                      GET    login     404       404       404       200       404       404       200       404       200
voting:consultation_new                      POST   login     404       404       404       400       404       404       400       404       400
voting:consultation_detail                   GET    login     200       200       404       200       404       404       404       404       200
voting:consultation_detail                   POST   login     200       200       404       200       404       404       404       404       200
voting:consultation_vote                     GET    login     405       405       405       405       405       405       405       405       405
voting:consultation_vote                     POST   login     302       302       404       302       404       404       404       404       302
voting:consultation_remark                   GET    login     405       405       405       405       405       405       405       405       405
voting:consultation_remark                   POST   login     302       302       404       302       404       404       404       404       302
voting:consultation_publish                  GET    login     405       405       405       405       405       405       405       405       405
voting:consultation_publish                  POST   login     302       302       404       302       404       404       404       404       302
privacy:case_access                          GET    login     404       200       404       200       404       404       404       404       200
privacy:case_access                          POST   login     405       405       405       405       405       405       405       405       405
privacy:hearing_replay                       GET    login     404       200       200       200       404       404       404       404       200
privacy:hearing_replay                       POST   login     405       405       405       405       405       405       405       405       405
privacy:access_log                           GET    login     404       404       404       200       404       404       200       404       200
privacy:access_log                           POST   login     405       405       405       405       405       405       405       405       405
privacy:hold_place                           GET    login     405       405       405       405       405       405       405       405       405
privacy:hold_place                           POST   login     404       404       404       302       404       404       404       404       302
privacy:hold_lift                            GET    login     405       405       405       405       405       405       405       405       405
privacy:hold_lift                            POST   login     404       404       404       302       404       404       404       404       302
privacy:my_data                              GET    login     200       200       200       200       200       200       200       200       200
privacy:my_data                              POST   login     405       405       405       405       405       405       405       405       405
privacy:my_data_export                       GET    login     200       200       200       200       200       200       200       200       200
privacy:my_data_export                       POST   login     405       405       405       405       405       405       405       405       405
privacy:my_data_erase                        GET    login     405       405       405       405       405       405       405       405       405
privacy:my_data_erase                        POST   login     302       302       302       302       302       302       302       302       302
privacy:consent_receipt                      GET    login     404       200       404       404       404       404       404       404       404
privacy:consent_receipt                      POST   login     405       405       405       405       405       405       405       405       405
frontend:home                                GET    200       200       200       200       200       200       200       200       200       200
frontend:home                                POST   200       200       200       200       200       200       200       200       200       200
frontend:my_cases                            GET    login     200       200       200       200       200       200       200       200       200
frontend:my_cases                            POST   login     200       200       200       200       200       200       200       200       200
frontend:case_new                            GET    login     200       200       200       200       200       200       200       200       200
frontend:case_new                            POST   login     400       400       400       400       400       400       400       400       400
frontend:case_detail                         GET    login     404       200       200       200       404       404       404       404       200
frontend:case_detail                         POST   login     404       200       200       200       404       404       404       404       200
frontend:case_consent                        GET    login     405       405       405       405       405       405       405       405       405
frontend:case_consent                        POST   login     404       302       302       302       404       404       404       404       302
frontend:case_decline                        GET    login     405       405       405       405       405       405       405       405       405
frontend:case_decline                        POST   login     404       302       302       302       404       404       404       404       302
frontend:case_action[accept]                 GET    login     405       405       405       405       405       405       405       405       405
frontend:case_action[accept]                 POST   login     404       302       302       302       404       404       404       404       302
frontend:case_action[withdraw]               GET    login     405       405       405       405       405       405       405       405       405
frontend:case_action[withdraw]               POST   login     404       302       302       302       404       404       404       404       302
frontend:invitation                          GET    login     403       403       403       403       403       403       403       403       403
frontend:invitation                          POST   login     403       403       403       403       403       403       403       403       403
frontend:lookup                              GET    200       200       200       200       200       200       200       200       200       200
frontend:lookup                              POST   200       200       200       200       200       200       200       200       200       200
frontend:watch                               GET    200       200       200       200       200       200       200       200       200       200
frontend:watch                               POST   200       200       200       200       200       200       200       200       200       200
frontend:replay                              GET    404       404       404       404       404       404       404       404       404       404
frontend:replay                              POST   404       404       404       404       404       404       404       404       404       404
frontend:hearing_start                       GET    login     405       405       405       405       405       405       405       405       405
frontend:hearing_start                       POST   login     404       302       302       302       404       404       404       404       302
frontend:watch_pause                         GET    login     405       405       405       405       405       405       405       405       405
frontend:watch_pause                         POST   login     404       302       302       302       404       404       404       404       302
frontend:board                               GET    login     404       404       404       200       404       404       200       404       200
frontend:board                               POST   login     404       404       404       200       404       404       200       404       200
frontend:deliveries                          GET    login     404       404       404       200       404       404       200       404       200
frontend:deliveries                          POST   login     404       404       404       200       404       404       200       404       200
frontend:notifications                       GET    login     200       200       200       200       200       200       200       200       200
frontend:notifications                       POST   login     200       200       200       200       200       200       200       200       200
frontend:notification_read                   GET    login     405       405       405       405       405       405       405       405       405
frontend:notification_read                   POST   login     302       302       302       302       302       302       302       302       302
frontend:my_community                        GET    login     200       200       200       200       200       200       200       200       200
frontend:my_community                        POST   login     200       200       200       200       200       200       200       200       200
frontend:memberships_pending                 GET    login     404       404       404       200       404       404       200       404       200
frontend:memberships_pending                 POST   login     404       404       404       404       404       404       404       404       404
frontend:sms_outbox                          GET    200       200       200       200       200       200       200       200       200       200
frontend:sms_outbox                          POST   200       200       200       200       200       200       200       200       200       200
"""


def _walk(patterns, prefix="", namespace=None):
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = namespace
            if p.namespace:
                ns = f"{namespace}:{p.namespace}" if namespace else p.namespace
            yield from _walk(p.url_patterns, prefix + str(p.pattern), ns)
        elif isinstance(p, URLPattern) and p.name:
            yield (f"{namespace}:{p.name}" if namespace else p.name), prefix + str(p.pattern)


def all_routes() -> dict[str, str]:
    return dict(_walk(get_resolver().url_patterns))


def route_kwargs(w: World, name: str, variant: str) -> dict[str, object]:
    """The URL arguments that point a route at case A's objects."""
    route = all_routes()[name]
    kwargs: dict[str, object] = {}
    if "<str:tracking_number>" in route:
        kwargs["tracking_number"] = (
            w.case_c.tracking_number
            if name == "experts:invitation_cancel"
            else w.case.tracking_number
        )
    if "<str:public_id>" in route:
        if name == "experts:detail":
            kwargs["public_id"] = w.expert_profile.public_id
        elif name.startswith("voting:panel_"):
            kwargs["public_id"] = w.panel.public_id
        elif name.startswith("voting:consultation_"):
            kwargs["public_id"] = w.consultation.public_id
        else:
            kwargs["public_id"] = w.hearing.public_id
    if "<int:pk>" in route:
        kwargs["pk"] = {
            "mediation_room:follow_up": lambda: w.follow_up.pk,
            "mediation_room:notice_detail": lambda: w.notice.pk,
            "experts:invitation_accept": lambda: w.invitation.pk,
            "experts:invitation_decline": lambda: w.invitation.pk,
            "experts:invitation_cancel": lambda: w.invitation.pk,
            "experts:slot_remove": lambda: w.slot.pk,
            "experts:exception_remove": lambda: w.exception.pk,
            "frontend:notification_read": lambda: w.notification.pk,
            "privacy:hold_lift": lambda: w.hold.pk,
            "privacy:consent_receipt": lambda: w.receipt.pk,
        }[name]()
    if "<int:number>" in route:
        kwargs["number"] = 1
    if "<str:code>" in route:
        kwargs["code"] = w.agreement.code
    if "<str:token>" in route:
        kwargs["token"] = w.respondent_party.invite_token
    if "<uuid:evidence_id>" in route:
        kwargs["evidence_id"] = w.evidence.public_id
    if "<uuid:recording_id>" in route:
        kwargs["recording_id"] = w.recording.public_id
    if "<str:name>" in route:
        kwargs["name"] = "live.m3u8"
    if "<slug:action>" in route:
        kwargs["action"] = variant
    if "(?P<key>" in route:
        kwargs["key"] = "MQ:1a2b3c:deadbeef"
    if "(?P<uidb36>" in route:
        kwargs.update(uidb36="1", key="set-password")
    return kwargs


def classify(response) -> str:
    if response.status_code in (301, 302, 303, 307):
        location = response["Location"]
        if location.startswith("/accounts/login/"):
            return "login"
        return "302"
    return str(response.status_code)


def observe(w: World, name: str, variant: str, method: str) -> dict[str, str]:
    url = reverse(name, kwargs=route_kwargs(w, name, variant) or None)
    cells = {}
    for role in ROLES:
        cache.clear()
        client = w.client(role, raise_request_exception=True)
        with transaction.atomic():
            response = client.generic(method, url)
            cells[role] = classify(response)
            if getattr(response, "streaming", False):
                # reading to the end closes it the way the test client expects (close() here
                # would close the database connection of the test)
                b"".join(response.streaming_content)
            transaction.set_rollback(True)
    return cells


def _rows():
    return parse_table(EXPECTED, key_columns=2)


def _split(route_key: str) -> tuple[str, str]:
    name, _, variant = route_key.partition("[")
    return name, variant.rstrip("]")


def test_every_route_has_a_matrix_row():
    covered = {_split(key[0])[0] for key in _rows()}
    missing = sorted(
        name
        for name in all_routes()
        if name not in covered and not any(name.startswith(p[:-1]) for p in NOT_IN_MATRIX)
    )
    assert not missing, "routes without an expected row in the authorisation matrix:\n" + "\n".join(
        missing
    )
    stale = sorted(key[0] for key in _rows() if _split(key[0])[0] not in all_routes())
    assert not stale, f"matrix rows for routes that no longer exist: {stale}"


@pytest.mark.parametrize("key", list(_rows()), ids=lambda k: f"{k[0]} {k[1]}")
def test_route_answers_each_role_as_written(world, world_settings, key):
    route_key, method = key
    name, variant = _split(route_key)
    expected = _rows()[key]
    actual = observe(world, name, variant, method)
    assert actual == expected, (
        "\n" + format_rows({key: expected}) + "\n" + format_rows({key: actual})
    )


# A refused action may still answer 302 (back to the page, with the error as a message): for
# those cells the matrix cannot tell, so check that nothing changed.
REFUSED_REDIRECTS = [
    # (route, role, form data, what must still hold afterwards)
    (
        "experts:slot_remove",
        "o_expert",
        {},
        lambda w: type(w.slot).objects.filter(pk=w.slot.pk).exists(),
    ),
    (
        "experts:exception_remove",
        "o_expert",
        {},
        lambda w: type(w.exception).objects.filter(pk=w.exception.pk).exists(),
    ),
    (
        "frontend:notification_read",
        "viewer",
        {},
        lambda w: type(w.notification).objects.get(pk=w.notification.pk).read_at is None,
    ),
    (
        "voting:consultation_publish",
        "viewer",
        {},
        lambda w: type(w.consultation).objects.get(pk=w.consultation.pk).state == "open",
    ),
    (
        "frontend:hearing_start",
        "party",
        {},
        lambda w: not w.case.events.filter(to_status="in_session", actor=w.users["party"]).exists(),
    ),
    (
        "frontend:watch_pause",
        "party",
        {"paused": "1"},
        lambda w: not w.case.events.filter(kind="broadcast_paused").exists(),
    ),
    (
        "frontend:case_action[withdraw]",
        "expert",
        {"note": "不调了"},
        lambda w: (
            not w.case.events.filter(kind="withdrawn").exists()
            and type(w.case).objects.get(pk=w.case.pk).status != "withdrawn"
        ),
    ),
    (
        "privacy:my_data_erase",
        "party",
        {},
        lambda w: (
            type(w.comment_of_party).objects.get(pk=w.comment_of_party.pk).text == "我同意"
            and not ErasureRequest.objects.filter(user_ref=w.users["party"].pk).exists()
        ),
    ),
    (
        "voting:sensitive_words",
        "expert",
        {"word": "坏词"},
        lambda w: (
            not __import__("voting.models", fromlist=["x"])
            .SensitiveWord.objects.filter(word="坏词")
            .exists()
        ),
    ),
]


@pytest.mark.parametrize(
    "route_key, role, data, holds",
    REFUSED_REDIRECTS,
    ids=[f"{r[0]}-{r[1]}" for r in REFUSED_REDIRECTS],
)
def test_refused_actions_change_nothing(world, world_settings, route_key, role, data, holds):
    name, variant = _split(route_key)
    url = reverse(name, kwargs=route_kwargs(world, name, variant) or None)
    client = world.client(role)
    with transaction.atomic():
        client.post(url, data)
        assert holds(world), f"{role} changed something through {route_key}"
        transaction.set_rollback(True)
