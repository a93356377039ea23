"""Pages: CSRF on every form and the strict Content-Security-Policy on every HTML page (the
routes and roles of the authorisation matrix)."""

from __future__ import annotations

import re

import pytest
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from django.urls import reverse

from frontend.middleware import CSP

from .test_authz_http import _rows, _split, route_kwargs
from .world import ROLES

pytestmark = pytest.mark.django_db

# POST routes that take no CSRF token, and why.
CSRF_EXEMPT: dict[str, str] = {
    "hls_playlist_seen": "nginx mirrors playlist fetches here; it carries no session and changes nothing",
}
FORM = re.compile(r"<form\b[^>]*>.*?</form>", re.S | re.I)


def allowed_role(cells: dict[str, str]) -> str | None:
    """The first role the matrix lets through (anything but 403/404/405/login)."""
    for role in ROLES:
        if cells[role] not in ("403", "404", "405", "login"):
            return role
    return None


def _request(client: Client, method: str, url: str):
    response = client.generic(method, url)
    if getattr(response, "streaming", False):
        b"".join(response.streaming_content)
    return response


def test_every_post_route_refuses_a_request_without_the_csrf_token(world, world_settings):
    checked = []
    for (route_key, method), cells in _rows().items():
        if method != "POST":
            continue
        role = allowed_role(cells)
        name, variant = _split(route_key)
        if role is None or name in CSRF_EXEMPT:
            continue
        url = reverse(name, kwargs=route_kwargs(world, name, variant) or None)
        cache.clear()
        with transaction.atomic():
            client = world.client(role, enforce_csrf_checks=True)
            response = _request(client, "POST", url)
            transaction.set_rollback(True)
        assert response.status_code == 403, (route_key, role, response.status_code)
        checked.append(route_key)
    assert len(checked) > 40, checked


def test_every_form_on_every_page_carries_the_csrf_token(world, world_settings):
    forms_seen = 0
    for (route_key, method), cells in _rows().items():
        if method != "GET":
            continue
        name, variant = _split(route_key)
        url = reverse(name, kwargs=route_kwargs(world, name, variant) or None)
        for role in {allowed_role(cells), "admin", "party", "coord"} - {None}:
            cache.clear()
            with transaction.atomic():
                client = world.client(role)
                response = _request(client, "GET", url)
                transaction.set_rollback(True)
            if "text/html" not in response.get("Content-Type", "") or response.streaming:
                continue
            for form in FORM.findall(response.content.decode()):
                if re.search(r'method\s*=\s*["\']?post', form, re.I):
                    forms_seen += 1
                    assert "csrfmiddlewaretoken" in form, (route_key, role, form[:300])
                    action = re.search(r'action\s*=\s*["\']([^"\']*)', form)
                    assert not action or not action.group(1).startswith(
                        ("http:", "https:", "//")
                    ), (
                        route_key,
                        action.group(1),
                    )
    assert forms_seen > 20


def test_every_html_page_has_the_strict_content_security_policy(world, world_settings):
    assert "'unsafe-inline'" not in CSP and "'unsafe-eval'" not in CSP
    assert "script-src 'self'" in CSP and "object-src 'none'" in CSP
    assert "frame-ancestors 'none'" in CSP
    pages = 0
    for route_key, method in _rows():
        name, variant = _split(route_key)
        url = reverse(name, kwargs=route_kwargs(world, name, variant) or None)
        for role in ROLES:
            cache.clear()
            with transaction.atomic():
                client = world.client(role)
                response = _request(client, method, url)
                transaction.set_rollback(True)
            if "text/html" in response.get("Content-Type", ""):
                pages += 1
                assert response.get("Content-Security-Policy") == CSP, (route_key, method, role)
                assert response.get("X-Frame-Options") == "DENY", (route_key, method, role)
            break  # one role per row: the header does not depend on who asks
    assert pages > 50
