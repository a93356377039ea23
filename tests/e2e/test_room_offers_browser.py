"""The room page answers each peer connection with its own answer: when the page starts over
(the room moved, the socket came back) while the answer to its previous offer is still on its
way, that answer must not be taken for the new connection's.

It was: the page kept the previous offer's ref until the new connection had gathered its
candidates, so an answer arriving in between fitted the new connection, which then waited for
ICE that could never connect (seen after a web server restart, when both members' pages start
over). Here the page's gathering is slowed by a TURN server on loopback that never answers (the
browser waits up to its gathering timeout; the node does not use TURN), and the socket is routed
through the test, which holds back the first answer, sends the page the frames a new node sends,
and lets the held answer through while the new connection gathers."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest
from playwright.sync_api import sync_playwright

from tests.e2e.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, LiveServer
from tests.factories import advance, make_case, make_expert
from tests.faults.conftest import session_cookie

pytestmark = [pytest.mark.e2e]

# every peer connection the page makes, in order
RECORD_PEERS = """(() => {
  const Native = window.RTCPeerConnection;
  window.__peers = [];
  window.RTCPeerConnection = function (...args) {
    const peer = new Native(...args);
    window.__peers.push(peer);
    return peer;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
})();"""


def test_an_answer_to_an_earlier_offer_is_not_taken_for_the_new_connection(transactional_db):
    expert = make_expert()
    hearing = advance(make_case(), "in_session", expert=expert)
    silent_turn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent_turn.bind(("127.0.0.1", 0))  # bound and never read: requests go unanswered
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    server = LiveServer(
        {
            "TURN_SHARED_SECRET": "test-secret",
            "TURN_URLS": f"turn:127.0.0.1:{silent_turn.getsockname()[1]}",
            "ICE_SERVERS": "[]",
        }
    )
    cookie = session_cookie(expert, server.url)
    from_server: list[dict] = []
    offers: list[str] = []
    held: list[str] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = browser.new_context()
                context.add_cookies([cookie])
                context.add_init_script(RECORD_PEERS)
                page = context.new_page()
                routes = []

                def route(ws):
                    upstream = ws.connect_to_server()
                    routes.append(ws)

                    def to_server(message):
                        frame = json.loads(message)
                        if frame.get("type") in ("join", "reconnect"):
                            offers.append(frame["ref"])
                        upstream.send(message)

                    def to_page(message):
                        frame = json.loads(message)
                        from_server.append(frame)
                        if frame.get("type") == "answer" and not held:
                            held.append(message)  # the first answer waits
                            return
                        ws.send(message)

                    ws.on_message(to_server)
                    upstream.on_message(to_page)

                page.route_web_socket(re.compile(r"/ws/room/"), route)
                page.goto(f"{server.url}/room/{hearing.public_id}/")
                deadline = time.monotonic() + 30
                while not held and time.monotonic() < deadline:
                    page.wait_for_timeout(100)
                assert held, "the page's first offer was never answered"
                hello = next(f for f in from_server if f["type"] == "hello")
                # what a page hears when its room comes up on another node: it starts over
                routes[0].send(json.dumps({"type": "moved"}))
                routes[0].send(json.dumps(hello))
                page.wait_for_function(
                    "() => window.__peers.length === 2"
                    " && window.__peers[1].signalingState === 'have-local-offer'",
                    timeout=15_000,
                )
                # the new connection is still gathering (the TURN server keeps it waiting)
                assert page.evaluate("() => window.__peers[1].iceGatheringState") != "complete"
                routes[0].send(held[0])
                page.wait_for_function(
                    "() => window.__peers[1].connectionState === 'connected'", timeout=30_000
                )
                applied = page.evaluate("() => window.__peers[1].remoteDescription.sdp")
                state = page.evaluate("() => document.getElementById('room').dataset.state")
            finally:
                browser.close()
    finally:
        server.stop()
        silent_turn.close()

    assert len(offers) == 2, offers
    # the browser writes the description out again in its own words; the ICE credentials tell
    # which of the node's answers it is
    answers = {f["ref"]: ice_ufrag(f["sdp"]) for f in from_server if f["type"] == "answer"}
    assert answers[offers[0]] != answers[offers[1]]
    assert ice_ufrag(applied) == answers[offers[1]]
    assert state == "in-room"


def ice_ufrag(sdp: str) -> str:
    return re.search(r"^a=ice-ufrag:(\S+)", sdp, re.MULTILINE)[1]
