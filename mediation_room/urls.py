app_name = "mediation_room"
urlpatterns: list = []
