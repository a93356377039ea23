import time

from django.core.management.base import BaseCommand

from mediation_room.supervision.figures import figures_rebuild


class Command(BaseCommand):
    help = "Recompute the statistics' per-case figures from the cases' transition events."

    def handle(self, *args, **options) -> None:
        started = time.perf_counter()
        rows = figures_rebuild()
        self.stdout.write(f"{rows} cases' figures rebuilt in {time.perf_counter() - started:.1f} s")
