"""``P2PNetwork``: the :class:`~dms.network.base.Network` protocol on py-libp2p.

Lifecycle: ``async with P2PNetwork(seed, settings) as net:`` builds the host, listens, starts
gossipsub and the DHT, and starts one task group that owns everything this module starts (link
writers, bootstrap keepers, DHT bookkeeping, topic delivery, the mDNS dialer). Leaving the block
cancels that group and closes the host. A network is used once.

Direct frames travel on protocol ``/dms/actor/1.0.0`` (see :mod:`.links`); a peer that sends an
oversized frame has its connection closed. Topics use gossipsub (see :mod:`.gossip`). Peers are
found through bootstrap addresses (kept connected, redialled with backoff), the DHT and,
optionally, mDNS.
"""

from __future__ import annotations

import contextlib
import os
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Self

import multiaddr
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.io.utils import read_exactly
from libp2p.peer.id import ID
from libp2p.tools.anyio_service import background_trio_service

from dms.log import get_logger
from dms.network.base import (
    FrameTooLarge,
    NetworkClosed,
    NetworkState,
    PeerID,
    PeerInfo,
    PeerUnreachable,
    ReceiveHandler,
    TopicHandler,
    TopicValidator,
)
from dms.network.p2p.connections import Connections
from dms.network.p2p.discovery import DHT, SERVICE_KEY, MDNSBridge
from dms.network.p2p.errors import InvalidPeerID, ListenFailed
from dms.network.p2p.gossip import Gossip
from dms.network.p2p.host import (
    addresses_without_peer,
    batch_window_updates,
    build_host,
    check_listen_free,
    listen_addresses,
)
from dms.network.p2p.identity import (
    check_seed,
    did_from_peer_id,
    peer_id_from_seed,
    public_key_from_peer_id,
)
from dms.network.p2p.links import Backlog, Link, read_frames
from dms.network.p2p.settings import P2PSettings, check_peer_address

PROTOCOL_ID = TProtocol("/dms/actor/1.0.0")
PING_PROTOCOL_ID = TProtocol("/ipfs/ping/1.0.0")
PING_SIZE = 32
_NS = 1e9


