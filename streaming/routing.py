from django.urls import path

from streaming.broadcast.consumers import WatchConsumer

from .consumers import RoomConsumer

websocket_urlpatterns: list = [
    path("ws/room/<str:public_id>/", RoomConsumer.as_asgi()),
    path("ws/watch/<str:public_id>/", WatchConsumer.as_asgi()),
]
