from django.urls import path

from streaming.broadcast.consumers import WatchConsumer

websocket_urlpatterns: list = [
    path("ws/watch/<str:public_id>/", WatchConsumer.as_asgi()),
]
