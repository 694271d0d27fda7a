"""Moving frames between nodes: the Network protocol and its implementations.

Owns: the ``Network`` protocol (base.py), the in-memory network (memory.py), the libp2p network
(p2p.py). Must not import: actor, security, or anything above them; envelopes are opaque here.
"""

from dms.network.base import (
    FrameTooLarge,
    Network,
    NetworkClosed,
    NetworkState,
    PeerID,
    PeerInfo,
    PeerUnreachable,
    ReceiveHandler,
    TopicHandler,
    TopicValidator,
)

__all__ = [
    "FrameTooLarge",
    "Network",
    "NetworkClosed",
    "NetworkState",
    "PeerID",
    "PeerInfo",
    "PeerUnreachable",
    "ReceiveHandler",
    "TopicHandler",
    "TopicValidator",
]
