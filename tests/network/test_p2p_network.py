"""P2PNetwork in one process over real loopback sockets: the Network protocol's contract."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import multiaddr
import pytest
import trio
from libp2p.stream_muxer.yamux.yamux import YamuxStream

from dms.network.base import FrameTooLarge, Network, NetworkClosed, PeerUnreachable
from dms.network.p2p import (
    InvalidAddress,
    InvalidPeerID,
    ListenFailed,
    P2PNetwork,
    P2PSettings,
    PeerNotFound,
    peer_id_from_seed,
)
from dms.network.p2p.gossip import MAX_MESSAGE
from tests.network.p2p_logs import log_to_current_stderr

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _logs_to_current_stderr() -> None:
    log_to_current_stderr()


LOOPBACK = P2PSettings(listen=("/ip4/127.0.0.1/tcp/0",))


def network(**changes: object) -> P2PNetwork:
    settings = LOOPBACK if not changes else P2PSettings(**{"listen": LOOPBACK.listen, **changes})  # type: ignore[arg-type]
    return P2PNetwork(os.urandom(32), settings)


def chain_text(exc: BaseException) -> str:
    """Every message in an exception's cause chain and groups (libp2p nests the real one)."""
    parts, todo = [], [exc]
    while todo:
        current = todo.pop()
        parts.append(str(current))
        todo.extend(getattr(current, "exceptions", ()))
        if current.__cause__ is not None:
            todo.append(current.__cause__)
    return " | ".join(parts)


