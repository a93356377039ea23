from django.urls import path

from streaming.broadcast import views as broadcast_views

app_name = "streaming"
urlpatterns: list = [
    path("hls/<str:public_id>/<str:name>", broadcast_views.hls_file, name="hls_file"),
]
