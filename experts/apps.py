from django.apps import AppConfig


class ExpertsConfig(AppConfig):
    name = "experts"

    def ready(self) -> None:
        from cloudbench.celery import app

        # Each invitation has its own lapse task at its deadline; this sweep catches any whose
        # task was lost (a worker down at the time, a purged queue).
        app.conf.beat_schedule = {
            **(app.conf.beat_schedule or {}),
            "experts-lapse-due-invitations": {
                "task": "experts.tasks.lapse_due_invitations",
                "schedule": 300.0,
            },
        }
