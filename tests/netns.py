"""Network namespaces a test makes for itself (root, ``ip`` and ``tc``): a peer behind a link of
its own, which the test can throttle or make lossy, and whose traffic never leaves the machine."""

import contextlib
import os
import random
import shutil
import subprocess

import pytest


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True)


@contextlib.contextmanager
def veth_namespace():
    """A network namespace joined to this one by a veth pair: (name, host-side device, node
    address, viewer address)."""
    tag = f"{os.getpid() % 10000}{random.randint(0, 99)}"
    name, host_device, viewer_device = f"cbl{tag}", f"cblh{tag}", f"cblv{tag}"
    subnet = f"10.{random.randint(64, 127)}.{random.randint(0, 255)}"
    node_address, viewer_address = f"{subnet}.1", f"{subnet}.2"
    run("ip", "netns", "add", name)
    try:
        run("ip", "link", "add", host_device, "type", "veth", "peer", "name", viewer_device)
        run("ip", "link", "set", viewer_device, "netns", name)
        run("ip", "addr", "add", f"{node_address}/30", "dev", host_device)
        run("ip", "link", "set", host_device, "up")
        inside = ("ip", "netns", "exec", name)
        run(*inside, "ip", "addr", "add", f"{viewer_address}/30", "dev", viewer_device)
        run(*inside, "ip", "link", "set", viewer_device, "up")
        run(*inside, "ip", "link", "set", "lo", "up")
        yield name, host_device, node_address, viewer_address
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            run("ip", "link", "del", host_device)  # takes its peer with it
        with contextlib.suppress(subprocess.CalledProcessError):
            run("ip", "netns", "del", name)


def needs_namespaces() -> None:
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"):
        pytest.skip("needs root, ip and tc to build a network namespace")
