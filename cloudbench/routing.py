"""WebSocket routes of every app, gathered in one list for asgi.py."""

from mediation_room.routing import websocket_urlpatterns as mediation_room_ws
from streaming.routing import websocket_urlpatterns as streaming_ws
from voting.routing import websocket_urlpatterns as voting_ws

websocket_urlpatterns = [*mediation_room_ws, *streaming_ws, *voting_ws]
