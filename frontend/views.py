"""Pages that compose the apps. Each view parses, calls a selector or service, and renders."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from accounts.models import Membership, Notification, SmsOutboxMessage
from accounts.ratelimit import allow
from accounts.selectors import communities_for_coordinator, is_coordinator, pending_memberships
from accounts.services import membership_request, membership_verify, notification_mark_read
from cloudbench.actions import form_submit, perform_and_redirect
from cloudbench.client_address import client_ip
from cloudbench.errors import DomainError
from mediation_room import selectors, services
from mediation_room.errors import CaseError
from mediation_room.lifecycle import CONSENT_WITHDRAW_STATES
from mediation_room.models import Case, Category, Consent, Party, Status
from mediation_room.selectors import access_hearing_for_user
from privacy.access import log_access
from privacy.models import AccessKind

from .forms import (
    BoardFilterForm,
    CaseForm,
    ConsentForm,
    DeclineForm,
    LookupForm,
    MembershipDecisionForm,
    MembershipForm,
    NoteForm,
)
from .livestream import home_context


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "frontend/home_live.html", home_context(request))


@login_required
def case_new(request: HttpRequest) -> HttpResponse:
    form = CaseForm(request.POST or None, initial={"applicant_name": request.user.display_name})
    if request.method == "POST" and form.is_valid():
        case = form_submit(
            form,
            lambda: services.case_register(
                reporter=request.user,
                category=form.cleaned_data["category"],
                description=form.cleaned_data["description"],
                community=form.cleaned_data["community"],
                applicant_name=form.cleaned_data["applicant_name"],
                respondent_name=form.cleaned_data["respondent_name"],
                respondent_phone=form.cleaned_data["respondent_phone"],
                preferred_times=form.cleaned_data["preferred_times"],
                consents=form.consents(),
            ),
        )
        if not form.errors:
            messages.success(
                request,
                _("Your case is registered. Your tracking number is %(number)s.")
                % {"number": case.tracking_number},
            )
            return redirect("frontend:case_detail", tracking_number=case.tracking_number)
    status = 400 if request.method == "POST" else 200
    return render(request, "frontend/case_new.html", {"form": form}, status=status)


@login_required
def my_cases(request: HttpRequest) -> HttpResponse:
    cases = selectors.cases_for_party(request.user)[:100]
    return render(request, "frontend/my_cases.html", {"cases": cases})


@login_required
def case_detail(request: HttpRequest, tracking_number: str) -> HttpResponse:
    case, role = selectors.access_case_for_user(request.user, tracking_number)
    log_access(request, case=case, kind=AccessKind.CASE_PAGE)
    my_party = case.parties.filter(user=request.user).first()
    consents = {}
    if my_party:
        consents = {c.kind: c.granted for c in Consent.objects.filter(party=my_party)}
        consents["show_face"] = my_party.show_face
    parties = list(case.parties.prefetch_related("consents"))
    context = {
        "case": case,
        "role": role,
        "my_party": my_party,
        "consent_form": ConsentForm(initial=consents),
        # after the session a party may still take back what is published of it (its replay)
        "may_withdraw_publication": bool(my_party)
        and case.status not in CONSENT_WITHDRAW_STATES
        and bool(consents.get("livestream") or consents.get("recording")),
        "parties": parties,
        "hearing": selectors.open_hearing(case),
        "timeline": selectors.public_timeline(case),
        "is_staff_view": role in ("coordinator", "admin", "expert"),
        "events": selectors.audit_trail(case) if role in ("coordinator", "admin") else None,
        "decline_form": DeclineForm(),
        "note_form": NoteForm(),
        "Status": Status,
    }
    return render(request, "frontend/case_detail.html", context)


@login_required
def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """The respondent's SMS link: take up their place in the case, then see it."""
    party = get_object_or_404(Party.objects.select_related("case"), invite_token=token)
    try:
        services.party_claim(party=party, user=request.user)
    except DomainError as exc:
        return render(
            request, "frontend/invitation_refused.html", {"message": exc.message}, status=403
        )
    return redirect("frontend:case_detail", tracking_number=party.case.tracking_number)


