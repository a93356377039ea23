"""Pages of the expert pool. Each view parses, calls a selector or service, and renders."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.selectors import is_coordinator
from cloudbench.actions import perform_and_redirect
from cloudbench.errors import DomainError
from mediation_room.models import Status
from mediation_room.selectors import access_case_for_user

from . import matching, selectors, services
from .forms import (
    CandidateFilterForm,
    ConflictForm,
    DeclineForm,
    DirectoryFilterForm,
    ExceptionForm,
    ImportForm,
    SlotForm,
)
from .importing import ImportRefused, max_bytes
from .models import ExpertKind, ExpertProfile, InvitationState


def directory(request: HttpRequest) -> HttpResponse:
    """The public directory of the pool, with each expert's record."""
    form = DirectoryFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    community = filters.get("community")
    profiles = selectors.directory(
        kind=filters.get("kind") or "",
        specialty=filters.get("specialty") or "",
        community_id=community.pk if community else None,
    )
    page = Paginator(profiles, 30).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    figures = selectors.figures_for(rows)
    return render(
        request,
        "experts/directory.html",
        {
            "form": form,
            "page": page,
            "rows": [(p, figures[p.pk]) for p in rows],
            "kinds": ExpertKind,
        },
    )


def expert_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    profile = selectors.profile_by_public_id(public_id)
    if profile is None:
        raise Http404
    figures = selectors.figures_for([profile])[profile.pk]
    return render(request, "experts/detail.html", {"profile": profile, "figures": figures})


def _my_profile(request: HttpRequest) -> ExpertProfile:
    profile = selectors.profile_for_user(request.user)
    if profile is None:
        raise Http404
    return profile


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """The expert's own page: invitations, cases, schedule, availability, figures."""
    profile = _my_profile(request)
    context = {
        "profile": profile,
        "invitations": selectors.pending_invitations(profile),
        "cases": selectors.expert_cases(request.user)[:50],
        "schedule": selectors.expert_schedule(request.user)[:20],
        "slots": profile.slots.all(),
        "exceptions": profile.exceptions.filter(date__gte=timezone.localdate()),
        "figures": selectors.figures_for([profile])[profile.pk],
        "decline_form": DeclineForm(),
        "slot_form": SlotForm(),
        "exception_form": ExceptionForm(),
        "conflict_form": ConflictForm(),
        "conflict_count": profile.conflicts.count(),
    }
    return render(request, "experts/dashboard.html", context)


def _form_errors(form) -> str:
    return " ".join(str(e) for errors in form.errors.values() for e in errors)


@login_required
@require_POST
def invitation_accept(request: HttpRequest, pk: int) -> HttpResponse:
    invitation = selectors.invitation_for_expert(request.user, pk)
    if invitation is None:
        raise Http404

    def act() -> str:
        result = services.invitation_accept(invitation=invitation, actor=request.user)
        if result.hearing is None:
            return _("You took case %(number)s. Please set the hearing time.") % {
                "number": result.case.tracking_number
            }
        return _("You took case %(number)s. The hearing is on %(when)s; everyone is told.") % {
            "number": result.case.tracking_number,
            "when": _local(result.hearing.starts_at),
        }

    return perform_and_redirect(request, act, "experts:dashboard")


