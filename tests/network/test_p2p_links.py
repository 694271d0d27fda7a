"""The outbound link of one peer, against fake streams: batching, backpressure, retries."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dms.network.base import PeerUnreachable
from dms.network.p2p.framing import FrameDecoder
from dms.network.p2p.links import WRITE_TIMEOUT_S, Backlog, Link, backoff
from tests.network.p2p_logs import log_to_current_stderr


@pytest.fixture(autouse=True)
def _logs_to_current_stderr() -> None:
    log_to_current_stderr()


PEER = "12D3KooWPeer"


class FakeStream:
    """Records writes; can hold them at a gate or fail them."""

    def __init__(self, *, fail_after_writes: int | None = None) -> None:
        self.writes: list[bytes] = []
        self.gate: trio.Event | None = None
        self.fail_after_writes = fail_after_writes
        self.was_reset = False
        self.send_window = 1 << 30  # the peer's yamux credit, in bytes

    async def write(self, data: bytes) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_after_writes is not None and len(self.writes) >= self.fail_after_writes:
            raise ConnectionResetError("stream reset by peer")
        self.writes.append(data)

    async def reset(self) -> None:
        self.was_reset = True

    def frames(self) -> list[bytes]:
        decoder = FrameDecoder(1 << 20)
        return [f for chunk in self.writes for f in decoder.feed(chunk)]


class FakeConnection:
    """The connection under a stream: records being closed."""

    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class Opener:
    """Hands out the given streams in order; raises PeerUnreachable when out of them."""

    def __init__(self, *streams: FakeStream) -> None:
        self.streams = list(streams)
        self.opened = 0
        self.delay = 0.0  # seconds each open takes

    async def __call__(self) -> FakeStream:
        await trio.sleep(self.delay)
        if not self.streams:
            raise PeerUnreachable(PEER, "connection refused")
        self.opened += 1
        return self.streams.pop(0)


@asynccontextmanager
async def running(link: Link) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run)
        yield
        nursery.cancel_scope.cancel()


class Senders:
    """One sender task per frame, started in order; ``outcomes`` says what became of each."""

    def __init__(self) -> None:
        self.outcomes: list[object] = []
        self.done = trio.Event()
        self._remaining = 0

    async def start(self, link: Link, frames: list[bytes], nursery: trio.Nursery) -> None:
        """Start the senders, each queued (or blocked) before the next starts."""
        self.outcomes = [None] * len(frames)
        self._remaining = len(frames)
        for index, frame in enumerate(frames):
            nursery.start_soon(self._one, link, index, frame)
            await trio.testing.wait_all_tasks_blocked()

    async def _one(self, link: Link, index: int, frame: bytes) -> None:
        try:
            await link.send(frame)
            self.outcomes[index] = "sent"
        except PeerUnreachable as exc:
            self.outcomes[index] = exc
        self._remaining -= 1
        if self._remaining == 0:
            self.done.set()


class TestBatching:
    """Frames queued while a write is under way leave together in the next write."""

    async def test_frames_queued_during_a_write_are_coalesced_into_one_write(self) -> None:
        stream = FakeStream()
        stream.gate = trio.Event()
        link = Link(PEER, Opener(stream), buffer=16, batch_bytes=1 << 20)
        frames = [f"frame {i}".encode() for i in range(5)]
        senders = Senders()
        async with running(link), trio.open_nursery() as nursery:
            await senders.start(link, frames, nursery)
            stream.gate.set()
        assert senders.outcomes == ["sent"] * 5
        assert len(stream.writes) == 2
        assert stream.frames() == frames

    async def test_a_batch_stops_at_the_byte_budget(self) -> None:
        stream = FakeStream()
        stream.gate = trio.Event()
        link = Link(PEER, Opener(stream), buffer=16, batch_bytes=10)
        frames = [b"x" * 6 for _ in range(5)]
        async with running(link), trio.open_nursery() as nursery:
            await Senders().start(link, frames, nursery)
            stream.gate.set()
        # the first frame alone, then pairs: each write stops once it holds >= 10 bytes
        assert [len(w) for w in stream.writes] == [10, 20, 20]
        assert stream.frames() == frames


class TestHealthyLink:
    """The first frame waits for its write; then an idle link writes from the sender's task."""

    async def test_the_first_send_waits_for_its_write_then_idle_sends_write_at_once(
        self,
    ) -> None:
        stream = FakeStream()
        link = Link(PEER, Opener(stream), buffer=4, batch_bytes=1 << 20)
        async with running(link):
            assert not link.healthy
            await link.send(b"first")
            assert (link.healthy, stream.frames()) == (True, [b"first"])
            await link.send(b"second")  # nothing queued, nothing being written: written here
            assert (stream.frames(), link.queued) == ([b"first", b"second"], 0)

    async def test_frames_sent_during_a_write_are_queued_and_follow_it_in_order(self) -> None:
        stream = FakeStream()
        link = Link(PEER, Opener(stream), buffer=4, batch_bytes=1 << 20)
        async with running(link), trio.open_nursery() as nursery:
            await link.send(b"first")
            stream.gate = trio.Event()
            nursery.start_soon(link.send, b"second")  # written from its task, held at the gate
            await trio.testing.wait_all_tasks_blocked()
            await link.send(b"third")  # a write is under way: queued, returns at once
            await link.send(b"fourth")
            assert stream.frames() == [b"first"]  # both wait for the write under way
            stream.gate.set()
            await trio.testing.wait_all_tasks_blocked()
        assert stream.frames() == [b"first", b"second", b"third", b"fourth"]
        assert len(stream.writes) == 3  # third and fourth left together

    async def test_replies_to_a_burst_of_received_frames_leave_in_one_write(self) -> None:
        stream = FakeStream()
        backlog = Backlog()
        link = Link(PEER, Opener(stream), buffer=64, batch_bytes=1 << 20, backlog=backlog)
        async with running(link):
            await link.send(b"hello")
            backlog.frames = 20  # what read_frames does: 20 frames cut from one read
            for n in range(20):
                backlog.frames -= 1  # ... each handed to its handler, which answers at once
                await link.send(b"reply %d" % n)
            await trio.testing.wait_all_tasks_blocked()
        assert len(stream.writes) == 2
        assert stream.frames()[1:] == [b"reply %d" % n for n in range(20)]

    async def test_a_frame_the_peers_window_cannot_take_is_left_to_the_writer(self) -> None:
        stream = FakeStream()
        link = Link(PEER, Opener(stream), buffer=4, batch_bytes=1 << 20)
        async with running(link):
            await link.send(b"first")
            stream.gate = trio.Event()
            stream.send_window = 100  # the peer has read little: 100 bytes of credit left
            await link.send(b"x" * 200)  # would wait for window: queued, returns at once
            assert stream.frames() == [b"first"]
            stream.gate.set()
            await trio.testing.wait_all_tasks_blocked()
            assert stream.frames() == [b"first", b"x" * 200]
            stream.gate = trio.Event()
            returned: list[bytes] = []

            async def send(frame: bytes) -> None:
                await link.send(frame)
                returned.append(frame)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send, b"y" * 50)  # fits: written from its own task ...
                await trio.testing.wait_all_tasks_blocked()
                assert returned == []  # ... so it waits for its write, held at the gate
                stream.gate.set()
        assert (returned, stream.frames()[-1]) == ([b"y" * 50], b"y" * 50)

    async def test_a_cancelled_sender_does_not_cut_its_frame(self) -> None:
        stream = FakeStream()
        link = Link(PEER, Opener(stream), buffer=4, batch_bytes=1 << 20)
        async with running(link):
            await link.send(b"first")
            stream.gate = trio.Event()
            sender = trio.CancelScope()

            async def send_second() -> None:
                with sender:
                    await link.send(b"second")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_second)
                await trio.testing.wait_all_tasks_blocked()
                sender.cancel()  # the sender is cancelled in the middle of its write
                await trio.testing.wait_all_tasks_blocked()
                assert stream.frames() == [b"first"]  # still writing: shielded
                stream.gate.set()
            await link.send(b"third")
            assert link.healthy and not stream.was_reset  # the same stream goes on
        assert stream.frames() == [b"first", b"second", b"third"]

    async def test_a_write_that_hangs_is_given_up_and_the_frame_goes_on_a_new_stream(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        hung = FakeStream()
        hung.muxed_conn = FakeConnection()  # type: ignore[attr-defined]
        fresh = FakeStream()
        link = Link(PEER, Opener(hung, fresh), buffer=4, batch_bytes=1 << 20)
        async with running(link):
            await link.send(b"first")
            hung.gate = trio.Event()  # never set: the connection stalled
            start = trio.current_time()
            await link.send(b"second")
            assert trio.current_time() - start == pytest.approx(WRITE_TIMEOUT_S)
            await trio.testing.wait_all_tasks_blocked()  # the writer retries it
            assert (hung.frames(), fresh.frames()) == ([b"first"], [b"second"])
            # part of a Noise message may be on the wire: the whole connection goes
            assert hung.muxed_conn.closed and link.healthy  # type: ignore[attr-defined]

    async def test_a_sender_whose_write_failed_does_not_wait_for_the_redial(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        stale = FakeStream(fail_after_writes=1)
        fresh = FakeStream()
        opener = Opener(stale, fresh)
        link = Link(PEER, opener, buffer=4, batch_bytes=1 << 20)
        async with running(link):
            await link.send(b"first")
            opener.delay = 30.0  # the next stream takes 30 s to open
            start = trio.current_time()
            await link.send(b"second")  # breaks; the writer redials
            assert trio.current_time() - start == 0  # its sender (an invoke, say) goes on
            await trio.sleep(31)
            assert fresh.frames() == [b"second"]


OPERATIONS = st.sampled_from(
    ["send", "send", "send", "burst", "drain", "hold", "release", "break", "tick", "settle"]
)


class TestOrder:
    """Whatever mix of written-at-once, queued and waiting sends: frames leave as sent, all."""

    @given(st.lists(OPERATIONS, max_size=40))
    @example(  # a frame queued behind a write must not be overtaken once that write ends
        ["hold", "send", "settle", "send", "settle", "release", "send", "tick", "settle"]
    )
    @settings(max_examples=300, deadline=None)
    def test_frames_leave_in_the_order_their_senders_called_send(
        self, operations: list[str]
    ) -> None:
        trio.run(self._scenario, operations)

    @staticmethod
    async def _scenario(operations: list[str]) -> None:
        streams = [FakeStream() for _ in range(len(operations) + 1)]
        opener = Opener(*streams)
        backlog = Backlog()
        link = Link(PEER, opener, buffer=2, batch_bytes=32, backlog=backlog)
        called: list[bytes] = []
        gate: trio.Event | None = None  # while set, writes on every stream stall

        refused: list[bytes] = []

        async def send(frame: bytes) -> None:
            called.append(frame)  # the order send() was called in
            try:
                await link.send(frame)
            except PeerUnreachable:  # it waited for its write (the link was broken): it failed
                refused.append(frame)

        def stream() -> FakeStream:
            return streams[opener.opened - 1]  # the one in use

        def release() -> None:
            nonlocal gate
            if gate is not None:
                gate.set()
                gate = None
            for each in streams:
                each.gate = None

        async with trio.open_nursery() as writer:
            writer.start_soon(link.run)
            await send(b"first")
            async with trio.open_nursery() as senders:
                for n, operation in enumerate(operations):
                    if operation == "send":
                        senders.start_soon(send, b"frame %d" % n)
                    elif operation == "burst":  # frames received and not yet handled
                        backlog.frames += 1
                    elif operation == "drain":
                        backlog.frames = max(0, backlog.frames - 1)
                    elif operation == "hold" and gate is None:  # writes stall
                        gate = trio.Event()
                        for each in streams:
                            each.gate = gate
                    elif operation == "release":
                        release()
                    elif operation == "break":  # the next write on this stream fails
                        stream().fail_after_writes = len(stream().writes)
                    elif operation == "tick":  # let the tasks that can run, run once
                        await trio.lowlevel.checkpoint()
                    elif operation == "settle":  # until every task waits
                        await trio.testing.wait_all_tasks_blocked()
                release()
            await trio.testing.wait_all_tasks_blocked()
            writer.cancel_scope.cancel()
        # a broken stream is replaced, and the frames it failed go first on the new one; a frame
        # that fails on a fresh stream too is refused to a sender that waited, or else counted
        written = [frame for each in streams for frame in each.frames()]
        assert written == [frame for frame in called if frame in set(written)]
        assert len(called) - len(written) == len(refused) + link.dropped


class TestBackpressure:
    """A full queue makes send() wait instead of growing; nothing is lost or reordered."""

    async def test_senders_wait_while_the_queue_is_full(self) -> None:
        stream = FakeStream()
        stream.gate = trio.Event()
        link = Link(PEER, Opener(stream), buffer=2, batch_bytes=1 << 20)
        frames = [f"frame {i}".encode() for i in range(10)]
        async with running(link), trio.open_nursery() as nursery:
            await Senders().start(link, frames, nursery)
            # one frame is in the writer's hands, two wait in the queue, seven wait in send()
            assert link.queued == 2 and not link.has_room
            assert stream.writes == []
            stream.gate.set()
        assert stream.frames() == frames


class TestFailures:
    """A stale stream is replaced once; a peer that cannot be reached fails its senders."""

    async def test_a_stream_that_breaks_after_working_is_replaced_transparently(self) -> None:
        stale = FakeStream(fail_after_writes=1)
        fresh = FakeStream()
        opener = Opener(stale, fresh)
        link = Link(PEER, opener, buffer=4, batch_bytes=1 << 20)
        async with running(link):
            await link.send(b"first")
            await link.send(b"second")
            await trio.testing.wait_all_tasks_blocked()
        assert (stale.frames(), fresh.frames()) == ([b"first"], [b"second"])
        assert stale.was_reset and opener.opened == 2
        assert (link.healthy, link.dropped) == (True, 0)

    async def test_a_frame_written_at_once_on_a_broken_stream_goes_first_on_the_new_one(
        self,
    ) -> None:
        stale = FakeStream()
        fresh = FakeStream()
        link = Link(PEER, Opener(stale, fresh), buffer=8, batch_bytes=1 << 20)
        async with running(link):
            await link.send(b"first")
            stale.gate = trio.Event()
            stale.fail_after_writes = 1  # the next write breaks
            async with trio.open_nursery() as nursery:
                nursery.start_soon(link.send, b"a")  # idle: written at once, held at the gate
                await trio.testing.wait_all_tasks_blocked()
                await link.send(b"b")  # a write is under way: queued behind it
                stale.gate.set()  # the write of "a" fails
            await trio.testing.wait_all_tasks_blocked()
        assert (stale.frames(), fresh.frames()) == ([b"first"], [b"a", b"b"])
        assert stale.was_reset and link.dropped == 0

    async def test_a_frame_no_new_stream_can_take_is_counted_and_the_next_send_waits(
        self,
    ) -> None:
        stream = FakeStream(fail_after_writes=1)
        link = Link(PEER, Opener(stream), buffer=4, batch_bytes=1 << 20)
        async with running(link):
            await link.send(b"first")
            await link.send(b"second")  # written at once, breaks; the sender does not wait
            await trio.testing.wait_all_tasks_blocked()  # for the writer's redial, which fails
            assert (link.healthy, link.dropped) == (False, 1)
            with pytest.raises(PeerUnreachable, match="connection refused"):
                await link.send(b"third")
        assert (stream.frames(), stream.was_reset) == ([b"first"], True)

    async def test_a_frame_lost_after_send_returned_is_counted_and_the_next_send_waits(
        self,
    ) -> None:
        stream = FakeStream(fail_after_writes=1)
        backlog = Backlog()
        link = Link(PEER, Opener(stream), buffer=4, batch_bytes=1 << 20, backlog=backlog)
        async with running(link):
            await link.send(b"first")  # no stream yet: waits for its write
            backlog.frames = 1  # more received frames to answer: this one is only queued
            await link.send(b"second")  # healthy: returns once queued, then meets a broken stream
            backlog.frames = 0
            await trio.testing.wait_all_tasks_blocked()
            assert (link.healthy, link.dropped) == (False, 1)
            with pytest.raises(PeerUnreachable, match="connection refused"):
                await link.send(b"third")
        assert stream.frames() == [b"first"]

    async def test_a_fresh_stream_that_fails_fails_every_frame_of_its_batch(self) -> None:
        broken = FakeStream(fail_after_writes=0)
        link = Link(PEER, Opener(broken), buffer=8, batch_bytes=1 << 20)
        senders = Senders()
        async with trio.open_nursery() as nursery:
            await senders.start(link, [b"a", b"b", b"c"], nursery)  # queued, no writer yet
            async with running(link):
                await senders.done.wait()
        assert [str(r) for r in senders.outcomes] == [
            f"peer {PEER} unreachable: write failed: stream reset by peer"
        ] * 3

    async def test_an_unreachable_peer_fails_the_sender_with_the_dial_error(self) -> None:
        link = Link(PEER, Opener(), buffer=4, batch_bytes=1 << 20)
        async with running(link):
            with pytest.raises(PeerUnreachable, match="connection refused"):
                await link.send(b"hello")

    async def test_frames_still_queued_when_the_network_stops_fail_their_senders(self) -> None:
        stream = FakeStream()
        stream.gate = trio.Event()
        link = Link(PEER, Opener(stream), buffer=8, batch_bytes=1 << 20)
        outcomes: list[object] = []

        async def sender(frame: bytes) -> None:
            try:
                await link.send(frame)
                outcomes.append("sent")
            except PeerUnreachable as exc:
                outcomes.append(str(exc))

        async with trio.open_nursery() as senders, trio.open_nursery() as writer:
            writer.start_soon(link.run)
            for frame in (b"a", b"b", b"c"):
                senders.start_soon(sender, frame)
            await trio.testing.wait_all_tasks_blocked()
            writer.cancel_scope.cancel()
        # the frame being written and those still queued fail with a reason: nobody waits forever
        assert outcomes == [f"peer {PEER} unreachable: the network stopped"] * 3
        with pytest.raises(PeerUnreachable, match="network is stopping"):
            await link.send(b"late")


class TestIdleLinks:
    """A link without frames for a while lets go of its stream and stops taking frames."""

    async def test_an_idle_link_releases_its_stream(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        stream = FakeStream()
        link = Link(PEER, Opener(stream), buffer=4, batch_bytes=1 << 20)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(link.run, idle_s=600))
            await link.send(b"hello")
            await trio.sleep(599)
            await link.send(b"still here")  # written from this task, not the writer's: still resets
            # the writer's idle clock
            await trio.sleep(599)
            assert not link.closed
            await trio.sleep(2)
        assert link.closed and stream.was_reset
        assert stream.frames() == [b"hello", b"still here"]
        with pytest.raises(PeerUnreachable):
            await link.send(b"too late")

    async def test_a_frame_queued_just_as_the_idle_timer_fires_is_still_written(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        for _ in range(30):  # which of the two tasks trio runs first varies
            stream = FakeStream()
            backlog = Backlog()
            link = Link(PEER, Opener(stream), buffer=4, batch_bytes=1 << 20, backlog=backlog)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(functools.partial(link.run, idle_s=10))
                await link.send(b"hello")
                backlog.frames = 1  # replies on their way: the next frame is queued
                await trio.sleep_until(link._last_write + 10)  # wake with the idle timer
                try:
                    await link.send(b"late")  # returns once queued
                except PeerUnreachable:
                    continue  # the writer had already closed the link: the sender knows
                backlog.frames = 0
                await trio.testing.wait_all_tasks_blocked()
                assert stream.frames() == [b"hello", b"late"]
                nursery.cancel_scope.cancel()


class TestBackoff:
    """Redial delays double from the minimum up to the maximum."""

    @pytest.mark.parametrize(
        ("attempt", "expected"), [(0, 0.2), (1, 0.4), (3, 1.6), (10, 30.0), (1000, 30.0)]
    )
    def test_delays_double_and_stop_at_the_cap(self, attempt: int, expected: float) -> None:
        assert backoff(attempt, 0.2, 30.0) == pytest.approx(expected)
