"""Figures for mediation agreements: signing + locking, PDF rendering, ledger verification.

Runs against a throwaway test database (test_<name> of DATABASE_URL, created and dropped here).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cb_agreements CELERY_EAGER=1 \
        python bench/agreements.py [--agreements 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudbench.settings")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agreements", type=int, default=20)
    args = parser.parse_args()

    import tempfile

    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    settings.MEDIA_ROOT = Path(tempfile.mkdtemp(prefix="bench-agreements-"))
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        run(args.agreements)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def run(count: int) -> None:
    from django.core.cache import cache

    from mediation_room.agreements import ledger, services
    from mediation_room.agreements.models import Agreement
    from mediation_room.agreements.pdf import cjk_font, render_pdf
    from tests.mediation_room.agreement_fixtures import Setup, send_code, signature_png

    cjk_font()  # font loading is a one-time cost per process; reported separately below
    sign_ms, lock_ms, pdf_ms, sizes = [], [], [], []
    for _ in range(count):
        cache.clear()  # signing-code rate limits
        setup = Setup()
        agreement = setup.submitted()
        for n, user in enumerate(setup.signers):
            code = send_code(agreement, user)
            agreement.refresh_from_db()
            started = time.perf_counter()
            services.agreement_sign(
                agreement=agreement,
                actor=user,
                version_number=agreement.final_version.number,
                code=code,
                signature_data_url=signature_png(),
                ip="127.0.0.1",
                user_agent="bench",
            )
            elapsed = (time.perf_counter() - started) * 1000
            # The last signature locks, chains and (eagerly, here) renders the PDF.
            (lock_ms if n == len(setup.signers) - 1 else sign_ms).append(elapsed)
        agreement = Agreement.objects.get(pk=agreement.pk)
        started = time.perf_counter()
        data = render_pdf(agreement)
        pdf_ms.append((time.perf_counter() - started) * 1000)
        sizes.append(len(data))

    started = time.perf_counter()
    checked, problem = ledger.verify_chain()
    verify_ms = (time.perf_counter() - started) * 1000
    assert problem is None and checked == count

    def line(label: str, values: list[float], unit: str = "ms") -> None:
        print(
            f"{label:<44} median {statistics.median(values):8.1f} {unit}"
            f"   max {max(values):8.1f} {unit}   (n={len(values)})"
        )

    print(f"agreements: {count}, database: {os.environ.get('DATABASE_URL', 'sqlite')}")
    line("sign (code check + signature row)", sign_ms)
    line("last signature: sign + lock + chain + PDF", lock_ms)
    line("PDF render alone", pdf_ms)
    line("PDF size", [s / 1024 for s in sizes], "kB")
    print(
        f"{'verify_agreements over the whole chain':<44} {verify_ms:8.1f} ms total, "
        f"{verify_ms / count:.2f} ms per agreement"
    )


if __name__ == "__main__":
    main()
