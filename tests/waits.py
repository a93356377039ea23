"""Waiting in synchronous tests for something another process commits."""

import time


def wait_for(condition, what: str, limit: float = 60.0) -> None:
    """Poll `condition` every 0.1 s until it holds; fail naming `what` after `limit` seconds."""
    give_up = time.monotonic() + limit
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)
