"""SENTRY_DSN: errors reach the configured service (here a loopback HTTP server standing in for
it), with the Django and Celery integrations, and without personal data."""

import gzip
import json
import os
import subprocess
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings

PROBE = r"""
import os, sys, types
import django
os.environ["DJANGO_SETTINGS_MODULE"] = "cloudbench.settings"
django.setup()
import sentry_sdk
from django.test import Client, override_settings
from django.urls import path

def broken(request):
    raise RuntimeError("the agreement PDF could not be drawn")

urls = types.ModuleType("probe_urls")
urls.urlpatterns = [path("broken/", broken)]
sys.modules["probe_urls"] = urls

client = sentry_sdk.get_client()
print("INTEGRATIONS " + ",".join(sorted(client.integrations)))
print("PII " + str(client.options["send_default_pii"]))
with override_settings(ROOT_URLCONF="probe_urls"):
    response = Client(raise_request_exception=False).post(
        "/broken/?phone=13800138000", {"phone": "13800138000"}, HTTP_COOKIE="sessionid=secret-session"
    )
print("STATUS " + str(response.status_code))
sentry_sdk.flush(timeout=10)
"""


class _Collector(BaseHTTPRequestHandler):
    envelopes: list[bytes] = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding == "br":
            pytest.fail("the collector does not read brotli")
        self.envelopes.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def collector():
    _Collector.envelopes = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _events(envelopes: list[bytes]) -> list[dict]:
    events = []
    for envelope in envelopes:
        lines = envelope.split(b"\n")
        # envelope header, then (item header, item payload) pairs
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == "event":
                events.append(json.loads(payload))
    return events


def test_an_error_reaches_the_configured_sentry_without_personal_data(collector):
    port = collector.server_address[1]
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "SENTRY_DSN": f"http://publickey@127.0.0.1:{port}/42",
        "CELERY_EAGER": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert {"django", "celery"} <= set(out["INTEGRATIONS"].split(","))
    assert out["PII"] == "False"
    assert out["STATUS"] == "500"

    (event,) = [e for e in _events(_Collector.envelopes) if e.get("exception")]
    exception = event["exception"]["values"][-1]
    assert exception["type"] == "RuntimeError"
    assert exception["value"] == "the agreement PDF could not be drawn"
    assert event["environment"] == "development"
    assert event["transaction"] == "/broken/"
    # the number (form and query string), the session cookie and the address stay here
    raw = json.dumps(event)
    assert "13800138000" not in raw and "secret-session" not in raw
    assert "user" not in event and "127.0.0.1" not in raw.replace(f"127.0.0.1:{port}", "")


def test_without_a_dsn_nothing_is_initialised():
    env = {
        k: v for k, v in os.environ.items() if k not in ("SENTRY_DSN", "DJANGO_ALLOW_ASYNC_UNSAFE")
    }
    code = (
        "import os, django; os.environ['DJANGO_SETTINGS_MODULE']='cloudbench.settings'; "
        "django.setup(); import sentry_sdk; print(sentry_sdk.get_client().is_active())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == "False"
