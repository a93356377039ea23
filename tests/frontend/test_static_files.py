"""Static files as production serves them: pages name them by content hash, and the hashed file
comes back (compressed when the browser accepts it) with a year's cache."""

import re

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db


def test_pages_name_static_files_by_their_content_hash(client):
    assert not settings.DEBUG and not settings.WHITENOISE_USE_FINDERS
    page = client.get("/").content.decode()

    names = re.findall(r'(?:href|src)="(/static/[^"]+)"', page)
    assert names, page
    for name in names:
        assert re.search(r"\.[0-9a-f]{12}\.(css|js|png|svg|ico|webmanifest)$", name), name


def test_a_hashed_file_is_served_compressed_and_cached_for_a_year(client):
    page = client.get("/").content.decode()
    css = re.search(r'href="(/static/[^"]+\.css)"', page).group(1)

    response = client.get(css, HTTP_ACCEPT_ENCODING="gzip")

    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"
    assert "max-age=315360000" in response["Cache-Control"]
    assert "immutable" in response["Cache-Control"]


def test_the_unhashed_name_is_not_cached_for_long(client):
    response = client.get("/static/frontend/site.css")
    assert response.status_code == 200
    assert "immutable" not in response.get("Cache-Control", "")
