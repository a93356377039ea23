"""axe-core (npm, frontend/package.json's devDependencies; injected by the test, never served to
users) checks the pages residents, parties, mediators and coordinators use: no serious or critical
violation. The pages' own CSP forbids the injected script, so these browser contexts bypass it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from django.conf import settings

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_phone_browser import (
    LAPTOP,
    PHONE,
    REMOTE_PLAYING,
    WAIT,
    _cookie,
    admit_all,
    finished_public_hearing_with_replay,
    in_thread,
)
from tests.factories import UserFactory, advance, make_case, make_coordinator, make_expert

pytestmark = [pytest.mark.e2e]

AXE = Path(
    os.environ.get("AXE_CORE_JS")
    or Path(settings.BASE_DIR) / "frontend" / "node_modules" / "axe-core" / "axe.min.js"
)
RUN_AXE = """async () => {
    const result = await axe.run(document, {resultTypes: ["violations"]});
    return result.violations
        .filter(v => v.impact === "serious" || v.impact === "critical")
        .map(v => ({id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
}"""


def violations(page) -> list[dict]:
    page.add_script_tag(path=str(AXE))
    return page.evaluate(RUN_AXE)


def test_no_serious_or_critical_accessibility_violation(hls_in_tmp, live_server_url, browser):
    if not AXE.exists():
        pytest.fail(f"axe-core not found at {AXE}: run `npm ci` in frontend/ (make test does)")
    url = live_server_url

    def make():
        applicant, expert = UserFactory(), make_expert()
        case = make_case(applicant=applicant, respondent=UserFactory())
        coordinator = make_coordinator(case.community)
        hearing = advance(case, "in_session", expert=expert, coordinator=coordinator)
        return {
            "case": case.tracking_number,
            "hearing": hearing.public_id,
            "applicant": _cookie(applicant, url),
            "expert": _cookie(expert, url),
            "coordinator": _cookie(coordinator, url),
        }

    world = in_thread(make)
    replay = finished_public_hearing_with_replay(hls_in_tmp)
    hearing = world["hearing"]
    pages = {
        None: [
            "/",
            "/lookup/",
            "/accounts/login/",
            "/experts/",
            "/stats/public/",
            f"/watch/{hearing}/",
            f"/watch/{replay}/replay/",
            "/verify/",
        ],
        "applicant": [
            "/cases/",
            "/cases/new/",
            f"/cases/{world['case']}/",
            f"/room/{hearing}/check/",
            "/notifications/",
        ],
        "expert": ["/experts/me/", f"/cases/{world['case']}/"],
        "coordinator": ["/board/", "/supervision/", "/stats/"],
    }
    found = {}
    for who, paths in pages.items():
        for viewport in (PHONE, LAPTOP):
            context = browser.new_context(viewport=viewport, locale="zh-CN", bypass_csp=True)
            if who:
                context.add_cookies([world[who]])
            # the context's pages load side by side (their quiet half-seconds overlap), then each
            # is checked once its network has gone quiet
            pages_of_context = []
            for path in paths:
                page = context.new_page()
                page.goto(url + path, wait_until="commit")
                pages_of_context.append((path, page))
            for path, page in pages_of_context:
                page.wait_for_load_state("networkidle")
                problems = violations(page)
                if problems:
                    found[f"{who or 'visitor'} {viewport['width']} {path}"] = problems
            # the large-text, high-contrast mode too (on the last page)
            page.click("[data-easy-read]")
            problems = violations(page)
            if problems:
                found[f"{who or 'visitor'} {viewport['width']} large text {paths[-1]}"] = problems
            context.close()

    # the room with its members in it: a party on a phone, the mediator on a laptop
    rooms = {}
    for who, viewport in (("applicant", PHONE), ("expert", LAPTOP)):
        context = browser.new_context(viewport=viewport, locale="zh-CN", bypass_csp=True)
        context.add_cookies([world[who]])
        rooms[who] = context.new_page()
        rooms[who].goto(f"{url}/room/{hearing}/")
    rooms["applicant"].locator("#lobby-wait").wait_for(timeout=WAIT)
    admit_all(rooms["expert"])
    for who, page in rooms.items():
        page.wait_for_function(REMOTE_PLAYING, timeout=WAIT)
        problems = violations(page)
        if problems:
            found[f"{who} room"] = problems
    # the mediator's tools over the room on a phone
    rooms["applicant"].click("#panel-toggle")
    problems = violations(rooms["applicant"])
    if problems:
        found["applicant room panel"] = problems
    for page in rooms.values():
        page.context.close()
    report = ARTIFACTS / "axe-violations.json"
    report.write_text(json.dumps(found, ensure_ascii=False, indent=1))
    assert not found, f"{len(found)} pages with serious or critical violations: see {report}"
