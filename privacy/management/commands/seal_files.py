"""Encrypt the personal files kept in clear before encryption at rest (run once, idempotent)."""

from django.core.management.base import BaseCommand, CommandError

from privacy.files import kept_files, seal_in_place


class Command(BaseCommand):
    help = "Seal (encrypt at rest) evidence, recordings and agreement PDFs still kept in clear."

    def handle(self, *args, **options):
        sealed = already = missing = 0
        failed: list[str] = []
        for kept in kept_files():
            if not kept.path.exists():
                missing += 1
                self.stderr.write(f"missing: {kept.kind} {kept.pk} ({kept.path.name})")
                continue
            try:
                if seal_in_place(kept.path, expected_sha256=kept.sha256):
                    sealed += 1
                else:
                    already += 1
            except ValueError as exc:
                failed.append(f"{kept.kind} {kept.pk}: {exc}")
        self.stdout.write(
            f"sealed {sealed}, already sealed {already}, missing {missing}, failed {len(failed)}"
        )
        if failed:
            raise CommandError("\n".join(failed))
