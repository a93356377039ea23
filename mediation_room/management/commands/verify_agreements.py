"""Walk the ledger of locked agreements and recompute every hash; exit 1 naming the first
agreement that was tampered with."""

from django.core.management.base import BaseCommand, CommandError

from mediation_room.agreements.ledger import verify_chain


class Command(BaseCommand):
    help = "Verify the hash chain of locked mediation agreements."

    def handle(self, *args, **options) -> None:
        checked, problem = verify_chain()
        if problem is not None:
            raise CommandError(
                f"agreement {problem.code} (ledger #{problem.seq}, id {problem.agreement_id}) "
                f"was tampered with: {problem.reason}",
                returncode=1,
            )
        self.stdout.write(self.style.SUCCESS(f"{checked} agreements verified, chain intact."))
