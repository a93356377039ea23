from django.conf import settings
from django.urls import path

from streaming.broadcast import views as broadcast_views

from . import views

app_name = "streaming"
urlpatterns: list = [
    path("room/<str:public_id>/", views.room_page, name="room"),
    path("room/<str:public_id>/check/", views.room_check, name="room_check"),
    path("room/<str:public_id>/evidence/", views.evidence_upload_view, name="evidence_upload"),
    path(
        "room/<str:public_id>/evidence/<uuid:evidence_id>/",
        views.evidence_file,
        name="evidence_file",
    ),
    path(
        "room/<str:public_id>/recordings/<uuid:recording_id>/",
        views.recording_file,
        name="recording_file",
    ),
    # The same URLs nginx serves from BROADCAST_HLS_ROOT in production (docker/nginx.conf).
    path(
        settings.BROADCAST_HLS_URL.lstrip("/") + "<str:public_id>/<str:name>",
        broadcast_views.hls_file,
        name="hls_file",
    ),
]
