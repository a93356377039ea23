"""Agreement pages. Each view parses, calls the gatekeeper selector and a service, and renders."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.ratelimit import allow
from cloudbench.actions import form_submit, perform
from cloudbench.client_address import client_ip
from cloudbench.errors import DomainError
from privacy.access import log_access
from privacy.models import AccessKind
from privacy.serve import sealed_response

from . import content as doc
from . import selectors, services
from .forms import (
    CommentForm,
    DraftForm,
    FollowUpAnswerForm,
    RefuseForm,
    SignForm,
    TermFormSet,
    VerifyForm,
)
from .models import Agreement


def _page(tracking_number: str):
    return redirect("mediation_room:agreement", tracking_number=tracking_number)


def _need(agreement: Agreement | None) -> Agreement:
    if agreement is None:
        raise Http404
    return agreement


@login_required
def agreement_page(request: HttpRequest, tracking_number: str) -> HttpResponse:
    """The draft (live), its comments, the versions and the signing state, for everyone in the
    case; the mediator also gets the buttons to edit and submit."""
    case, role, agreement = selectors.access_agreement_for_user(request.user, tracking_number)
    context = {"case": case, "role": role, "agreement": agreement}
    if agreement is not None:
        version = selectors.shown_version(agreement)
        comments = selectors.comments(agreement)
        document = selectors.document(version)
        for term in document["terms"]:
            term["comments"] = [c for c in comments if c["term"] == term["key"]]
        status = selectors.signing_status(agreement)
        context.update(
            {
                "document": document,
                "general_comments": [c for c in comments if not c["term"]],
                "versions": agreement.versions.order_by("-number").only("number", "created_at"),
                "signatures": status,
                "i_signed": any(s["user_id"] == request.user.pk and s["signed_at"] for s in status),
                "i_sign": any(s["user_id"] == request.user.pk for s in status),
                "comment_form": CommentForm(),
                "follow_ups": selectors.follow_ups(agreement)
                if agreement.state == Agreement.State.LOCKED
                else [],
                "my_party": case.parties.filter(user=request.user).first(),
                "can_comment": role in ("applicant", "respondent", "expert")
                and agreement.state in (Agreement.State.DRAFT, Agreement.State.SIGNING),
            }
        )
    context["can_start"] = (
        role == "expert"
        and (agreement is None or agreement.state == Agreement.State.REFUSED)
        and case.status in services.DRAFTABLE_STATUSES
    )
    return render(request, "mediation_room/agreement/page.html", context)


@login_required
@require_POST
def agreement_start(request: HttpRequest, tracking_number: str) -> HttpResponse:
    case, _role, _agreement = selectors.access_agreement_for_user(request.user, tracking_number)
    if not perform(request, lambda: services.agreement_start(case=case, actor=request.user)):
        return _page(tracking_number)
    return redirect("mediation_room:agreement_edit", tracking_number=tracking_number)


def _term_initial(content: dict) -> list[dict]:
    return [
        {
            "key": t["key"],
            "obligor": t["obligor"],
            "action": t["action"],
            "amount": t["amount"] or None,
            "due_date": t["due_date"] or None,
        }
        for t in content.get("terms", [])
    ]


@login_required
def agreement_edit(request: HttpRequest, tracking_number: str) -> HttpResponse:
    """The mediator's editor: a plain form with one row per term (two empty rows to add more);
    the editor script adds a live preview and more rows, but nothing needs it."""
    case, role, agreement = selectors.access_agreement_for_user(request.user, tracking_number)
    agreement = _need(agreement)
    if role != "expert" or agreement.state not in (
        Agreement.State.DRAFT,
        Agreement.State.SIGNING,
    ):
        raise Http404
    latest = agreement.versions.order_by("-number").first()
    if request.method == "POST":
        form = DraftForm(request.POST)
        terms = TermFormSet(request.POST, prefix="terms")
        if form.is_valid() and terms.is_valid():
            rows = [
                {
                    "key": f.cleaned_data.get("key"),
                    "obligor": f.cleaned_data.get("obligor"),
                    "action": f.cleaned_data.get("action"),
                    "amount": f.cleaned_data.get("amount"),
                    "due_date": f.cleaned_data.get("due_date"),
                }
                for f in terms.forms
                if f.cleaned_data
            ]
            version = form_submit(
                form,
                lambda: services.agreement_save_draft(
                    agreement=agreement,
                    actor=request.user,
                    facts=form.cleaned_data["facts"],
                    terms=rows,
                    performance_check=form.cleaned_data["performance_check"],
                    note=form.cleaned_data["note"],
                ),
            )
            if not form.errors:
                messages.success(request, _("Saved as version %(n)d.") % {"n": version.number})
                if "submit" in request.POST:
                    return agreement_submit(request, tracking_number)
                return redirect("mediation_room:agreement_edit", tracking_number=tracking_number)
        status = 400
    else:
        form = DraftForm(
            initial={
                "facts": latest.content.get("facts", ""),
                "performance_check": latest.content.get("performance_check", ""),
            }
        )
        terms = TermFormSet(prefix="terms", initial=_term_initial(latest.content))
        status = 200
    context = {
        "case": case,
        "agreement": agreement,
        "latest": latest,
        "form": form,
        "terms": terms,
        "parties": latest.content.get("parties", []),
        "effect": doc.EFFECT_STATEMENT,
        "comments": selectors.comments(agreement),
    }
    return render(request, "mediation_room/agreement/edit.html", context, status=status)


@login_required
def agreement_version(request: HttpRequest, tracking_number: str, number: int) -> HttpResponse:
    """One saved version compared with the one before it."""
    case, _role, agreement = selectors.access_agreement_for_user(request.user, tracking_number)
    agreement = _need(agreement)
    version = agreement.versions.filter(number=number).first()
    if version is None:
        raise Http404
    previous = agreement.versions.filter(number=number - 1).first()
    context = {
        "case": case,
        "agreement": agreement,
        "version": version,
        "previous": previous,
        "diff": doc.compare(previous.content if previous else None, version.content),
    }
    return render(request, "mediation_room/agreement/version.html", context)


@login_required
@require_POST
def agreement_comment(request: HttpRequest, tracking_number: str) -> HttpResponse:
    _case, _role, agreement = selectors.access_agreement_for_user(request.user, tracking_number)
    agreement = _need(agreement)
    form = CommentForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Write a comment first."))
        return _page(tracking_number)

    def post() -> str:
        services.agreement_comment(
            agreement=agreement,
            actor=request.user,
            body=form.cleaned_data["body"],
            term_key=form.cleaned_data["term_key"],
            kind=form.cleaned_data["kind"],
        )
        return _("Your comment is posted.")

    perform(request, post)
    return _page(tracking_number)


@login_required
@require_POST
def agreement_submit(request: HttpRequest, tracking_number: str) -> HttpResponse:
    _case, _role, agreement = selectors.access_agreement_for_user(request.user, tracking_number)

    def submit() -> str:
        services.agreement_submit(agreement=_need(agreement), actor=request.user)
        return _("The final text is sent to everyone for signature.")

    perform(request, submit)
    return _page(tracking_number)


@login_required
def agreement_sign(request: HttpRequest, tracking_number: str) -> HttpResponse:
    """Signing: ask for an SMS code, then sign with a drawn signature or the typed name."""
    case, _role, agreement = selectors.access_agreement_for_user(request.user, tracking_number)
    agreement = _need(agreement)
    form = SignForm(
        initial={"version": agreement.final_version.number if agreement.final_version else 0}
    )
    status = 200
    if request.method == "POST":
        try:
            if request.POST.get("action") == "code":
                services.signing_code_send(agreement=agreement, actor=request.user)
                messages.success(
                    request, _("A code was sent to your phone. It is valid for 5 minutes.")
                )
                return redirect("mediation_room:agreement_sign", tracking_number=tracking_number)
            form = SignForm(request.POST)
            if form.is_valid():
                services.agreement_sign(
                    agreement=agreement,
                    actor=request.user,
                    version_number=form.cleaned_data["version"],
                    code=form.cleaned_data["code"],
                    signature_data_url=form.cleaned_data["signature"],
                    typed_name=form.cleaned_data["typed_name"],
                    ip=client_ip(request),
                    user_agent=request.META.get("HTTP_USER_AGENT", ""),
                )
                messages.success(request, _("You have signed the agreement."))
                return _page(tracking_number)
            status = 400
        except DomainError as exc:
            form.add_error(None, exc.message)
            status = 403 if exc.code == "forbidden" else 400
    version = agreement.final_version or selectors.shown_version(agreement)
    signer_ids = {s["user_id"] for s in selectors.signing_status(agreement)}
    context = {
        "case": case,
        "agreement": agreement,
        "document": selectors.document(version),
        "form": form,
        "refuse_form": RefuseForm(),
        "is_signer": request.user.pk in signer_ids,
        "is_party": case.parties.filter(user=request.user).exists(),
    }
    return render(request, "mediation_room/agreement/sign.html", context, status=status)


@login_required
@require_POST
def agreement_refuse(request: HttpRequest, tracking_number: str) -> HttpResponse:
    _case, _role, agreement = selectors.access_agreement_for_user(request.user, tracking_number)
    form = RefuseForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Say why you do not sign and where the dispute goes next."))
        return redirect("mediation_room:agreement_sign", tracking_number=tracking_number)

    def refuse() -> str:
        services.agreement_refuse(
            agreement=_need(agreement), actor=request.user, **form.cleaned_data
        )
        return _("Your refusal is recorded; the case ends without agreement.")

    perform(request, refuse)
    return _page(tracking_number)


@login_required
def agreement_pdf(request: HttpRequest, tracking_number: str) -> HttpResponse:
    """The signed PDF, for the parties, the mediator and the coordinators only."""
    case, _role, agreement = selectors.access_agreement_for_user(request.user, tracking_number)
    agreement = _need(agreement)
    if not agreement.is_locked or not agreement.pdf:
        raise Http404
    log_access(request, case=case, kind=AccessKind.AGREEMENT_PDF, ref=agreement.code)
    return sealed_response(
        request,
        agreement.pdf.path,
        content_type="application/pdf",
        filename=f"{case.tracking_number}-人民调解协议书.pdf",
        inline=False,
    )


@login_required
def agreement_bundle(request: HttpRequest, tracking_number: str) -> HttpResponse:
    """The judicial-confirmation bundle (ZIP) for the case's coordinators."""
    case, role, agreement = selectors.access_agreement_for_user(request.user, tracking_number)
    if role not in ("coordinator", "admin"):
        raise Http404
    try:
        data = services.judicial_bundle_export(agreement=_need(agreement), actor=request.user)
    except DomainError as exc:
        messages.error(request, exc.message)
        return _page(tracking_number)
    log_access(request, case=case, kind=AccessKind.AGREEMENT_PDF, ref=agreement.code)
    response = HttpResponse(data, content_type="application/zip")
    response["Content-Disposition"] = (
        f'attachment; filename="{case.tracking_number}-judicial-confirmation.zip"'
    )
    return response


