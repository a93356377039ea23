from django.urls import path

from .consumers import RoomConsumer

websocket_urlpatterns: list = [
    path("ws/room/<str:public_id>/", RoomConsumer.as_asgi()),
]
