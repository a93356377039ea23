"""The media node: everything that runs only where the media is (aiortc, PyAV, OpenCV).

worker.py       the node channel's consumer and worker (``manage.py medianode``)
director.py     the rooms' live state: lobby, admissions, removals, caucus, recording
process.py      this process's director and station, made on first use
ice.py          the node's ICE servers and host addresses
media/          the room's media: peers, selective forwarding, recording, composition
broadcast/      the livestream: composite, encode-once fan-out to viewers, HLS

The web side never imports this package (``streaming.plane`` holds what both share), except
``streaming.embedded`` when the node runs inside the web process.
"""
