import base64
import secrets

import pytest

# Stands in a test file's plaintext: a stored file must never contain it.
MARKER = b"MARKER-7f3a9c-unpaid-wages-12000"


def new_master_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def pdf_with_marker(size: int) -> bytes:
    """A PDF's first bytes (what evidence uploads are sniffed by), the marker, random bytes."""
    body = b"%PDF-1.4\n" + MARKER + b"\n"
    return body + secrets.token_bytes(size - len(body))


@pytest.fixture
def media(settings, tmp_path):
    """Files under tmp_path, a master key of the test's own."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.BROADCAST_HLS_ROOT = tmp_path / "media" / "hls"
    settings.FILE_MASTER_KEY = new_master_key()
    settings.FILE_MASTER_KEYS_RETIRED = []
    return settings
