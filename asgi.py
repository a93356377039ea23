"""ASGI entry point: HTTP through Django, WebSockets through Channels (authenticated, origin-checked)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudbench.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from cloudbench.routing import websocket_urlpatterns  # noqa: E402
from streaming.node_worker import MEDIA_NODE_CHANNEL, MediaNodeConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
        # the media node process: python manage.py medianode
        "channel": ChannelNameRouter({MEDIA_NODE_CHANNEL: MediaNodeConsumer.as_asgi()}),
    }
)