def _local(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M")


@login_required
@require_POST
def invitation_decline(request: HttpRequest, pk: int) -> HttpResponse:
    invitation = selectors.invitation_for_expert(request.user, pk)
    if invitation is None:
        raise Http404
    form = DeclineForm(request.POST)

    def act() -> str:
        if not form.is_valid():
            raise ValidationError(_("Please say why, in a few words."))
        services.invitation_decline(
            invitation=invitation, actor=request.user, reason=form.cleaned_data["reason"]
        )
        return _("You declined. Thank you for answering.")

    return perform_and_redirect(request, act, "experts:dashboard")


@login_required
@require_POST
def slot_add(request: HttpRequest) -> HttpResponse:
    form = SlotForm(request.POST)

    def act() -> str:
        if not form.is_valid():
            raise ValidationError(_form_errors(form))
        services.availability_slot_add(actor=request.user, **form.cleaned_data)
        return _("The time is added.")

    return perform_and_redirect(request, act, "experts:dashboard")


@login_required
@require_POST
def slot_remove(request: HttpRequest, pk: int) -> HttpResponse:
    def act() -> str:
        services.availability_slot_remove(actor=request.user, slot_id=pk)
        return _("The time is removed.")

    return perform_and_redirect(request, act, "experts:dashboard")


@login_required
@require_POST
def exception_add(request: HttpRequest) -> HttpResponse:
    form = ExceptionForm(request.POST)

    def act() -> str:
        if not form.is_valid():
            raise ValidationError(_form_errors(form))
        data = form.cleaned_data
        services.availability_exception_add(
            actor=request.user,
            day=data["date"],
            available=data["available"],
            start_time=data["start_time"],
            end_time=data["end_time"],
            note=data["note"],
        )
        return _("The date is saved.")

    return perform_and_redirect(request, act, "experts:dashboard")


@login_required
@require_POST
def exception_remove(request: HttpRequest, pk: int) -> HttpResponse:
    def act() -> str:
        services.availability_exception_remove(actor=request.user, exception_id=pk)
        return _("The date is removed.")

    return perform_and_redirect(request, act, "experts:dashboard")


@login_required
@require_POST
def conflict_add(request: HttpRequest) -> HttpResponse:
    form = ConflictForm(request.POST)

    def act() -> str:
        if not form.is_valid():
            raise ValidationError(_form_errors(form))
        services.conflict_declare(actor=request.user, **form.cleaned_data)
        return _("Noted: you will never be proposed for this person's cases.")

    return perform_and_redirect(request, act, "experts:dashboard")


# --- the coordinator's side ------------------------------------------------------------------------


def _coordinator_case(request: HttpRequest, tracking_number: str):
    case, role = access_case_for_user(request.user, tracking_number)
    if role not in ("coordinator", "admin"):
        raise Http404
    return case


@login_required
def candidates(request: HttpRequest, tracking_number: str) -> HttpResponse:
    """The ranked candidates for an accepted case, each with the reasons, and the invitations."""
    case = _coordinator_case(request, tracking_number)
    form = CandidateFilterForm(request.GET or None)
    language = form.cleaned_data.get("language") if form.is_valid() else ""
    ranked = []
    if case.status == Status.ACCEPTED:
        ranked = matching.rank_candidates(case, languages=[language] if language else None)
    invitations = list(selectors.case_invitations(case))
    return render(
        request,
        "experts/candidates.html",
        {
            "case": case,
            "form": form,
            "ranked": ranked,
            "invitations": invitations,
            "pending": next((i for i in invitations if i.state == InvitationState.PENDING), None),
            "kinds": dict(ExpertKind.choices),
            "preferred": matching.parse_preferred_times(case.preferred_times),
        },
    )


@login_required
@require_POST
def invite(request: HttpRequest, tracking_number: str) -> HttpResponse:
    case = _coordinator_case(request, tracking_number)
    choice = request.POST.get("expert", "")
    target = reverse("experts:candidates", args=[case.tracking_number])

    def act() -> str:
        expert = None
        if choice != "top":
            expert = ExpertProfile.objects.filter(public_id=choice).first()
            if expert is None:
                raise services.ExpertError(_("No such expert."))
        invitation = services.invitation_send(case=case, actor=request.user, expert=expert)
        return _("%(name)s is invited and has until %(when)s to answer.") % {
            "name": invitation.expert.public_name,
            "when": _local(invitation.expires_at),
        }

    return perform_and_redirect(request, act, target)


@login_required
@require_POST
def invitation_cancel(request: HttpRequest, tracking_number: str, pk: int) -> HttpResponse:
    case = _coordinator_case(request, tracking_number)
    invitation = case.expert_invitations.filter(pk=pk).first()
    if invitation is None:
        raise Http404
    target = reverse("experts:candidates", args=[case.tracking_number])

    def act() -> str:
        services.invitation_cancel(
            invitation=invitation, actor=request.user, reason=request.POST.get("reason", "")[:500]
        )
        return _("The invitation is withdrawn.")

    return perform_and_redirect(request, act, target)


@login_required
def import_experts(request: HttpRequest) -> HttpResponse:
    """A coordinator uploads a spreadsheet of experts; bad rows are listed with their line."""
    if not is_coordinator(request.user):
        raise Http404
    form = ImportForm(request.POST or None, request.FILES or None)
    report = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            upload = form.cleaned_data["file"]
            if upload.size > max_bytes():
                form.add_error("file", _("The file is too large."))
            else:
                try:
                    report = services.experts_import(
                        actor=request.user, name=upload.name, content=upload.read()
                    )
                except ImportRefused as exc:
                    form.add_error("file", exc.message)
                except DomainError as exc:
                    form.add_error(None, exc.message)
        if form.errors:
            status = 400
    return render(request, "experts/import.html", {"form": form, "report": report}, status=status)
