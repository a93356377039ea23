from django.urls import re_path

from .consumers import LiveRoomConsumer

websocket_urlpatterns = [
    re_path(r"^ws/live/(?P<public_id>[A-Za-z0-9_-]{1,40})/$", LiveRoomConsumer.as_asgi()),
]
