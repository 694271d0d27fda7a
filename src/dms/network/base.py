"""The ``Network`` protocol: how a node moves bytes to other nodes.

Two implementations sit behind it: :mod:`dms.network.memory` (in one process, with per-link
latency, loss and partitions; for unit tests and simulations of thousands of nodes) and
:mod:`dms.network.p2p` (py-libp2p: Noise, yamux, gossipsub, Kademlia, mDNS).

The network knows nothing of envelopes or signatures: it carries opaque frames between peers and
on topics. A topic validator (a plain function over the frame) lets the actor layer drop
invalid gossip before it is forwarded.

What it may know is who is at the other end of a connection. libp2p's Noise handshake proves
that the remote holds the private key behind its peer id, and an Ed25519 peer id names the same
key as the node's ``did:key``; so a direct frame handed to the receive handler with that peer id
was put on the wire by that key's holder. ``authenticated_did(peer)`` says so to the layer
above, which then need not verify that holder's envelope signature a second time. A transport
that proves nothing (the in-memory one) answers None. Topic frames are relayed by third parties:
no transport vouches for their origin.

Lifecycle is structured: ``async with network:`` starts it (its background tasks live in a task
group it owns) and leaving the block stops it, closing every connection. A network is used once.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

import msgspec

from dms.errors import NetworkError

PeerID = str
"""A peer's id as text (libp2p's base58 peer id; any unique string in memory)."""

ReceiveHandler = Callable[[PeerID, bytes], Awaitable[None]]
"""Called with (sender, frame) for each direct frame, in order per sender.

``sender`` is the peer the frame arrived from: the authenticated remote of the connection where
the transport authenticates connections (see ``Network.authenticated_did``)."""

TopicHandler = Callable[[PeerID, bytes], Awaitable[None]]
"""Called with (origin, frame) for each frame published on a subscribed topic."""

TopicValidator = Callable[[PeerID, bytes], bool]
"""Returns False to drop a topic frame (it is then neither delivered nor forwarded)."""


class NetworkState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


class PeerInfo(msgspec.Struct, frozen=True, kw_only=True):
    peer_id: PeerID
    addresses: tuple[str, ...] = ()
    connected: bool = False
    rtt_ms: float | None = None


class PeerUnreachable(NetworkError):
    """No route to the peer, or the connection to it failed."""

    def __init__(self, peer: PeerID, reason: str) -> None:
        self.peer = peer
        super().__init__(f"peer {peer} unreachable: {reason}")


class FrameTooLarge(NetworkError):
    """A frame over the configured maximum was refused (sending or receiving)."""

    def __init__(self, size: int, limit: int) -> None:
        self.size, self.limit = size, limit
        super().__init__(f"frame of {size} bytes exceeds the maximum of {limit} bytes")


class NetworkClosed(NetworkError):
    """The network is not running (not started yet, or stopped)."""


@runtime_checkable
class Network(Protocol):
    """Moves frames between peers. All methods need the network to be running."""

    @property
    def peer_id(self) -> PeerID: ...

    def addresses(self) -> list[str]:
        """Addresses other peers can dial (multiaddrs for libp2p)."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def send(self, peer: PeerID, frame: bytes) -> None:
        """Deliver one frame to ``peer``; waits while the link is congested (backpressure).

        Raises PeerUnreachable, FrameTooLarge or NetworkClosed.
        """
        ...

    def ready(self, peer: PeerID) -> bool:
        """Whether ``send()`` to ``peer`` would return now, without waiting for room or a dial.

        A hint for callers that bound their own waiting: ``False`` is always a safe answer.
        """
        ...

    def on_receive(self, handler: ReceiveHandler) -> None:
        """Set the handler for direct frames (one per network)."""
        ...

    def authenticated_did(self, peer: PeerID) -> str | None:
        """The ``did:key`` whose private key ``peer`` proved it holds, or None.

        Non-None only where the transport authenticated the connection a direct frame from
        ``peer`` arrives on with that key (a direct frame from ``peer`` was then sent by that
        key's holder). None where it proves nothing, or the peer id names no did:key.
        """
        ...

    async def publish(self, topic: str, frame: bytes) -> None:
        """Broadcast a frame to every subscriber of ``topic`` (this node's own included)."""
        ...

    async def subscribe(
        self, topic: str, handler: TopicHandler, validator: TopicValidator | None = None
    ) -> None:
        """Receive frames published on ``topic``; ``validator`` drops bad ones before forwarding."""
        ...

    async def unsubscribe(self, topic: str) -> None: ...

    def peers(self) -> list[PeerInfo]:
        """Peers currently connected."""
        ...

    async def connect(self, address: str) -> PeerID:
        """Dial an address (a multiaddr with a peer id for libp2p) and return the peer's id."""
        ...

    async def ping(self, peer: PeerID) -> float:
        """Round-trip time to ``peer`` in seconds."""
        ...

    async def find(self, peer: PeerID) -> PeerInfo:
        """Locate a peer that is not connected (DHT for libp2p) and return its addresses."""
        ...
