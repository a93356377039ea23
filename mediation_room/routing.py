from django.urls import re_path

from .agreements.consumers import AgreementConsumer

websocket_urlpatterns: list = [
    re_path(
        r"^ws/case/(?P<tracking_number>[A-Za-z0-9-]{1,20})/agreement/$",
        AgreementConsumer.as_asgi(),
    ),
]
