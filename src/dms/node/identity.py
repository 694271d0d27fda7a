"""Peer ids and DIDs for the node's messages: either form accepted, a missing DID tolerated.

The conversions are :mod:`dms.network.p2p.identity`'s (which imports without py-libp2p); this
module adds what the node's behaviors need on top: a peer given as a DID, and peers whose id
holds no Ed25519 key (the in-memory network's) listed without a DID rather than refused.
"""

from __future__ import annotations

from dms.network.p2p.errors import InvalidPeerID
from dms.network.p2p.identity import did_from_peer_id as _did_from_peer_id
from dms.network.p2p.identity import peer_id_from_did as peer_id_from_did

__all__ = ["did_from_peer_id", "peer_id_from_did", "peer_of"]


def did_from_peer_id(peer_id: str) -> str:
    """``12D3KooW...`` -> ``did:key:z6Mk...``, or "" when it is not an Ed25519 peer id."""
    try:
        return _did_from_peer_id(peer_id)
    except InvalidPeerID:
        return ""


def peer_of(peer_or_did: str) -> str:
    """A peer id given either as a peer id or as a DID (a malformed DID is passed through, for
    the network to refuse by name)."""
    if peer_or_did.startswith("did:"):
        try:
            return peer_id_from_did(peer_or_did)
        except InvalidPeerID:
            return peer_or_did
    return peer_or_did
