from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MediationRoomConfig(AppConfig):
    name = "mediation_room"
    verbose_name = _("Mediation")
