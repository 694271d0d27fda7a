"""Security errors: every one subclasses :class:`dms.errors.SecurityError`.

::

    SecurityError
     +-- InvalidDID          a DID that is not an Ed25519 ``did:key``
     +-- InvalidKey          a seed or public key of the wrong size or type
     +-- InvalidSignature    a signature that does not verify (forged or tampered data)
     +-- Expired             a message or token past its expiry
     |    +-- TokenExpired   a token (or one in its chain) past its expiry
     +-- Replayed            a message (sender, nonce) seen before
     +-- ExpiryTooFar        a message whose expiry lies beyond the replay window
     +-- Revoked             a token (or one in its chain) that its issuer revoked
     +-- Unauthorized        no root and no valid chain grants the action
     |    +-- WrongSubject   the token was granted to another DID than the caller
     |    +-- WrongAudience  the token is meant for another DID than the receiver
     |    +-- NotRooted      the chain starts at a DID that is neither a root nor anchored
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


class Expired(SecurityError):
    """A message or token whose ``expires_ns`` is not after the verification time."""

    def __init__(self, what: str, expires_ns: int, now_ns: int) -> None:
        self.what = what
        self.expires_ns = expires_ns
        self.now_ns = now_ns
        super().__init__(
            f"{what}: expires_ns {expires_ns} is not after now {now_ns}; accepted: a later expiry"
        )


class TokenExpired(Expired):
    """A token (or a link of its chain, or the anchor it relies on) past its expiry."""

    def __init__(self, token_id: str, expires_ns: int, now_ns: int) -> None:
        self.token_id = token_id
        super().__init__(f"token {token_id}", expires_ns, now_ns)


class Replayed(SecurityError):
    """A message whose (sender, nonce) was already accepted and has not expired yet."""

    def __init__(self, sender: str, nonce: str) -> None:
        self.sender = sender
        self.nonce = nonce
        super().__init__(f"message nonce {nonce!r} from {sender} was already received")


class ExpiryTooFar(SecurityError):
    """A message that asks to be remembered longer than the replay window allows."""

    def __init__(self, expires_ns: int, now_ns: int, window_ns: int) -> None:
        self.expires_ns = expires_ns
        self.now_ns = now_ns
        self.window_ns = window_ns
        super().__init__(
            f"expires_ns {expires_ns} is more than {window_ns} ns after now {now_ns}; "
            f"accepted: an expiry within {window_ns} ns"
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


class WrongSubject(Unauthorized):
    """A token presented by a caller other than its subject (a stolen or replayed token)."""


class WrongAudience(Unauthorized):
    """A token whose audience is another DID than the one it is presented to."""


class NotRooted(Unauthorized):
    """A chain whose first issuer is neither a root DID nor the subject of a require anchor."""


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
        if value is None:
            super().__init__(f"token {field}: {accepted}")
        else:
            super().__init__(f"token {field}: {value!r} is not {accepted}")


class KeystoreError(SecurityError):
    """A key that is missing, already exists, is badly named, or does not decrypt."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f'key "{name}": {reason}' if name else f"keystore: {reason}")


class TrustStoreError(SecurityError):
    """A trust context file that cannot be read or decoded."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"trust file {path}: {reason}")
