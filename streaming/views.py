"""HTTP side of the mediation room: the page, evidence upload and files, recordings."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from cloudbench.errors import DomainError
from privacy.access import log_access
from privacy.models import AccessKind
from privacy.serve import sealed_response
from privacy.uploads import seal_uploads

from . import selectors, services
from .models import Evidence, Recording
from .plane import browser_ice_servers, transport_policy
from .protocol import VERSION


def _refused(request: HttpRequest, exc: selectors.RoomRefused) -> HttpResponse:
    return render(
        request,
        "streaming/room_refused.html",
        {"message": exc.message, "code": exc.code},
        status=403 if exc.code != "closed" else 410,
    )


@login_required
@require_GET
def room_check(request: HttpRequest, public_id: str) -> HttpResponse:
    """Before joining: camera, microphone, speaker and connection, and what to do when the
    browser refuses the camera or microphone. The room link leads here first."""
    try:
        access = selectors.room_access_for_user(request.user, public_id)
    except selectors.RoomRefused as exc:
        return _refused(request, exc)
    hearing = selectors.hearing_for_room_files(request.user, public_id)
    context = {
        "hearing": hearing,
        "access": access,
        "check_config": {
            # the room's socket as a connection test: pings only, never a member of the room
            "ws": f"/ws/room/{public_id}/?probe=1",
            "protocol": VERSION,
            "room": f"/room/{public_id}/",
            "hearing": public_id,
        },
    }
    return render(request, "streaming/check.html", context)


@login_required
@require_GET
def room_page(request: HttpRequest, public_id: str) -> HttpResponse:
    try:
        access = selectors.room_access_for_user(request.user, public_id)
    except selectors.RoomRefused as exc:
        return _refused(request, exc)
    hearing = selectors.hearing_for_room_files(request.user, public_id)
    evidence = [services.evidence_frame(e) for e in selectors.case_evidence(hearing)]
    context = {
        "hearing": hearing,
        "access": access,
        "room_config": {
            "ws": f"/ws/room/{public_id}/",
            "protocol": VERSION,
            "iceServers": browser_ice_servers(access.member_id),
            "iceTransportPolicy": transport_policy(),
            "evidenceUrl": f"/room/{public_id}/evidence/",
            "me": {"id": access.member_id, "role": access.role, "label": access.label},
            "evidence": evidence,
        },
        "recordings": selectors.hearing_recordings(hearing),
    }
    return render(request, "streaming/room.html", context)


@csrf_exempt  # checked by _evidence_upload, once the upload handlers are set
@login_required
@require_POST
def evidence_upload_view(request: HttpRequest, public_id: str) -> JsonResponse:
    # refuse an oversized body before Django reads it; what is accepted is sealed as it is read,
    # never held whole or spooled to a temporary file in clear
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > services.EVIDENCE_MAX_BYTES + 64 * 1024:
        return JsonResponse(
            {
                "error": "too_large",
                "message": _("The file is larger than %(mb)d MB.")
                % {"mb": services.EVIDENCE_MAX_BYTES // (1024 * 1024)},
            },
            status=413,
        )
    seal_uploads(request)
    return _evidence_upload(request, public_id)


@csrf_protect
def _evidence_upload(request: HttpRequest, public_id: str) -> JsonResponse:
    upload = request.FILES.get("file")
    if upload is None:
        return JsonResponse(
            {"error": "no_file", "message": _("Choose a file to show.")}, status=400
        )
    try:
        evidence = services.evidence_upload(
            public_id=public_id,
            actor=request.user,
            upload=upload,
            title=request.POST.get("title", ""),
        )
    except ValidationError as exc:
        return JsonResponse(
            {"error": exc.code or "invalid", "message": " ".join(exc.messages)}, status=400
        )
    except DomainError as exc:
        return JsonResponse({"error": exc.code, "message": exc.message}, status=403)
    return JsonResponse(services.evidence_frame(evidence), status=201)


@login_required
@require_GET
def evidence_file(request: HttpRequest, public_id: str, evidence_id: str) -> HttpResponse:
    hearing = selectors.hearing_for_room_files(request.user, public_id)
    evidence = get_object_or_404(Evidence, public_id=evidence_id, case_id=hearing.case_id)
    extension = evidence.file.name.rsplit(".", 1)[-1]
    log_access(request, case=hearing.case, kind=AccessKind.EVIDENCE, ref=evidence.public_id)
    return sealed_response(
        request,
        evidence.file.path,
        content_type=evidence.content_type,
        filename=f"evidence.{extension}",
        sha256=evidence.sha256,
    )


@login_required
@require_GET
def recording_file(request: HttpRequest, public_id: str, recording_id: str) -> HttpResponse:
    hearing = selectors.hearing_for_room_files(request.user, public_id)
    recording = get_object_or_404(Recording, public_id=recording_id, hearing=hearing)
    # a range request is the same viewing continued: log the first request of it only
    if request.headers.get("Range", "bytes=0-").startswith("bytes=0-"):
        log_access(request, case=hearing.case, kind=AccessKind.RECORDING, ref=recording.public_id)
    return sealed_response(
        request,
        recording.file.path,
        content_type="video/mp4",
        filename="recording.mp4",
        sha256=recording.sha256,
        ranges=True,
    )
