import contextlib
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


@contextlib.contextmanager
def redis_pool_registry(settings, name: str):
    """The pool's registry on real Redis, under a channel prefix of its own; its keys removed
    afterwards."""
    from streaming import pool

    if not settings.REDIS_URL:
        pytest.skip("no REDIS_URL")
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": f"{name}-{uuid.uuid4().hex[:8]}"},
        }
    }
    reg = pool.registry()
    assert isinstance(reg, pool.RedisRegistry)
    try:
        yield reg
    finally:
        keys = reg.client.keys(f"{reg.prefix}:*")
        if keys:
            reg.client.delete(*keys)
