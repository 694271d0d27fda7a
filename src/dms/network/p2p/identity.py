"""A node's libp2p identity from its Ed25519 seed, and the peer id <-> DID mapping.

An Ed25519 peer id is an identity multihash of the protobuf-encoded public key, so it holds the
key itself: ``base58(00 24 | 08 01 12 20 | key)``. A ``did:key`` holds the same 32 bytes behind the
multicodec ``ed25519-pub`` (``ed 01``). Both directions are therefore pure re-encodings, no lookup:
the actor layer names peers by DID and the network by peer id, and either can be derived.

The did:key spelling here matches :mod:`dms.security.did` (a test pins that); it is repeated rather
than imported because the network must not depend on the security package.
"""

from __future__ import annotations

import functools

import base58

from dms.network.p2p.errors import InvalidPeerID

SEED_SIZE = 32
KEY_SIZE = 32
DID_PREFIX = "did:key:z"
_DID_MULTICODEC = b"\xed\x01"
# identity multihash (0x00, length 36) over the protobuf PublicKey{Type: Ed25519, Data: 32 bytes}
_PEER_ID_PREFIX = b"\x00\x24\x08\x01\x12\x20"
_PEER_ID_FORM = "an Ed25519 libp2p peer id (12D3KooW...)"
_DID_FORM = "an Ed25519 did:key (did:key:z6Mk...)"


def public_key_from_peer_id(peer_id: str) -> bytes:
    """The 32-byte Ed25519 public key inside a peer id; raises :class:`InvalidPeerID`."""
    return _key_from_peer_id(peer_id)


@functools.lru_cache(maxsize=4096)
def _key_from_peer_id(peer_id: str) -> bytes:
    if not isinstance(peer_id, str) or not peer_id:
        raise InvalidPeerID("peer", peer_id, _PEER_ID_FORM)
    try:
        raw = base58.b58decode(peer_id.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise InvalidPeerID(
            "peer", peer_id, _PEER_ID_FORM, detail=f"is not base58; expected {_PEER_ID_FORM}"
        ) from None
    if len(raw) != len(_PEER_ID_PREFIX) + KEY_SIZE or not raw.startswith(_PEER_ID_PREFIX):
        raise InvalidPeerID("peer", peer_id, _PEER_ID_FORM, detail=f"is not {_PEER_ID_FORM}")
    return raw[len(_PEER_ID_PREFIX) :]


def peer_id_from_public_key(public_key: bytes) -> str:
    if len(public_key) != KEY_SIZE:
        raise InvalidPeerID("public_key", f"{len(public_key)} bytes", "a 32-byte Ed25519 key")
    return base58.b58encode(_PEER_ID_PREFIX + bytes(public_key)).decode("ascii")


@functools.lru_cache(maxsize=4096)
def did_from_peer_id(peer_id: str) -> str:
    """``12D3KooW...`` -> ``did:key:z6Mk...`` (same key); raises :class:`InvalidPeerID`."""
    key = _key_from_peer_id(peer_id)
    return DID_PREFIX + base58.b58encode(_DID_MULTICODEC + key).decode("ascii")


@functools.lru_cache(maxsize=4096)
def peer_id_from_did(did: str) -> str:
    """``did:key:z6Mk...`` -> ``12D3KooW...`` (same key); raises :class:`InvalidPeerID`."""
    if not isinstance(did, str) or not did.startswith(DID_PREFIX):
        raise InvalidPeerID("did", did, _DID_FORM)
    try:
        raw = base58.b58decode(did[len(DID_PREFIX) :].encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise InvalidPeerID(
            "did", did, _DID_FORM, detail=f"is not base58 after z; expected {_DID_FORM}"
        ) from None
    if len(raw) != len(_DID_MULTICODEC) + KEY_SIZE or not raw.startswith(_DID_MULTICODEC):
        raise InvalidPeerID("did", did, _DID_FORM)
    return peer_id_from_public_key(raw[len(_DID_MULTICODEC) :])


def peer_id_from_seed(seed: bytes) -> str:
    """The peer id a node with this 32-byte Ed25519 seed will have."""
    import nacl.signing

    check_seed(seed)
    return peer_id_from_public_key(bytes(nacl.signing.SigningKey(bytes(seed)).verify_key))


def check_seed(seed: object) -> bytes:
    if not isinstance(seed, bytes | bytearray) or len(seed) != SEED_SIZE:
        shown = f"{len(seed)} bytes" if isinstance(seed, bytes | bytearray) else type(seed).__name__
        raise InvalidPeerID("seed", shown, "a 32-byte Ed25519 seed")
    return bytes(seed)
