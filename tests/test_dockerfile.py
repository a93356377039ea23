"""The image that production runs, read without a Docker daemon: its last stage ships neither Node
nor a compiler, runs as a non-root user, and copies the application's code and nothing that is
only for development; every file the Dockerfile copies exists and the build context leaves out
secrets and local state."""

import fnmatch
import re
import shlex
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
DOCKERFILE = ROOT / "docker" / "Dockerfile"
BUILD_TOOLS = re.compile(r"\b(node|nodejs|npm|npx|yarn|gcc|g\+\+|cc|make|build-essential|clang)\b")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def stages() -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    current = None
    for keyword, rest in instructions():
        if keyword == "FROM":
            parts = rest.split()
            current = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else str(len(out))
            out[current] = [(keyword, rest)]
        else:
            out[current].append((keyword, rest))
    return out


def copies(stage: list[tuple[str, str]]) -> list[tuple[str | None, list[str], str]]:
    """(from stage or None for the build context, sources, destination) of each COPY."""
    result = []
    for keyword, rest in stage:
        if keyword in ("COPY", "ADD"):
            words = shlex.split(rest)
            options = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            source_stage = next(
                (o.split("=", 1)[1] for o in options if o.startswith("--from=")), None
            )
            result.append((source_stage, paths[:-1], paths[-1]))
    return result


def test_the_runtime_stage_ships_no_node_and_no_build_tools():
    final_name, final = list(stages().items())[-1]
    assert final_name == "runtime"
    base = final[0][1].split()[0]
    assert "node" not in base and base.startswith("python:") and "slim" in base
    for keyword, rest in final:
        if keyword == "RUN":
            assert not BUILD_TOOLS.search(rest), rest
    # the other stages are where those live
    assert any("npm ci" in rest for _, rest in stages()["assets"])
    assert any("build-essential" in rest for _, rest in stages()["wheels"])


def test_the_runtime_stage_runs_as_a_non_root_user():
    final = list(stages().values())[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    last_user = max(i for i, (keyword, _) in enumerate(final) if keyword == "USER")
    assert not any(keyword in ("RUN", "COPY") for keyword, _ in final[last_user + 1 :])


def test_every_copied_file_exists_and_only_application_code_is_copied():
    all_stages = stages()
    for name, stage in all_stages.items():
        for source_stage, sources, _ in copies(stage):
            if source_stage is not None:
                assert source_stage in all_stages, source_stage
                continue
            for source in sources:
                assert (ROOT / source).exists(), f"{name}: COPY {source} (missing)"

    runtime_sources = {
        source
        for source_stage, sources, _ in copies(all_stages["runtime"])
        if source_stage is None
        for source in sources
    }
    assert "." not in runtime_sources and "./" not in runtime_sources
    for unwanted in ("tests", "bench", ".env", ".git", "node_modules", "frontend/node_modules"):
        assert unwanted not in runtime_sources
    # every Django app and the project package reach the image
    for app in settings.INSTALLED_APPS:
        package = app.split(".")[0]
        if (ROOT / package).is_dir():
            assert package in runtime_sources, package
    # the browser libraries come from the Node stage
    assert any(
        source_stage == "assets" and dest.rstrip("/").endswith("frontend/static/vendor")
        for source_stage, _, dest in copies(all_stages["runtime"])
    )


def test_the_build_context_leaves_out_secrets_and_local_state():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#") and not line.startswith("!")
    ]

    def ignored(path: str) -> bool:
        return any(
            fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.removeprefix("**/"))
            for p in patterns
        )

    for path in (
        ".env",
        ".git",
        ".venv",
        "frontend/node_modules",
        "var",
        "tests",
        "test-artifacts",
    ):
        assert ignored(path), path
    for path in ("manage.py", "pyproject.toml", "cloudbench", "frontend", "docker"):
        assert not ignored(path), path
