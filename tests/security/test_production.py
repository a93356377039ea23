"""Production settings (HTTPS=1): secure session and CSRF cookies, HSTS, the HTTPS redirect, the
policy headers, and no development pages; `.env.example` as a whole is a configuration that
`manage.py check --deploy` passes, with staff TOTP, hashed static files and no DEBUG finders."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys

from django.conf import settings

from frontend.middleware import CSP

PRODUCTION_PROBE = r"""
import json, os, re
import django
os.environ["DJANGO_SETTINGS_MODULE"] = "cloudbench.settings"
django.setup()
from django.conf import settings
from django.test import Client

out = {"outbox_page": settings.SMS_OUTBOX_PAGE}
host = {"HTTP_HOST": "bench.example.cn"}
plain = Client().get("/accounts/login/", **host)
out["http_status"] = plain.status_code
out["http_location"] = plain.get("Location", "")
client = Client()
page = client.get("/accounts/login/code/", secure=True, **host)
out["https_status"] = page.status_code
out["hsts"] = page.get("Strict-Transport-Security", "")
out["csp"] = page.get("Content-Security-Policy", "")
response = client.post(
    "/accounts/login/code/", {"phone": os.environ["PROBE_PHONE"]}, secure=True, **host
)
out["cookies"] = {
    name: {"secure": bool(c["secure"]), "httponly": bool(c["httponly"]), "samesite": c["samesite"]}
    for name, c in {**page.cookies, **response.cookies}.items()
}
outbox = client.get("/dev/sms/", secure=True, **host)
out["outbox_status"] = outbox.status_code
print("PROBE" + json.dumps(out))
"""


def test_production_settings_secure_cookies_hsts_and_https_redirect(transactional_db):
    from accounts.models import User

    User.objects.create_user(username="prod", phone="+8613900139100", phone_verified=True)
    db = settings.DATABASES["default"]
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "HTTPS": "1",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "y" * 20 + "production-like-secret-key-with-enough-entropy-0987654321",
        "ALLOWED_HOSTS": "bench.example.cn",
        "FILE_MASTER_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        # the test database, where the probe's resident lives
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "PROBE_PHONE": "13900139100",
        "CELERY_EAGER": "1",
    }
    env.pop("SMS_OUTBOX_PAGE", None)
    result = subprocess.run(
        [sys.executable, "-c", PRODUCTION_PROBE],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith("PROBE")), None)
    assert line, result.stdout + result.stderr
    probe = json.loads(line[len("PROBE") :])

    assert probe["http_status"] == 301
    assert probe["http_location"].startswith("https://bench.example.cn/")
    assert probe["https_status"] == 200
    assert probe["hsts"] == "max-age=31536000; includeSubDomains; preload"
    assert probe["csp"] == CSP
    cookies = probe["cookies"]
    assert {"csrftoken", "sessionid"} <= set(cookies), cookies
    for name in ("csrftoken", "sessionid"):
        assert cookies[name]["secure"], name
    assert cookies["sessionid"]["httponly"]
    # the development page that shows every sign-in code is off in production
    assert probe["outbox_page"] is False
    assert probe["outbox_status"] == 404


def _env_example() -> dict[str, str]:
    """The variables of .env.example, as an operator copies them (comments dropped)."""
    values = {}
    for line in (settings.BASE_DIR / ".env.example").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = re.split(r"\s+#", value, maxsplit=1)[0].strip()
    return values


SETTINGS_PROBE = r"""
import json, os
import django
os.environ["DJANGO_SETTINGS_MODULE"] = "cloudbench.settings"
django.setup()
from django.conf import settings
from django.contrib.staticfiles.storage import staticfiles_storage
print("PROBE" + json.dumps({
    "debug": settings.DEBUG,
    "finders": settings.WHITENOISE_USE_FINDERS,
    "static_storage": settings.STORAGES["staticfiles"]["BACKEND"],
    "manifest": hasattr(staticfiles_storage, "manifest_name"),
    "mfa_for_staff": settings.MFA_REQUIRED_FOR_STAFF,
    "log_format": settings.LOG_FORMAT,
    "sentry": bool(settings.SENTRY_DSN),
    "middleware": settings.MIDDLEWARE,
}))
"""


def test_the_env_example_is_a_production_configuration_that_passes_check_deploy():
    example = _env_example()
    # every variable the settings read is listed for the operator
    read = set(
        re.findall(
            r'env_\w+\("([A-Z0-9_]+)"',
            (settings.BASE_DIR / "cloudbench" / "settings.py").read_text(),
        )
    )
    assert read <= set(example), sorted(read - set(example))

    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        **example,
        # the one value an operator must replace: a real secret key
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "SENTRY_DSN": "",
    }
    check = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "no issues" in check.stdout

    probe = subprocess.run(
        [sys.executable, "-c", SETTINGS_PROBE],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    line = next((x for x in probe.stdout.splitlines() if x.startswith("PROBE")), None)
    assert line, probe.stdout + probe.stderr
    production = json.loads(line[len("PROBE") :])
    assert production["debug"] is False and production["finders"] is False
    assert production["manifest"], production["static_storage"]
    assert production["mfa_for_staff"] is True
    assert "accounts.middleware.StaffTotpRequiredMiddleware" in production["middleware"]
    assert production["log_format"] == "plain" and production["sentry"] is False
