from django.core.management.base import BaseCommand
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

# name -> (task, every N minutes). Admins may change the interval or disable a task in the admin
# (Periodic tasks); running this command again leaves their changes alone unless --reset.
# The periodic jobs with a fixed interval (the notification resend follows its setting: see
# accounts.apps).
SCHEDULES = {
    "Hearing reminders": ("mediation_room.tasks.hearing_reminders", 5),
    "Supervision scan (督办)": ("mediation_room.tasks.supervision_scan", 15),
    "Agreement follow-ups (回访)": ("mediation_room.agreements.tasks.follow_ups_due", 15),
    # Each invitation has its own lapse task at its deadline; this sweep catches any whose task
    # was lost (a worker down at the time, a purged queue).
    "Expert invitations lapsing": ("experts.tasks.lapse_due_invitations", 5),
    "Community consultations opening and closing (民主协商)": (
        "voting.tasks.publish_due_consultations",
        5,
    ),
    # Personal data past its retention period after a case closed (see privacy.retention).
    "Retention of personal data": ("privacy.tasks.retention_apply", 60),
}


class Command(BaseCommand):
    help = "Create the Celery beat schedules of the periodic jobs (idempotent)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--reset", action="store_true", help="Restore the default intervals and enable them."
        )

    @transaction.atomic
    def handle(self, *args, reset: bool = False, **options) -> None:
        for name, (task, minutes) in SCHEDULES.items():
            every, _ = IntervalSchedule.objects.get_or_create(
                every=minutes, period=IntervalSchedule.MINUTES
            )
            periodic, created = PeriodicTask.objects.get_or_create(
                name=name, defaults={"task": task, "interval": every}
            )
            if reset and not created:
                periodic.task = task
                periodic.interval = every
                periodic.crontab = None
                periodic.enabled = True
                periodic.save()
            state = "created" if created else ("reset" if reset else "kept")
            self.stdout.write(f"{name}: {task} every {minutes} min ({state})")