class Inbox:
    """Collects (peer, frame) pairs and lets a test wait for the n-th."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []
        self._changed = trio.Event()

    async def __call__(self, peer: str, frame: bytes) -> None:
        self.items.append((peer, frame))
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, count: int) -> list[tuple[str, bytes]]:
        with trio.fail_after(10):
            while len(self.items) < count:
                await self._changed.wait()
        return self.items


@asynccontextmanager
async def connected_pair(**changes: object) -> AsyncIterator[tuple[P2PNetwork, P2PNetwork]]:
    async with network(**changes) as a, network(**changes) as b:
        await a.connect(b.addresses()[0])
        yield a, b


class TestLifecycle:
    """A network runs once, inside its block; outside it every call says so."""

    async def test_it_satisfies_the_network_protocol(self) -> None:
        assert isinstance(network(), Network)

    async def test_calls_before_start_and_after_stop_are_refused(self) -> None:
        net = network()
        with pytest.raises(NetworkClosed, match="is new, not running"):
            await net.send(net.peer_id, b"x")
        async with net:
            pass
        with pytest.raises(NetworkClosed, match="is stopped, not running"):
            net.peers()
        with pytest.raises(NetworkClosed, match="used once"):
            await net.__aenter__()

    async def test_the_peer_id_comes_from_the_seed(self) -> None:
        seed = os.urandom(32)
        async with P2PNetwork(seed, LOOPBACK) as net:
            assert net.peer_id == peer_id_from_seed(seed)
            assert net.addresses()[0].endswith(f"/p2p/{net.peer_id}")

    async def test_a_busy_listen_port_is_reported_with_the_setting(self) -> None:
        async with network() as first:
            taken = first.addresses()[0].split("/p2p/")[0]
            with pytest.raises(ListenFailed, match=f"network.listen: cannot listen on {taken}: "):
                async with network(listen=(taken,)):
                    pass


class TestDirectFrames:
    """Frames arrive whole, in order, from the right peer; limits and bad ids are refused."""

    async def test_frames_arrive_in_order_from_many_concurrent_senders(self) -> None:
        async with connected_pair() as (a, b):
            inbox = Inbox()
            b.on_receive(inbox)
            frames = {i: [f"{i}:{n}".encode() * 100 for n in range(50)] for i in range(8)}

            async def sender(frames_of_one: list[bytes]) -> None:
                for frame in frames_of_one:
                    await a.send(b.peer_id, frame)

            async with trio.open_nursery() as nursery:
                for one in frames.values():
                    nursery.start_soon(sender, one)
            received = await inbox.wait_for(400)
            assert {peer for peer, _ in received} == {a.peer_id}
            for i, sent in frames.items():
                assert [f for _, f in received if f.startswith(f"{i}:".encode())] == sent

    async def test_a_slow_receiver_slows_the_sender_and_loses_nothing(self) -> None:
        async with connected_pair() as (a, b):
            inbox = Inbox()

            async def slow(peer: str, frame: bytes) -> None:
                await trio.sleep(0.001)
                await inbox(peer, frame)

            b.on_receive(slow)
            frames = [os.urandom(64 * 1024) for _ in range(40)]  # 2.5 MiB: ten yamux windows
            for frame in frames:
                await a.send(b.peer_id, frame)
            assert [f for _, f in await inbox.wait_for(40)] == frames

    async def test_small_frames_one_at_a_time_cost_few_window_updates(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        updates: list[int] = []
        send_window_update = YamuxStream.send_window_update

        async def counted(stream: YamuxStream, increment: int, skip_lock: bool = False) -> None:
            updates.append(increment)
            await send_window_update(stream, increment, skip_lock)

        monkeypatch.setattr(YamuxStream, "send_window_update", counted)
        async with connected_pair() as (a, b):
            inbox = Inbox()
            b.on_receive(inbox)
            frames = [os.urandom(700) for _ in range(600)]  # 420 KB: more than one window
            for count, frame in enumerate(frames, 1):
                await a.send(b.peer_id, frame)
                await inbox.wait_for(count)  # one frame per read, as with requests and replies
                if count == 1:
                    updates.clear()  # from here on, only frames travel
            assert [f for _, f in inbox.items] == frames
        # py-libp2p alone sends one for about every second read (~300 here, each for a frame
        # or two); ours go out once half the window (128 KiB) is read, and frames still flow
        # past the first window
        per_read = [increment for increment in updates if increment < 64 * 1024]
        assert len(per_read) <= 3, per_read

    async def test_a_peer_is_ready_once_a_frame_to_it_was_written(self) -> None:
        async with connected_pair() as (a, b):
            inbox = Inbox()
            b.on_receive(inbox)
            assert not a.ready(b.peer_id)  # no stream yet: a send would wait for it
            await a.send(b.peer_id, b"hello")
            assert a.ready(b.peer_id)
            await inbox.wait_for(1)

    async def test_a_frame_to_itself_is_delivered_locally(self) -> None:
        async with network() as net:
            inbox = Inbox()
            net.on_receive(inbox)
            await net.send(net.peer_id, b"note to self")
            assert await inbox.wait_for(1) == [(net.peer_id, b"note to self")]

    async def test_a_frame_over_the_maximum_is_refused_before_sending(self) -> None:
        async with connected_pair(max_frame=1024) as (a, b):
            with pytest.raises(FrameTooLarge, match="1025 bytes exceeds the maximum of 1024"):
                await a.send(b.peer_id, b"x" * 1025)

    async def test_a_peer_nobody_knows_is_unreachable(self) -> None:
        async with network() as net:
            stranger = peer_id_from_seed(os.urandom(32))
            with pytest.raises(PeerUnreachable, match="no known address, and .* no DHT peers"):
                await net.send(stranger, b"hello?")

    async def test_a_malformed_peer_id_is_refused(self) -> None:
        async with network() as net:
            with pytest.raises(InvalidPeerID, match="peer: "):
                await net.send("not-a-peer-id", b"hello?")


class TestConnecting:
    """connect() needs a full address; dial failures name the address and the reason."""

    async def test_connect_returns_the_peer_and_both_sides_list_each_other(self) -> None:
        async with network() as a, network() as b:
            assert await a.connect(b.addresses()[0]) == b.peer_id
            await b.wait_connected(a.peer_id)
            assert [p.peer_id for p in a.peers()] == [b.peer_id]
            assert [p.peer_id for p in b.peers()] == [a.peer_id]
            assert a.peers()[0].addresses == (b.addresses()[0].split("/p2p/")[0],)

    @pytest.mark.parametrize(
        "address",
        ["/ip4/127.0.0.1/tcp/9", "127.0.0.1:9000", "/ip4/127.0.0.1/udp/9/p2p/" + "12D3KooWx"],
        ids=["no-peer-id", "not-a-multiaddr", "udp"],
    )
    async def test_a_bad_address_is_refused_naming_the_field(self, address: str) -> None:
        async with network() as net:
            with pytest.raises(InvalidAddress, match=r"^address: "):
                await net.connect(address)

    async def test_an_address_nobody_listens_on_is_unreachable(self) -> None:
        async with network() as net:
            with trio.socket.socket() as placeholder:
                await placeholder.bind(("127.0.0.1", 0))
                port = placeholder.getsockname()[1]
            stranger = peer_id_from_seed(os.urandom(32))
            with pytest.raises(PeerUnreachable, match=f"/ip4/127.0.0.1/tcp/{port}: "):
                await net.connect(f"/ip4/127.0.0.1/tcp/{port}/p2p/{stranger}")

    async def test_a_plaintext_dialer_is_refused(self) -> None:
        from libp2p import new_host
        from libp2p.crypto.ed25519 import create_new_key_pair
        from libp2p.peer.peerinfo import info_from_p2p_addr
        from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

        async with network() as net:
            keys = create_new_key_pair(os.urandom(32))
            plain = new_host(
                key_pair=keys,
                sec_opt={PLAINTEXT_PROTOCOL_ID: InsecureTransport(keys)},
                listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")],
            )
            async with plain.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
                target = info_from_p2p_addr(multiaddr.Multiaddr(net.addresses()[0]))
                with pytest.raises(Exception) as refused:
                    await plain.connect(target)
            assert "failed to negotiate the secure protocol" in chain_text(refused.value)
            assert net.peers() == []

    async def test_ping_measures_a_round_trip_and_peers_show_it(self) -> None:
        async with connected_pair() as (a, b):
            rtt = await a.ping(b.peer_id)
            assert rtt > 0
            assert a.peers()[0].rtt_ms == pytest.approx(rtt * 1000)

    async def test_find_answers_for_a_connected_peer_without_the_dht(self) -> None:
        async with connected_pair() as (a, b):
            info = await a.find(b.peer_id)
            assert (info.peer_id, info.connected) == (b.peer_id, True)

    async def test_find_reports_a_peer_nobody_knows(self) -> None:
        async with connected_pair(dht_timeout_ns=1_000_000_000) as (a, _b):
            with pytest.raises(
                PeerNotFound, match=r"no DHT node knows its addresses \(gave up after 1 s\)"
            ):
                await a.find(peer_id_from_seed(os.urandom(32)))

    async def test_find_without_any_peer_fails_at_once(self) -> None:
        async with network() as net:
            with pytest.raises(PeerNotFound, match="no DHT peers to ask"):
                await net.find(peer_id_from_seed(os.urandom(32)))


class TestTopics:
    """Topics deliver to every subscriber, the publisher included; validators drop frames."""

    async def _subscribed(
        self, stack: AsyncExitStack, validator: object = None
    ) -> tuple[P2PNetwork, P2PNetwork, Inbox, Inbox]:
        a, b = await stack.enter_async_context(connected_pair())
        inbox_a, inbox_b = Inbox(), Inbox()
        await a.subscribe("/t", inbox_a)
        await b.subscribe("/t", inbox_b, validator)  # type: ignore[arg-type]
        with trio.fail_after(10):
            await b.wait_connected(a.peer_id)
            while not (a.topic_peers("/t") and b.topic_peers("/t")):  # noqa: ASYNC110
                await trio.sleep(0.02)
        return a, b, inbox_a, inbox_b

    async def test_a_publish_reaches_the_publisher_and_the_subscriber(self) -> None:
        async with AsyncExitStack() as stack:
            a, _b, inbox_a, inbox_b = await self._subscribed(stack)
            await a.publish("/t", b"advert")
            assert await inbox_a.wait_for(1) == [(a.peer_id, b"advert")]
            assert await inbox_b.wait_for(1) == [(a.peer_id, b"advert")]

    async def test_a_burst_is_delivered_whole(self) -> None:
        async with AsyncExitStack() as stack:
            a, _b, _inbox_a, inbox_b = await self._subscribed(stack)
            burst = [f"advert {i}".encode() for i in range(300)]  # gossipsub's default: 10/s
            for frame in burst:
                await a.publish("/t", frame)
            assert sorted(f for _, f in await inbox_b.wait_for(300)) == sorted(burst)

    async def test_a_validator_that_refuses_or_raises_drops_the_frame(self) -> None:
        def validator(_origin: str, frame: bytes) -> bool:
            if frame == b"explode":
                raise ValueError("validator bug")
            return frame != b"forged"

        async with AsyncExitStack() as stack:
            a, _b, _inbox_a, inbox_b = await self._subscribed(stack, validator)
            for frame in (b"forged", b"explode", b"honest"):
                await a.publish("/t", frame)
            assert await inbox_b.wait_for(1) == [(a.peer_id, b"honest")]

    async def test_after_unsubscribing_nothing_more_is_delivered(self) -> None:
        async with AsyncExitStack() as stack:
            a, b, _inbox_a, inbox_b = await self._subscribed(stack)
            markers = Inbox()
            await b.unsubscribe("/t")
            await b.subscribe("/markers", markers)
            with trio.fail_after(10):
                while not a.topic_peers("/markers"):  # noqa: ASYNC110
                    await trio.sleep(0.02)
            await a.publish("/t", b"too late")
            await a.publish("/markers", b"marker")  # same stream, after the frame above
            await markers.wait_for(1)
            assert inbox_b.items == []

    async def test_a_frame_over_the_topic_maximum_is_refused(self) -> None:
        async with network() as net:
            with pytest.raises(FrameTooLarge):
                await net.publish("/t", b"x" * (MAX_MESSAGE + 1))
