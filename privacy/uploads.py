"""Uploads of personal files stay in memory until they are sealed.

Django spools an upload larger than FILE_UPLOAD_MAX_MEMORY_SIZE to a temporary file, in clear.
A view that takes a personal file bounds the request body first (it refuses an oversized one by
its Content-Length) and then installs this handler, so the bytes go from the socket to memory to
the sealed file and nowhere else."""

from __future__ import annotations

from django.core.files.uploadhandler import MemoryFileUploadHandler


class InMemoryUploadHandler(MemoryFileUploadHandler):
    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        # The view has already refused a body larger than it accepts; keep this one in memory.
        self.activated = True


def keep_uploads_in_memory(request) -> None:
    """Call before the view reads ``request.POST`` or ``request.FILES`` (so: csrf_exempt outside,
    csrf_protect inside)."""
    request.upload_handlers = [InMemoryUploadHandler(request)]
