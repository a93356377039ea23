"""Settings for the daphne server that bench/comments.py starts: the project's settings, plus
Channels' default Redis layer for the baseline (BENCH_MODE=plain; bench/plain_broadcast.py sends
one group_send per comment) and rate limits that let 20 posters say 50 comments a second."""

import os

from cloudbench.settings import *  # noqa: F403
from cloudbench.settings import REDIS_URL

if os.environ.get("BENCH_MODE") == "plain":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": "benchplain"},
        }
    }

VOTING_USER_COMMENT_LIMIT = (100_000, 10)
VOTING_CONNECTION_MESSAGE_LIMIT = (100_000, 10)
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
