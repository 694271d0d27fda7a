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
import random
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Self

import multiaddr
import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
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
from dms.network.p2p.discovery import DHT, SERVICE_KEY, MDNSBridge
from dms.network.p2p.errors import ADDRESS_FORM, InvalidAddress, ListenFailed, PeerNotFound
from dms.network.p2p.gossip import Gossip
from dms.network.p2p.host import (
    addresses_without_peer,
    build_host,
    check_listen_free,
    listen_addresses,
    swarm_of,
)
from dms.network.p2p.identity import check_seed, peer_id_from_seed, public_key_from_peer_id
from dms.network.p2p.links import Link, backoff, read_frames
from dms.network.p2p.settings import P2PSettings, check_peer_address

PROTOCOL_ID = TProtocol("/dms/actor/1.0.0")
PING_PROTOCOL_ID = TProtocol("/ipfs/ping/1.0.0")
PING_SIZE = 32
ADDRESS_TTL_S = 24 * 3600
IDENTIFY_WAIT_S = 5.0
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
        self._rtt_ms: dict[PeerID, float] = {}
        self._disconnected: dict[PeerID, trio.Event] = {}
        self._connected: dict[PeerID, trio.Event] = {}
        self._stack: AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None
        self._host: IHost | None = None
        self._gossip: Gossip | None = None
        self._dht: DHT | None = None
        self._mdns: MDNSBridge | None = None
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
        host.get_network().register_notifee(_Watcher(self))
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
        self._nursery = await stack.enter_async_context(trio.open_nursery())
        for address in settings.bootstrap:
            self._nursery.start_soon(self._keep_connected, address)
        if settings.mdns:
            self._mdns = MDNSBridge(host.get_id())
            self._mdns.start()
            stack.callback(self._mdns.stop)
            self._nursery.start_soon(self._dial_discovered, self._mdns)

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
        assert self._host is not None and self._gossip is not None and self._nursery is not None
        return _Running(self._host, self._gossip, self._nursery)

    # -- direct frames ---------------------------------------------------------------------

    def on_receive(self, handler: ReceiveHandler) -> None:
        self._handler = handler

    async def send(self, peer: PeerID, frame: bytes) -> None:
        running = self._running()
        if len(frame) > self._settings.max_frame:
            raise FrameTooLarge(len(frame), self._settings.max_frame)
        if peer == self._peer_id:
            await self._deliver(peer, frame)
            return
        link = self._links.get(peer)
        if link is None:
            public_key_from_peer_id(peer)  # refuse a malformed id before starting a writer
            link = Link(
                peer,
                lambda: self._open_stream(peer),
                self._settings.send_buffer,
                self._settings.write_batch_bytes,
            )
            self._links[peer] = link
            running.nursery.start_soon(self._run_link, link)
        await link.send(frame)

    async def _run_link(self, link: Link) -> None:
        try:
            await link.run()
        finally:
            if self._links.get(link.peer) is link:
                del self._links[link.peer]

    async def _open_stream(self, peer: PeerID) -> INetStream:
        host = self._running().host
        await self._dial(peer)
        try:
            with trio.fail_after(self._settings.dial_timeout_ns / _NS):
                return await host.new_stream(ID.from_base58(peer), [PROTOCOL_ID])
        except trio.TooSlowError:
            raise PeerUnreachable(peer, "opening a stream timed out") from None
        except Exception as exc:
            raise PeerUnreachable(peer, f"cannot open a stream: {exc}") from exc

    async def _on_stream(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id.to_base58()
        try:
            await read_frames(peer, stream, self._settings.max_frame, self._deliver)
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
        host = self._running().host
        store = host.get_peerstore()
        result = []
        for peer_id in host.get_connected_peers():
            peer = peer_id.to_base58()
            try:
                addresses = tuple(addresses_without_peer(store.addrs(peer_id)))
            except Exception:  # peerstore raises when it has no record
                addresses = ()
            result.append(
                PeerInfo(
                    peer_id=peer, addresses=addresses, connected=True, rtt_ms=self._rtt_ms.get(peer)
                )
            )
        return sorted(result, key=lambda p: p.peer_id)

    def is_connected(self, peer: PeerID) -> bool:
        host = self._running().host
        return bool(host.get_network().get_connections(ID.from_base58(peer)))

    async def wait_connected(self, peer: PeerID) -> None:
        """Return once ``peer`` is connected (for callers that need an event, not a poll)."""
        while not self.is_connected(peer):
            await self._connected.setdefault(peer, trio.Event()).wait()

    async def wait_disconnected(self, peer: PeerID) -> None:
        """Return once ``peer`` has no connection left."""
        while self.is_connected(peer):
            await self._disconnected.setdefault(peer, trio.Event()).wait()

    async def connect(self, address: str) -> PeerID:
        peer = check_peer_address(address)
        public_key_from_peer_id(peer)
        self._remember(peer, [address.split("/p2p/")[0]])
        await self._dial(peer)
        return peer

    async def ping(self, peer: PeerID) -> float:
        host = self._running().host
        await self._dial(peer)
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
        self._rtt_ms[peer] = rtt * 1000
        return rtt

    async def find(self, peer: PeerID) -> PeerInfo:
        self._running()
        public_key_from_peer_id(peer)
        if self.is_connected(peer):
            addresses = tuple(self._known_addresses(peer))
            return PeerInfo(
                peer_id=peer, addresses=addresses, connected=True, rtt_ms=self._rtt_ms.get(peer)
            )
        found = await self._lookup(peer)
        return PeerInfo(peer_id=peer, addresses=tuple(found), connected=False)

    async def _lookup(self, peer: PeerID) -> list[str]:
        """Ask the DHT for a peer's addresses, again while the network settles, until the deadline.

        Right after connections are made the routing tables may not hold them yet (a peer enters
        them once identify has told us its listen addresses), so a miss is retried with backoff.
        """
        if self._dht is None:
            raise PeerNotFound(peer, "the DHT is off and the peer is not connected")
        timeout = self._settings.dht_timeout_ns / _NS
        reason = "no DHT node knows its addresses"
        attempt = 0
        with trio.move_on_after(timeout):
            while True:
                if await self._dht.add_connected() == 0:
                    raise PeerNotFound(peer, "no DHT peers to ask (connect or bootstrap first)")
                try:
                    found = await self._dht.find_peer(peer)
                except PeerNotFound as exc:
                    reason = str(exc).split(": ", 1)[-1]
                else:
                    self._remember(peer, found)
                    return found
                await trio.sleep(backoff(attempt, 0.05, 1.0))
                attempt += 1
        raise PeerNotFound(peer, f"{reason} (gave up after {timeout:g} s)")

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
        self._running()
        if self._dht is None:
            return []
        with trio.move_on_after(self._settings.dht_timeout_ns / _NS):
            await self._dht.add_connected()
            found = await self._dht.find_providers(key, count)
            for info in found:
                self._remember(info.peer_id, list(info.addresses))
            return [info for info in found if info.peer_id != self._peer_id]
        return []

    # -- dialling and keeping connections --------------------------------------------------

    def _known_addresses(self, peer: PeerID) -> list[str]:
        try:
            stored = self._running().host.get_peerstore().addrs(ID.from_base58(peer))
        except Exception:  # no record
            return []
        return list(dict.fromkeys(addresses_without_peer(stored)))

    def _remember(self, peer: PeerID, addresses: list[str]) -> None:
        store = self._running().host.get_peerstore()
        try:
            maddrs = [multiaddr.Multiaddr(a) for a in addresses]
        except Exception as exc:
            raise InvalidAddress("address", addresses, ADDRESS_FORM, detail=str(exc)) from None
        store.add_addrs(ID.from_base58(peer), maddrs, ADDRESS_TTL_S)

    async def _dial(self, peer: PeerID) -> None:
        """Connect to ``peer`` unless connected: known addresses one by one, then the DHT."""
        if self.is_connected(peer):
            return
        addresses = self._known_addresses(peer)
        if not addresses:
            try:
                addresses = await self._lookup(peer)
            except PeerNotFound as exc:
                raise PeerUnreachable(peer, f"no known address, and {exc}") from None
        swarm = swarm_of(self._running().host)
        peer_id = ID.from_base58(peer)
        errors = []
        for address in addresses:
            swarm.unblock_peer(peer_id)  # our retries, not its 60 s ban
            try:
                with trio.fail_after(self._settings.dial_timeout_ns / _NS):
                    await swarm.dial_addr(multiaddr.Multiaddr(address), peer_id)
                return
            except trio.TooSlowError:
                errors.append(f"{address}: timed out")
            except Exception as exc:
                errors.append(f"{address}: {_reason(exc)}")
            if self.is_connected(peer):  # the peer dialled us meanwhile
                return
        raise PeerUnreachable(peer, "; ".join(errors))

    async def _keep_connected(self, address: str) -> None:
        """Keep a bootstrap peer connected: redial with backoff whenever it drops."""
        peer = check_peer_address(address, "network.bootstrap")
        self._remember(peer, [address.split("/p2p/")[0]])
        minimum = self._settings.reconnect_min_ns / _NS
        maximum = self._settings.reconnect_max_ns / _NS
        attempt = 0
        while True:
            if self.is_connected(peer):
                attempt = 0
                await self._disconnected.setdefault(peer, trio.Event()).wait()
                continue
            try:
                await self._dial(peer)
                self.log.info("bootstrap peer connected", peer=peer)
                attempt = 0
                continue
            except PeerUnreachable as exc:
                self.log.debug("bootstrap peer unreachable", peer=peer, error=str(exc))
            delay = backoff(attempt, minimum, maximum)
            attempt += 1
            await trio.sleep(delay * random.uniform(0.8, 1.2))

    async def _dial_discovered(self, bridge: MDNSBridge) -> None:
        async for info in bridge.receive:
            peer = info.peer_id.to_base58()
            if self.is_connected(peer):
                continue
            try:
                self._remember(peer, addresses_without_peer(info.addrs))
                await self._dial(peer)
                self.log.info("mDNS peer connected", peer=peer)
            except (PeerUnreachable, InvalidAddress) as exc:
                self.log.debug("mDNS peer unreachable", peer=peer, error=str(exc))

    async def _add_to_dht(self, peer_id: ID) -> None:
        """Add a new connection's peer to the routing table once identify gave its addresses."""
        if self._dht is None or self._host is None:
            return
        store = self._host.get_peerstore()
        # Identify has no completion event we can wait on: look every 20 ms, for 5 s at most.
        with trio.move_on_after(IDENTIFY_WAIT_S):
            while not _has_protocols(store, peer_id):  # noqa: ASYNC110
                await trio.sleep(0.02)
        await self._dht.add_peer(peer_id)

    def _on_connected(self, peer_id: ID) -> None:
        peer = peer_id.to_base58()
        event = self._connected.pop(peer, None)
        if event is not None:
            event.set()
        if self._nursery is not None and self._state is NetworkState.RUNNING:
            self._nursery.start_soon(self._add_to_dht, peer_id)

    def _on_disconnected(self, peer_id: ID) -> None:
        peer = peer_id.to_base58()
        self._rtt_ms.pop(peer, None)
        event = self._disconnected.pop(peer, None)
        if event is not None:
            event.set()


class _Running:
    __slots__ = ("gossip", "host", "nursery")

    def __init__(self, host: IHost, gossip: Gossip, nursery: trio.Nursery) -> None:
        self.host, self.gossip, self.nursery = host, gossip, nursery


class _Watcher(INotifee):
    """Connection events from the swarm, turned into our bookkeeping (synchronous, quick)."""

    def __init__(self, network: P2PNetwork) -> None:
        self._network = network

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._network._on_connected(conn.muxed_conn.peer_id)
        await trio.lowlevel.checkpoint()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        if not network.get_connections(conn.muxed_conn.peer_id):
            self._network._on_disconnected(conn.muxed_conn.peer_id)
        await trio.lowlevel.checkpoint()

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        await trio.lowlevel.checkpoint()

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        await trio.lowlevel.checkpoint()


def _has_protocols(store: object, peer_id: ID) -> bool:
    try:
        return bool(store.get_protocols(peer_id))  # type: ignore[attr-defined]
    except Exception:  # no record yet
        return False


def _reason(exc: BaseException) -> str:
    """The innermost message of a libp2p error chain (its outer messages are generic)."""
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    while cause is not None:
        text = str(cause) or text
        cause = cause.__cause__
    return text
