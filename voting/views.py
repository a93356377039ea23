"""Pages of the audience side. Each view parses, calls a selector or service, and renders."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from django.views.decorators.http import require_GET, require_POST

from accounts.models import User
from accounts.ratelimit import allow
from accounts.selectors import communities_for_coordinator
from cloudbench.actions import form_submit, perform
from cloudbench.client_address import client_ip
from mediation_room.models import Hearing
from mediation_room.selectors import access_case_for_user, case_role_for_user
from mediation_room.services import consents_all_granted

from . import selectors
from .errors import VotingError
from .forms import (
    ConsultationForm,
    PanelCommitForm,
    PanelEvaluationForm,
    PollForm,
    RatingForm,
    RoomSettingsForm,
)
from .models import Comment, Consultation, Poll, SensitiveWord
from .protocol import CLIENT_ID_RE
from .services import bench_panel, comments, consultations, moderation, polling, ratings, rooms

# --- live room ------------------------------------------------------------------------------------


def _watchable_room(request: HttpRequest, public_id: str):
    hearing = selectors.hearing_by_public_id(public_id)
    room = rooms.room_for_hearing(hearing)
    user = request.user
    if not (
        selectors.room_is_public(room)
        or (user.is_authenticated and case_role_for_user(hearing.case, user) is not None)
        or selectors.is_room_moderator(room, user)
    ):
        raise Http404
    return hearing, room


def live_panel_context(request: HttpRequest, public_id: str) -> dict:
    """What the comment/poll panel include needs (the watch page embeds it too)."""
    hearing, room = _watchable_room(request, public_id)
    polls = []
    for poll in selectors.open_polls(room):
        payload = polling.poll_payload(poll, with_counts=poll.results_visible)
        counts = payload.get("counts")
        payload["counts"] = counts
        payload["rows"] = [
            {**o, "count": counts[i] if counts else None} for i, o in enumerate(payload["options"])
        ]
        polls.append(payload)
    return {
        "hearing": hearing,
        "room": room,
        "recent_comments": selectors.recent_comments(room),
        "last_seq": room.last_seq,
        "polls": polls,
        "can_comment": request.user.is_authenticated,
        "is_moderator": selectors.is_room_moderator(room, request.user),
        "client_id": secrets.token_urlsafe(12),
    }


def live_room(request: HttpRequest, public_id: str) -> HttpResponse:
    return render(request, "voting/live_room.html", live_panel_context(request, public_id))


@require_GET
def live_events(request: HttpRequest, public_id: str) -> JsonResponse:
    """Catch-up for a client that saw a gap: every event with seq > after, in order."""
    if not allow(f"voting:events:{client_ip(request)}", limit=120, period=60):
        return JsonResponse({"error": _("Too many requests. Please wait a moment.")}, status=429)
    _hearing, room = _watchable_room(request, public_id)
    try:
        after = max(0, int(request.GET.get("after", "0")))
    except ValueError:
        return JsonResponse({"error": _("“after” must be a whole number.")}, status=400)
    events = selectors.events_after(room, after)
    return JsonResponse(
        {
            "events": events,
            "last_seq": room.last_seq,
            "more": len(events) == selectors.EVENTS_PAGE,
        },
        json_dumps_params={"ensure_ascii": False},
    )


def _back_to_room(public_id: str) -> HttpResponse:
    return redirect("voting:live_room", public_id=public_id)


@login_required
@require_POST
def live_comment(request: HttpRequest, public_id: str) -> HttpResponse:
    """The same comment as over the socket, for browsers without JavaScript."""
    _hearing, room = _watchable_room(request, public_id)
    client_id = request.POST.get("client_id", "")
    if not CLIENT_ID_RE.match(client_id):
        client_id = secrets.token_urlsafe(12)

    def post() -> str:
        result = comments.comment_post(
            room=room, author=request.user, client_id=client_id, text=request.POST.get("text", "")
        )
        if result.comment.state == Comment.State.HELD:
            return _("Your comment is waiting for a moderator.")
        return _("Comment posted.")

    perform(request, post)
    return _back_to_room(public_id)


@login_required
@require_POST
def live_vote(request: HttpRequest, public_id: str) -> HttpResponse:
    _hearing, room = _watchable_room(request, public_id)

    def vote() -> str:
        poll = selectors.poll_lookup(room=room, poll_public_id=request.POST.get("poll", ""))
        try:
            option = int(request.POST.get("option", ""))
        except ValueError:
            raise VotingError(_("Choose an option."), code="invalid") from None
        polling.vote_cast(poll=poll, user=request.user, option_position=option)
        return _("Your vote is counted.")

    perform(request, vote)
    return _back_to_room(public_id)


# --- moderation console ---------------------------------------------------------------------------------


def _moderated_room(request: HttpRequest, public_id: str):
    hearing = selectors.hearing_by_public_id(public_id)
    room = rooms.room_for_hearing(hearing)
    if not selectors.is_room_moderator(room, request.user):
        raise Http404
    return hearing, room


@login_required
def moderate(request: HttpRequest, public_id: str) -> HttpResponse:
    hearing, room = _moderated_room(request, public_id)
    role = case_role_for_user(hearing.case, request.user)
    context = {
        "hearing": hearing,
        "room": room,
        "held": selectors.held_comments(room)[:200],
        "recent": selectors.recent_comments(room, limit=100),
        "log": selectors.moderation_log(room),
        "mutes": room.mutes.select_related("user"),
        "settings_form": RoomSettingsForm(
            initial={
                "slow_mode_seconds": room.slow_mode_seconds,
                "review_all": room.review_all,
                "comments_open": room.comments_open,
            }
        ),
        "poll_form": PollForm(),
        "can_poll": role in polling.POLL_CASE_ROLES,
        "polls": room.polls.prefetch_related("options")[:20],
    }
    return render(request, "voting/moderate.html", context)


def _comment_in(room, request: HttpRequest) -> Comment:
    return get_object_or_404(Comment, pk=request.POST.get("comment", "0") or 0, room=room)


def _user_in_room(room, request: HttpRequest) -> User:
    # Moderators act on authors of the room's comments, never on arbitrary accounts.
    author_ids = Comment.objects.filter(room=room).values("author_id")
    return get_object_or_404(User, pk=request.POST.get("user", "0") or 0, pk__in=author_ids)


MODERATION_ACTIONS: dict[str, Callable] = {}


def _moderation_action(name: str):
    def register(func: Callable) -> Callable:
        MODERATION_ACTIONS[name] = func
        return func

    return register


def _comment_action(service: Callable, done: str) -> Callable:
    def act(request, room):
        service(
            comment=_comment_in(room, request),
            moderator=request.user,
            reason=request.POST.get("reason", ""),
        )
        return _(done)

    return act


# The three moderation actions on one comment differ only in the service and what is said after.
for _name, _service, _done in (
    ("approve", moderation.comment_approve, gettext_noop("The comment is shown.")),
    ("reject", moderation.comment_reject, gettext_noop("The comment was rejected.")),
    ("delete", moderation.comment_delete, gettext_noop("The comment was deleted for everyone.")),
):
    MODERATION_ACTIONS[_name] = _comment_action(_service, _done)


@_moderation_action("mute")
def _mute(request, room):
    moderation.user_mute(
        room=room,
        user=_user_in_room(room, request),
        moderator=request.user,
        reason=request.POST.get("reason", ""),
    )
    return _("The user is muted in this room.")


@_moderation_action("unmute")
def _unmute(request, room):
    user = get_object_or_404(
        User, pk=request.POST.get("user", "0") or 0, pk__in=room.mutes.values("user_id")
    )
    moderation.user_unmute(
        room=room, user=user, moderator=request.user, reason=request.POST.get("reason", "")
    )
    return _("The user may comment again.")


@_moderation_action("ban")
def _ban(request, room):
    moderation.user_ban(
        room=room,
        user=_user_in_room(room, request),
        moderator=request.user,
        reason=request.POST.get("reason", ""),
    )
    return _("The user is banned from commenting.")


@_moderation_action("settings")
def _settings(request, room):
    form = RoomSettingsForm(request.POST)
    if not form.is_valid():
        raise VotingError(_("Check the room settings."), code="invalid")
    moderation.room_settings_update(room=room, moderator=request.user, **form.cleaned_data)
    return _("Room settings saved.")


@_moderation_action("poll_open")
def _poll_open(request, room):
    form = PollForm(request.POST)
    if not form.is_valid():
        raise VotingError(
            " ".join(e for errs in form.errors.values() for e in errs), code="invalid"
        )
    polling.poll_open(
        room=room,
        actor=request.user,
        question=form.cleaned_data["question"],
        options=form.options(),
        results=form.cleaned_data["results"],
    )
    return _("The poll is open.")


@_moderation_action("poll_close")
def _poll_close(request, room):
    poll = get_object_or_404(Poll, public_id=request.POST.get("poll", ""), room=room)
    polling.poll_close(poll=poll, actor=request.user)
    return _("The poll is closed.")


@login_required
@require_POST
def moderate_action(request: HttpRequest, public_id: str, action: str) -> HttpResponse:
    _hearing, room = _moderated_room(request, public_id)
    func = MODERATION_ACTIONS.get(action)
    if func is None:
        raise Http404
    perform(request, lambda: func(request, room))
    return redirect("voting:moderate", public_id=public_id)


@login_required
def sensitive_words(request: HttpRequest) -> HttpResponse:
    if not selectors.may_edit_words(request.user):
        raise PermissionDenied
    if request.method == "POST":
        if "remove" in request.POST:
            perform(
                request,
                lambda: (
                    moderation.sensitive_word_remove(
                        word_id=int(request.POST.get("remove") or 0), actor=request.user
                    )
                    or _("Removed.")
                ),
            )
        else:
            for line in request.POST.get("words", "").splitlines()[:200]:
                if line.strip():
                    perform(
                        request,
                        lambda w=line: (
                            moderation.sensitive_word_add(word=w, actor=request.user) and None
                        ),
                    )
            messages.success(request, _("The list is updated."))
        return redirect("voting:sensitive_words")
    return render(request, "voting/words.html", {"words": SensitiveWord.objects.all()})


# --- bench panel ------------------------------------------------------------------------------------------


@login_required
def panel_volunteer(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        try:
            community_id = int(request.POST.get("community", ""))
        except ValueError:
            raise Http404 from None
        active = request.POST.get("active") == "1"
        perform(
            request,
            lambda: (
                bench_panel.volunteer_set(
                    user=request.user, community_id=community_id, active=active
                )
                and None
                or (
                    _("Thank you for volunteering.")
                    if active
                    else _("You are no longer a volunteer.")
                )
            ),
        )
        return redirect("voting:panel_volunteer")
    rows = selectors.volunteer_communities(request.user)
    return render(request, "voting/panel_volunteer.html", {"rows": rows})


@login_required
def case_panel(request: HttpRequest, tracking_number: str) -> HttpResponse:
    case, role = access_case_for_user(request.user, tracking_number)
    if role not in ("coordinator", "admin"):
        raise Http404
    panel = selectors.panel_for_case(case)
    form = PanelCommitForm(request.POST or None)
    if request.method == "POST":
        step = request.POST.get("step")
        if step == "commit" and form.is_valid():
            perform(
                request,
                lambda: (
                    bench_panel.panel_commit(
                        case=case, actor=request.user, size=form.cleaned_data["size"]
                    )
                    and _("The commitment is published. Draw when you are ready.")
                ),
            )
        elif step == "draw" and panel:
            perform(
                request,
                lambda: (
                    bench_panel.panel_draw(panel=panel, actor=request.user)
                    and _("The panel is drawn and its members notified.")
                ),
            )
        elif step == "summary" and panel:
            perform(
                request,
                lambda: (
                    bench_panel.panel_summary_publish(panel=panel, actor=request.user)
                    or _("The panel's summary is attached to the case.")
                ),
            )
        return redirect("voting:case_panel", tracking_number=tracking_number)
    context = {
        "case": case,
        "panel": panel,
        "form": form,
        "eligible_count": len(selectors.eligible_volunteers(case)) if panel is None else None,
        "summary": selectors.panel_summary(panel) if panel else None,
        "streamed": consents_all_granted(case, "livestream"),
    }
    return render(request, "voting/case_panel.html", context)


def panel_verify(request: HttpRequest, public_id: str) -> HttpResponse:
    """Public: the commitment, the frozen eligible list, and after the draw the seed and the
    panel, recomputed here; anyone may also paste a seed and a list to recompute."""
    panel = selectors.panel_by_public_id(public_id)
    check = None
    if panel.seed_revealed:
        check = {
            "commitment_ok": bench_panel.commitment_of(panel.seed) == panel.commitment,
            "draw_ok": bench_panel.draw(panel.seed, panel.eligible_codes, panel.size)
            == panel.drawn_codes,
        }
    recompute = None
    seed = request.GET.get("seed", "").strip()[:128]
    codes_text = request.GET.get("codes", "")[:20000]
    if seed and codes_text:
        codes = sorted(
            {c.strip().upper() for c in codes_text.replace(",", " ").split() if c.strip()}
        )
        try:
            size = max(1, min(int(request.GET.get("size", panel.size)), 100))
        except ValueError:
            size = panel.size
        recompute = {
            "commitment": bench_panel.commitment_of(seed),
            "drawn": bench_panel.draw(seed, codes, size),
            "keys": bench_panel.draw_keys(seed, codes)[:size],
        }
    return render(
        request,
        "voting/panel_verify.html",
        {
            "panel": panel,
            "check": check,
            "keys": bench_panel.draw_keys(panel.seed, panel.eligible_codes)
            if panel.seed_revealed
            else None,
            "recompute": recompute,
            "seed_param": seed,
            "codes_param": codes_text,
        },
    )


@login_required
def panel_evaluate(request: HttpRequest, public_id: str) -> HttpResponse:
    panel = selectors.panel_by_public_id(public_id)
    panelist = panel.panelists.filter(user=request.user).first()
    if panelist is None:
        raise Http404
    form = PanelEvaluationForm(request.POST or None)
    existing = getattr(panelist, "evaluation", None) if hasattr(panelist, "evaluation") else None
    if request.method == "POST" and form.is_valid():
        form_submit(
            form,
            lambda: bench_panel.panel_evaluate(
                panel=panel,
                user=request.user,
                verdict=form.cleaned_data["verdict"],
                reason=form.cleaned_data["reason"],
            ),
        )
        if not form.errors:
            messages.success(request, _("Thank you. Your evaluation is recorded."))
            return redirect("voting:panel_evaluate", public_id=public_id)
    hearing = panel.case.hearings.order_by("-starts_at").first()
    return render(
        request,
        "voting/panel_evaluate.html",
        {
            "panel": panel,
            "form": form,
            "existing": existing,
            "hearing": hearing,
            "position": panelist.position,
        },
        status=400 if request.method == "POST" else 200,
    )


# --- the parties' rating --------------------------------------------------------------------------------------


@login_required
def case_rate(request: HttpRequest, tracking_number: str) -> HttpResponse:
    case, _role = access_case_for_user(request.user, tracking_number)
    party = case.parties.filter(user=request.user).first()
    if party is None:
        raise Http404
    existing = getattr(party, "rating", None) if hasattr(party, "rating") else None
    form = RatingForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        form_submit(
            form,
            lambda: ratings.rating_give(
                case=case,
                user=request.user,
                score=form.cleaned_data["score"],
                comment=form.cleaned_data["comment"],
            ),
        )
        if not form.errors:
            messages.success(request, _("Thank you for rating the mediation."))
            return redirect("frontend:case_detail", tracking_number=tracking_number)
    return render(
        request,
        "voting/rate.html",
        {
            "case": case,
            "form": form,
            "existing": existing,
            "rateable": case.status in ratings.RATEABLE,
        },
        status=400 if request.method == "POST" else 200,
    )


# --- community consultations -----------------------------------------------------------------------------


@login_required
def consultation_list(request: HttpRequest) -> HttpResponse:
    items = selectors.consultations_for(request.user).order_by("-created_at")[:100]
    return render(
        request,
        "voting/consultation_list.html",
        {
            "items": items,
            "can_post": communities_for_coordinator(request.user).exists(),
            "now": timezone.now(),
        },
    )


@login_required
def consultation_new(request: HttpRequest) -> HttpResponse:
    communities = communities_for_coordinator(request.user)
    if not communities.exists():
        raise Http404
    form = ConsultationForm(request.POST or None, communities=communities)
    if request.method == "POST" and form.is_valid():
        hearing = None
        if form.cleaned_data["hearing"]:
            hearing = Hearing.objects.filter(public_id=form.cleaned_data["hearing"]).first()
        consultation = form_submit(
            form,
            lambda: consultations.consultation_post(
                actor=request.user,
                community_id=form.cleaned_data["community"].pk,
                title=form.cleaned_data["title"],
                body=form.cleaned_data["body"],
                options=form.options(),
                deadline=form.cleaned_data["deadline"],
                quorum=form.cleaned_data["quorum"],
                hearing=hearing,
            ),
        )
        if not form.errors:
            return redirect("voting:consultation_detail", public_id=consultation.public_id)
    return render(
        request,
        "voting/consultation_new.html",
        {"form": form},
        status=400 if request.method == "POST" else 200,
    )


def _consultation_for(request: HttpRequest, public_id: str) -> Consultation:
    consultation = get_object_or_404(
        Consultation.objects.select_related("community__street", "hearing"), public_id=public_id
    )
    if not selectors.consultations_for(request.user).filter(pk=consultation.pk).exists():
        raise Http404
    return consultation


@login_required
def consultation_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    consultation = _consultation_for(request, public_id)
    if consultation.state == Consultation.State.OPEN and consultation.deadline <= timezone.now():
        # The periodic task publishes due results; a visitor arriving first need not wait for it.
        consultation = consultations.consultation_publish(consultation=consultation, actor=None)
    my_vote = consultation.votes.filter(user=request.user).select_related("option").first()
    is_coord = (
        communities_for_coordinator(request.user).filter(pk=consultation.community_id).exists()
    )
    remarks = consultation.remarks.all()
    if not is_coord:
        remarks = remarks.filter(held=False) | consultation.remarks.filter(author=request.user)
    published = consultation.state == Consultation.State.PUBLISHED
    context = {
        "c": consultation,
        "options": consultation.options.all(),
        "my_vote": my_vote,
        "voting_open": not published and consultation.deadline > timezone.now(),
        "result": consultation.result if published else None,
        "is_coordinator": is_coord,
        "remarks": remarks.order_by("created_at")[:300],
        "live_tally": selectors.consultation_tally(consultation)
        if is_coord and not published
        else None,
    }
    return render(request, "voting/consultation_detail.html", context)


@login_required
@require_POST
def consultation_vote(request: HttpRequest, public_id: str) -> HttpResponse:
    consultation = _consultation_for(request, public_id)

    def vote() -> str:
        try:
            option = int(request.POST.get("option", ""))
        except ValueError:
            raise VotingError(_("Choose an option."), code="invalid") from None
        consultations.consultation_vote(
            consultation=consultation, user=request.user, option_position=option
        )
        return _("Your vote is counted.")

    perform(request, vote)
    return redirect("voting:consultation_detail", public_id=public_id)


@login_required
@require_POST
def consultation_remark(request: HttpRequest, public_id: str) -> HttpResponse:
    consultation = _consultation_for(request, public_id)

    def remark() -> str:
        item = consultations.consultation_remark(
            consultation=consultation, user=request.user, text=request.POST.get("text", "")
        )
        return (
            _("Your remark is waiting for review.")
            if item.held
            else _("Thank you for your remark.")
        )

    perform(request, remark)
    return redirect(reverse("voting:consultation_detail", args=[public_id]) + "#remarks")


@login_required
@require_POST
def consultation_publish(request: HttpRequest, public_id: str) -> HttpResponse:
    consultation = _consultation_for(request, public_id)
    perform(
        request,
        lambda: (
            consultations.consultation_publish(consultation=consultation, actor=request.user)
            and _("The result is published.")
        ),
    )
    return redirect("voting:consultation_detail", public_id=public_id)