def _case_action(
    request: HttpRequest, tracking_number: str, action: Callable[[Case], str]
) -> HttpResponse:
    case, _role = selectors.access_case_for_user(request.user, tracking_number)
    return perform_and_redirect(
        request, lambda: action(case), "frontend:case_detail", tracking_number=tracking_number
    )


@login_required
@require_POST
def case_consent(request: HttpRequest, tracking_number: str) -> HttpResponse:
    form = ConsentForm(request.POST)

    def act(case: Case) -> str:
        party = case.parties.filter(user=request.user).first()
        if party is None or not form.is_valid():
            raise CaseError(_("Only a party of the case can answer for consent."))
        for kind in ("video", "livestream", "recording"):
            services.consent_set(
                party=party, actor=request.user, kind=kind, granted=form.cleaned_data[kind]
            )
        services.face_consent_set(
            party=party, actor=request.user, show=form.cleaned_data["show_face"]
        )
        return _("Your answers are saved.")

    return _case_action(request, tracking_number, act)


@login_required
@require_POST
def case_decline(request: HttpRequest, tracking_number: str) -> HttpResponse:
    form = DeclineForm(request.POST)

    def act(case: Case) -> str:
        if not form.is_valid():
            raise CaseError(_("Give a reason the applicant can understand (up to 500 characters)."))
        services.case_decline(case=case, actor=request.user, reason=form.cleaned_data["reason"])
        return _("The case is marked as not accepted; the applicant is told why.")

    return _case_action(request, tracking_number, act)


# Moves a page makes with an optional note: the service, and what the user is told after it.
NOTE_ACTIONS: dict[str, tuple[Callable[..., Case], str]] = {
    "withdraw": (
        lambda case, user, note: services.case_withdraw(case=case, actor=user, reason=note),
        gettext_lazy("The case is withdrawn."),
    ),
    "accept": (
        lambda case, user, note: services.case_accept(case=case, actor=user, note=note),
        gettext_lazy("The case is accepted."),
    ),
    "follow-up": (
        lambda case, user, note: services.case_follow_up(case=case, actor=user, note=note),
        gettext_lazy("The follow-up visit is recorded."),
    ),
    "close": (
        lambda case, user, note: services.case_close(case=case, actor=user, note=note),
        gettext_lazy("The case is closed."),
    ),
}


@login_required
@require_POST
def case_note_action(request: HttpRequest, tracking_number: str, action: str) -> HttpResponse:
    if action not in NOTE_ACTIONS:
        raise Http404
    run, done = NOTE_ACTIONS[action]
    form = NoteForm(request.POST)

    def act(case: Case) -> str:
        if not form.is_valid():
            raise CaseError(" ".join(form.errors.get("note", [])) or _("Check the note."))
        run(case, request.user, form.cleaned_data["note"])
        return str(done)

    return _case_action(request, tracking_number, act)


@login_required
@require_POST
def hearing_start(request: HttpRequest, public_id: str) -> HttpResponse:
    """The mediator (or a coordinator) opens the session: the case is in session, the hearing is
    live, and the livestream starts where every party agreed to it."""
    hearing, _role = access_hearing_for_user(request.user, public_id)

    def start() -> str:
        services.session_start(hearing=hearing, actor=request.user)
        return _("The session has started.")

    return perform_and_redirect(
        request, start, "frontend:case_detail", tracking_number=hearing.case.tracking_number
    )


def lookup(request: HttpRequest) -> HttpResponse:
    """可查询: tracking number + last four digits; rate-limited per client so four digits cannot
    be guessed."""
    form = LookupForm(request.GET or None)
    case = None
    not_found = False
    if request.GET and form.is_valid():
        if not allow(f"lookup:{client_ip(request)}", limit=10, period=60):
            form.add_error(None, _("Too many look-ups. Please wait a minute and try again."))
        else:
            case = selectors.case_lookup(
                form.cleaned_data["tracking_number"], form.cleaned_data["last_four"]
            )
            not_found = case is None
    context = {
        "form": form,
        "case": case,
        "not_found": not_found,
        "timeline": selectors.public_timeline(case) if case else None,
    }
    return render(request, "frontend/lookup.html", context)


