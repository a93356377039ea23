"""The bench panel (板凳评议团): volunteers, the committed random draw, evaluations and their summary."""

from __future__ import annotations

import hashlib
import secrets

from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Membership, User
from accounts.services import notify_person
from cloudbench.errors import NotPermitted
from mediation_room.models import Case
from mediation_room.selectors import case_role_for_user
from mediation_room.services import case_event_record, consents_all_granted

from ..errors import VotingError
from ..models import (
    Panel,
    PanelEvaluation,
    Panelist,
    PanelVolunteer,
    Verdict,
)
from ..selectors import eligible_volunteers, panel_summary

PANEL_MIN, PANEL_MAX = 7, 15


def draw_keys(seed: str, codes: list[str]) -> list[tuple[str, str]]:
    """The published rule: each eligible code's key is SHA-256(seed + ":" + code) in hex; the panel
    is the `size` codes with the smallest keys. Anyone can recompute it from the seed and list."""
    return sorted(
        (hashlib.sha256(f"{seed}:{code}".encode()).hexdigest(), code) for code in sorted(codes)
    )


def draw(seed: str, codes: list[str], size: int) -> list[str]:
    return [code for _key, code in draw_keys(seed, codes)[:size]]


def commitment_of(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


@transaction.atomic
def volunteer_set(*, user: User, community_id: int, active: bool) -> PanelVolunteer | None:
    """A verified resident offers (or stops offering) to sit on their community's panels."""
    membership = Membership.objects.filter(
        user=user, community_id=community_id, verified_at__isnull=False
    ).first()
    if membership is None:
        raise NotPermitted(
            _("Only residents verified as members of this community may volunteer."),
            code="not_member",
        )
    volunteer = PanelVolunteer.objects.filter(user=user, community_id=community_id).first()
    if volunteer is None:
        if not active:
            return None
        return PanelVolunteer.objects.create(user=user, community_id=community_id)
    volunteer.active = active
    volunteer.save(update_fields=["active", "updated_at"])
    return volunteer


def _require_case_coordinator(case: Case, actor: User) -> None:
    if case_role_for_user(case, actor) not in ("coordinator", "admin"):
        raise NotPermitted(_("Only the community's coordinators may do this."))


@transaction.atomic
def panel_commit(*, case: Case, actor: User, size: int = 9) -> Panel:
    """Freeze the eligible list and publish SHA-256 of a fresh secret seed (before the draw).

    Refused unless every party agreed to the livestream, or with fewer eligible volunteers than
    the panel size."""
    case = Case.objects.select_for_update().get(pk=case.pk)
    _require_case_coordinator(case, actor)
    if Panel.objects.filter(case=case).exists():
        raise VotingError(_("This case already has a panel."), code="exists")
    if not consents_all_granted(case, "livestream"):
        raise VotingError(
            _("A bench panel is drawn only for sessions every party agreed to stream."),
            code="not_streamed",
        )
    if not PANEL_MIN <= size <= PANEL_MAX:
        raise VotingError(
            _("A panel has %(lo)d to %(hi)d members.") % {"lo": PANEL_MIN, "hi": PANEL_MAX},
            code="invalid",
        )
    eligible = eligible_volunteers(case)
    if len(eligible) < size:
        raise VotingError(
            _(
                "Only %(n)d eligible volunteers in %(community)s, fewer than the %(size)d "
                "needed. Invite more residents to volunteer, or draw a smaller panel (at least %(lo)d)."
            )
            % {"n": len(eligible), "community": case.community, "size": size, "lo": PANEL_MIN},
            code="too_few",
        )
    seed = secrets.token_hex(32)
    panel = Panel.objects.create(
        case=case,
        size=size,
        seed=seed,
        commitment=commitment_of(seed),
        eligible_codes=sorted(v.code for v in eligible),
        committed_at=timezone.now(),
    )
    case_event_record(
        case=case,
        actor=actor,
        kind="panel_committed",
        note=_("Bench panel draw announced; commitment %(c)s") % {"c": panel.commitment[:16]},
        data={"panel": panel.public_id, "commitment": panel.commitment, "size": size},
        public=True,
    )
    return panel


@transaction.atomic
def panel_draw(*, panel: Panel, actor: User) -> Panel:
    """Draw by the published rule from the frozen list, reveal the seed, notify the panelists."""
    panel = Panel.objects.select_for_update().select_related("case").get(pk=panel.pk)
    _require_case_coordinator(panel.case, actor)
    if panel.state != Panel.State.COMMITTED:
        raise VotingError(_("This panel has already been drawn."), code="drawn")
    codes = draw(panel.seed, panel.eligible_codes, panel.size)
    volunteers = {v.code: v for v in PanelVolunteer.objects.filter(code__in=codes)}
    Panelist.objects.bulk_create(
        Panelist(
            panel=panel,
            volunteer=volunteers[code],
            user_id=volunteers[code].user_id,
            position=i + 1,
        )
        for i, code in enumerate(codes)
    )
    panel.drawn_codes = codes
    panel.seed_revealed = True
    panel.state = Panel.State.DRAWN
    panel.drawn_at = timezone.now()
    panel.save(update_fields=["drawn_codes", "seed_revealed", "state", "drawn_at", "updated_at"])
    case_event_record(
        case=panel.case,
        actor=actor,
        kind="panel_drawn",
        note=_("Bench panel of %(n)d drawn; seed revealed") % {"n": len(codes)},
        data={"panel": panel.public_id, "seed": panel.seed, "drawn": codes},
        public=True,
    )
    link = reverse("voting:panel_evaluate", args=[panel.public_id])
    for volunteer in volunteers.values():
        notify_person(
            kind="panel_drawn",
            body=_(
                "You have been drawn for the bench panel of case %(tn)s. "
                "Please watch the session and give your evaluation."
            )
            % {"tn": panel.case.tracking_number},
            dedupe_key=f"panel:{panel.pk}:{volunteer.user_id}",
            user=volunteer.user,
            link=link,
            case_ref=panel.case.tracking_number,
        )
    return panel


@transaction.atomic
def panel_evaluate(*, panel: Panel, user: User, verdict: str, reason: str) -> PanelEvaluation:
    """A drawn panelist's reasoned verdict, once; when the last one is in, the summary is
    attached to the case."""
    panelist = Panelist.objects.filter(panel=panel, user=user).first()
    if panelist is None:
        raise NotPermitted(_("Only the drawn panelists evaluate this case."))
    if verdict not in Verdict.values:
        raise VotingError(_("Choose fair, basically fair or unfair."), code="invalid")
    reason = (reason or "").strip()
    if not 4 <= len(reason) <= 300:
        raise VotingError(
            _("Give your reason in a sentence (4 to 300 characters)."), code="invalid"
        )
    try:
        with transaction.atomic():
            evaluation = PanelEvaluation.objects.create(
                panelist=panelist, verdict=verdict, reason=reason
            )
    except IntegrityError:
        raise VotingError(_("You have already given your evaluation."), code="already") from None
    panel = Panel.objects.select_for_update().select_related("case").get(pk=panel.pk)
    done = PanelEvaluation.objects.filter(panelist__panel=panel).count()
    if done == panel.panelists.count() and panel.state == Panel.State.DRAWN:
        _panel_summary_record(panel, actor=None)
    return evaluation


def _panel_summary_record(panel: Panel, *, actor: User | None) -> None:
    summary = panel_summary(panel)
    panel.state = Panel.State.SUMMARISED
    panel.save(update_fields=["state", "updated_at"])
    c = summary["counts"]
    case_event_record(
        case=panel.case,
        actor=actor,
        kind="panel_summary",
        note=_("Bench panel: %(f)d fair, %(m)d basically fair, %(u)d unfair")
        % {"f": c["fair"], "m": c["mostly_fair"], "u": c["unfair"]},
        data=summary,
        public=True,
    )


@transaction.atomic
def panel_summary_publish(*, panel: Panel, actor: User) -> None:
    """A coordinator closes the panel with the evaluations given so far."""
    panel = Panel.objects.select_for_update().select_related("case").get(pk=panel.pk)
    _require_case_coordinator(panel.case, actor)
    if panel.state != Panel.State.DRAWN:
        raise VotingError(_("The panel is not drawn, or its summary is already out."), code="state")
    _panel_summary_record(panel, actor=actor)
