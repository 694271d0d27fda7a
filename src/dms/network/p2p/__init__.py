"""The libp2p network: :class:`P2PNetwork` implements :class:`dms.network.base.Network`.

Importing this package imports py-libp2p (~1 s): import it only where a node starts its network,
never from ``dms.network`` itself or from CLI commands that do not need it.

Layers, bottom up: ``identity`` (seed -> key, peer id <-> DID), ``framing`` (length-prefixed
frames), ``settings``, ``host`` (the libp2p host and every correction to py-libp2p's defaults),
``links`` (one outbound stream per peer, coalesced writes, backpressure), ``gossip`` (topics),
``discovery`` (DHT, mDNS), ``network`` (the ``Network`` protocol on all of them).
"""

from dms.network.p2p.discovery import SERVICE_KEY
from dms.network.p2p.errors import (
    InvalidAddress,
    InvalidPeerID,
    ListenFailed,
    PeerNotFound,
)
from dms.network.p2p.identity import (
    did_from_peer_id,
    peer_id_from_did,
    peer_id_from_public_key,
    peer_id_from_seed,
    public_key_from_peer_id,
)
from dms.network.p2p.network import PING_PROTOCOL_ID, PROTOCOL_ID, P2PNetwork
from dms.network.p2p.settings import GossipSettings, P2PSettings

__all__ = [
    "PING_PROTOCOL_ID",
    "PROTOCOL_ID",
    "SERVICE_KEY",
    "GossipSettings",
    "InvalidAddress",
    "InvalidPeerID",
    "ListenFailed",
    "P2PNetwork",
    "P2PSettings",
    "PeerNotFound",
    "did_from_peer_id",
    "peer_id_from_did",
    "peer_id_from_public_key",
    "peer_id_from_seed",
    "public_key_from_peer_id",
]
