from django.urls import path

from .agreements import views as agreement_views

app_name = "mediation_room"
urlpatterns: list = [
    path(
        "cases/<str:tracking_number>/agreement/",
        agreement_views.agreement_page,
        name="agreement",
    ),
    path(
        "cases/<str:tracking_number>/agreement/start/",
        agreement_views.agreement_start,
        name="agreement_start",
    ),
    path(
        "cases/<str:tracking_number>/agreement/edit/",
        agreement_views.agreement_edit,
        name="agreement_edit",
    ),
    path(
        "cases/<str:tracking_number>/agreement/versions/<int:number>/",
        agreement_views.agreement_version,
        name="agreement_version",
    ),
    path(
        "cases/<str:tracking_number>/agreement/comment/",
        agreement_views.agreement_comment,
        name="agreement_comment",
    ),
    path(
        "cases/<str:tracking_number>/agreement/submit/",
        agreement_views.agreement_submit,
        name="agreement_submit",
    ),
    path(
        "cases/<str:tracking_number>/agreement/sign/",
        agreement_views.agreement_sign,
        name="agreement_sign",
    ),
    path(
        "cases/<str:tracking_number>/agreement/refuse/",
        agreement_views.agreement_refuse,
        name="agreement_refuse",
    ),
    path(
        "cases/<str:tracking_number>/agreement/pdf/",
        agreement_views.agreement_pdf,
        name="agreement_pdf",
    ),
    path(
        "cases/<str:tracking_number>/agreement/judicial-confirmation.zip",
        agreement_views.agreement_bundle,
        name="agreement_bundle",
    ),
    path(
        "cases/<str:tracking_number>/agreement/follow-up/<int:pk>/",
        agreement_views.follow_up_page,
        name="follow_up",
    ),
    path("verify/", agreement_views.verify, name="verify"),
    path("verify/<str:code>/", agreement_views.verify, name="verify_code"),
]
