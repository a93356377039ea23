"""Render the nginx and coturn configuration from the environment.

    python docker/render.py TEMPLATE OUTPUT [TEMPLATE OUTPUT ...]

Each ``{{NAME}}`` in a template is replaced by the environment variable NAME, or by its default
below; a name with neither is an error (nothing is written), so a missing certificate path or
secret stops the start instead of producing a server that half works. The compose file runs this
in its ``config`` service before nginx and coturn start; the deployment test runs the same
command with local addresses.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

FIELD = re.compile(r"\{\{([A-Z][A-Z0-9_]*)\}\}")

# Private, loopback and link-local peers are refused: TURN must not become a way into the
# server's own networks. A media node on a private address needs an allowed-peer-ip line.
DENIED_PEERS = "\n".join(
    f"denied-peer-ip={r}"
    for r in (
        "0.0.0.0-0.255.255.255",
        "10.0.0.0-10.255.255.255",
        "100.64.0.0-100.127.255.255",
        "127.0.0.0-127.255.255.255",
        "169.254.0.0-169.254.255.255",
        "172.16.0.0-172.31.255.255",
        "192.0.0.0-192.0.0.255",
        "192.168.0.0-192.168.255.255",
        "198.18.0.0-198.19.255.255",
        "::1",
        "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    )
)

DEFAULTS = {
    # nginx (paths inside the nginx container)
    "NGINX_PID": "/var/run/nginx.pid",
    "NGINX_ERROR_LOG": "/dev/stderr",
    "NGINX_ACCESS_LOG": "/dev/stdout",
    "NGINX_TEMP": "/var/cache/nginx",
    "NGINX_MIME_TYPES": "/etc/nginx/mime.types",
    "HTTP_LISTEN": "80",
    "HTTPS_LISTEN": "443",
    "WEB_UPSTREAM": "web:8000",
    "HLS_ROOT": "/srv/cloudbench/media/hls",
    "STATIC_ROOT": "/srv/cloudbench/static",
    "TLS_CERTIFICATE": "/etc/cloudbench/tls/fullchain.pem",
    "TLS_CERTIFICATE_KEY": "/etc/cloudbench/tls/privkey.pem",
    # coturn
    "TURN_PORT": "3478",
    "TURNS_PORT": "5349",
    "TURN_MIN_PORT": "49160",
    "TURN_MAX_PORT": "49959",
    "TURN_TOTAL_QUOTA": "700",
    "TURN_REALM": "cloudbench",
    "TURN_LOG_FILE": "stdout",
    "TURN_TLS_CERTIFICATE": "/etc/cloudbench/tls/fullchain.pem",
    "TURN_TLS_CERTIFICATE_KEY": "/etc/cloudbench/tls/privkey.pem",
    "TURN_PEER_RULES": DENIED_PEERS,
}


def values(env: dict[str, str]) -> dict[str, str]:
    out = {**DEFAULTS, **{k: v for k, v in env.items() if v != ""}}
    domain = out.get("DOMAIN", "")
    out.setdefault("SERVER_NAME", domain or "_")
    out.setdefault("HTTPS_ORIGIN", f"https://{domain}" if domain else "https://$host")
    # Unset: coturn listens and relays on every address of the host.
    out["TURN_ADDRESS_LINES"] = "\n".join(
        f"{option}={out[name]}"
        for option, name in (
            ("listening-ip", "TURN_LISTENING_IP"),
            ("relay-ip", "TURN_RELAY_IP"),
            ("external-ip", "TURN_EXTERNAL_IP"),
        )
        if out.get(name)
    )
    return out


def render(template: str, env: dict[str, str]) -> str:
    known = values(env)
    missing = sorted({name for name in FIELD.findall(template) if name not in known})
    if missing:
        raise SystemExit(f"render: set {', '.join(missing)} in the environment (.env)")
    for name in ("TURN_SHARED_SECRET", "SERVER_NAME"):
        if "\n" in known.get(name, ""):
            raise SystemExit(f"render: {name} must be one line")
    return FIELD.sub(lambda m: known[m.group(1)], template)


def main(argv: list[str]) -> int:
    if not argv or len(argv) % 2:
        print(__doc__, file=sys.stderr)
        return 2
    rendered = [
        (Path(out), render(Path(src).read_text(), dict(os.environ)))
        for src, out in zip(argv[::2], argv[1::2], strict=True)
    ]
    for path, text in rendered:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
