"""Pages of personal data: who opened a case's files, the access log, holds, a person's data."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from mediation_room.errors import CaseError
from mediation_room.models import Case
from mediation_room.selectors import access_case_for_user, case_role_for_user

from . import selectors, services
from .access import log_access
from .erasure import outcome_for_display, personal_data_erase
from .export import consent_receipt_document, export_zip
from .forms import AccessLogFilterForm, EraseForm, HoldForm, LiftForm
from .models import AccessKind, ErasureRequest


@login_required
@require_GET
def case_access(request: HttpRequest, tracking_number: str) -> HttpResponse:
    """For the parties (and the case's coordinators): who from the staff opened this case."""
    case, role = access_case_for_user(request.user, tracking_number)
    if role not in ("applicant", "respondent", "coordinator", "admin"):
        raise Http404
    rows = selectors.staff_opens_of_case(case)
    page = Paginator(rows, selectors.REVIEW_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "case": case,
        "page": page,
        "may_hold": role in ("coordinator", "admin"),
        "holds": case.legal_holds.select_related("placed_by", "lifted_by"),
        "hold_form": HoldForm(),
        "lift_form": LiftForm(),
    }
    return render(request, "privacy/case_access.html", context)


@login_required
@require_GET
def access_log(request: HttpRequest) -> HttpResponse:
    """Coordinators and above review the access log of the cases they oversee."""
    if not selectors.may_review_access_log(request.user):
        raise Http404
    form = AccessLogFilterForm(request.GET or None)
    filters = form.filters() if form.is_valid() else selectors.LogFilters()
    rows = selectors.access_log_for_reviewer(request.user, filters)
    page = Paginator(rows, selectors.REVIEW_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "privacy/access_log.html", {"form": form, "page": page})


@login_required
@require_GET
def hearing_replay(request: HttpRequest, public_id: str) -> HttpResponse:
    """The replay of a hearing held in private: its sealed recordings in a player, for those who
    may see the room's files (the parties, the mediator, the case's coordinators). Each opening
    is logged; the parties see the staff's openings on the case's access page."""
    from streaming.selectors import hearing_for_room_files

    hearing = hearing_for_room_files(request.user, public_id)
    recordings = list(selectors.recordings_of(hearing))
    if recordings:  # nothing of anyone is shown by a page with nothing to play
        log_access(request, case=hearing.case, kind=AccessKind.REPLAY, ref=hearing.public_id)
    role = case_role_for_user(hearing.case, request.user)
    context = {
        "hearing": hearing,
        "case": hearing.case,
        "recordings": recordings,
        "is_party": role in ("applicant", "respondent"),
    }
    return render(request, "privacy/replay.html", context)


def _case_for_coordinator(request: HttpRequest, tracking_number: str) -> Case:
    case, role = access_case_for_user(request.user, tracking_number)
    if role not in ("coordinator", "admin"):
        raise Http404
    return case


@login_required
@require_POST
def hold_place(request: HttpRequest, tracking_number: str) -> HttpResponse:
    case = _case_for_coordinator(request, tracking_number)
    form = HoldForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(form.errors.get("reason", [])))
        return redirect("privacy:case_access", tracking_number=tracking_number)
    try:
        services.legal_hold_place(case=case, actor=request.user, reason=form.cleaned_data["reason"])
    except (CaseError, ValidationError) as exc:
        messages.error(request, getattr(exc, "message", None) or " ".join(exc.messages))
    return redirect("privacy:case_access", tracking_number=tracking_number)


@login_required
@require_POST
def hold_lift(request: HttpRequest, tracking_number: str, pk: int) -> HttpResponse:
    case = _case_for_coordinator(request, tracking_number)
    form = LiftForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(form.errors.get("note", [])))
        return redirect("privacy:case_access", tracking_number=tracking_number)
    try:
        services.legal_hold_lift(
            case=case, hold_id=pk, actor=request.user, note=form.cleaned_data["note"]
        )
    except (CaseError, ValidationError) as exc:
        messages.error(request, getattr(exc, "message", None) or " ".join(exc.messages))
    return redirect("privacy:case_access", tracking_number=tracking_number)


@login_required
@require_GET
def my_data(request: HttpRequest) -> HttpResponse:
    """A person's own data: take it away, see their consent receipts, ask for deletion."""
    receipts = selectors.consent_receipts_of(request.user)
    last = ErasureRequest.objects.filter(user=request.user).first()
    return render(
        request,
        "privacy/my_data.html",
        {"receipts": receipts, "erasure": last, "erase_form": EraseForm()},
    )


@login_required
@require_GET
def my_data_export(request: HttpRequest) -> StreamingHttpResponse:
    response = StreamingHttpResponse(export_zip(request.user), content_type="application/zip")
    stamp = timezone.localdate().isoformat()
    response["Content-Disposition"] = f'attachment; filename="cloudbench-my-data-{stamp}.zip"'
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_POST
def my_data_erase(request: HttpRequest) -> HttpResponse:
    form = EraseForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Tick the box to confirm that you want your data deleted."))
        return redirect("privacy:my_data")
    user = request.user
    erasure = personal_data_erase(user=user)
    account_gone = any(i["item"] == "account" and i["action"] != "kept" for i in erasure.outcome)
    if account_gone:
        logout(request)
    context = {
        "erasure": erasure,
        "items": outcome_for_display(erasure.outcome),
        "account_gone": account_gone,
    }
    return render(request, "privacy/erased.html", context)


@login_required
@require_GET
def consent_receipt(request: HttpRequest, pk: int) -> HttpResponse:
    receipt = get_object_or_404(selectors.consent_receipts_of(request.user), pk=pk)
    body = json.dumps(consent_receipt_document(receipt), ensure_ascii=False, indent=2, default=str)
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="consent-{receipt.party.case.tracking_number}-{receipt.pk}.json"'
    )
    return response
