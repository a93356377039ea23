"""The livestream of a mediation session to residents: the web side.

consumers.py    the watch WebSocket (protocol.py); the media node answers it
selectors.py    services.py   views.py (HLS files without nginx)

The broadcast itself (composite, encode-once fan-out, HLS) runs on the media node:
``streaming.node.broadcast``.
"""
