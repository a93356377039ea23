from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = _("Accounts")

    def ready(self) -> None:
        from django.conf import settings

        from cloudbench.celery import app

        # Messages whose delivery task was lost (the broker was down when they were queued) are
        # handed to a worker again.
        app.conf.beat_schedule = {
            **(app.conf.beat_schedule or {}),
            "accounts-resend-stale-notifications": {
                "task": "accounts.tasks.resend_stale_notifications",
                "schedule": float(settings.NOTIFICATION_RESEND_AFTER_SECONDS),
            },
        }
