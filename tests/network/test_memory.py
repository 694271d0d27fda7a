"""The in-memory network: ordering, latency, loss, partitions, backpressure, topics, scale."""

from __future__ import annotations

from contextlib import AsyncExitStack

import anyio
import pytest
import trio
import trio.testing

from dms.network import FrameTooLarge, Network, NetworkClosed, PeerUnreachable
from dms.network.memory import Fabric, LinkSpec, MemoryNetwork

MS = 1_000_000


class Inbox:
    """Collects (sender, frame) pairs and lets a test wait for a count of them."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []
        self._changed = anyio.Event()

    async def __call__(self, sender: str, frame: bytes) -> None:
        self.items.append((sender, frame))
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, count: int) -> None:
        while len(self.items) < count:
            await self._changed.wait()

    @property
    def frames(self) -> list[bytes]:
        return [frame for _, frame in self.items]


class TestDirectFrames:
    """send() delivers frames to the peer's handler, in order, after the link's latency."""

    def test_a_memory_network_satisfies_the_network_protocol(self) -> None:
        assert isinstance(Fabric().network("a"), Network)

    async def test_frames_arrive_in_order_per_sender(self) -> None:
        fabric = Fabric()
        inbox = Inbox()
        async with fabric.network("a") as a, fabric.network("b") as b:
            b.on_receive(inbox)
            for i in range(100):
                await a.send("b", str(i).encode())
            await inbox.wait_for(100)
        assert inbox.frames == [str(i).encode() for i in range(100)]
        assert {sender for sender, _ in inbox.items} == {"a"}
        assert fabric.stats("a", "b").delivered == 100

    async def test_latency_is_paid_in_virtual_time(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        fabric = Fabric()
        inbox = Inbox()
        async with fabric.network("a") as a, fabric.network("b") as b:
            fabric.set_link("a", "b", LinkSpec(latency_ns=250 * MS))
            b.on_receive(inbox)
            start = trio.current_time()
            await a.send("b", b"x")
            await inbox.wait_for(1)
            assert trio.current_time() - start == pytest.approx(0.25)
            assert await a.ping("b") == pytest.approx(0.5)

    async def test_a_slower_link_does_not_reorder_frames_of_one_sender(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        fabric = Fabric()
        inbox = Inbox()
        async with fabric.network("a") as a, fabric.network("b") as b:
            b.on_receive(inbox)
            fabric.set_link("a", "b", LinkSpec(latency_ns=100 * MS))
            await a.send("b", b"first")
            fabric.set_link("a", "b", LinkSpec(latency_ns=0))
            await a.send("b", b"second")
            await inbox.wait_for(2)
        assert inbox.frames == [b"first", b"second"]

    async def test_an_oversized_frame_is_refused_naming_both_sizes(self) -> None:
        fabric = Fabric(max_frame=10)
        async with fabric.network("a") as a, fabric.network("b"):
            with pytest.raises(FrameTooLarge, match="11 bytes exceeds the maximum of 10"):
                await a.send("b", b"x" * 11)

    async def test_an_unknown_peer_is_unreachable(self) -> None:
        async with Fabric().network("a") as a:
            with pytest.raises(PeerUnreachable, match="nobody"):
                await a.send("nobody", b"x")

    async def test_a_network_is_used_once(self) -> None:
        network = Fabric().network("a")
        async with network:
            pass
        with pytest.raises(NetworkClosed, match="stopped"):
            await network.send("b", b"x")
        with pytest.raises(NetworkClosed, match="used once"):
            async with network:
                pass

    async def test_two_running_nodes_cannot_share_a_peer_id(self) -> None:
        fabric = Fabric()
        async with fabric.network("a"):
            with pytest.raises(NetworkClosed, match="already running"):
                async with fabric.network("a"):
                    pass

    async def test_a_handler_error_surfaces_when_the_node_stops(self) -> None:
        fabric = Fabric()

        async def broken(sender: str, frame: bytes) -> None:
            raise RuntimeError("handler bug")

        with pytest.RaisesGroup(
            pytest.RaisesExc(RuntimeError, match="handler bug"), flatten_subgroups=True
        ):
            async with fabric.network("a") as a, fabric.network("b") as b:
                b.on_receive(broken)
                await a.send("b", b"x")
                await anyio.sleep_forever()


class TestLoss:
    """Loss is drawn from the fabric's seeded generator: reproducible, and counted."""

    @staticmethod
    async def run(seed: int) -> list[bytes]:
        fabric = Fabric(seed=seed, default_link=LinkSpec(loss=0.5))
        inbox = Inbox()
        async with fabric.network("a") as a, fabric.network("b") as b:
            b.on_receive(inbox)
            for i in range(200):
                await a.send("b", str(i).encode())
            stats = fabric.stats("a", "b")
            await inbox.wait_for(stats.sent - stats.lost)
        assert stats.sent == 200 and 0 < stats.lost < 200
        return inbox.frames

    async def test_the_same_seed_loses_the_same_frames(self) -> None:
        assert await self.run(7) == await self.run(7)

    async def test_another_seed_loses_other_frames(self) -> None:
        assert await self.run(7) != await self.run(8)


