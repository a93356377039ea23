"""The livestream on the media node.

scene.py        who is on air, their privacy choices, live / hold / ended
compositor.py   the broadcast picture: grid, role labels, banner, live badge, slate
privacy.py      face blurring with OpenCV's bundled Haar cascade
audio.py        the mix of all members, optional pitch shift of the parties' voices
tee.py          one composite read once for several consumers, bounded
broadcast.py    encode once (EncodedFanout) for every WebRTC viewer, plus HLS
hls.py          H.264 + AAC HLS segments in media storage; kept as a replay only with consent
station.py      the broadcasts of a media node process, driven by CaseEvents and the room
messages.py     the node's side of the watch signaling (``broadcast.*``)
synthetic.py    synthetic members for tests, benchmarks and the demo
"""