@login_required
def follow_up_page(request: HttpRequest, tracking_number: str, pk: int) -> HttpResponse:
    """A party answers whether one term was fulfilled (the link in the follow-up text message)."""
    follow_up, party = selectors.follow_up_for_party(request.user, tracking_number, pk)
    form = FollowUpAnswerForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            form_submit(
                form,
                lambda: services.follow_up_answer(
                    follow_up=follow_up,
                    actor=request.user,
                    fulfilled=form.cleaned_data["fulfilled"],
                    note=form.cleaned_data["note"],
                ),
            )
            if not form.errors:
                messages.success(request, _("Thank you, your answer is recorded."))
                return _page(tracking_number)
        status = 400
    answer = follow_up.answers.filter(party=party).first()
    context = {
        "case": follow_up.agreement.case,
        "follow_up": follow_up,
        "answer": answer,
        "form": form,
        "open": follow_up.state in ("pending", "asked"),
    }
    return render(request, "mediation_room/agreement/follow_up.html", context, status=status)


def verify(request: HttpRequest, code: str = "") -> HttpResponse:
    """Public: is the agreement with this code genuine and unchanged? Initials only."""
    form = VerifyForm(request.GET or None, initial={"code": code})
    code = code or (form.cleaned_data["code"] if form.is_bound and form.is_valid() else "")
    result = None
    looked_up = bool(code)
    limited = False
    if code:
        if not allow(f"verify:{client_ip(request)}", limit=30, period=60):
            limited = True
        else:
            result = selectors.verification(code)
    context = {"form": form, "result": result, "looked_up": looked_up, "limited": limited}
    status = 429 if limited else (404 if looked_up and result is None else 200)
    return render(request, "mediation_room/agreement/verify.html", context, status=status)
