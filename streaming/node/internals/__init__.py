"""The media node's uses of aiortc's and aioice's private internals (see ``cloudbench.internals``)."""