class TestPartitions:
    """A partition refuses new frames across it and drops those already in flight."""

    async def test_sending_across_a_partition_is_refused(self) -> None:
        fabric = Fabric()
        async with fabric.network("a") as a, fabric.network("b"), fabric.network("c") as c:
            c.on_receive(Inbox())
            fabric.partition({"a"}, {"b"})
            with pytest.raises(PeerUnreachable, match="partitioned"):
                await a.send("b", b"x")
            await a.send("c", b"unlisted peers reach everyone")
            fabric.heal()
            await a.send("b", b"healed")
        assert fabric.stats("a", "b").partitioned == 1

    async def test_frames_in_flight_are_dropped_when_a_partition_starts(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        fabric = Fabric(default_link=LinkSpec(latency_ns=100 * MS))
        inbox = Inbox()
        async with fabric.network("a") as a, fabric.network("b") as b:
            b.on_receive(inbox)
            await a.send("b", b"doomed")
            fabric.partition({"a"}, {"b"})
            await anyio.sleep(1)
            fabric.heal()
            await a.send("b", b"after")
            await inbox.wait_for(1)
        assert inbox.frames == [b"after"]
        assert fabric.stats("a", "b").partitioned == 1

    async def test_peers_lists_only_reachable_connected_peers(self) -> None:
        fabric = Fabric(default_link=LinkSpec(latency_ns=5 * MS))
        async with fabric.network("a") as a, fabric.network("b"):
            assert await a.connect("/memory/b") == "b"
            assert [(p.peer_id, p.rtt_ms) for p in a.peers()] == [("b", 10.0)]
            fabric.partition({"a"}, {"b"})
            assert a.peers() == []
            with pytest.raises(PeerUnreachable):
                await a.ping("b")

    async def test_connect_refuses_an_address_that_is_not_a_memory_address(self) -> None:
        async with Fabric().network("a") as a:
            with pytest.raises(PeerUnreachable, match="accepted: /memory/<peer>"):
                await a.connect("/ip4/127.0.0.1/tcp/1")

    async def test_find_locates_running_nodes_only(self) -> None:
        fabric = Fabric()
        async with fabric.network("a") as a:
            async with fabric.network("b"):
                info = await a.find("b")
                assert info.addresses == ("/memory/b",) and not info.connected
            with pytest.raises(PeerUnreachable, match="not found"):
                await a.find("b")


class TestBackpressure:
    """A full link makes its sender wait; other links keep flowing."""

    async def test_a_full_link_blocks_its_sender_but_not_other_senders(self) -> None:
        fabric = Fabric(link_capacity=2)
        release = anyio.Event()
        seen: list[tuple[str, bytes]] = []

        async def slow(sender: str, frame: bytes) -> None:
            seen.append((sender, frame))
            if sender == "flood":
                await release.wait()

        async with (
            fabric.network("flood") as flood,
            fabric.network("quiet") as quiet,
            fabric.network("b") as b,
        ):
            b.on_receive(slow)
            blocked = anyio.Event()

            async def flooder() -> None:
                for i in range(4):
                    await flood.send("b", str(i).encode())
                blocked.set()

            assert flood.ready("b") and not flood.ready("nobody")
            async with anyio.create_task_group() as tg:
                tg.start_soon(flooder)
                await anyio.wait_all_tasks_blocked()
                # One frame is in the handler, two fill the link, the fourth waits.
                assert not blocked.is_set()
                assert not flood.ready("b") and quiet.ready("b")  # a full link is not ready
                await quiet.send("b", b"q")
                release.set()
            await anyio.wait_all_tasks_blocked()
        assert [f for s, f in seen if s == "flood"] == [b"0", b"1", b"2", b"3"]
        assert ("quiet", b"q") in seen

    async def test_a_sender_waiting_on_a_stopped_peer_is_told_it_is_unreachable(self) -> None:
        fabric = Fabric(link_capacity=1)
        never = anyio.Event()
        b_running = anyio.Event()
        stop_b = anyio.Event()

        async def stuck(sender: str, frame: bytes) -> None:
            await never.wait()

        async def run_b() -> None:
            async with fabric.network("b") as b:
                b.on_receive(stuck)
                b_running.set()
                await stop_b.wait()

        async def stop_when_blocked() -> None:
            await anyio.wait_all_tasks_blocked()
            stop_b.set()

        async with fabric.network("a") as a, anyio.create_task_group() as tg:
            tg.start_soon(run_b)
            await b_running.wait()
            await a.send("b", b"in the handler")
            await a.send("b", b"fills the link")
            tg.start_soon(stop_when_blocked)
            with pytest.raises(PeerUnreachable, match="no running node"):
                await a.send("b", b"waits, then learns b is gone")


class TestTopics:
    """publish() fans out to subscribers; validators drop bad frames; slow subscribers overflow."""

    async def test_every_subscriber_gets_the_frame_the_publisher_included(self) -> None:
        fabric = Fabric()
        inboxes = {name: Inbox() for name in "abc"}
        async with AsyncExitStack() as stack:
            nets = {n: await stack.enter_async_context(fabric.network(n)) for n in "abcd"}
            for name, inbox in inboxes.items():
                await nets[name].subscribe("/t", inbox)
            await nets["a"].publish("/t", b"hello")
            for inbox in inboxes.values():
                await inbox.wait_for(1)
        assert all(inbox.items == [("a", b"hello")] for inbox in inboxes.values())

    async def test_a_subscribers_validator_drops_a_frame_before_its_handler(self) -> None:
        fabric = Fabric()
        inbox = Inbox()
        async with fabric.network("a") as a, fabric.network("b") as b:
            await b.subscribe("/t", inbox, validator=lambda origin, frame: frame != b"bad")
            await a.publish("/t", b"bad")
            await a.publish("/t", b"good")
            await inbox.wait_for(1)
        assert inbox.frames == [b"good"]
        assert fabric.stats("a", "b").invalid == 1

    async def test_a_frame_the_publisher_rejects_goes_nowhere(self) -> None:
        fabric = Fabric()
        inbox = Inbox()
        async with fabric.network("a") as a, fabric.network("b") as b:
            await a.subscribe("/t", Inbox(), validator=lambda origin, frame: False)
            await b.subscribe("/t", inbox)
            await a.publish("/t", b"x")
            await anyio.wait_all_tasks_blocked()
        assert inbox.items == []
        assert fabric.stats("a", "b").sent == 0

    async def test_a_full_subscriber_drops_frames_without_blocking_the_publisher(self) -> None:
        fabric = Fabric(topic_capacity=3)
        never = anyio.Event()

        async def stuck(origin: str, frame: bytes) -> None:
            await never.wait()

        async with fabric.network("a") as a, fabric.network("b") as b:
            await b.subscribe("/t", stuck)
            for i in range(10):
                await a.publish("/t", str(i).encode())
            await anyio.wait_all_tasks_blocked()
            stats = fabric.stats("a", "b")
            never.set()
        # One frame is in the handler; then three more fit the queue.
        assert (stats.sent, stats.overflow) == (10, 6)

    async def test_unsubscribed_nodes_get_nothing(self) -> None:
        fabric = Fabric()
        inbox = Inbox()
        async with fabric.network("a") as a, fabric.network("b") as b:
            await b.subscribe("/t", inbox)
            await b.unsubscribe("/t")
            await a.publish("/t", b"x")
            await anyio.wait_all_tasks_blocked()
        assert inbox.items == []


class TestScale:
    """One process holds thousands of nodes."""

    async def test_two_thousand_nodes_pass_frames_around_a_ring_and_share_a_topic(self) -> None:
        fabric = Fabric(seed=1, default_link=LinkSpec(latency_ns=MS))
        count = 2000
        received = 0
        gossip = 0
        done = anyio.Event()

        async def on_frame(sender: str, frame: bytes) -> None:
            nonlocal received
            received += 1
            if received == count and gossip == count:
                done.set()

        async def on_topic(origin: str, frame: bytes) -> None:
            nonlocal gossip
            gossip += 1
            if received == count and gossip == count:
                done.set()

        async with AsyncExitStack() as stack:
            nodes: list[MemoryNetwork] = []
            for i in range(count):
                node = await stack.enter_async_context(fabric.network(f"n{i}"))
                node.on_receive(on_frame)
                await node.subscribe("/status", on_topic)
                nodes.append(node)
            for i, node in enumerate(nodes):
                await node.send(f"n{(i + 1) % count}", b"ring")
            await nodes[0].publish("/status", b"advert")
            with anyio.fail_after(30):
                await done.wait()
        assert (received, gossip) == (count, count)
        assert fabric.running() == []
