"""A web process that stops answering can be asked what it is doing: `kill -USR2 <pid>` writes
every thread's stack into its log, and it goes on serving (cloudbench.logs.dump_stacks_on_signal)."""

import http.client
import json
import os
import time

from cloudbench.logs import STACKS_SIGNAL
from tests.test_webserver_bodies import _web_server


def test_the_stacks_signal_writes_every_threads_stack_to_the_log_and_serving_goes_on(tmp_path):
    with _web_server(tmp_path, "tests.body_app:application", {**os.environ}) as (process, port):
        process.send_signal(STACKS_SIGNAL)
        log = tmp_path / "server.log"
        deadline = time.monotonic() + 10
        while "most recent call first" not in log.read_text(errors="replace"):
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.05)
        text = log.read_text(errors="replace")
        # the main thread, caught in the reactor's loop
        assert "Current thread" in text and "twisted/internet" in text, text

        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("POST", "/upload", body=b"still here")
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["length"] == len(b"still here")
        assert process.poll() is None
