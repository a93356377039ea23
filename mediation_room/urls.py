from django.urls import path

from . import views_supervision as views

app_name = "mediation_room"
urlpatterns = [
    path("supervision/", views.supervision_list, name="supervision"),
    path("supervision/notices/", views.notices_mine, name="notices_mine"),
    path("supervision/notices/<int:pk>/", views.notice_detail, name="notice_detail"),
    path("supervision/cases/<str:tracking_number>/notice/", views.notice_new, name="notice_new"),
    path(
        "hearings/<str:public_id>/reschedule/",
        views.hearing_reschedule_view,
        name="hearing_reschedule",
    ),
    path("stats/", views.stats_dashboard, name="stats"),
    path("stats/export.csv", views.stats_export_csv, name="stats_csv"),
    path("stats/export.xlsx", views.stats_export_xlsx, name="stats_xlsx"),
    path("stats/public/", views.stats_public, name="stats_public"),
]
