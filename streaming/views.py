"""HTTP side of the mediation room: the page, evidence upload and files, recordings."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from mediation_room.errors import CaseError

from . import selectors, services
from .ice import browser_ice_servers
from .models import Evidence, Recording
from .protocol import VERSION


@login_required
@require_GET
def room_page(request: HttpRequest, public_id: str) -> HttpResponse:
    try:
        access = selectors.room_access_for_user(request.user, public_id)
    except selectors.RoomRefused as exc:
        return render(
            request,
            "streaming/room_refused.html",
            {"message": exc.message, "code": exc.code},
            status=403 if exc.code != "closed" else 410,
        )
    hearing = selectors.hearing_for_room_files(request.user, public_id)
    evidence = [services.evidence_frame(e) for e in selectors.case_evidence(hearing)]
    context = {
        "hearing": hearing,
        "access": access,
        "room_config": {
            "ws": f"/ws/room/{public_id}/",
            "protocol": VERSION,
            "iceServers": browser_ice_servers(access.member_id),
            "evidenceUrl": f"/room/{public_id}/evidence/",
            "me": {"id": access.member_id, "role": access.role, "label": access.label},
            "evidence": evidence,
        },
        "recordings": selectors.hearing_recordings(hearing),
    }
    return render(request, "streaming/room.html", context)


@login_required
@require_POST
def evidence_upload_view(request: HttpRequest, public_id: str) -> JsonResponse:
    # refuse an oversized body before Django spools it to disk
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
    except CaseError as exc:
        return JsonResponse({"error": exc.code, "message": exc.message}, status=403)
    return JsonResponse(services.evidence_frame(evidence), status=201)


def _private_file(path: str, content_type: str, *, download_name: str) -> FileResponse:
    try:
        handle = open(path, "rb")  # noqa: SIM115 (FileResponse closes it)
    except FileNotFoundError as exc:
        raise Http404 from exc
    response = FileResponse(handle, content_type=content_type, filename=download_name)
    response["Content-Disposition"] = response["Content-Disposition"].replace(
        "attachment", "inline"
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_GET
def evidence_file(request: HttpRequest, public_id: str, evidence_id: str) -> FileResponse:
    hearing = selectors.hearing_for_room_files(request.user, public_id)
    evidence = get_object_or_404(Evidence, public_id=evidence_id, case_id=hearing.case_id)
    extension = evidence.file.name.rsplit(".", 1)[-1]
    return _private_file(
        evidence.file.path, evidence.content_type, download_name=f"evidence.{extension}"
    )


@login_required
@require_GET
def recording_file(request: HttpRequest, public_id: str, recording_id: str) -> FileResponse:
    hearing = selectors.hearing_for_room_files(request.user, public_id)
    recording = get_object_or_404(Recording, public_id=recording_id, hearing=hearing)
    return _private_file(recording.file.path, "video/mp4", download_name="recording.mp4")
