"""Real libp2p nodes in separate processes on 127.0.0.1: frames, broadcast, DHT, restarts, garbage."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
import trio

from dms.network.p2p import PROTOCOL_ID
from dms.network.p2p.tool import (
    Advertise,
    Connect,
    Find,
    Peers,
    Ping,
    Providers,
    Publish,
    Raw,
    Send,
    Stats,
    Subscribe,
    WaitConnected,
    WaitDisconnected,
    WaitTopicPeers,
)
from tests.network.p2p_cluster import cluster
from tests.network.p2p_logs import log_to_current_stderr

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _logs_to_current_stderr() -> None:
    log_to_current_stderr()


TOPIC = "/dms/test"


def connected_ids(peers: list[dict[str, object]]) -> set[object]:
    return {p["peer_id"] for p in peers if p["connected"]}


class TestDirectFrames:
    """Two processes exchange request/reply frames over one long-lived stream each way."""

    async def test_two_processes_exchange_requests_and_replies_in_order(
        self, tmp_path: Path
    ) -> None:
        async with cluster(tmp_path) as nodes:
            server = await nodes.start(extra=["--echo"])
            client = await nodes.start()
            assert await client.ok(Connect(address=server.address)) == server.peer_id
            requests = [f"request {i}".encode() * (i + 1) for i in range(50)]
            for request in requests:
                await client.ok(Send(peer=server.peer_id, data=request))
            replies = [await client.next_frame() for _ in requests]
            assert [r.data for r in replies] == requests
            assert {r.peer for r in replies} == {server.peer_id}
            assert await client.ok(Ping(peer=server.peer_id)) > 0
            listed = await client.ok(Peers())
            assert connected_ids(listed) == {server.peer_id}
            assert listed[0]["rtt_ms"] > 0


class TestBroadcast:
    """A broadcast reaches every subscriber; a topic validator stops what it rejects."""

    async def test_broadcast_from_a_leaf_reaches_all_five_nodes(self, tmp_path: Path) -> None:
        async with cluster(tmp_path) as nodes:
            hub = await nodes.start()
            leaves = await nodes.start_many(4, bootstrap=[hub.address])
            everyone = [hub, *leaves]
            for node in everyone:
                await node.ok(Subscribe(topic=TOPIC))
            await hub.ok(WaitTopicPeers(topic=TOPIC, count=4))
            for leaf in leaves:
                await leaf.ok(WaitTopicPeers(topic=TOPIC, count=1))

            await leaves[0].ok(Publish(topic=TOPIC, data=b"capacity advert"))
            for node in everyone:
                message = await node.next_message()
                assert (message.topic, message.data) == (TOPIC, b"capacity advert")
                assert message.origin == leaves[0].peer_id

    async def test_a_message_the_hub_rejects_is_not_forwarded(self, tmp_path: Path) -> None:
        async with cluster(tmp_path) as nodes:
            # No DHT: its lookups would connect the leaves to each other, and a leaf without a
            # validator would then pass the forged message on itself, around the hub.
            hub = await nodes.start(extra=["--no-dht"])
            leaves = await nodes.start_many(2, bootstrap=[hub.address], extra=["--no-dht"])
            await hub.ok(Subscribe(topic=TOPIC, reject_prefix=b"forged"))
            for leaf in leaves:
                await leaf.ok(Subscribe(topic=TOPIC))
            await hub.ok(WaitTopicPeers(topic=TOPIC, count=2))
            for leaf in leaves:
                await leaf.ok(WaitTopicPeers(topic=TOPIC, count=1))

            assert leaves[0].peer_id not in connected_ids(await leaves[1].ok(Peers()))
            await leaves[0].ok(Publish(topic=TOPIC, data=b"forged advert"))
            await leaves[0].ok(Publish(topic=TOPIC, data=b"honest advert"))
            # the publisher has no validator and sees both; past the hub only the honest one
            assert (await leaves[0].next_message()).data == b"forged advert"
            assert (await leaves[0].next_message()).data == b"honest advert"
            assert (await hub.next_message()).data == b"honest advert"
            assert (await leaves[1].next_message()).data == b"honest advert"


class TestDiscovery:
    """A node finds a peer it has never met through the DHT, and providers of the dms service."""

    async def test_a_node_is_found_through_the_dht_by_a_third(self, tmp_path: Path) -> None:
        async with cluster(tmp_path) as nodes:
            middle = await nodes.start()
            seeker = await nodes.start(bootstrap=[middle.address])
            hidden = await nodes.start(bootstrap=[middle.address], extra=["--echo"])
            await middle.ok(WaitConnected(peer=seeker.peer_id))
            await middle.ok(WaitConnected(peer=hidden.peer_id))
            assert hidden.peer_id not in connected_ids(await seeker.ok(Peers()))

            found = await seeker.ok(Find(peer=hidden.peer_id))
            assert found["peer_id"] == hidden.peer_id
            assert hidden.address.split("/p2p/")[0] in found["addresses"]

            await seeker.ok(Send(peer=hidden.peer_id, data=b"found you"))
            reply = await seeker.next_frame()
            assert (reply.peer, reply.data) == (hidden.peer_id, b"found you")

    async def test_providers_of_the_dms_service_are_found(self, tmp_path: Path) -> None:
        async with cluster(tmp_path) as nodes:
            middle = await nodes.start()
            provider = await nodes.start(bootstrap=[middle.address])
            seeker = await nodes.start(bootstrap=[middle.address])
            await middle.ok(WaitConnected(peer=provider.peer_id))
            await middle.ok(WaitConnected(peer=seeker.peer_id))
            assert await provider.ok(Advertise()) is True
            providers = await seeker.ok(Providers())
            assert provider.peer_id in {p["peer_id"] for p in providers}


class TestReconnection:
    """A restarted node is reconnected, and frames reach it again."""

    async def test_a_restarted_bootstrap_peer_is_reconnected(self, tmp_path: Path) -> None:
        seed = os.urandom(32)
        async with cluster(tmp_path) as nodes:
            server = await nodes.start(seed=seed, extra=["--echo"])
            client = await nodes.start(bootstrap=[server.address])
            await client.ok(WaitConnected(peer=server.peer_id))
            await client.ok(Send(peer=server.peer_id, data=b"before"))
            assert (await client.next_frame()).data == b"before"

            restarted = await nodes.restart(server, seed, extra=["--echo"])
            assert restarted.peer_id == server.peer_id
            await restarted.ok(WaitConnected(peer=client.peer_id))
            await client.ok(Send(peer=server.peer_id, data=b"after"))
            assert (await client.next_frame()).data == b"after"

    async def test_frames_reach_a_restarted_peer_without_a_new_connect(
        self, tmp_path: Path
    ) -> None:
        seed = os.urandom(32)
        async with cluster(tmp_path) as nodes:
            server = await nodes.start(seed=seed, extra=["--echo"])
            client = await nodes.start()
            await client.ok(Connect(address=server.address))
            await client.ok(Send(peer=server.peer_id, data=b"before"))
            assert (await client.next_frame()).data == b"before"

            await nodes.restart(server, seed, extra=["--echo"])
            await client.ok(Send(peer=server.peer_id, data=b"after"))
            assert (await client.next_frame()).data == b"after"


def frame_header(size: int) -> bytes:
    return struct.pack(">I", size)


class TestMisbehavingPeers:
    """Peers that send garbage are dropped; the others carry on undisturbed."""

    async def test_random_bytes_on_the_tcp_port_are_refused(self, tmp_path: Path) -> None:
        async with cluster(tmp_path) as nodes:
            victim = await nodes.start(extra=["--echo"])
            good = await nodes.start()
            await good.ok(Connect(address=victim.address))
            host, port = victim.address.split("/")[2], int(victim.address.split("/")[4])
            garbage = await trio.open_tcp_stream(host, port)
            with trio.fail_after(15):
                await garbage.send_all(os.urandom(64 * 1024))
                closed = False
                while not closed:
                    try:
                        closed = not await garbage.receive_some(65536)
                    except trio.BrokenResourceError:
                        closed = True
            await garbage.aclose()
            await good.ok(Send(peer=victim.peer_id, data=b"still there?"))
            assert (await good.next_frame()).data == b"still there?"

    async def test_an_oversized_frame_gets_its_sender_dropped(self, tmp_path: Path) -> None:
        async with cluster(tmp_path) as nodes:
            limit = 64 * 1024
            victim = await nodes.start(extra=["--echo", f"--max-frame={limit}"])
            good, bad = await nodes.start_many(2)
            await good.ok(Connect(address=victim.address))
            await bad.ok(Connect(address=victim.address))
            oversized = frame_header(limit + 1) + os.urandom(1024)
            outcome = await bad.ok(Raw(peer=victim.peer_id, protocol=PROTOCOL_ID, data=oversized))
            assert outcome.startswith("reset")
            await victim.ok(WaitDisconnected(peer=bad.peer_id))
            assert (await victim.ok(Stats()))["dropped_peers"] == 1
            await good.ok(Send(peer=victim.peer_id, data=b"still there?"))
            assert (await good.next_frame()).data == b"still there?"

    async def test_a_stream_on_an_unknown_protocol_is_refused(self, tmp_path: Path) -> None:
        async with cluster(tmp_path) as nodes:
            victim = await nodes.start(extra=["--echo"])
            good, bad = await nodes.start_many(2)
            await good.ok(Connect(address=victim.address))
            await bad.ok(Connect(address=victim.address))
            result = await bad.call(Raw(peer=victim.peer_id, protocol="/evil/1.0.0", data=b"x"))
            assert not result.ok and "/evil/1.0.0" in (result.error or "")
            await good.ok(Send(peer=victim.peer_id, data=b"still there?"))
            assert (await good.next_frame()).data == b"still there?"