@login_required
def board(request: HttpRequest) -> HttpResponse:
    if not is_coordinator(request.user):
        raise Http404
    form = BoardFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    if filters.get("status") and filters["status"] not in Status.values:
        filters["status"] = None
    if filters.get("category") and filters["category"] not in Category.values:
        filters["category"] = None
    cases = selectors.case_board(
        request.user,
        status=filters.get("status") or None,
        category=filters.get("category") or None,
        community_id=filters.get("community") or None,
    )
    page = Paginator(cases, 50).get_page(request.GET.get("page"))
    counts = selectors.status_counts(request.user)
    context = {
        "page": page,
        "filters": filters,
        "communities": communities_for_coordinator(request.user).select_related("street"),
        "statuses": Status.choices,
        "categories": Category.choices,
        "status_summary": [(code, label, counts.get(code, 0)) for code, label in Status.choices],
    }
    return render(request, "frontend/board.html", context)


@login_required
def deliveries(request: HttpRequest) -> HttpResponse:
    """The coordinator's delivery log of notifications about their communities' cases."""
    if not is_coordinator(request.user):
        raise Http404
    case_refs = Case.objects.filter(community__in=communities_for_coordinator(request.user)).values(
        "tracking_number"
    )
    rows = Notification.objects.filter(case_ref__in=case_refs).exclude(channel="in_app")
    page = Paginator(rows.order_by("-created_at"), 100).get_page(request.GET.get("page"))
    return render(request, "frontend/deliveries.html", {"page": page})


@login_required
def notifications(request: HttpRequest) -> HttpResponse:
    items = request.user.notifications.filter(channel="in_app").order_by("-created_at")[:100]
    return render(request, "frontend/notifications.html", {"items": items})


@login_required
@require_POST
def notification_read(request: HttpRequest, pk: int) -> HttpResponse:
    notification_mark_read(user=request.user, notification_id=pk)
    target = request.POST.get("next", "")
    if target.startswith("/") and not target.startswith("//"):
        return HttpResponseRedirect(target)
    return redirect("frontend:notifications")


@login_required
def my_community(request: HttpRequest) -> HttpResponse:
    """A resident tells which community they live in; the office verifies it."""
    form = MembershipForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        form_submit(
            form,
            lambda: membership_request(
                user=request.user,
                community=form.cleaned_data["community"],
                household=form.cleaned_data["household"],
            ),
        )
        if not form.errors:
            messages.success(request, _("Thank you. The community office will confirm it soon."))
            return redirect("frontend:my_community")
    memberships = request.user.memberships.select_related("community__street")
    return render(request, "frontend/my_community.html", {"form": form, "memberships": memberships})


@login_required
def memberships_pending(request: HttpRequest) -> HttpResponse:
    if not is_coordinator(request.user):
        raise Http404
    if request.method == "POST":
        form = MembershipDecisionForm(request.POST)
        if not form.is_valid():
            raise Http404
        membership = get_object_or_404(Membership, pk=form.cleaned_data["membership"])
        try:
            membership_verify(
                coordinator=request.user,
                membership=membership,
                approve=form.cleaned_data["decision"] == "approve",
            )
        except PermissionDenied:
            raise Http404 from None
        messages.success(request, _("Saved."))
        return redirect("frontend:memberships_pending")
    rows = pending_memberships(request.user)[:200]
    return render(request, "frontend/memberships_pending.html", {"rows": rows})


def sms_outbox(request: HttpRequest) -> HttpResponse:
    """Dev-only: what the console SMS backend sent, so a newcomer can sign in with a code."""
    from django.conf import settings

    if not settings.SMS_OUTBOX_PAGE:
        raise Http404
    rows = SmsOutboxMessage.objects.order_by("-created_at")[:50]
    return render(request, "frontend/sms_outbox.html", {"rows": rows})
