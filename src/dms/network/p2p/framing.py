"""Length-prefixed frames on a byte stream: a 4-byte big-endian length, then that many bytes.

The decoder is incremental (feed it whatever a read returned, take out every whole frame) and
refuses a length over the maximum as soon as the header arrives, before buffering the body, so a
peer cannot make us hold more than one maximum frame plus one read.
"""

from __future__ import annotations

import struct

from dms.network.base import FrameTooLarge

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size
MAX_FRAME_LIMIT = 2**32 - 1


def encode(frame: bytes, max_frame: int) -> bytes:
    """Header + frame; raises FrameTooLarge over ``max_frame``."""
    if len(frame) > max_frame:
        raise FrameTooLarge(len(frame), max_frame)
    return HEADER.pack(len(frame)) + frame


def encode_many(frames: list[bytes]) -> bytes:
    """Several already-checked frames as one buffer (one write, one encryption, one syscall)."""
    parts: list[bytes] = []
    for frame in frames:
        parts.append(HEADER.pack(len(frame)))
        parts.append(frame)
    return b"".join(parts)


class FrameDecoder:
    """Turns a byte stream into frames. Raises FrameTooLarge on an oversized header."""

    __slots__ = ("_buffer", "_max_frame", "_need")

    def __init__(self, max_frame: int) -> None:
        self._max_frame = max_frame
        self._buffer = bytearray()
        self._need = -1  # body length of the frame being assembled, -1 while reading a header

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the frames they complete, in order."""
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        offset = 0
        available = len(buffer)
        while True:
            if self._need < 0:
                if available - offset < HEADER_SIZE:
                    break
                (size,) = HEADER.unpack_from(buffer, offset)
                if size > self._max_frame:
                    raise FrameTooLarge(size, self._max_frame)
                offset += HEADER_SIZE
                self._need = size
            if available - offset < self._need:
                break
            frames.append(bytes(buffer[offset : offset + self._need]))
            offset += self._need
            self._need = -1
        if offset:
            del buffer[:offset]
        return frames

    @property
    def pending(self) -> int:
        """Bytes held for a frame not yet complete (0 between frames)."""
        return len(self._buffer) + (HEADER_SIZE if self._need >= 0 else 0)
