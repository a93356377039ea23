import pytest
from django.db import transaction

from .world import build_world


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, media_dir):
    """Built once per module inside a transaction that is rolled back at the end; every test
    (function-scoped `db`) runs in a savepoint of it."""
    from django.test import override_settings

    with (
        override_settings(MEDIA_ROOT=media_dir, BROADCAST_HLS_ROOT=media_dir / "hls"),
        django_db_blocker.unblock(),
        transaction.atomic(),
    ):
        yield build_world(media_dir)
        transaction.set_rollback(True)


@pytest.fixture
def world_settings(settings, media_dir):
    settings.MEDIA_ROOT = media_dir
    settings.BROADCAST_HLS_ROOT = media_dir / "hls"
    return settings


@pytest.fixture
def ws_world(transactional_db, settings, tmp_path):
    """Committed (the consumers read through other threads' connections), case A in session, the
    media node in this process and a channel-layer prefix of this test's own."""
    import uuid

    from channels.layers import channel_layers

    media = tmp_path / "media"
    settings.MEDIA_ROOT = media
    settings.BROADCAST_HLS_ROOT = media / "hls"
    settings.MEDIA_NODE_INPROCESS = True
    settings.ICE_SERVERS = []
    if settings.REDIS_URL:
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": f"sec-{uuid.uuid4().hex[:8]}"},
            }
        }
    channel_layers.backends.clear()
    yield build_world(media, agreed=False)
    channel_layers.backends.clear()
