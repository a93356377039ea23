"""aiortc's private internals, in one place: where the media node forwards encoded frames and
writes RTP itself instead of through aiortc's per-sender encoder.

Every name used here is checked at import (methods on the class, instance attributes in the
``__init__`` that sets them), so a release that changes one fails at start, naming it.
"""

from __future__ import annotations

import queue
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtcrtptransceiver import RTCRtpTransceiver

from cloudbench.internals import assigned_in, lacking, require

WRITTEN_FOR = ">=1.16,<1.17"

_SENDER_REPORT = (
    "_RTCRtpSender__ntp_timestamp",
    "_RTCRtpSender__rtp_timestamp",
    "_RTCRtpSender__packet_count",
    "_RTCRtpSender__octet_count",
)

require(
    "aiortc",
    WRITTEN_FOR,
    lacking(RTCRtpSender, "_send_keyframe", "_retransmit", "_handle_rtcp_packet")
    + lacking(RTCRtpReceiver, "_send_rtcp_pli", "_send_rtcp_nack", "_handle_rtp_packet")
    + lacking(RTCDtlsTransport, "_send_rtp")
    + [
        f"RTCRtpSender.{name}"
        for name in assigned_in(
            RTCRtpSender.__init__, "_ssrc", "_rtx_ssrc", "_enabled", *_SENDER_REPORT
        )
    ]
    + [
        f"RTCRtpReceiver.{name}"
        for name in assigned_in(
            RTCRtpReceiver.__init__,
            "_RTCRtpReceiver__started",
            "_RTCRtpReceiver__decoder_queue",
            "_RTCRtpReceiver__rtx_ssrc",
        )
    ]
    + [f"RTCRtpTransceiver.{n}" for n in assigned_in(RTCRtpTransceiver.__init__, "_codecs")]
    + [
        f"RTCDtlsTransport.{name}"
        for name in assigned_in(RTCDtlsTransport.__init__, "_tx_srtp", "_rx_srtp")
    ]
    + [f"RTCIceTransport.{n}" for n in assigned_in(RTCIceTransport.__init__, "_connection")],
)


# -- senders ----------------------------------------------------------------------------------


def route_keyframe_requests(sender: RTCRtpSender, request: Callable[[], None]) -> None:
    """Send the PLI/FIR that ``sender`` receives to ``request`` (aiortc would flag its own
    encoder, unused when the track hands it pre-encoded packets)."""
    sender._send_keyframe = request  # type: ignore[method-assign]


def replace_retransmit(sender: RTCRtpSender, retransmit: Callable[[int], Awaitable[None]]) -> None:
    """Answer ``sender``'s NACKs with ``retransmit(sequence_number)``."""
    sender._retransmit = retransmit  # type: ignore[method-assign]


def observe_rtcp(sender: RTCRtpSender, observe: Callable[[Any], None]) -> None:
    """Show ``observe`` every RTCP packet routed to ``sender`` (receiver reports, REMB, NACK,
    PLI), before aiortc handles it; what aiortc does with the packet is unchanged."""
    handle = sender._handle_rtcp_packet

    async def handle_rtcp_packet(packet: Any) -> None:
        observe(packet)
        await handle(packet)

    sender._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]


def sender_ssrc(sender: RTCRtpSender) -> int:
    return sender._ssrc


def sender_rtx_ssrc(sender: RTCRtpSender) -> int:
    return sender._rtx_ssrc


def sender_enabled(sender: RTCRtpSender) -> bool:
    """False once the sender stopped sending (the track was replaced by none or the m-line
    became inactive)."""
    return sender._enabled


def set_sender_report(
    sender: RTCRtpSender, *, ntp_timestamp: int, rtp_timestamp: int, packets: int, octets: int
) -> None:
    """What ``sender``'s RTCP task puts in its next sender report, for RTP it did not write."""
    sender._RTCRtpSender__ntp_timestamp = ntp_timestamp  # type: ignore[attr-defined]
    sender._RTCRtpSender__rtp_timestamp = rtp_timestamp  # type: ignore[attr-defined]
    sender._RTCRtpSender__packet_count = packets  # type: ignore[attr-defined]
    sender._RTCRtpSender__octet_count = octets  # type: ignore[attr-defined]


# -- receivers --------------------------------------------------------------------------------


def receiver_started(receiver: RTCRtpReceiver) -> bool:
    return bool(getattr(receiver, "_RTCRtpReceiver__started", False))


def set_decoder_queue(receiver: RTCRtpReceiver, frames: queue.Queue | Any) -> None:
    """Hand ``receiver``'s completed (still encoded) frames to ``frames`` instead of its decoder
    thread's queue; set before the receiver starts."""
    receiver._RTCRtpReceiver__decoder_queue = frames  # type: ignore[attr-defined]


def media_sources(receiver: RTCRtpReceiver) -> list[Any]:
    """The receiver's recent synchronization sources without its RTX ones.

    ``getSynchronizationSources()`` lists every SSRC a packet came from, retransmissions and the
    padding a browser sends on its RTX SSRC to probe bandwidth included (Chromium probes that way
    all through a screen share, whose output stays below the estimate); a PLI for an RTX SSRC
    asks nobody for anything."""
    rtx = getattr(receiver, "_RTCRtpReceiver__rtx_ssrc", {})
    return [s for s in receiver.getSynchronizationSources() if s.source not in rtx]


async def send_pli(receiver: RTCRtpReceiver, ssrc: int) -> None:
    """Ask the sender of ``ssrc`` for a keyframe."""
    await receiver._send_rtcp_pli(ssrc)


async def send_nack(receiver: RTCRtpReceiver, ssrc: int, lost: list[int]) -> None:
    await receiver._send_rtcp_nack(ssrc, lost)


def wrap_rtp_handler(
    receiver: RTCRtpReceiver,
    wrap: Callable[[Callable[..., Awaitable[None]]], Callable[..., Awaitable[None]]],
) -> None:
    """Put ``wrap(handler)`` in front of ``receiver``'s handling of each RTP packet."""
    receiver._handle_rtp_packet = wrap(receiver._handle_rtp_packet)  # type: ignore[method-assign]


# -- transceivers and transports ----------------------------------------------------------------


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[Any]:
    """The codecs negotiated for ``transceiver``, preferred first."""
    return list(getattr(transceiver, "_codecs", None) or [])


def srtp_sessions(dtls: RTCDtlsTransport) -> tuple[Any, Any]:
    """``dtls``'s (outgoing, incoming) SRTP sessions; None until its handshake is done."""
    return dtls._tx_srtp, dtls._rx_srtp


async def send_rtp(dtls: RTCDtlsTransport, data: bytes) -> None:
    """Protect and send one serialised RTP packet on ``dtls``."""
    await dtls._send_rtp(data)


def ice_connection(dtls: RTCDtlsTransport) -> Any:
    """The aioice ``Connection`` under ``dtls`` (see ``aioice_private`` for what is read of it)."""
    return dtls.transport._connection
