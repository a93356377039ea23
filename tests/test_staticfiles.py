"""`StaticFilesMiddleware`: WhiteNoise's index of STATIC_ROOT is built once per process for the
same files and options, and again when a file changes."""

import os

from cloudbench.staticfiles import StaticFilesMiddleware


def _middleware(settings, root):
    settings.STATIC_ROOT = str(root)
    return StaticFilesMiddleware(get_response=lambda request: None, settings=settings)


def test_the_index_is_reused_for_the_same_files_and_rebuilt_when_one_changes(settings, tmp_path):
    (tmp_path / "site.css").write_text("body { color: black }")
    (tmp_path / "app.js").write_text("console.log(1)")

    first = _middleware(settings, tmp_path)
    second = _middleware(settings, tmp_path)
    assert set(first.files) == {"/static/site.css", "/static/app.js"}
    assert second.files["/static/site.css"] is first.files["/static/site.css"]

    (tmp_path / "site.css").write_text("body { color: navy; background: white }")
    os.utime(tmp_path / "site.css", ns=(1, 1))
    third = _middleware(settings, tmp_path)
    assert third.files["/static/site.css"] is not first.files["/static/site.css"]
    assert third.files["/static/app.js"] is not first.files["/static/app.js"]  # one index

    settings.WHITENOISE_MAX_AGE = 7
    fourth = _middleware(settings, tmp_path)
    assert fourth.files["/static/site.css"] is not third.files["/static/site.css"]
    headers = dict(fourth.files["/static/site.css"].get_response("GET", {}).headers)
    assert "max-age=7" in headers["Cache-Control"]


def test_a_collected_root_is_compared_by_its_manifest_and_folders(settings, tmp_path):
    """collectstatic writes its manifest each time and adds, replaces or removes files (which
    changes their folders): the index follows each of these without statting every file."""
    (tmp_path / "css").mkdir()
    (tmp_path / "css" / "site.css").write_text("body { color: black }")
    (tmp_path / "staticfiles.json").write_text('{"paths": {}}')

    first = _middleware(settings, tmp_path)
    again = _middleware(settings, tmp_path)
    assert again.files["/static/css/site.css"] is first.files["/static/css/site.css"]

    (tmp_path / "css" / "app.js").write_text("console.log(1)")  # a file added
    os.utime(tmp_path / "css", ns=(1, 1))
    second = _middleware(settings, tmp_path)
    assert "/static/css/app.js" in second.files
    assert second.files["/static/css/site.css"] is not first.files["/static/css/site.css"]

    (tmp_path / "staticfiles.json").unlink()  # collected again: a new manifest
    (tmp_path / "staticfiles.json").write_text('{"paths": {"a": "b"}}')
    third = _middleware(settings, tmp_path)
    assert third.files["/static/css/site.css"] is not second.files["/static/css/site.css"]
