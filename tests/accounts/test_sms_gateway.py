"""The HTTP gateway backend against a stand-in gateway on localhost (the outside world)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from accounts.sms import HttpGatewayBackend, SmsError


class _Gateway(BaseHTTPRequestHandler):
    answers: list[int] = []
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append({"body": body, "auth": self.headers.get("Authorization")})
        self.send_response(type(self).answers.pop(0) if type(self).answers else 200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def gateway():
    _Gateway.answers, _Gateway.received = [], []
    server = HTTPServer(("127.0.0.1", 0), _Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/send", _Gateway
    server.shutdown()


def test_gateway_retries_server_errors_then_succeeds(gateway, settings):
    url, handler = gateway
    handler.answers = [503, 502]
    settings.SMS_GATEWAY_RETRIES = 3
    HttpGatewayBackend(url=url, token="t0ken").send(phone="+8613800138000", body="您好")
    assert len(handler.received) == 3
    assert handler.received[-1] == {
        "body": {"phone": "+8613800138000", "text": "您好"},
        "auth": "Bearer t0ken",
    }


def test_gateway_does_not_retry_a_refusal(gateway, settings):
    url, handler = gateway
    handler.answers = [400]
    with pytest.raises(SmsError):
        HttpGatewayBackend(url=url, token="t").send(phone="+8613800138000", body="x")
    assert len(handler.received) == 1


def test_gateway_gives_up_after_the_configured_retries(gateway, settings):
    url, handler = gateway
    handler.answers = [500, 500, 500]
    settings.SMS_GATEWAY_RETRIES = 2
    with pytest.raises(SmsError):
        HttpGatewayBackend(url=url, token="t").send(phone="+8613800138000", body="x")
    assert len(handler.received) == 2


def test_gateway_url_must_be_http(settings):
    with pytest.raises(SmsError):
        HttpGatewayBackend(url="file:///etc/passwd", token="t")
