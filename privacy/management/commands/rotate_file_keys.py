"""Re-wrap every sealed file's data key under the current FILE_MASTER_KEY.

Rotation: put the new key in FILE_MASTER_KEY and the old one in FILE_MASTER_KEYS_RETIRED, restart
(both are readable meanwhile), run this command, then drop the old key. Only each file's key slot
(68 bytes of its header) is rewritten; the content is not."""

from django.core.management.base import BaseCommand, CommandError

from privacy.files import kept_files
from privacy.sealed import SealError, current_master, known_masters, rewrap


class Command(BaseCommand):
    help = "Re-wrap the data key of every sealed file under the current master key."

    def handle(self, *args, **options):
        masters, target = known_masters(), current_master()
        rewrapped = current = 0
        failed: list[str] = []
        for kept in kept_files():
            try:
                if rewrap(kept.path, masters=masters, to=target):
                    rewrapped += 1
                else:
                    current += 1
            except (OSError, SealError) as exc:
                failed.append(f"{kept.kind} {kept.pk}: {exc}")
        self.stdout.write(
            f"master key {target.key_id.hex()}: re-wrapped {rewrapped}, "
            f"already current {current}, failed {len(failed)}"
        )
        if failed:
            raise CommandError("\n".join(failed))
