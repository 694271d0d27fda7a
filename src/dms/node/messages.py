"""Requests and replies of the node's own behaviors (status, peers, hello, allocations).

The REST API and the CLI use these same types; see :mod:`dms.node.behaviors` for the names.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from dms.jobs.protocol import AllocationState
from dms.network.base import PeerInfo

PeerText = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
AddressText = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class _Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class NodeStatus(msgspec.Struct, frozen=True, kw_only=True):
    """``/dms/node/status``: who this node is and how it is doing."""

    did: str
    peer_id: str
    addresses: tuple[str, ...]
    """Where other nodes reach this one (multiaddrs with /p2p/<peer id>)."""
    version: str
    onboarded: bool
    """Whether this node offers resources as a provider."""
    draining: bool = False
    peers: int
    """Peers connected now."""
    allocations: int = 0
    """Allocations running here (provider side)."""
    executors: tuple[str, ...] = ()
    """Executors that can run here."""
    uptime_s: float
    api_url: str = ""
    """Where this node's REST API listens ("" when it is off)."""


class PublicStatus(msgspec.Struct, frozen=True, kw_only=True):
    """``/public/status``: what any peer may know (no capability needed)."""

    did: str
    peer_id: str
    version: str
    onboarded: bool
    peers: int
    uptime_s: float


class Hello(msgspec.Struct, frozen=True, kw_only=True):
    """``/public/hello``: the cheapest proof that a node is there and who it is."""

    did: str
    peer_id: str
    version: str
    time_ns: int


class PeerEntry(msgspec.Struct, frozen=True, kw_only=True):
    peer_id: str
    did: str = ""
    """The peer's DID when its peer id holds an Ed25519 key."""
    addresses: tuple[str, ...] = ()
    connected: bool = True
    rtt_ms: float | None = None

    @classmethod
    def of(cls, info: PeerInfo, did: str) -> PeerEntry:
        return cls(
            peer_id=info.peer_id,
            did=did,
            addresses=info.addresses,
            connected=info.connected,
            rtt_ms=info.rtt_ms,
        )


class PeerList(msgspec.Struct, frozen=True, kw_only=True):
    peers: tuple[PeerEntry, ...]


class PeerSelf(msgspec.Struct, frozen=True, kw_only=True):
    peer_id: str
    did: str
    addresses: tuple[str, ...]


class PingRequest(_Request, frozen=True, kw_only=True):
    peer: PeerText
    """A peer id (12D3KooW...) or the peer's DID (did:key:z6Mk...)."""


class PingReply(msgspec.Struct, frozen=True, kw_only=True):
    peer_id: str
    rtt_ms: float


class ConnectRequest(_Request, frozen=True, kw_only=True):
    address: AddressText
    """A multiaddr with the peer id: /ip4/127.0.0.1/tcp/9000/p2p/12D3KooW..."""


class ConnectReply(msgspec.Struct, frozen=True, kw_only=True):
    peer_id: str


class AllocationList(msgspec.Struct, frozen=True, kw_only=True):
    """``/dms/node/allocations/list``: the allocations this node runs as a provider."""

    allocations: tuple[AllocationState, ...]
