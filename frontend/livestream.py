"""Pages of the livestream: what is on in the resident's community, and the watch page."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.models import Community, Membership
from cloudbench.actions import perform_and_redirect
from mediation_room.models import Hearing
from mediation_room.selectors import access_hearing_for_user
from streaming.broadcast.selectors import (
    CATEGORY_BANNER,
    broadcast_facts,
    public_hearings,
    replay_for,
    replay_playlist_name,
    watchable_hearings,
)
from streaming.broadcast.services import broadcast_pause
from streaming.plane import browser_ice_servers, hls_url, transport_policy
from voting.selectors import replay_timeline
from voting.views import live_panel_context

HOME_LIMIT = 12


def home_context(request: HttpRequest) -> dict:
    """Public sessions live now and coming up, in the resident's communities (or the one picked,
    or everywhere for a visitor)."""
    communities = Community.objects.order_by("name")
    chosen = request.GET.get("community", "")
    community_ids: list[int] | None = None
    if chosen.isdigit():
        community_ids = [int(chosen)]
    elif request.user.is_authenticated:
        mine = list(
            Membership.objects.filter(user=request.user, verified_at__isnull=False).values_list(
                "community_id", flat=True
            )
        )
        community_ids = mine or None
    recent = timezone.now() - timedelta(hours=3)
    hearings = watchable_hearings(community_ids=community_ids).filter(starts_at__gte=recent)
    shown = public_hearings(hearings[: HOME_LIMIT * 3])[:HOME_LIMIT]
    rows = [
        {
            "hearing": h,
            "category": CATEGORY_BANNER.get(h.case.category, ""),
            "community": h.case.community.name,
            "live": h.state == Hearing.State.LIVE,
        }
        for h in shown
    ]
    return {
        "live_rows": [r for r in rows if r["live"]],
        "upcoming_rows": [r for r in rows if not r["live"]],
        "communities": communities,
        "chosen_community": chosen,
    }


def watch(request: HttpRequest, public_id: str) -> HttpResponse:
    facts = broadcast_facts(public_id)
    # A private session is not found, for anyone: the page does not even say it exists.
    if facts is None or not facts.public:
        raise Http404
    context = {
        "facts": facts,
        "public_id": public_id,
        "hls_url": hls_url(public_id),
        # TURN credentials for anonymous viewers too: a resident behind a firewall watches
        # through the relay (the ref names no one).
        "ice_servers": json.dumps(browser_ice_servers(f"viewer-{secrets.token_hex(6)}")),
        "ice_policy": transport_policy(),
        "force_hls": request.GET.get("hls") == "1",
        "replay": replay_for(public_id) if facts.finished else None,
        # the residents' comments and polls beside the picture
        **live_panel_context(request, public_id),
    }
    return render(request, "frontend/watch.html", context)


def replay(request: HttpRequest, public_id: str) -> HttpResponse:
    """A finished public hearing's replay, with what the audience said at the time. Not found
    unless every party let it be streamed and recorded (a withdrawn consent removes it)."""
    found = replay_for(public_id)
    if found is None:
        raise Http404
    hearing = Hearing.objects.get(public_id=public_id)
    context = {
        "replay": found,
        "hls_url": hls_url(public_id, replay_playlist_name(public_id)),
        "timeline": [
            {**item, "clock": f"{int(item['t']) // 60}:{int(item['t']) % 60:02d}"}
            for item in replay_timeline(hearing, started_at=found.started_at)
        ],
    }
    return render(request, "frontend/replay.html", context)


@login_required
@require_POST
def watch_pause(request: HttpRequest, public_id: str) -> HttpResponse:
    hearing, _role = access_hearing_for_user(request.user, public_id)

    def pause() -> None:
        broadcast_pause(
            hearing=hearing, actor=request.user, paused=request.POST.get("paused") == "1"
        )

    return perform_and_redirect(
        request,
        pause,
        "frontend:case_detail",
        tracking_number=hearing.case.tracking_number,
    )
