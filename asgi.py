"""ASGI entry point: HTTP through Django, WebSockets through Channels (authenticated, origin-checked)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudbench.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from accounts.middleware import StaffTotpRequiredASGIMiddleware, auth_middleware_stack  # noqa: E402
from cloudbench.client_address import ProxyHeadersMiddleware  # noqa: E402
from cloudbench.logs import RequestIdASGIMiddleware  # noqa: E402
from cloudbench.routing import websocket_urlpatterns  # noqa: E402
from streaming.embedded import media_node_application  # noqa: E402
from streaming.plane import node_channel  # noqa: E402

application = ProtocolTypeRouter(
    {
        # The client's address and scheme, from the forwarded headers of a trusted proxy only.
        "http": ProxyHeadersMiddleware(django_asgi_app),
        "websocket": ProxyHeadersMiddleware(
            RequestIdASGIMiddleware(
                AllowedHostsOriginValidator(
                    auth_middleware_stack(
                        StaffTotpRequiredASGIMiddleware(URLRouter(websocket_urlpatterns))
                    )
                )
            )
        ),
        # the media node (python manage.py medianode runs its own worker), imported on first message
        "channel": ChannelNameRouter({node_channel(): media_node_application}),
    }
)
