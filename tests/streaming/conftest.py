import uuid

import pytest


@pytest.fixture
def room_settings(settings, tmp_path):
    """The media node in this process, a channel layer of the test's own, files under tmp_path."""
    settings.MEDIA_NODE_INPROCESS = True
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.ICE_SERVERS = []
    if settings.REDIS_URL:
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": f"test-{uuid.uuid4().hex[:8]}"},
            }
        }
    return settings
