from django.urls import path

from . import livestream, views

app_name = "frontend"
urlpatterns = [
    path("", views.home, name="home"),
    path("cases/", views.my_cases, name="my_cases"),
    path("cases/new/", views.case_new, name="case_new"),
    path("cases/<str:tracking_number>/", views.case_detail, name="case_detail"),
    path("cases/<str:tracking_number>/consent/", views.case_consent, name="case_consent"),
    path("cases/<str:tracking_number>/decline/", views.case_decline, name="case_decline"),
    path(
        "cases/<str:tracking_number>/<slug:action>/",
        views.case_note_action,
        name="case_action",
    ),
    path("c/<str:token>/", views.invitation, name="invitation"),
    path("lookup/", views.lookup, name="lookup"),
    path("watch/<str:public_id>/", livestream.watch, name="watch"),
    path("watch/<str:public_id>/pause/", livestream.watch_pause, name="watch_pause"),
    path("watch/<str:public_id>/replay/", livestream.replay, name="replay"),
    path("hearings/<str:public_id>/start/", views.hearing_start, name="hearing_start"),
    path("board/", views.board, name="board"),
    path("board/deliveries/", views.deliveries, name="deliveries"),
    path("notifications/", views.notifications, name="notifications"),
    path("notifications/<int:pk>/read/", views.notification_read, name="notification_read"),
    path("me/community/", views.my_community, name="my_community"),
    path("board/residents/", views.memberships_pending, name="memberships_pending"),
    path("dev/sms/", views.sms_outbox, name="sms_outbox"),
]
