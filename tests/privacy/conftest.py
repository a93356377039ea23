import base64
import secrets

import pytest


def new_master_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def media(settings, tmp_path):
    """Files under tmp_path, a master key of the test's own."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.BROADCAST_HLS_ROOT = tmp_path / "media" / "hls"
    settings.FILE_MASTER_KEY = new_master_key()
    settings.FILE_MASTER_KEYS_RETIRED = []
    return settings
