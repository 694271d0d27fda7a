"""``did:key`` for Ed25519 keys: ``did:key:z`` + base58btc(0xed 0x01 + 32-byte public key).

Decoding is on the hot path (every incoming message names its sender by DID), so it is cached.
"""

from __future__ import annotations

import functools

import base58

from dms.security.errors import InvalidDID

DID_KEY_PREFIX = "did:key:z"
"""``did:key:`` then the multibase prefix ``z`` (base58btc)."""
ED25519_MULTICODEC = b"\xed\x01"
"""The multicodec ``ed25519-pub`` (0xed) as an unsigned varint."""
PUBLIC_KEY_SIZE = 32
_MAX_DID_LENGTH = 128


def did_from_public_key(public_key: bytes) -> str:
    """The ``did:key`` of a 32-byte Ed25519 public key."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise InvalidDID(public_key.hex(), f"public key has {len(public_key)} bytes, not 32")
    encoded = base58.b58encode(ED25519_MULTICODEC + bytes(public_key)).decode("ascii")
    return DID_KEY_PREFIX + encoded


@functools.lru_cache(maxsize=65536)
def public_key_from_did(did: str) -> bytes:
    """The 32-byte Ed25519 public key inside a ``did:key``; raises :class:`InvalidDID`."""
    if not isinstance(did, str):
        raise InvalidDID(did, "is not text")
    if len(did) > _MAX_DID_LENGTH:
        raise InvalidDID(did[:_MAX_DID_LENGTH] + "...", "is too long")
    if not did.startswith(DID_KEY_PREFIX):
        raise InvalidDID(did, f'does not start with "{DID_KEY_PREFIX}"')
    try:
        raw = base58.b58decode(did[len(DID_KEY_PREFIX) :].encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise InvalidDID(did, "is not base58btc after the z prefix") from exc
    if not raw.startswith(ED25519_MULTICODEC):
        raise InvalidDID(did, "is not an ed25519-pub multicodec key (0xed01)")
    key = raw[len(ED25519_MULTICODEC) :]
    if len(key) != PUBLIC_KEY_SIZE:
        raise InvalidDID(did, f"holds a key of {len(key)} bytes, not 32")
    # Round trip: refuse non-canonical spellings (e.g. leading zero characters) of one key.
    if DID_KEY_PREFIX + base58.b58encode(raw).decode("ascii") != did:
        raise InvalidDID(did, "is not the canonical base58btc spelling of its key")
    return key


def is_did(value: str) -> bool:
    """Whether ``value`` is a valid Ed25519 ``did:key``."""
    try:
        public_key_from_did(value)
    except InvalidDID:
        return False
    return True
