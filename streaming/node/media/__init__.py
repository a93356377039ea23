"""The media plane: aiortc peers, encode-once fanout, composition and recording."""
