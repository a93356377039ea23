"""The shipped deployment, run: nginx (TLS) and coturn from the files compose uses, two web
processes, the media node, a Celery worker and beat, as native processes on loopback; headless
Chromium over https:// (the browsers' ICE policy is "relay", through this coturn).

    pytest -m deploy tests/deploy -s
"""

from __future__ import annotations

import io
import json
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from accounts.models import SmsOutboxMessage
from mediation_room import services
from mediation_room.models import Case
from tests.deploy.stack import ROOT, Stack, fetch
from tests.e2e.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.factories import CommunityFactory, UserFactory, advance, make_expert

pytestmark = [pytest.mark.deploy, pytest.mark.django_db(transaction=True)]

SHOTS = ARTIFACTS.parent / "deploy-shots"


@pytest.fixture
def stack():
    # not under tmp_path: nginx's workers (nobody) read the static and HLS files from here
    base = Path(tempfile.mkdtemp(prefix="cloudbench-deploy-"))
    base.chmod(0o755)
    stack = Stack(base)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def chromium():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--ignore-certificate-errors"]
        )
        yield browser
        browser.close()
    print(f"\ndeployment screenshots: {SHOTS}")


# Each member's camera is a canvas of one colour (with a moving bar, so frames keep changing),
# and every peer connection the page makes is forced to the relay policy: media can only flow
# through coturn. The connections are kept for their statistics.
MEMBER_PAGE = """colour => {
    const Native = window.RTCPeerConnection;
    window.__peers = [];
    window.RTCPeerConnection = class extends Native {
        constructor(config) {
            super({...(config || {}), iceTransportPolicy: 'relay'});
            window.__peers.push(this);
        }
    };
    if (!colour || !navigator.mediaDevices) return;
    const fake = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    navigator.mediaDevices.getUserMedia = async (constraints) => {
        const stream = constraints.audio ? await fake({audio: constraints.audio}) : new MediaStream();
        if (constraints.video) {
            const canvas = document.createElement('canvas');
            canvas.width = 320; canvas.height = 180;
            const g = canvas.getContext('2d');
            let n = 0;
            const paint = () => {
                g.fillStyle = colour; g.fillRect(0, 0, 320, 180);
                g.fillStyle = 'rgb(255,255,255)'; g.fillRect((n++ * 8) % 320, 0, 8, 16);
            };
            paint();
            setInterval(paint, 66);
            stream.addTrack(canvas.captureStream(15).getVideoTracks()[0]);
        }
        return stream;
    };
}"""

# The mean colour of the middle of every remote video that plays, by the tile's caption.
REMOTE_PICTURES = """() => [...document.querySelectorAll('.tile[data-member]')].map(tile => {
    const video = tile.querySelector('video.remote');
    const label = tile.querySelector('figcaption strong').textContent;
    if (!video || !video.videoWidth || video.currentTime <= 0) return {label, rgb: null};
    const canvas = document.createElement('canvas');
    canvas.width = 64; canvas.height = 36;
    const g = canvas.getContext('2d');
    g.drawImage(video, 0, 0, 64, 36);
    const data = g.getImageData(8, 12, 48, 20).data;
    const sum = [0, 0, 0];
    for (let i = 0; i < data.length; i += 4) { sum[0] += data[i]; sum[1] += data[i + 1]; sum[2] += data[i + 2]; }
    const n = data.length / 4;
    return {label, rgb: sum.map(v => Math.round(v / n)), time: video.currentTime};
})"""

# The candidate types and bytes of the pair each of the page's connections selected.
SELECTED_PAIRS = """async () => {
    const pairs = [];
    for (const pc of window.__peers || []) {
        const stats = await pc.getStats();
        stats.forEach(report => {
            if (report.type !== 'transport') return;
            const pair = stats.get(report.selectedCandidatePairId || '');
            const local = pair && stats.get(pair.localCandidateId);
            const remote = pair && stats.get(pair.remoteCandidateId);
            pairs.push({
                state: pc.connectionState,
                local: local && local.candidateType,
                remote: remote && remote.candidateType,
                relayProtocol: local && local.relayProtocol,
                // the transport's counts (Chromium's pair counts stay at 0 over a relay)
                bytesReceived: report.bytesReceived,
                bytesSent: report.bytesSent,
            });
        });
    }
    return pairs;
}"""

