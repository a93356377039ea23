"""A web process that stops answering can be asked what it is doing: `kill -USR2 <pid>` writes
every thread's stack into its log, and it goes on serving (cloudbench.logs.dump_stacks_on_signal);
one that crashes in native code leaves its stacks in its log as it dies.
The stacks of web processes that would not stop showed threads that could never end; a stopped
web process now goes without waiting for them."""

import http.client
import json
import os
import signal
import subprocess
import time

import pytest

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


def test_sigterm_stops_the_process_even_with_a_thread_that_never_ends(tmp_path):
    with _web_server(tmp_path, "tests.body_app:application", {**os.environ}) as (process, port):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/stuck")
        assert connection.getresponse().status == 204
        connection.close()
        process.terminate()
        try:
            code = process.wait(timeout=20)  # a hang, not a slow exit, is what fails here
        except subprocess.TimeoutExpired:
            process.send_signal(STACKS_SIGNAL)
            time.sleep(1)
            process.kill()
            process.wait()
            raise AssertionError((tmp_path / "server.log").read_text(errors="replace")) from None
        assert code == 0


def test_a_crash_in_native_code_leaves_the_stacks_in_the_log(tmp_path):
    with _web_server(tmp_path, "tests.body_app:application", {**os.environ}) as (process, port):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/crash")
        with pytest.raises((http.client.HTTPException, OSError)):
            connection.getresponse()
        assert process.wait(timeout=20) == -signal.SIGSEGV
    text = (tmp_path / "server.log").read_text(errors="replace")
    assert "Fatal Python error: Segmentation fault" in text, text
    # the thread that crashed, down to the line of the application
    assert "body_app.py" in text and "most recent call first" in text, text
