"""Errors of the libp2p network, below :class:`dms.errors.NetworkError` and ``InputError``.

::

    InputError
     +-- InvalidAddress     a multiaddr that does not parse, or lacks the /p2p/<peer id> it needs
     +-- InvalidPeerID      a peer id or DID that is not an Ed25519 identity
    NetworkError
     +-- PeerUnreachable    (dms.network.base) no route to the peer, or its connection failed
     +-- ListenFailed       a listen address is taken or cannot be bound
     +-- PeerNotFound       the DHT does not know where the peer is
"""

from __future__ import annotations

from dms.errors import InputError, NetworkError

ADDRESS_FORM = "a multiaddr like /ip4/127.0.0.1/tcp/9000/p2p/12D3KooW..."
LISTEN_FORM = "a TCP multiaddr like /ip4/0.0.0.0/tcp/9000 (port 0 picks a free port)"


class InvalidAddress(InputError):
    """A multiaddr that does not parse or lacks a part it needs."""


class InvalidPeerID(InputError):
    """A peer id (or DID) that is not an Ed25519 libp2p identity."""


class ListenFailed(NetworkError):
    """A listen address is in use (by anyone, another dms node included) or cannot be bound."""

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        super().__init__(f"network.listen: cannot listen on {address}: {reason}")


class PeerNotFound(NetworkError):
    """The DHT was asked for a peer nobody knows the addresses of."""

    def __init__(self, peer: str, reason: str) -> None:
        self.peer = peer
        super().__init__(f"peer {peer} not found: {reason}")
