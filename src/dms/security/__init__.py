"""Identity and authorization: Ed25519 keys, ``did:key``, keystore, capability tokens, trust.

Owns: key pairs and signature checks (keys.py), ``did:key`` (did.py), errors (errors.py).
Must not import: actor, network, or anything above them. Depends only on dms.errors and
dms.types.
"""

from dms.security.did import did_from_public_key, is_did, public_key_from_did
from dms.security.errors import (
    DelegationError,
    InvalidDID,
    InvalidKey,
    InvalidSignature,
    InvalidToken,
    KeystoreError,
    Revoked,
    TokenExpired,
    TrustStoreError,
    Unauthorized,
)
from dms.security.keys import KeyPair, verify_signature

__all__ = [
    "DelegationError",
    "InvalidDID",
    "InvalidKey",
    "InvalidSignature",
    "InvalidToken",
    "KeyPair",
    "KeystoreError",
    "Revoked",
    "TokenExpired",
    "TrustStoreError",
    "Unauthorized",
    "did_from_public_key",
    "is_did",
    "public_key_from_did",
    "verify_signature",
]
