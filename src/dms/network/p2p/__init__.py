"""The libp2p network: :class:`P2PNetwork` implements :class:`dms.network.base.Network`.

py-libp2p takes about a second to import, so this package loads it only when one of its names
that needs it (``P2PNetwork``, ``PROTOCOL_ID``, ``PING_PROTOCOL_ID``, ``SERVICE_KEY``) is first
used. The identity helpers, settings and errors import without it: the CLI can map peer ids and
DIDs, or validate ``[network]`` settings, for free.

Layers, bottom up: ``identity`` (seed -> key, peer id <-> DID), ``framing`` (length-prefixed
frames), ``settings``, ``host`` (the libp2p host and every correction to py-libp2p's defaults),
``links`` (one outbound stream per peer, coalesced writes, backpressure), ``connections``
(dialling, keeping peers connected), ``gossip`` (topics), ``discovery`` (DHT, mDNS), ``network``
(the ``Network`` protocol on all of them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dms.network.p2p.errors import InvalidAddress, InvalidPeerID, ListenFailed, PeerNotFound
from dms.network.p2p.identity import (
    did_from_peer_id,
    peer_id_from_did,
    peer_id_from_public_key,
    peer_id_from_seed,
    public_key_from_peer_id,
)
from dms.network.p2p.settings import GossipSettings, P2PSettings

if TYPE_CHECKING:
    from dms.network.p2p.discovery import SERVICE_KEY
    from dms.network.p2p.network import PING_PROTOCOL_ID, PROTOCOL_ID, P2PNetwork

_LAZY = {
    "P2PNetwork": "dms.network.p2p.network",
    "PROTOCOL_ID": "dms.network.p2p.network",
    "PING_PROTOCOL_ID": "dms.network.p2p.network",
    "SERVICE_KEY": "dms.network.p2p.discovery",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
