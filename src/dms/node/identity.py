"""Peer id <-> DID for Ed25519 identities, without importing the libp2p stack.

A libp2p Ed25519 peer id and a ``did:key`` carry the same 32-byte public key behind different
prefixes, so each is a re-encoding of the other. ``dms.network.p2p.identity`` does the same
(a test pins that both agree); this copy exists because importing that package imports
py-libp2p (about a second), which the CLI and the in-memory network must not pay for.
"""

from __future__ import annotations

import base58

from dms.security import did_from_public_key, public_key_from_did
from dms.security.errors import InvalidDID

_PEER_ID_PREFIX = b"\x00\x24\x08\x01\x12\x20"
_KEY_SIZE = 32


def peer_id_from_public_key(public_key: bytes) -> str:
    if len(public_key) != _KEY_SIZE:
        raise ValueError(f"public_key: {len(public_key)} bytes; accepted: 32 (Ed25519)")
    return base58.b58encode(_PEER_ID_PREFIX + bytes(public_key)).decode("ascii")


def peer_id_from_did(did: str) -> str:
    """``did:key:z6Mk...`` -> ``12D3KooW...``; raises InvalidDID."""
    return peer_id_from_public_key(public_key_from_did(did))


def did_from_peer_id(peer_id: str) -> str:
    """``12D3KooW...`` -> ``did:key:z6Mk...``, or "" when it is not an Ed25519 peer id."""
    try:
        raw = base58.b58decode(peer_id.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return ""
    if len(raw) != len(_PEER_ID_PREFIX) + _KEY_SIZE or not raw.startswith(_PEER_ID_PREFIX):
        return ""
    return did_from_public_key(raw[len(_PEER_ID_PREFIX) :])


def peer_of(peer_or_did: str) -> str:
    """A peer id given either as a peer id or as a DID."""
    if peer_or_did.startswith("did:"):
        try:
            return peer_id_from_did(peer_or_did)
        except InvalidDID:
            return peer_or_did
    return peer_or_did
