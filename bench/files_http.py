"""The ASGI application that bench/files.py measures over HTTP, served by `cloudbench.serve` (the
project's daphne) with the project's settings and middleware.

For each of "plain" and "sealed" it keeps an upload (in memory, as the evidence route does, then
stored with its SHA-256 known) and serves a stored file whole or by a byte range. Sealed is what
the routes do (`privacy.storage.SealedStorage`, `privacy.serve.sealed_response` with the stored
SHA-256 checked); plain is the same without encryption: `FileSystemStorage` with the upload hashed
in a pass of its own, and the file streamed in 64 KiB blocks through the same response class, so
that the two differ by the encryption alone. The route checks (session, case, access log) are left
out: they cost both the same.

Files live under $BENCH_FILES_ROOT/plain and $BENCH_FILES_ROOT/sealed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudbench.settings")
application = get_asgi_application()

from django.conf import settings  # noqa: E402
from django.core.files.storage import FileSystemStorage  # noqa: E402
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402

from privacy.serve import RANGE, ThreadedStreamingResponse, sealed_response  # noqa: E402
from privacy.storage import SealedStorage  # noqa: E402
from privacy.uploads import seal_uploads  # noqa: E402

ROOT = Path(os.environ.get("BENCH_FILES_ROOT", "/nonexistent"))
STORES = {
    "plain": FileSystemStorage(location=ROOT / "plain"),
    "sealed": SealedStorage(location=ROOT / "sealed"),
}
BLOCK = 64 * 1024


def _blocks(handle, length: int):
    with handle:
        while length > 0:
            block = handle.read(min(BLOCK, length))
            if not block:
                return
            length -= len(block)
            yield block


def plain_response(request: HttpRequest, file: Path) -> HttpResponse:
    """A file in clear, whole or one byte range, with the headers `sealed_response` sends."""
    try:
        handle = open(file, "rb")  # noqa: SIM115 (closed by the generator)
    except FileNotFoundError as exc:
        raise Http404 from exc
    size = os.fstat(handle.fileno()).st_size
    start, end, status = 0, size, 200
    match = RANGE.match(request.META.get("HTTP_RANGE", "").strip())
    if match and match[1]:
        start, end, status = int(match[1]), min(size, int(match[2] or size - 1) + 1), 206
        handle.seek(start)
    response = ThreadedStreamingResponse(
        _blocks(handle, end - start), status=status, content_type="video/mp4"
    )
    response["Content-Length"] = str(end - start)
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    response["Accept-Ranges"] = "bytes"
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response


@csrf_exempt
def keep(request: HttpRequest, kind: str) -> HttpResponse:
    if kind not in STORES or request.method != "POST":
        raise Http404
    store = STORES[kind]
    if kind == "sealed":  # as the evidence route takes it
        seal_uploads(request, storage=store)
    # in clear, Django's own handlers: in memory (FILE_UPLOAD_MAX_MEMORY_SIZE is above 10 MB)
    upload = request.FILES["file"]
    if kind == "sealed":
        name = store.save("evidence.pdf", upload)
        sha256 = store.sha256(name)  # hashed as it was sealed
    else:
        digest = hashlib.sha256()
        for chunk in upload.chunks():
            digest.update(chunk)
        sha256 = digest.hexdigest()
        name = store.save("evidence.pdf", upload)
    store.delete(name)
    return JsonResponse({"sha256": sha256})


def serve(request: HttpRequest, kind: str, name: str) -> HttpResponse:
    if kind == "sealed":
        return sealed_response(
            request,
            ROOT / kind / name,
            content_type="video/mp4",
            filename=name,
            sha256=request.GET.get("sha256"),
            ranges=True,
        )
    if kind == "plain":
        return plain_response(request, ROOT / kind / name)
    raise Http404


urlpatterns = [
    path("<str:kind>/keep/", keep),
    path("<str:kind>/files/<str:name>", serve),
]
settings.ROOT_URLCONF = __name__  # before the first request: this module's routes only
