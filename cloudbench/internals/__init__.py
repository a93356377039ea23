"""Where the project touches a library's private internals: one module per library.

Each module names the releases it was written for (the same range as the library's pin in
``pyproject.toml``) and checks at import that every private name it uses is there, so that an
upgrade that renames one fails at start with a message saying which, not later in a live session.

    cloudbench.internals.twisted_private     the web server's direct socket write
    cloudbench.internals.autobahn_private    the web server's prepared frames
    streaming.node.internals.aiortc_private  the media node's RTP, SRTP and RTCP paths
    streaming.node.internals.aioice_private  ICE pairs, and host addresses kept to a setting
"""

from __future__ import annotations

from collections.abc import Iterable


class InternalsChanged(ImportError):
    """A library no longer has a private name the project relies on."""


def require(library: str, written_for: str, missing: Iterable[str]) -> None:
    """Fail at import when anything is ``missing``: names what is gone, the
    installed version, and the range the calling module was written for."""
    gone = sorted(missing)
    if not gone:
        return
    from importlib.metadata import version

    try:
        installed = version(library)
    except Exception:  # noqa: BLE001 - any failure to read it: say so in the message
        installed = "unknown"
    raise InternalsChanged(
        f"{library} {installed} lacks {', '.join(gone)}: the project's use of its internals was "
        f"written for {library}{written_for}; install a release in that range or update the module"
    )


def assigned_in(function: object, *names: str) -> list[str]:
    """Those of ``names`` that ``function`` (an ``__init__``) never assigns or reads: the
    instance attributes a class sets up, checked without making an instance."""
    code = getattr(function, "__code__", None)
    present = set(code.co_names) if code is not None else set()
    return [name for name in names if name not in present]


def lacking(obj: object, *names: str) -> list[str]:
    """Those of ``names`` that ``obj`` has no attribute for."""
    return [f"{getattr(obj, '__name__', obj)}.{name}" for name in names if not hasattr(obj, name)]
