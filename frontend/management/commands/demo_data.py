import importlib

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import SmsOutboxMessage, Street

# Each app that has demo data gives a `demo` module with `load(context) -> list[str]`; they run in
# this order and share `context` (communities, residents, experts, ...).
DEMO_MODULES = [
    "accounts.demo",
    "experts.demo",
    "mediation_room.demo",
    "mediation_room.agreements.demo",
    "mediation_room.supervision.demo",
    "voting.demo",
    "streaming.node.demo",
]


class Command(BaseCommand):
    help = "Load demo data: streets, communities, staff, residents and cases in every state."

    def handle(self, *args, **options) -> None:
        if Street.objects.exists():
            self.stdout.write("Demo data already loaded.")
            return
        context: dict = {}
        lines: list[str] = []
        with transaction.atomic():
            for name in DEMO_MODULES:
                try:
                    module = importlib.import_module(name)
                except ModuleNotFoundError as exc:
                    if exc.name == name:
                        continue
                    raise
                lines.extend(module.load(context))
        # The demo's own registrations texted everyone; keep the outbox for what the newcomer does.
        SmsOutboxMessage.objects.all().delete()
        self.stdout.write(self.style.SUCCESS("Demo data loaded. Sign-ins:"))
        for line in lines:
            self.stdout.write(f"  {line}")
