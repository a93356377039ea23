from django.urls import path

from . import views

app_name = "voting"
urlpatterns = [
    path("live/<str:public_id>/", views.live_room, name="live_room"),
    path("live/<str:public_id>/events", views.live_events, name="live_events"),
    path("live/<str:public_id>/comment/", views.live_comment, name="live_comment"),
    path("live/<str:public_id>/vote/", views.live_vote, name="live_vote"),
    path("live/<str:public_id>/moderate/", views.moderate, name="moderate"),
    path(
        "live/<str:public_id>/moderate/<slug:action>/",
        views.moderate_action,
        name="moderate_action",
    ),
    path("moderation/words/", views.sensitive_words, name="sensitive_words"),
    path("panel/volunteer/", views.panel_volunteer, name="panel_volunteer"),
    path("panel/<str:public_id>/verify/", views.panel_verify, name="panel_verify"),
    path("panel/<str:public_id>/evaluate/", views.panel_evaluate, name="panel_evaluate"),
    path("cases/<str:tracking_number>/panel/", views.case_panel, name="case_panel"),
    path("cases/<str:tracking_number>/rate/", views.case_rate, name="case_rate"),
    path("consultations/", views.consultation_list, name="consultation_list"),
    path("consultations/new/", views.consultation_new, name="consultation_new"),
    path("consultations/<str:public_id>/", views.consultation_detail, name="consultation_detail"),
    path("consultations/<str:public_id>/vote/", views.consultation_vote, name="consultation_vote"),
    path(
        "consultations/<str:public_id>/remark/",
        views.consultation_remark,
        name="consultation_remark",
    ),
    path(
        "consultations/<str:public_id>/publish/",
        views.consultation_publish,
        name="consultation_publish",
    ),
]
