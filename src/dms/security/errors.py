"""Security errors: every one subclasses :class:`dms.errors.SecurityError`.

::

    SecurityError
     +-- InvalidDID          a DID that is not an Ed25519 ``did:key``
     +-- InvalidKey          a seed or public key of the wrong size or type
     +-- InvalidSignature    a signature that does not verify (forged or tampered data)
     +-- TokenExpired        a token (or one in its chain) past its expiry
     +-- Revoked             a token (or one in its chain) that its issuer revoked
     +-- Unauthorized        no root and no valid chain grants the action
     +-- DelegationError     a chain that widens, exceeds its depth, or is not linked
     +-- InvalidToken        a token that does not decode or whose fields do not validate
     +-- KeystoreError       a key file that is missing, exists, or does not decrypt
     +-- TrustStoreError     a trust file that does not decode
"""

from __future__ import annotations

from dms.errors import SecurityError


class InvalidDID(SecurityError):
    """A DID that is not ``did:key:z6Mk...`` over a 32-byte Ed25519 public key."""

    def __init__(self, did: object, reason: str) -> None:
        self.did = did
        self.reason = reason
        super().__init__(f'did: "{did}" {reason}; accepted: did:key:z6Mk... (Ed25519)')


class InvalidKey(SecurityError):
    """A seed or key of the wrong size or type."""

    def __init__(self, field: str, value: object, accepted: str) -> None:
        self.field = field
        self.value = value
        self.accepted = accepted
        super().__init__(f"{field}: {value!r} is not {accepted}")


class InvalidSignature(SecurityError):
    """A signature that does not verify under the claimed signer's key."""

    def __init__(self, what: str, signer: str) -> None:
        self.what = what
        self.signer = signer
        super().__init__(f"{what}: signature does not verify for signer {signer}")


class TokenExpired(SecurityError):
    """A token whose ``expires_ns`` is not after the verification time."""

    def __init__(self, token_id: str, expires_ns: int, now_ns: int) -> None:
        self.token_id = token_id
        self.expires_ns = expires_ns
        self.now_ns = now_ns
        super().__init__(
            f"token {token_id}: expires_ns {expires_ns} is not after now {now_ns}; "
            "accepted: an unexpired token"
        )


class Revoked(SecurityError):
    """A token revoked by its issuer (revocation id ``issuer#subject#nonce``)."""

    def __init__(self, revocation_id: str) -> None:
        self.revocation_id = revocation_id
        super().__init__(f"token {revocation_id} was revoked by its issuer")


class Unauthorized(SecurityError):
    """Neither a root DID nor any valid token chain grants the action on the capability."""

    def __init__(self, caller: str, action: str, capability: str, reason: str = "") -> None:
        self.caller = caller
        self.action = action
        self.capability = capability
        self.reason = reason
        text = f"{caller} may not {action} {capability}"
        super().__init__(f"{text}: {reason}" if reason else text)


class DelegationError(SecurityError):
    """A delegation chain that widens its parent, exceeds its depth or is not linked."""

    def __init__(self, token_id: str, field: str, value: object, accepted: str) -> None:
        self.token_id = token_id
        self.field = field
        self.value = value
        self.accepted = accepted
        super().__init__(f"token {token_id}: {field} {value!r} is not {accepted}")


class InvalidToken(SecurityError):
    """A token that does not decode, or whose fields do not validate."""

    def __init__(self, field: str, value: object, accepted: str) -> None:
        self.field = field
        self.value = value
        self.accepted = accepted
        super().__init__(f"token {field}: {value!r} is not {accepted}")


class KeystoreError(SecurityError):
    """A key that is missing, already exists, is badly named, or does not decrypt."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f'key "{name}": {reason}')


class TrustStoreError(SecurityError):
    """A trust context file that cannot be read or decoded."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"trust file {path}: {reason}")
