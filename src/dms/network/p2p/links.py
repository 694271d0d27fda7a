"""Direct frames: one long-lived outbound stream per peer, and the reader of inbound streams.

Outbound, each peer has a :class:`Link`: a bounded queue of frames and one writer task (owned by
the network's task group). The writer takes every frame already queued, up to a byte budget, and
writes them as one buffer: one yamux frame, one Noise encryption, one syscall for many frames.
With 64 requests in flight that is ~0.05 socket writes per frame instead of one, and py-libp2p
spends ~200 us of CPU per stream write here.

``send()`` on a *healthy* link (its last write succeeded) that is idle (nothing queued, no
write under way, no received frame waiting to be handled, see below, and room for the frame in
the peer's yamux window) writes the frame itself, from the sender's task: a request or reply on
a quiet link leaves without waking the writer, one task switch less on each side of a round
trip. That write is shielded from the sender's cancellation, so a cancelled sender never cuts a
Noise frame in half, and bounded by ``WRITE_TIMEOUT_S`` instead. A write that fails resets the
stream; one still unfinished after ``WRITE_TIMEOUT_S`` (the connection stalled, and part of a
Noise message may be on the wire) closes the whole connection. Either way the frame goes to the
writer ahead of every frame sent after it, and its sender does not wait for the new stream: it
had sent on a healthy link.

Otherwise ``send()`` puts its frame in the queue, waiting only while the queue is full:
backpressure reaches the caller and nothing grows without bound. While there is room it does
not even yield. While frames cut from one read are still being handed to their handlers (the
:class:`Backlog`), replies are queued rather than written one by one, so the replies to a burst
of requests leave together. While the link is not healthy (no stream yet, or the last write
failed) ``send()`` also waits for the write, so dial errors reach the caller as
:class:`PeerUnreachable`. Frames leave in the order they were sent: a frame is written by its
sender only when nothing sent before it is still waiting.

A stream that fails is reset and dropped; the next batch opens a new one (dialling again if the
connection is gone). A batch that fails on a stream that had worked is retried once on a fresh
stream, so a peer that restarted gets its frames without the caller noticing (frames the old
stream had delivered before breaking may arrive twice; envelopes carry nonces). A batch that
fails on a fresh stream fails the callers waiting on it; frames of that batch whose callers did
not wait are dropped and counted (``dropped``): like a message lost on the wire, the actor
layer's invoke deadline covers it.

Inbound, :func:`read_frames` reads a peer's stream in large chunks, cuts it into frames and hands
each to the receive handler in order, waiting for it: a slow handler stops the reads, yamux's
window fills, and the sender's writes wait (yamux gives up after 5 s without window: the link then
fails, and the sender sees PeerUnreachable). It yields every ``DELIVERY_SLICE`` frames, so the
replies to the first requests of a large burst are written while the rest are handled: without
that, two nodes with many requests in flight work in lockstep, each idle while the other
handles a whole batch.

Links read and write the yamux stream under each libp2p stream (:func:`muxed`), and the reader
batches its stream's window updates (``host.batch_window_updates``): see those for why.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from libp2p.abc import INetStream
from structlog.typing import FilteringBoundLogger

from dms.log import get_logger
from dms.network.base import FrameTooLarge, PeerID, PeerUnreachable
from dms.network.p2p.framing import HEADER, HEADER_SIZE, FrameDecoder, encode_many

READ_SIZE = 256 * 1024
WRITE_TIMEOUT_S = 10.0
"""The longest a sender's inline write may take (yamux gives up after 5 s without window)."""
DELIVERY_SLICE = 16

OpenStream = Callable[[], Awaitable[INetStream]]
FrameSink = Callable[[PeerID, bytes], Awaitable[None]]


def _log() -> FilteringBoundLogger:
    """A logger made at use, so that it follows the configuration set after import."""
    return get_logger(component="p2p.links")


class Backlog:
    """Frames received on this node's inbound streams and not yet delivered.

    While there are some, the replies they will cause are on their way: links queue frames for
    their writers instead of writing each at once, so that the replies to a burst leave in few
    writes (see the module docstring).
    """

    __slots__ = ("frames",)

    def __init__(self) -> None:
        self.frames = 0


class _Pending:
    """One queued frame and, if its sender waits for the write, what became of it."""

    __slots__ = ("done", "error", "frame")

    def __init__(self, frame: bytes, waited: bool) -> None:
        self.frame = frame
        self.done = trio.Event() if waited else None
        self.error: PeerUnreachable | None = None


