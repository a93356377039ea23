"""Production settings (HTTPS=1): secure session and CSRF cookies, HSTS, the HTTPS redirect, the
policy headers, and no development pages. `manage.py check --deploy` is tests/test_deploy.py."""

from __future__ import annotations

import json
import os
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