COLOURS = {
    "expert": "rgb(220,40,40)",
    "applicant": "rgb(40,200,40)",
    "respondent": "rgb(40,60,220)",
}
LABELS = {"expert": "调解员", "applicant": "申请人", "respondent": "被申请人"}


def share_of(png: bytes, rgb: tuple[int, int, int]) -> float:
    """The share of a screenshot's pixels within 45 of ``rgb``."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB").resize((160, 90))
    data = image.tobytes()
    pixels = [data[i : i + 3] for i in range(0, len(data), 3)]
    close = sum(all(abs(a - b) <= 45 for a, b in zip(p, rgb, strict=True)) for p in pixels)
    return close / len(pixels)


def role_of(label: str) -> str:
    # "被申请人（乙方）" also contains "申请人": test the longer label first
    for role in ("respondent", "applicant", "expert"):
        if LABELS[role] in label:
            return role
    raise AssertionError(f"no role in the caption {label!r}")


def close_to(rgb, colour: str) -> bool:
    want = [int(v) for v in re.findall(r"\d+", colour)]
    return rgb is not None and all(abs(a - b) <= 45 for a, b in zip(rgb, want, strict=True))


def sees_the_others(page, me: str) -> dict:
    """{role: rgb} of the remote pictures that play and show that role's colour."""
    seen = {}
    for tile in page.evaluate(REMOTE_PICTURES):
        role = role_of(tile["label"])
        if role != me and close_to(tile["rgb"], COLOURS[role]):
            seen[role] = tile["rgb"]
    return seen


def relayed_pairs(page, within: float = 20) -> list[dict]:
    """The page's connected transports on a relayed pair at both ends (the page's allocation and
    the node's), once one has carried some media; all its transports if none does in time."""
    deadline = time.monotonic() + within
    while True:
        pairs = page.evaluate(SELECTED_PAIRS)
        relayed = [
            p
            for p in pairs
            if p["state"] == "connected" and p["local"] == "relay" and p["remote"] == "relay"
        ]
        if any(p["bytesReceived"] > 20_000 for p in relayed) or time.monotonic() > deadline:
            return relayed or pairs
        time.sleep(1)


def wait_for_metrics(stack, *, rooms=0, members=0, webrtc_viewers=0, within=30.0) -> tuple:
    """(rooms open, members in media, WebRTC viewers) from /metrics, once at least those."""
    deadline = time.monotonic() + within
    while True:
        _s, _h, body = fetch(stack.url + "/metrics")
        live = (
            metric(body, "cloudbench_rooms_open"),
            metric(body, "cloudbench_members_in_media"),
            metric(body, "cloudbench_live_viewers", transport="webrtc"),
        )
        if all(
            got >= want for got, want in zip(live, (rooms, members, webrtc_viewers), strict=True)
        ):
            return live
        assert time.monotonic() < deadline, live
        time.sleep(1)


def coturn_allocations(stack) -> dict[str, int]:
    """Successful TURN allocations in coturn's log, by the user part of the REST username (the
    node's allocations, each with a username of its own, under "media-node")."""
    text = stack.turn_log.read_text(errors="replace") if stack.turn_log.exists() else ""
    counts: dict[str, int] = {}
    pattern = r"user <\d+:([^>]+)>: incoming packet ALLOCATE processed, success"
    for user in re.findall(pattern, text):
        user = "media-node" if user.startswith("media-node.") else user
        counts[user] = counts.get(user, 0) + 1
    return counts