class Link:
    """The outbound side of one peer: queue, writer, stream."""

    def __init__(
        self,
        peer: PeerID,
        open_stream: OpenStream,
        buffer: int,
        batch_bytes: int,
        backlog: Backlog | None = None,
    ) -> None:
        self.peer = peer
        self._open_stream = open_stream
        self._batch_bytes = batch_bytes
        self._send_channel, self._receive_channel = trio.open_memory_channel[_Pending](buffer)
        self._stream: INetStream | None = None
        self.healthy = False
        """The last write succeeded: senders need not wait for theirs."""
        self.writes = 0
        self.dropped = 0
        self._closed = False
        self._backlog = backlog or Backlog()
        self._unwritten = 0
        """Frames handed to the writer and not yet written (queued or in its current batch)."""
        self._writing = False
        """A write is under way, the writer's or a sender's inline one."""
        self._writer_waits: trio.Event | None = None
        self._last_write = trio.current_time()
        self._retry: list[_Pending] = []
        """Frames whose inline write failed, to go before the writer's next batch."""

    async def send(self, frame: bytes) -> None:
        """Send a frame (already checked against the maximum); see the module docstring."""
        if self._idle(len(frame)):
            await self._write_inline(frame)
            return
        pending = _Pending(frame, waited=not self.healthy)
        self._unwritten += 1  # before the frame can reach the writer, which counts it off
        try:
            try:
                self._send_channel.send_nowait(pending)  # room: no checkpoint (see above)
            except trio.WouldBlock:
                await self._send_channel.send(pending)  # full: wait (backpressure)
        except BaseException as exc:
            self._unwritten -= 1  # not queued
            if isinstance(exc, trio.ClosedResourceError | trio.BrokenResourceError):
                raise PeerUnreachable(self.peer, "the network is stopping") from None
            raise
        if pending.done is not None:
            await pending.done.wait()
            if pending.error is not None:
                raise pending.error

    def _idle(self, size: int) -> bool:
        """A frame of ``size`` bytes sent now may be written from the sender's task.

        Only if the peer's yamux window takes it whole: waiting for window (a peer that does not
        read) must not happen in a shielded write, so such a frame goes through the writer.
        """
        if not (
            self.healthy
            and self._stream is not None
            and self._unwritten == 0
            and not self._writing
            and not self._closed
            and self._backlog.frames == 0
        ):
            return False
        window = getattr(muxed(self._stream), "send_window", None)  # None: not yamux
        return window is None or window >= size + HEADER_SIZE

    async def _write_inline(self, frame: bytes) -> None:
        """Write one frame from the sender's task (see the module docstring).

        Shielded, so that a cancelled sender cannot cut a frame in half, and bounded by
        ``WRITE_TIMEOUT_S`` instead. A write that fails leaves its stream in an unknown state: the
        stream is reset (after a timeout, when part of a Noise message may be on the wire, the
        whole connection is closed) and the frame goes to the writer ahead of every frame sent
        after it. Its sender does not wait for that: like any frame sent on a healthy link, one
        that cannot be written on a new stream either is counted in ``dropped``.
        """
        stream = self._stream
        assert stream is not None  # send() checked
        self._writing = True
        broken = timed_out = False
        try:
            deadline = trio.current_time() + WRITE_TIMEOUT_S
            with trio.CancelScope(deadline=deadline, shield=True) as scope:
                await muxed(stream).write(HEADER.pack(len(frame)) + frame)
            timed_out = scope.cancelled_caught
        except Exception as exc:  # libp2p raises many unrelated types; all mean "broken"
            _log().debug("stale stream, retrying on a new one", peer=self.peer, error=str(exc))
            broken = True
        finally:
            if broken or timed_out:
                # before anything else can run: the writer starts afresh, this frame first
                self.healthy = False
                if self._stream is stream:
                    self._stream = None
                self._requeue_first(frame)
            self._writing = False
            self._last_write = trio.current_time()
            if self._writer_waits is not None:
                self._writer_waits.set()
        if broken or timed_out:
            with trio.CancelScope(shield=True):
                await _release(stream, connection=timed_out)
        else:
            self.writes += 1

    def _requeue_first(self, frame: bytes) -> None:
        """Give a frame whose inline write failed to the writer, ahead of all queued frames."""
        pending = _Pending(frame, waited=False)
        self._unwritten += 1
        if self._unwritten > 1:
            # frames were sent during the write: the writer holds or will take them, and puts
            # these first once the write is over (see run())
            self._retry.append(pending)
            return
        try:
            self._send_channel.send_nowait(pending)  # nothing queued: first in line
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self._unwritten -= 1  # the link is closing
            self.dropped += 1

    @property
    def closed(self) -> bool:
        """The writer has stopped (idle, or the network stopped): the link takes no frames."""
        return self._closed

    async def run(self, idle_s: float = math.inf) -> None:
        """The writer: runs until cancelled (network stop) or idle for ``idle_s`` seconds.

        Fails what is still queued on the way out. An idle link releases its stream and task; the
        network makes a new link for the peer's next frame.
        """
        receive = self._receive_channel
        batch: list[_Pending] = []
        try:
            while True:
                with trio.move_on_at(self._last_write + idle_s):
                    first = await receive.receive()
                    batch = [first]
                if not batch:
                    if self._writing:  # a sender's inline write: look again once it is done
                        await self._wait_inline_write()
                        continue
                    if trio.current_time() < self._last_write + idle_s:
                        continue  # frames written inline meanwhile: not idle
                    try:  # a frame queued just as the timer fired (receive() was cancelled)
                        batch = [receive.receive_nowait()]
                    except trio.WouldBlock:
                        return  # idle: nothing queued, and nothing can be: the link closes
                size = len(batch[0].frame)
                while size < self._batch_bytes:
                    try:
                        item = receive.receive_nowait()
                    except trio.WouldBlock:
                        break
                    batch.append(item)
                    size += len(item.frame)
                while self._writing:  # a sender's inline write: it goes first
                    await self._wait_inline_write()
                if self._retry:  # frames whose inline write failed go before those sent later
                    batch[:0] = self._retry
                    self._retry = []
                self._writing = True
                try:
                    error = await self._write(encode_many([p.frame for p in batch]))
                finally:
                    self._writing = False
                    self._unwritten -= len(batch)
                    self._last_write = trio.current_time()
                self.healthy = error is None
                for pending in batch:
                    if pending.done is not None:
                        pending.error = error
                        pending.done.set()
                    elif error is not None:
                        self.dropped += 1
                if error is not None:
                    _log().warning("frames not delivered", peer=self.peer, error=str(error))
                batch = []
        finally:
            self._closed = True
            self._send_channel.close()
            stopped = PeerUnreachable(self.peer, "the network stopped")
            batch.extend(self._retry)
            self._retry = []
            while True:
                try:
                    batch.append(receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
            for pending in batch:  # the batch being written, then everything still queued
                if pending.done is not None and not pending.done.is_set():
                    pending.error = stopped
                    pending.done.set()
            with trio.CancelScope(shield=True):
                await self._discard_stream()

    async def _wait_inline_write(self) -> None:
        self._writer_waits = trio.Event()
        await self._writer_waits.wait()
        self._writer_waits = None

    async def _write(self, data: bytes) -> PeerUnreachable | None:
        for _attempt in range(2):
            had_stream = self._stream is not None
            try:
                if self._stream is None:
                    self._stream = await self._open_stream()
                await muxed(self._stream).write(data)
            except PeerUnreachable as exc:
                return exc
            except Exception as exc:  # libp2p raises many unrelated types; all mean "broken"
                await self._discard_stream()
                if had_stream:
                    _log().debug(
                        "stale stream, retrying on a new one", peer=self.peer, error=str(exc)
                    )
                    continue
                return PeerUnreachable(self.peer, f"write failed: {exc or type(exc).__name__}")
            self.writes += 1
            return None
        return PeerUnreachable(self.peer, "write failed twice")

    async def _discard_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await _release(stream, connection=False)

    @property
    def queued(self) -> int:
        return self._send_channel.statistics().current_buffer_used

    @property
    def has_room(self) -> bool:
        """A frame sent now is written or queued without waiting for room."""
        stats = self._send_channel.statistics()
        return stats.current_buffer_used < stats.max_buffer_size


async def read_frames(
    peer: PeerID,
    stream: INetStream,
    max_frame: int,
    sink: FrameSink,
    backlog: Backlog | None = None,
) -> None:
    """Deliver a peer's frames in order until the stream ends; FrameTooLarge propagates."""
    decoder = FrameDecoder(max_frame)
    backlog = backlog or Backlog()
    reader = muxed(stream)
    while True:
        try:
            data = await reader.read(READ_SIZE)
        except EOFError:
            break
        if not data:
            break
        frames = decoder.feed(data)
        waiting = len(frames)
        backlog.frames += waiting
        try:
            for index, frame in enumerate(frames, 1):
                waiting -= 1
                backlog.frames -= 1
                await sink(peer, frame)
                if index % DELIVERY_SLICE == 0:
                    await trio.lowlevel.checkpoint()  # let the writers send what is answered
        finally:
            backlog.frames -= waiting
    if decoder.pending:
        _log().warning("stream ended inside a frame", peer=peer, pending_bytes=decoder.pending)


async def _release(stream: INetStream, *, connection: bool) -> None:
    """Reset a stream (or close its whole connection); broken or not, nothing more to do."""
    with trio.move_on_after(1), contextlib.suppress(Exception):
        conn = getattr(stream, "muxed_conn", None) if connection else None
        if conn is not None:
            await conn.close()
        else:
            await stream.reset()


def muxed(stream: INetStream) -> Any:
    """The yamux stream under a libp2p stream (the stream itself if it has none).

    Links read and write it directly: ``NetStream`` takes a trio lock around a state check on
    every read and write, one scheduler pass each, and a link's stream is used by its link alone
    and reset on any error, so the check adds nothing.
    """
    return getattr(stream, "muxed_stream", stream)


def backoff(attempt: int, minimum_s: float, maximum_s: float) -> float:
    """Exponential backoff with a cap: min, 2*min, 4*min, ... max."""
    return min(maximum_s, minimum_s * math.pow(2, min(attempt, 32)))


__all__ = ["Backlog", "FrameTooLarge", "Link", "backoff", "read_frames"]
