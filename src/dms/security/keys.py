"""Ed25519 key pairs (PyNaCl) and signature checks.

:func:`verify_signature` never raises: the hot path asks a yes/no question and turns "no" into
its own typed error. Signatures are over bytes the caller chose; callers prefix a domain tag
(``b"dms-token-v1\\x00"``, ``b"dms-envelope-v1\\x00"``) so a signature for one kind of object can
never be replayed as another.
"""

from __future__ import annotations

import functools

import nacl.bindings
import nacl.exceptions
import nacl.signing

from dms.security.did import PUBLIC_KEY_SIZE, did_from_public_key
from dms.security.errors import InvalidKey

SEED_SIZE = 32
SIGNATURE_SIZE = 64


class KeyPair:
    """An Ed25519 signing key. ``seed`` is private: only the keystore should read it."""

    __slots__ = ("_did", "_public_key", "_secret_key", "_signing_key")

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        self._signing_key = signing_key
        self._public_key: bytes = bytes(signing_key.verify_key)
        self._did = did_from_public_key(self._public_key)
        # libsodium's 64-byte secret key: signing with it directly skips PyNaCl's wrapper
        # objects (every envelope is signed; ~3 us of ~22 us)
        _, self._secret_key = nacl.bindings.crypto_sign_seed_keypair(bytes(signing_key))

    @classmethod
    def generate(cls) -> KeyPair:
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        if not isinstance(seed, bytes | bytearray) or len(seed) != SEED_SIZE:
            shown = f"{len(seed)} bytes" if isinstance(seed, bytes | bytearray) else type(seed)
            raise InvalidKey("seed", shown, "a 32-byte Ed25519 seed")
        return cls(nacl.signing.SigningKey(bytes(seed)))

    @property
    def seed(self) -> bytes:
        return bytes(self._signing_key)

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def did(self) -> str:
        return self._did

    def sign(self, data: bytes) -> bytes:
        """The 64-byte detached signature of ``data``."""
        return nacl.bindings.crypto_sign(data, self._secret_key)[:SIGNATURE_SIZE]

    def __repr__(self) -> str:
        return f"KeyPair(did={self._did!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyPair) and other._public_key == self._public_key

    def __hash__(self) -> int:
        return hash(self._public_key)


@functools.lru_cache(maxsize=65536)
def _verify_key(public_key: bytes) -> nacl.signing.VerifyKey:
    return nacl.signing.VerifyKey(public_key)


def verify_signature(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s signature of ``data``. Never raises."""
    try:
        if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
            return False
        _verify_key(bytes(public_key)).verify(bytes(data), bytes(signature))
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, TypeError, ValueError):
        return False
    return True