def in_thread(fn, *args, **kwargs):
    """The ORM and the services' after-commit broadcasts (async_to_sync) cannot run in the thread
    where Playwright keeps its event loop."""
    from django.db import connection

    def run():
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def session_cookie(user, url: str) -> dict:
    client = Client()
    client.force_login(user)
    value = client.cookies[settings.SESSION_COOKIE_NAME].value
    return {"name": settings.SESSION_COOKIE_NAME, "value": value, "url": url}


def sign_in_and_file(page, stack, community) -> str:
    page.goto(stack.url + "/accounts/login/")
    page.fill("#id_phone", "13800000001")
    page.click("form[action$='/login/code/'] button[type=submit]")
    page.wait_for_url("**/login/code/confirm/")
    code = None
    for _ in range(60):  # the code goes out through the Celery worker
        message = in_thread(
            lambda: SmsOutboxMessage.objects.filter(phone="+8613800000001").order_by("-pk").first()
        )
        if message is not None:
            code = re.search(r"(?<!\d)(\d{6})(?!\d)", message.body).group(1)
            break
        time.sleep(0.5)
    assert code, "no sign-in code reached the outbox through the worker"
    page.fill("input[name=code]", code)
    page.click("button[type=submit]")
    page.wait_for_url("**/cases/")
    page.goto(stack.url + "/cases/new/")
    page.select_option("#id_category", "unpaid_wages")
    page.select_option("#id_community", str(community.pk))
    page.fill("#id_description", "在装修队干了三个月，老板欠两个月工资一万二千元。")
    page.fill("#id_applicant_name", "刘志强")
    page.fill("#id_respondent_name", "周老板")
    page.fill("#id_respondent_phone", "139 1234 5678")
    for box in ("#id_consent_video", "#id_consent_livestream", "#id_consent_recording"):
        if page.locator(box).count():
            page.check(box)
    page.click("form.stack button[type=submit]")
    page.wait_for_url(re.compile(r".*/cases/LP-\d{4}-\d{6}/$"))
    page.screenshot(path=str(SHOTS / "01-case-filed.png"), full_page=True)
    return page.inner_text("h1")


def hearing_in_session(expert, respondent):
    case = Case.objects.get()
    party = case.parties.get(role="respondent")
    services.party_claim(party=party, user=respondent)
    # no recording: the node records nothing, which spares the loaded machine an encoder
    for kind, granted in (("video", True), ("livestream", True), ("recording", False)):
        services.consent_set(party=party, actor=respondent, kind=kind, granted=granted)
    return advance(case, "in_session", expert=expert)


