from django.urls import path

from . import views

app_name = "experts"
urlpatterns = [
    path("experts/", views.directory, name="directory"),
    path("experts/me/", views.dashboard, name="dashboard"),
    path("experts/import/", views.import_experts, name="import"),
    path("experts/invitations/<int:pk>/accept/", views.invitation_accept, name="invitation_accept"),
    path(
        "experts/invitations/<int:pk>/decline/",
        views.invitation_decline,
        name="invitation_decline",
    ),
    path("experts/me/slots/", views.slot_add, name="slot_add"),
    path("experts/me/slots/<int:pk>/delete/", views.slot_remove, name="slot_remove"),
    path("experts/me/dates/", views.exception_add, name="exception_add"),
    path("experts/me/dates/<int:pk>/delete/", views.exception_remove, name="exception_remove"),
    path("experts/me/conflicts/", views.conflict_add, name="conflict_add"),
    path("experts/<str:public_id>/", views.expert_detail, name="detail"),
    path("cases/<str:tracking_number>/experts/", views.candidates, name="candidates"),
    path("cases/<str:tracking_number>/experts/invite/", views.invite, name="invite"),
    path(
        "cases/<str:tracking_number>/experts/invitations/<int:pk>/cancel/",
        views.invitation_cancel,
        name="invitation_cancel",
    ),
]
