"""Who we are connected to, and how we get (and stay) connected.

- dialling: a peer's known addresses one by one (py-libp2p's own dial tries only the first TCP
  address it ranks, and refuses a peer for 60 s after one failure), then the DHT;
- lookups: the DHT, retried with backoff while routing tables settle, up to a deadline;
- keeping: bootstrap peers are redialled with exponential backoff whenever they drop;
- discovery: peers found by mDNS are dialled; every new connection's peer enters the DHT routing
  table once identify has told us its listen addresses;
- events: ``wait_connected`` / ``wait_disconnected``, fed by the swarm's connection notices.
"""

from __future__ import annotations

import random

import multiaddr
import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.peer.id import ID
from structlog.typing import FilteringBoundLogger

from dms.network.base import PeerID, PeerUnreachable
from dms.network.p2p.discovery import DHT, MDNSBridge
from dms.network.p2p.errors import ADDRESS_FORM, InvalidAddress, PeerNotFound
from dms.network.p2p.host import addresses_without_peer, swarm_of
from dms.network.p2p.links import backoff
from dms.network.p2p.settings import P2PSettings, check_peer_address

ADDRESS_TTL_S = 24 * 3600
IDENTIFY_WAIT_S = 5.0
_NS = 1e9


class Connections:
    """Connection bookkeeping for one host; its tasks run in the network's task group."""

    def __init__(
        self, host: IHost, settings: P2PSettings, dht: DHT | None, log: FilteringBoundLogger
    ) -> None:
        self._host = host
        self._settings = settings
        self._dht = dht
        self._log = log
        self._nursery: trio.Nursery | None = None
        self._connected: dict[PeerID, trio.Event] = {}
        self._disconnected: dict[PeerID, trio.Event] = {}
        self.rtt_ms: dict[PeerID, float] = {}
        host.get_network().register_notifee(_Watcher(self))

    def start(self, nursery: trio.Nursery) -> None:
        """Keep the bootstrap peers connected, from now on, in ``nursery``."""
        self._nursery = nursery
        for address in self._settings.bootstrap:
            nursery.start_soon(self.keep_connected, address)

    # -- state and events --------------------------------------------------------------------

    def is_connected(self, peer: PeerID) -> bool:
        return bool(self._host.get_network().get_connections(ID.from_base58(peer)))

    async def wait_connected(self, peer: PeerID) -> None:
        while not self.is_connected(peer):
            await self._connected.setdefault(peer, trio.Event()).wait()

    async def wait_disconnected(self, peer: PeerID) -> None:
        while self.is_connected(peer):
            await self._disconnected.setdefault(peer, trio.Event()).wait()

    def _on_connected(self, peer_id: ID) -> None:
        event = self._connected.pop(peer_id.to_base58(), None)
        if event is not None:
            event.set()
        if self._nursery is not None and self._dht is not None:
            self._nursery.start_soon(self._add_to_dht, peer_id)

    def _on_disconnected(self, peer_id: ID) -> None:
        peer = peer_id.to_base58()
        self.rtt_ms.pop(peer, None)
        event = self._disconnected.pop(peer, None)
        if event is not None:
            event.set()

    # -- addresses ---------------------------------------------------------------------------

    def known_addresses(self, peer: PeerID) -> list[str]:
        try:
            stored = self._host.get_peerstore().addrs(ID.from_base58(peer))
        except Exception:  # the peerstore raises when it has no record
            return []
        return list(dict.fromkeys(addresses_without_peer(stored)))

    def remember(self, peer: PeerID, addresses: list[str]) -> None:
        try:
            maddrs = [multiaddr.Multiaddr(a) for a in addresses]
        except Exception as exc:  # multiaddr raises several unrelated types
            raise InvalidAddress("address", addresses, ADDRESS_FORM, detail=str(exc)) from None
        self._host.get_peerstore().add_addrs(ID.from_base58(peer), maddrs, ADDRESS_TTL_S)

    # -- dialling ----------------------------------------------------------------------------

    async def dial(self, peer: PeerID) -> None:
        """Connect to ``peer`` unless connected: known addresses one by one, then the DHT."""
        if self.is_connected(peer):
            return
        addresses = self.known_addresses(peer)
        if not addresses:
            try:
                addresses = await self.lookup(peer)
            except PeerNotFound as exc:
                raise PeerUnreachable(peer, f"no known address, and {exc}") from None
        swarm = swarm_of(self._host)
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
            except Exception as exc:  # libp2p's dial errors share no base class
                errors.append(f"{address}: {_reason(exc)}")
            if self.is_connected(peer):  # the peer dialled us meanwhile
                return
        raise PeerUnreachable(peer, "; ".join(errors))

    async def lookup(self, peer: PeerID) -> list[str]:
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
                    self.remember(peer, found)
                    return found
                await trio.sleep(backoff(attempt, 0.05, 1.0))
                attempt += 1
        raise PeerNotFound(peer, f"{reason} (gave up after {timeout:g} s)")

    # -- keeping connected -------------------------------------------------------------------

    async def keep_connected(self, address: str) -> None:
        """Keep a bootstrap peer connected: redial with backoff whenever it drops."""
        peer = check_peer_address(address, "network.bootstrap")
        self.remember(peer, [address.split("/p2p/")[0]])
        minimum = self._settings.reconnect_min_ns / _NS
        maximum = self._settings.reconnect_max_ns / _NS
        attempt = 0
        while True:
            if self.is_connected(peer):
                attempt = 0
                await self._disconnected.setdefault(peer, trio.Event()).wait()
                continue
            try:
                await self.dial(peer)
                self._log.info("bootstrap peer connected", peer=peer)
                attempt = 0
                continue
            except PeerUnreachable as exc:
                self._log.debug("bootstrap peer unreachable", peer=peer, error=str(exc))
            delay = backoff(attempt, minimum, maximum)
            attempt += 1
            await trio.sleep(delay * random.uniform(0.8, 1.2))

    async def dial_discovered(self, bridge: MDNSBridge) -> None:
        """Dial the peers mDNS reports, as long as the bridge runs."""
        async for info in bridge.receive:
            peer = info.peer_id.to_base58()
            if self.is_connected(peer):
                continue
            try:
                self.remember(peer, addresses_without_peer(info.addrs))
                await self.dial(peer)
                self._log.info("mDNS peer connected", peer=peer)
            except (PeerUnreachable, InvalidAddress) as exc:
                self._log.debug("mDNS peer unreachable", peer=peer, error=str(exc))

    async def _add_to_dht(self, peer_id: ID) -> None:
        """Add a new connection's peer to the routing table once identify gave its addresses."""
        assert self._dht is not None
        store = self._host.get_peerstore()
        # Identify has no completion event we can wait on: look every 20 ms, for 5 s at most.
        with trio.move_on_after(IDENTIFY_WAIT_S):
            while not _has_protocols(store, peer_id):  # noqa: ASYNC110
                await trio.sleep(0.02)
        await self._dht.add_peer(peer_id)


class _Watcher(INotifee):
    """Connection notices from the swarm, turned into our bookkeeping (synchronous, quick)."""

    def __init__(self, connections: Connections) -> None:
        self._connections = connections

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._connections._on_connected(conn.muxed_conn.peer_id)
        await trio.lowlevel.checkpoint()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        if not network.get_connections(conn.muxed_conn.peer_id):
            self._connections._on_disconnected(conn.muxed_conn.peer_id)
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
