"""Finding peers: the Kademlia DHT (peers by id, providers of the dms service), mDNS on a LAN.

Every node runs the DHT in server mode and adds each peer it connects to to its routing table once
the peer has identified itself (so the table holds the peer's listen addresses, not the ephemeral
port its connection came from). ``find_peer`` asks the table, then the network.

``advertise()`` announces this node as a provider of the dms service key; ``find_providers()``
lists the nodes that did: a way into the network for a node that knows one peer.

mDNS (optional, off by default) is py-libp2p's zeroconf listener: it runs in zeroconf's threads
and reports discoveries through a process-wide callback; :class:`MDNSBridge` carries them into
trio through a bounded channel (dropping, with a log line, when the dialer is behind).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable

import trio
from libp2p.abc import IHost
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo as LibPeerInfo
from structlog.typing import FilteringBoundLogger

from dms.log import get_logger
from dms.network.base import PeerID, PeerInfo
from dms.network.p2p.errors import PeerNotFound
from dms.network.p2p.host import addresses_without_peer


def _log() -> FilteringBoundLogger:
    """A logger made at use, so that it follows the configuration set after import."""
    return get_logger(component="p2p.discovery")


SERVICE_NAME = "dms/service/1"
SERVICE_KEY = (b"\x12\x20" + hashlib.sha256(SERVICE_NAME.encode()).digest()).hex()
"""The DHT key (a sha2-256 multihash, hex) under which dms nodes advertise themselves."""


class DHT:
    """Kademlia in server mode, with errors translated and duplicates removed."""

    def __init__(self, host: IHost) -> None:
        self._host = host
        self.kad = KadDHT(host, DHTMode.SERVER)

    async def add_peer(self, peer: ID) -> None:
        try:
            await self.kad.add_peer(peer)
        except Exception as exc:  # a routing-table refusal is not our caller's problem
            _log().debug("routing table refused a peer", peer=peer.to_base58(), error=str(exc))

    async def add_connected(self) -> int:
        """Put every connected, identified peer in the routing table; return the table's size."""
        table = self.kad.routing_table
        for peer in self._host.get_connected_peers():
            if not table.peer_in_table(peer):
                await self.add_peer(peer)
        return self.routing_table_size()

    async def find_peer(self, peer: PeerID) -> list[str]:
        """The addresses of ``peer`` (without /p2p); raises PeerNotFound."""
        try:
            info = await self.kad.find_peer(ID.from_base58(peer))
        except Exception as exc:
            raise PeerNotFound(peer, f"DHT lookup failed: {exc}") from exc
        if info is None or not info.addrs:
            raise PeerNotFound(peer, "no DHT node knows its addresses")
        return _unique(addresses_without_peer(info.addrs))

    async def advertise(self, key: str = SERVICE_KEY) -> bool:
        try:
            return bool(await self.kad.provide(key))
        except Exception as exc:
            _log().warning("advertising failed", key=key, error=str(exc))
            return False

    async def find_providers(self, key: str = SERVICE_KEY, count: int = 20) -> list[PeerInfo]:
        try:
            found = await self.kad.find_providers(key, count)
        except Exception as exc:
            _log().warning("provider lookup failed", key=key, error=str(exc))
            return []
        merged: dict[str, list[str]] = {}
        for info in found:
            peer = info.peer_id.to_base58()
            merged.setdefault(peer, []).extend(addresses_without_peer(info.addrs))
        return [PeerInfo(peer_id=p, addresses=tuple(_unique(a))) for p, a in merged.items()]

    def routing_table_size(self) -> int:
        return int(self.kad.get_routing_table_size())


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


class MDNSBridge:
    """Carries mDNS discoveries from zeroconf's threads into a trio channel."""

    def __init__(self, own_id: ID, capacity: int = 64) -> None:
        self._own_id = own_id
        self._token: trio.lowlevel.TrioToken | None = None
        self.send, self.receive = trio.open_memory_channel[LibPeerInfo](capacity)
        self._handler: Callable[[LibPeerInfo], None] | None = None

    def start(self) -> None:
        from libp2p.discovery.events.peerDiscovery import peerDiscovery

        self._token = trio.lowlevel.current_trio_token()
        self._handler = self._on_discovered
        peerDiscovery.register_peer_discovered_handler(self._handler)

    def stop(self) -> None:
        from libp2p.discovery.events.peerDiscovery import peerDiscovery

        if self._handler is not None:
            peerDiscovery.unregister_peer_discovered_handler(self._handler)
            self._handler = None
        self.send.close()

    def _on_discovered(self, info: LibPeerInfo) -> None:  # any thread
        if info.peer_id == self._own_id or self._token is None:
            return

        def put() -> None:
            try:
                self.send.send_nowait(info)
            except trio.WouldBlock:
                _log().warning("mDNS discovery dropped: dialer busy", peer=info.peer_id.to_base58())
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass

        with contextlib.suppress(trio.RunFinishedError):  # the node is shutting down
            self._token.run_sync_soon(put)
