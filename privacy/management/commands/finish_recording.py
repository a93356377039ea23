"""Make the file a crashed media node left behind readable again (see privacy.files)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from privacy.files import finish_unfinished
from privacy.sealed import SealError


class Command(BaseCommand):
    help = "Finish a sealed recording whose writer never closed (it plays to its last fragment)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", type=Path)

    def handle(self, *args, path: Path, **options) -> None:
        try:
            size = finish_unfinished(path)
        except (OSError, SealError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{path.name}: {size} bytes kept")
