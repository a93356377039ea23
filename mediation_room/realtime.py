"""Names of channel-layer groups about cases, and publishing to them after commit."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction


def case_group(case_id: int) -> str:
    return f"case.{case_id}"


def publish_case_update(case_id: int, event: dict[str, Any]) -> None:
    """Tell every consumer listening on the case (room, watch page, case page) after commit.

    `event` must be JSON-safe: it crosses processes through the channel layer."""

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        async_to_sync(layer.group_send)(
            case_group(case_id), {"type": "case.update", "case_id": case_id, "event": event}
        )

    transaction.on_commit(send)
