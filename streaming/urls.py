from django.urls import path

from . import views

app_name = "streaming"
urlpatterns: list = [
    path("room/<str:public_id>/", views.room_page, name="room"),
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
]
