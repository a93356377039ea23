from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = _("Accounts")

    def ready(self) -> None:
        from allauth.account.signals import login_code_rejected
        from django.conf import settings

        from cloudbench.celery import app

        from .ratelimit import code_failure_record

        def count_wrong_code(sender, request, user, **kwargs) -> None:
            code_failure_record(user.pk)

        login_code_rejected.connect(count_wrong_code, weak=False, dispatch_uid="count_wrong_code")

        # Messages whose delivery task was lost (the broker was down when they were queued) are
        # handed to a worker again. Its interval is a setting in seconds, so it is declared here
        # (DatabaseScheduler installs it when beat starts) rather than in setup_schedules.
        app.conf.beat_schedule = {
            **(app.conf.beat_schedule or {}),
            "accounts-resend-stale-notifications": {
                "task": "accounts.tasks.resend_stale_notifications",
                "schedule": float(settings.NOTIFICATION_RESEND_AFTER_SECONDS),
            },
        }
