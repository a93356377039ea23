from allauth.account.decorators import secure_admin_login
from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from cloudbench import views

# The admin has no sign-in form of its own: allauth's, with its rate limits and the second factor.
admin.site.login = secure_admin_login(admin.site.login)

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics_view, name="metrics"),
    path("ops/hls-seen", views.hls_playlist_seen, name="hls_playlist_seen"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("", include("accounts.urls")),
    path("", include("mediation_room.urls")),
    path("", include("experts.urls")),
    path("", include("streaming.urls")),
    path("", include("voting.urls")),
    path("", include("privacy.urls")),
    path("", include("frontend.urls")),
]

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
