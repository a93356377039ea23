app_name = "streaming"
urlpatterns: list = []
