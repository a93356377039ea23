"""The streaming app splits where the processes split: the web side never loads the media stack,
and its modules do not import each other in circles."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
MEDIA_STACK = ("aiortc", "aioice", "av", "cv2", "pylibsrtp")

# A fresh interpreter: the ASGI application, its URLs resolved, every web-side module imported.
_WEB_IMPORTS = """
import json, sys
import asgi
from django.urls import get_resolver
get_resolver().url_patterns
print(json.dumps(sorted(sys.modules)))
"""


def test_the_web_process_does_not_load_the_media_stack():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cloudbench.settings",
        # the production layout: Redis, the media node in a process of its own
        "REDIS_URL": settings.REDIS_URL or "redis://127.0.0.1:6379/0",
        "MEDIA_NODE_INPROCESS": "0",
    }
    result = subprocess.run(
        [sys.executable, "-c", _WEB_IMPORTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert "asgi" in modules and "streaming.consumers" in modules  # it did import the web side
    loaded = sorted(m for m in modules if m.split(".")[0] in MEDIA_STACK)
    assert loaded == []
    assert not [m for m in modules if m.startswith("streaming.node")]


def _streaming_imports() -> dict[str, set[str]]:
    """Module -> the streaming modules it imports, at module level or inside a function."""
    package = ROOT / "streaming"
    modules = {}
    for path in package.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = (path, is_package)

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, (path, is_package) in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = module.split(".")
                    anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            else:
                continue
            for target in targets:
                if target.startswith("streaming"):
                    found = resolve(target)
                    if found and found != module:
                        edges.add(found)
        graph[module] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_in_streaming():
    graph = _streaming_imports()
    assert "streaming.node.worker" in graph["streaming.management.commands.medianode"]
    assert _cycles(graph) == []


def test_the_shared_module_is_a_leaf():
    graph = _streaming_imports()
    # the shared module, and the pool's registry it routes by, import nothing else of streaming
    assert graph["streaming.plane"] == {"streaming.pool"}
    assert graph["streaming.pool"] == set()
    web = [m for m in graph if not m.startswith("streaming.node") and m != "streaming.embedded"]
    for module in web:
        # only the embedded setup and the node's own command reach into the node
        if module == "streaming.management.commands.medianode":
            continue
        assert not {m for m in graph[module] if m.startswith("streaming.node")}, module


def test_the_node_channel_is_named_under_the_layer_prefix(settings):
    # Redis pub/sub channels are shared by every database of a server: another deployment's
    # node (or another test run's) must not take this one's rooms.
    from streaming.plane import node_channel

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:6379/5"], "prefix": "district7"},
        }
    }
    assert node_channel() == "district7.media-node"
    assert node_channel("n2") == "district7.media-node.n2"
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    assert node_channel() == "media-node"