def metric(body: bytes, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{re.escape(name)}{re.escape('{' + wanted + '}') if wanted else ''} (\S+)$"
    match = re.search(pattern, body.decode(), re.M)
    assert match, f"{name} {labels} not in /metrics"
    return float(match.group(1))


def test_the_shipped_deployment_serves_a_hearing_over_tls(stack, chromium):
    community = in_thread(CommunityFactory, name="高地社区")
    applicant = in_thread(UserFactory, phone="+8613800000001", display_name="刘志强")
    respondent = in_thread(UserFactory, phone="+8613912345678", display_name="周老板")
    expert = in_thread(make_expert)

    # (1) a resident signs in and files a case, over https:// through nginx
    resident = chromium.new_context(
        ignore_https_errors=True, viewport={"width": 390, "height": 844}
    )
    title = sign_in_and_file(resident.new_page(), stack, community)
    assert "LP-" in title
    hearing = in_thread(hearing_in_session, expert, respondent)
    room_url = f"{stack.url}/room/{hearing.public_id}/"

    # (1b) the expert and the parties meet in the room, every connection forced to the relay
    # policy: their media reaches the node (and the node's theirs) through coturn alone
    pages, ids = {}, {}
    for role, user in (("expert", expert), ("applicant", applicant), ("respondent", respondent)):
        context = chromium.new_context(
            ignore_https_errors=True, viewport={"width": 1280, "height": 800}
        )
        context.add_cookies([in_thread(session_cookie, user, stack.url)])
        context.add_init_script(script=f"({MEMBER_PAGE})({json.dumps(COLOURS[role])})")
        page = context.new_page()
        page.goto(room_url)
        pages[role] = page
        config = json.loads(page.inner_text("#room-config"))
        ids[role] = config["me"]["id"]
    # the room page gives its members TURN credentials with a turns: URL and the relay policy
    assert config["iceTransportPolicy"] == "relay"
    turn_entry = next(s for s in config["iceServers"] if "credential" in s)
    assert any(u.startswith("turns:") for u in turn_entry["urls"])
    for party in ("applicant", "respondent"):
        pages[party].wait_for_selector("#lobby-wait:not([hidden])", timeout=30_000)
        pages["expert"].click(f"#lobby-list li[data-member='{ids[party]}'] button", timeout=30_000)
    seen: dict[str, dict] = {}
    # a connection through the relay takes the node some seconds on a loaded machine, and a
    # page whose socket fell silent connects again: give the room three minutes to settle
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        seen = {role: sees_the_others(page, role) for role, page in pages.items()}
        if all(len(others) == 2 for others in seen.values()):
            break
        time.sleep(1)
    for role, page in pages.items():
        page.screenshot(path=str(SHOTS / f"02-room-{role}.png"))
    assert all(len(others) == 2 for others in seen.values()), seen
    # each page's connection to the node runs over a relayed pair (its allocation and the
    # node's) and carries media; coturn allocated for every member and for the node
    for role, page in pages.items():
        pairs = relayed_pairs(page)
        assert any(
            p["local"] == p["remote"] == "relay" and p["bytesReceived"] > 20_000 for p in pairs
        ), (role, pairs)
    allocations = coturn_allocations(stack)
    assert all(allocations.get(ids[role], 0) >= 1 for role in pages), allocations
    assert allocations.get("media-node", 0) >= 3, allocations
    print(f"\nrelayed room: {seen}; coturn allocations: {allocations}")

    # /metrics shows the room and its members in media (from the node's heartbeat, a few
    # seconds behind)
    live = wait_for_metrics(stack, rooms=1, members=3)
    # the parties leave; the mediator stays on air
    for role in ("applicant", "respondent"):
        pages[role].context.close()

    # (2) an anonymous resident watches over WebRTC, through the relay too: the mediator's
    # picture (red) is on the livestream. The page turns to HLS when no answer comes within
    # 10 s, which a machine this loaded can miss: then it is opened again.
    watcher = chromium.new_context(ignore_https_errors=True, viewport={"width": 390, "height": 844})
    watcher.add_init_script(script=f"({MEMBER_PAGE})(null)")
    watch = watcher.new_page()
    for _attempt in range(3):
        watch.goto(f"{stack.url}/watch/{hearing.public_id}/")
        watch.wait_for_function(
            "() => { const mode = document.getElementById('watch').dataset.mode;"
            " return mode === 'hls' || (mode === 'webrtc'"
            " && document.getElementById('player').currentTime > 0.5); }",
            timeout=60_000,
        )
        if watch.evaluate("document.getElementById('watch').dataset.mode") == "webrtc":
            break
    red = 0.0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and red < 0.01:
        # what the resident sees: the player's pixels on the screen
        red = share_of(watch.locator("#player").screenshot(), (220, 40, 40))
        time.sleep(0.5)
    watch.screenshot(path=str(SHOTS / "03-watch-webrtc.png"))
    assert watch.evaluate("document.getElementById('watch').dataset.mode") == "webrtc"
    assert red >= 0.01, red
    pairs = relayed_pairs(watch)
    assert any(
        p["local"] == p["remote"] == "relay" and p["bytesReceived"] > 20_000 for p in pairs
    ), pairs
    viewer_allocations = {
        u: n for u, n in coturn_allocations(stack).items() if u.startswith("viewer-")
    }
    assert viewer_allocations, coturn_allocations(stack)
    print(f"watch over WebRTC through the relay: {red:.1%} of the picture is the mediator's red")
    live = wait_for_metrics(stack, webrtc_viewers=1)
    print(f"/metrics: rooms, members in media, WebRTC viewers: {live}")
    watcher.close()
    pages["expert"].context.close()

    # (2b) and over HLS: playlist and segments come from nginx
    viewer = chromium.new_context(ignore_https_errors=True, viewport={"width": 390, "height": 844})
    hls_responses = []
    hls = viewer.new_page()
    hls.on("response", lambda r: hls_responses.append(r) if "/media/hls/" in r.url else None)
    hls.goto(f"{stack.url}/watch/{hearing.public_id}/?hls=1")
    hls.wait_for_function(
        "() => document.getElementById('watch').dataset.mode === 'hls'"
        " && document.getElementById('player').currentTime > 0.3",
        timeout=60_000,
    )
    hls.screenshot(path=str(SHOTS / "04-watch-hls.png"))
    hls_responses = [(r.url, r.status, r.all_headers()) for r in hls_responses]
    playlists = [h for u, s, h in hls_responses if u.split("?")[0].endswith(".m3u8") and s == 200]
    segments = [h for u, s, h in hls_responses if u.split("?")[0].endswith(".ts") and s == 200]
    assert playlists and segments, hls_responses[:5]
    for headers in playlists:
        assert headers["server"] == "nginx" and headers["cache-control"] == "no-cache", headers
    for headers in segments:
        assert headers["server"] == "nginx", headers
        assert (
            "immutable" in headers["cache-control"]
            and "max-age=31536000" in headers["cache-control"]
        )
    # the playlist fetches nginx mirrored are counted as an HLS viewer
    status, _h, body = fetch(stack.url + "/metrics")
    assert metric(body, "cloudbench_live_viewers", transport="hls") >= 1
    assert metric(body, "cloudbench_media_nodes_alive") == 1
    assert metric(body, "cloudbench_media_node_loop_lag_seconds", node=_node_id(body)) >= 0
    assert "cloudbench_comment_delivery_seconds_bucket" in body.decode()

    # (3) a look-up flood with a different forged X-Forwarded-For each time is still limited
    limited = []
    for i in range(25):
        _s, _h, page_body = fetch(
            f"{stack.url}/lookup/?tracking_number=LP-2026-000001&last_four=1234",
            headers={"X-Forwarded-For": f"198.51.100.{i}", "Accept-Language": "en"},
        )
        limited.append(b"Too many look-ups" in page_body)
    assert any(limited) and limited.index(True) <= 20, limited

    # (4) /readyz turns unhealthy within 10 s of the media node stopping, healthy on its return
    status, _h, body = fetch(stack.url + "/readyz")
    assert status == 200 and json.loads(body) == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "media_node": "ok", "celery": "ok"},
    }
    hls.close()
    stack.procs["media"].stop()
    stopped = time.monotonic()
    while True:
        status, _h, body = fetch(stack.url + "/readyz")
        if status == 503 or time.monotonic() - stopped > 10:
            break
        time.sleep(0.25)
    unhealthy_after = time.monotonic() - stopped
    assert status == 503, body
    report = json.loads(body)
    assert report["status"] == "unavailable" and report["checks"]["media_node"] != "ok"
    stack.procs["media"].start()
    stack.wait_ready(60)
    print(f"\n/readyz unhealthy {unhealthy_after:.1f} s after the media node stopped")

    # (5) the production settings pass Django's deployment checks
    check = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        # the stack shares the test's key (its session cookies); production has its own
        env={**stack.app_env(), "DJANGO_SECRET_KEY": secrets.token_urlsafe(50)},
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def _node_id(body: bytes) -> str:
    return re.search(r'cloudbench_media_node_cpu_percent\{node="([^"]+)"\}', body.decode()).group(1)