class P2PNetwork:
    """A dms node's libp2p host behind the ``Network`` protocol."""

    def __init__(self, seed: bytes, settings: P2PSettings | None = None) -> None:
        self._seed = check_seed(seed)
        self._settings = settings or P2PSettings()
        self._peer_id = peer_id_from_seed(self._seed)
        self._state = NetworkState.NEW
        self._handler: ReceiveHandler | None = None
        self._links: dict[PeerID, Link] = {}
        self._backlog = Backlog()
        self._stack: AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None
        self._host: IHost | None = None
        self._gossip: Gossip | None = None
        self._dht: DHT | None = None
        self._connections: Connections | None = None
        self.dropped_peers = 0
        self.log = get_logger(node=self._peer_id)

    # -- identity and lifecycle ------------------------------------------------------------

    @property
    def peer_id(self) -> PeerID:
        return self._peer_id

    @property
    def state(self) -> NetworkState:
        return self._state

    @property
    def settings(self) -> P2PSettings:
        return self._settings

    @property
    def host(self) -> IHost:
        """The libp2p host (for measurements and diagnostics; not part of the protocol)."""
        return self._running().host

    def addresses(self) -> list[str]:
        return listen_addresses(self._running().host)

    async def __aenter__(self) -> Self:
        if self._state is not NetworkState.NEW:
            raise NetworkClosed(f"a network is used once; this one is {self._state.value}")
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            await self._start(stack)
        except BaseException as exc:
            self._state = NetworkState.STOPPED
            await stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._stack = stack
        self._state = NetworkState.RUNNING
        self.log.info("p2p network started", addresses=self.addresses())
        return self

    async def _start(self, stack: AsyncExitStack) -> None:
        settings = self._settings
        host = build_host(self._seed, settings)
        self._host = host
        host.set_stream_handler(PROTOCOL_ID, self._on_stream)
        self._gossip = Gossip(host, settings.gossip)
        self._dht = DHT(host) if settings.dht else None
        self._connections = connections = Connections(host, settings, self._dht, self.log)
        listen = [multiaddr.Multiaddr(a) for a in settings.listen]
        check_listen_free(settings.listen)
        try:
            await stack.enter_async_context(host.run(listen))
        except OSError as exc:
            raise ListenFailed(", ".join(settings.listen), exc.strerror or str(exc)) from exc
        await stack.enter_async_context(background_trio_service(self._gossip.pubsub))
        await stack.enter_async_context(background_trio_service(self._gossip.router))
        await self._gossip.pubsub.wait_until_ready()
        if self._dht is not None:
            await stack.enter_async_context(background_trio_service(self._dht.kad))
        self._nursery = nursery = await stack.enter_async_context(trio.open_nursery())
        connections.start(nursery)
        if settings.mdns:
            bridge = MDNSBridge(host.get_id())
            bridge.start()
            stack.callback(bridge.stop)
            nursery.start_soon(connections.dial_discovered, bridge)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state is not NetworkState.RUNNING or self._stack is None:
            return
        self._state = NetworkState.STOPPED
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        stack, self._stack = self._stack, None
        await stack.__aexit__(exc_type, exc, tb)
        self.log.info("p2p network stopped")

    def _running(self) -> _Running:
        if self._state is not NetworkState.RUNNING:
            raise NetworkClosed(f"the network is {self._state.value}, not running")
        assert self._host is not None and self._gossip is not None
        assert self._connections is not None and self._nursery is not None
        return _Running(self._host, self._gossip, self._connections, self._nursery)

    # -- direct frames ---------------------------------------------------------------------

    def on_receive(self, handler: ReceiveHandler) -> None:
        self._handler = handler

    def authenticated_did(self, peer: PeerID) -> str | None:
        """The did:key of an Ed25519 ``peer`` (None for any other key type).

        Sound because a direct frame reaches the handler only from an inbound stream, whose
        peer id is the connection's Noise-authenticated remote (the handshake checks that the
        remote signed its Noise key with the key inside the peer id, and a dialled peer's id
        against the one dialled), or from ``send()`` to this node itself. Noise-only security
        (see ``host.py``) means no connection is ever unauthenticated.
        """
        try:
            return did_from_peer_id(peer)
        except InvalidPeerID:
            return None

    def ready(self, peer: PeerID) -> bool:
        """A link to ``peer`` works and has room.

        ``send()`` then queues the frame or writes it at once; the write is shielded from
        cancellation and bounded by ``links.WRITE_TIMEOUT_S`` (a write that fails leaves the
        frame to the writer, and the sender does not wait for a redial): see :mod:`.links`.
        """
        link = self._links.get(peer)
        return (
            self._state is NetworkState.RUNNING
            and link is not None
            and not link.closed
            and link.healthy
            and link.has_room
        )

    async def send(self, peer: PeerID, frame: bytes) -> None:
        if self._state is not NetworkState.RUNNING:
            self._running()  # raises NetworkClosed
        if len(frame) > self._settings.max_frame:
            raise FrameTooLarge(len(frame), self._settings.max_frame)
        if peer == self._peer_id:
            await self._deliver(peer, frame)
            return
        link = self._links.get(peer)
        if link is None or link.closed:
            running = self._running()  # the common case above makes no _Running
            public_key_from_peer_id(peer)  # refuse a malformed id before starting a writer
            link = Link(
                peer,
                lambda: self._open_stream(peer),
                self._settings.send_buffer,
                self._settings.write_batch_bytes,
                self._backlog,
            )
            self._links[peer] = link
            running.nursery.start_soon(self._run_link, link)
        await link.send(frame)

    async def _run_link(self, link: Link) -> None:
        try:
            await link.run(idle_s=self._settings.link_idle_ns / _NS)
        finally:
            if self._links.get(link.peer) is link:
                del self._links[link.peer]

    async def _open_stream(self, peer: PeerID) -> INetStream:
        running = self._running()
        await running.connections.dial(peer)
        host = running.host
        try:
            with trio.fail_after(self._settings.dial_timeout_ns / _NS):
                return await host.new_stream(ID.from_base58(peer), [PROTOCOL_ID])
        except trio.TooSlowError:
            raise PeerUnreachable(peer, "opening a stream timed out") from None
        except Exception as exc:
            raise PeerUnreachable(peer, f"cannot open a stream: {exc}") from exc

    async def _on_stream(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id.to_base58()
        batch_window_updates(stream)
        try:
            await read_frames(peer, stream, self._settings.max_frame, self._deliver, self._backlog)
        except FrameTooLarge as exc:
            await self._drop(peer, stream, f"sent a frame of {exc.size} bytes (max {exc.limit})")
        except Exception as exc:  # a reset or broken connection ends this stream only
            self.log.debug("inbound stream ended", peer=peer, error=str(exc))

    async def _deliver(self, peer: PeerID, frame: bytes) -> None:
        handler = self._handler
        if handler is None:
            self.log.warning("frame dropped: no receive handler", peer=peer, size=len(frame))
            return
        try:
            await handler(peer, frame)
        except Exception:
            self.log.exception("receive handler failed", peer=peer)

    async def _drop(self, peer: PeerID, stream: INetStream, reason: str) -> None:
        """Close a misbehaving peer's connection."""
        self.dropped_peers += 1
        self.log.warning("dropping peer: frame protocol violated", peer=peer, reason=reason)
        with trio.move_on_after(2):
            with contextlib.suppress(Exception):  # already gone
                await stream.reset()
            await self._running().host.disconnect(ID.from_base58(peer))

    # -- topics ----------------------------------------------------------------------------

    async def publish(self, topic: str, frame: bytes) -> None:
        await self._running().gossip.publish(topic, frame)

    async def subscribe(
        self, topic: str, handler: TopicHandler, validator: TopicValidator | None = None
    ) -> None:
        running = self._running()
        await running.gossip.subscribe(running.nursery, topic, handler, validator)

    async def unsubscribe(self, topic: str) -> None:
        await self._running().gossip.unsubscribe(topic)

    def topic_peers(self, topic: str) -> list[PeerID]:
        """Directly connected peers known to be subscribed to ``topic``."""
        return self._running().gossip.topic_peers(topic)

    # -- peers -----------------------------------------------------------------------------

    def peers(self) -> list[PeerInfo]:
        running = self._running()
        host, rtt = running.host, running.connections.rtt_ms
        store = host.get_peerstore()
        result = []
        for peer_id in host.get_connected_peers():
            peer = peer_id.to_base58()
            try:
                addresses = tuple(addresses_without_peer(store.addrs(peer_id)))
            except Exception:  # peerstore raises when it has no record
                addresses = ()
            result.append(
                PeerInfo(peer_id=peer, addresses=addresses, connected=True, rtt_ms=rtt.get(peer))
            )
        return sorted(result, key=lambda p: p.peer_id)

    def is_connected(self, peer: PeerID) -> bool:
        return self._running().connections.is_connected(peer)

    async def wait_connected(self, peer: PeerID) -> None:
        """Return once ``peer`` is connected (for callers that need an event, not a poll)."""
        await self._running().connections.wait_connected(peer)

    async def wait_disconnected(self, peer: PeerID) -> None:
        """Return once ``peer`` has no connection left."""
        await self._running().connections.wait_disconnected(peer)

    async def connect(self, address: str) -> PeerID:
        connections = self._running().connections
        peer = check_peer_address(address)
        public_key_from_peer_id(peer)
        connections.remember(peer, [address.split("/p2p/")[0]])
        await connections.dial(peer)
        return peer

    async def ping(self, peer: PeerID) -> float:
        running = self._running()
        host = running.host
        await running.connections.dial(peer)
        payload = os.urandom(PING_SIZE)
        try:
            with trio.fail_after(self._settings.dial_timeout_ns / _NS):
                stream = await host.new_stream(ID.from_base58(peer), [PING_PROTOCOL_ID])
                try:
                    start = trio.current_time()
                    await stream.write(payload)
                    echoed = await read_exactly(stream, PING_SIZE)
                    rtt = trio.current_time() - start
                finally:
                    await stream.close()
        except trio.TooSlowError:
            raise PeerUnreachable(peer, "ping timed out") from None
        except PeerUnreachable:
            raise
        except Exception as exc:
            raise PeerUnreachable(peer, f"ping failed: {exc}") from exc
        if echoed != payload:
            raise PeerUnreachable(peer, "ping answered with different bytes")
        running.connections.rtt_ms[peer] = rtt * 1000
        return rtt

    async def find(self, peer: PeerID) -> PeerInfo:
        connections = self._running().connections
        public_key_from_peer_id(peer)
        if connections.is_connected(peer):
            addresses = tuple(connections.known_addresses(peer))
            rtt = connections.rtt_ms.get(peer)
            return PeerInfo(peer_id=peer, addresses=addresses, connected=True, rtt_ms=rtt)
        found = await connections.lookup(peer)
        return PeerInfo(peer_id=peer, addresses=tuple(found), connected=False)

    async def advertise(self, key: str = SERVICE_KEY) -> bool:
        """Announce this node in the DHT as a provider of ``key`` (the dms service by default)."""
        self._running()
        if self._dht is None:
            return False
        with trio.move_on_after(self._settings.dht_timeout_ns / _NS):
            await self._dht.add_connected()
            return await self._dht.advertise(key)
        return False

    async def find_providers(self, key: str = SERVICE_KEY, count: int = 20) -> list[PeerInfo]:
        """Nodes that advertised ``key`` (the dms service by default), this one excluded."""
        connections = self._running().connections
        if self._dht is None:
            return []
        with trio.move_on_after(self._settings.dht_timeout_ns / _NS):
            await self._dht.add_connected()
            found = await self._dht.find_providers(key, count)
            for info in found:
                connections.remember(info.peer_id, list(info.addresses))
            return [info for info in found if info.peer_id != self._peer_id]
        return []


class _Running:
    __slots__ = ("connections", "gossip", "host", "nursery")

    def __init__(
        self, host: IHost, gossip: Gossip, connections: Connections, nursery: trio.Nursery
    ) -> None:
        self.host, self.gossip, self.connections, self.nursery = host, gossip, connections, nursery
