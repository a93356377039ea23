from django.urls import path

from . import views

app_name = "privacy"
urlpatterns = [
    path("cases/<str:tracking_number>/access/", views.case_access, name="case_access"),
    path("cases/<str:tracking_number>/holds/", views.hold_place, name="hold_place"),
    path("cases/<str:tracking_number>/holds/<int:pk>/lift/", views.hold_lift, name="hold_lift"),
    path("room/<str:public_id>/replay/", views.hearing_replay, name="hearing_replay"),
    path("privacy/access-log/", views.access_log, name="access_log"),
    path("my-data/", views.my_data, name="my_data"),
    path("my-data/export.zip", views.my_data_export, name="my_data_export"),
    path("my-data/erase/", views.my_data_erase, name="my_data_erase"),
    path("my-data/consents/<int:pk>.json", views.consent_receipt, name="consent_receipt"),
]
