"""The shipped configuration read as files: compose's services, the nginx and coturn templates
as docker/render.py renders them (the deployment test runs the same files as processes)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
ONE_SHOT = {"config", "migrate"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def render(template: str, tmp_path: Path, **env: str) -> str:
    out = tmp_path / template.removesuffix(".template")
    subprocess.run(
        [sys.executable, str(DOCKER / "render.py"), str(DOCKER / template), str(out)],
        check=True,
        env={"PATH": "/usr/bin:/bin", **env},
    )
    return out.read_text()


def test_every_running_service_has_a_health_check(compose):
    for name, service in compose["services"].items():
        if name in ONE_SHOT:
            assert service["restart"] == "no"
            continue
        assert "healthcheck" in service, name
    for name in ("web", "nginx"):
        assert "/healthz" in str(compose["services"][name]["healthcheck"]["test"])
    for name in ("media", "beat"):
        assert "/readyz" in str(compose["services"][name]["healthcheck"]["test"])


def test_database_and_redis_are_published_on_loopback_only(compose):
    for name in ("postgres", "redis"):
        ports = compose["services"][name]["ports"]
        assert ports and all(p.startswith("127.0.0.1:") for p in ports), ports
    media = compose["services"]["media"]
    assert media["network_mode"] == "host"
    assert "127.0.0.1" in media["environment"]["DATABASE_URL"]
    assert media["environment"]["REDIS_URL"].startswith("redis://127.0.0.1:")


def test_the_web_service_trusts_nginx_alone(compose):
    text = (DOCKER / "compose.yaml").read_text()
    assert "--proxy-headers" not in [
        arg for s in compose["services"].values() for arg in (s.get("command") or [])
    ]
    nginx_ip = compose["services"]["nginx"]["networks"]["internal"]["ipv4_address"]
    web_env = compose["services"]["web"]["environment"]
    assert web_env["TRUSTED_PROXIES"] == nginx_ip
    subnet = compose["networks"]["internal"]["ipam"]["config"][0]["subnet"]
    assert "172.30.0.0/24" in subnet and "172.30.0.10" in nginx_ip
    assert "expose" in compose["services"]["web"] and "ports" not in compose["services"]["web"]
    assert "TRUSTED_PROXIES" in text


def test_turn_has_tls_and_a_relay_range(compose, tmp_path):
    conf = render("turnserver.conf.template", tmp_path, TURN_SHARED_SECRET="s")
    assert "tls-listening-port=5349" in conf
    assert re.search(r"^cert=.+$", conf, re.M) and re.search(r"^pkey=.+$", conf, re.M)
    low = int(re.search(r"^min-port=(\d+)$", conf, re.M).group(1))
    high = int(re.search(r"^max-port=(\d+)$", conf, re.M).group(1))
    assert high - low + 1 >= 800
    assert "denied-peer-ip=10.0.0.0-10.255.255.255" in conf
    assert "allow-loopback-peers" not in conf
    assert "no-tlsv1_1" in conf and "no-tlsv1\n" in conf
    assert "{{" not in conf


def test_render_refuses_a_missing_value(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(DOCKER / "render.py"),
            str(DOCKER / "turnserver.conf.template"),
            str(tmp_path / "t.conf"),
        ],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "TURN_SHARED_SECRET" in result.stderr
    assert not (tmp_path / "t.conf").exists()


def _locations(conf: str) -> dict[str, str]:
    blocks = {}
    for match in re.finditer(r"location ([^{]+)\{(.*?)\n        \}", conf, re.S):
        blocks[match.group(1).strip()] = match.group(2)
    return blocks


def test_nginx_overwrites_forwarded_headers_on_every_proxied_location(tmp_path):
    conf = render("nginx.conf.template", tmp_path, DOMAIN="bench.example.cn")
    assert "$proxy_add_x_forwarded_for" not in conf
    proxied = {k: v for k, v in _locations(conf).items() if "proxy_pass" in v}
    assert {"/", "/ws/", "= /_hls_seen"} <= set(proxied)
    for name, block in proxied.items():
        assert "proxy_set_header X-Forwarded-For $remote_addr;" in block, name
        assert "proxy_set_header X-Forwarded-Proto https;" in block, name
    assert "proxy_set_header Upgrade $http_upgrade;" in proxied["/ws/"]
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in conf
    assert "Strict-Transport-Security" in conf
    assert "return 301 https://bench.example.cn$request_uri;" in conf


@pytest.mark.skipif(not shutil.which("nginx"), reason="Debian's nginx (.ci/system-packages)")
def test_rendered_nginx_configuration_is_valid(tmp_path):
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=localhost", "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (tmp_path / "tmp").mkdir()
    render(
        "nginx.conf.template",
        tmp_path,
        DOMAIN="localhost",
        NGINX_PID=str(tmp_path / "nginx.pid"),
        NGINX_ERROR_LOG=str(tmp_path / "error.log"),
        NGINX_TEMP=str(tmp_path / "tmp"),
        TLS_CERTIFICATE=str(tmp_path / "cert.pem"),
        TLS_CERTIFICATE_KEY=str(tmp_path / "key.pem"),
        WEB_UPSTREAM="127.0.0.1:9",
    )
    result = subprocess.run(
        ["nginx", "-t", "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_compose_variables_are_in_env_example(compose):
    text = (DOCKER / "compose.yaml").read_text()
    names = set(re.findall(r"\$\{([A-Z_]+)", text))
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z_]+)=", example, re.M))
    assert names - documented == set()
