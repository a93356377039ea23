from django.conf import settings
from django.urls import path

from streaming.broadcast import views as broadcast_views

app_name = "streaming"
urlpatterns: list = [
    # The same URLs nginx serves from BROADCAST_HLS_ROOT in production (docker/nginx.conf).
    path(
        settings.BROADCAST_HLS_URL.lstrip("/") + "<str:public_id>/<str:name>",
        broadcast_views.hls_file,
        name="hls_file",
    ),
]
