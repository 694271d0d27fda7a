"""The trust context: whom this node trusts, what it presents, and what was revoked.

* **roots**: DIDs trusted fully (a user's key, the node's own key). A root may call anything,
  and a chain whose first grant a root issued is trusted.
* **require anchors**: tokens (typically issued by a root) to a foreign DID, such as another
  organisation's root. That DID may act within the anchor's scope, and chains that start at it
  are accepted as if the anchor were their first link: they may only narrow it.
* **provide anchors**: tokens granted to this node (or its user) by others; :meth:`tokens_for`
  picks the ones to attach to an outgoing message.
* **revocations**: revoke tokens, signed by the issuer of what they revoke.

The node's own DID (``local_did``) counts as a root and is the default audience: a token meant
for another DID is refused here. Chain verification (signatures, narrowing) is cached by token
signature, so the per-message cost is a dictionary look-up plus a few comparisons.

Persisted as JSON in the node home (``trust.json``, mode 0600), written atomically.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import msgspec

from dms.errors import SecurityError
from dms.log import get_logger
from dms.security.did import is_did
from dms.security.errors import (
    DelegationError,
    InvalidDID,
    InvalidSignature,
    InvalidToken,
    NotRooted,
    Revoked,
    TokenExpired,
    TrustStoreError,
    Unauthorized,
    WrongAudience,
    WrongSubject,
)
from dms.security.tokens import (
    Action,
    ChainVerifier,
    Grant,
    Token,
    VerifiedChain,
    check_narrows,
    grants,
    revocation_id,
    token_id,
)

log = get_logger(component="trust")

TRUST_FILE = "trust.json"
PUBLIC_PREFIX = "/public/"
"""Behaviors and topics under this prefix need no capability."""


def trust_path(home_root: Path) -> Path:
    """Where a node keeps its trust context: ``<home>/trust.json``."""
    return Path(home_root) / TRUST_FILE


class TrustFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The persisted form, and what ``dms cap list`` shows."""

    version: Literal[1] = 1
    roots: tuple[str, ...] = ()
    require: tuple[Token, ...] = ()
    provide: tuple[Token, ...] = ()
    revocations: tuple[Token, ...] = ()


_RANK: tuple[tuple[type[SecurityError], int], ...] = (
    (InvalidSignature, 7),
    (InvalidToken, 6),
    (DelegationError, 5),
    (Revoked, 4),
    (TokenExpired, 3),
    (WrongAudience, 2),
    (NotRooted, 1),
)


def _action(action: Action | str) -> Action:
    try:
        return Action(action)
    except ValueError as exc:
        accepted = ", ".join(a.value for a in Action)
        raise InvalidToken("action", action, f"one of {accepted}") from exc


def _rank(exc: SecurityError) -> int:
    return next((rank for kind, rank in _RANK if isinstance(exc, kind)), 0)


def _worse(current: SecurityError | None, new: SecurityError) -> SecurityError:
    """Of two refusals, the one that says most about what is wrong."""
    return new if current is None or _rank(new) > _rank(current) else current


class TrustContext:
    """Roots, anchors and revocations, and the authorization decision that uses them."""

    def __init__(
        self,
        *,
        roots: Iterable[str] = (),
        require: Iterable[Token] = (),
        provide: Iterable[Token] = (),
        revocations: Iterable[Token] = (),
        local_did: str = "",
        path: Path | None = None,
        cache_size: int = 4096,
    ) -> None:
        if local_did and not is_did(local_did):
            raise InvalidDID(local_did, "is not a valid local DID")
        self.local_did = local_did
        self.path = path
        self._verifier = ChainVerifier(cache_size)
        self._roots: dict[str, None] = {}
        self._require: dict[str, Token] = {}
        self._require_by_subject: dict[str, list[VerifiedChain]] = {}
        self._provide: dict[str, Token] = {}
        self._revoked: dict[str, Token] = {}
        for did in roots:
            self.add_root(did)
        for token in require:
            self.add_require_anchor(token)
        for token in provide:
            self.add_provide_anchor(token)
        for token in revocations:
            self.revoke(token)

    # -- persistence -------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path, *, local_did: str = "", missing_ok: bool = True) -> TrustContext:
        """Read a trust file; a missing file is an empty context unless ``missing_ok=False``.

        Every token is verified again, so a hand-edited or damaged file is refused.
        """
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            if missing_ok:
                return cls(local_did=local_did, path=path)
            raise TrustStoreError(str(path), "does not exist (create it with cap new)") from exc
        except OSError as exc:
            raise TrustStoreError(str(path), f"cannot be read: {exc.strerror}") from exc
        try:
            state = msgspec.json.decode(data, type=TrustFile)
        except msgspec.DecodeError as exc:
            raise TrustStoreError(str(path), f"is not a dms trust file: {exc}") from exc
        try:
            return cls(
                roots=state.roots,
                require=state.require,
                provide=state.provide,
                revocations=state.revocations,
                local_did=local_did,
                path=path,
            )
        except SecurityError as exc:
            raise TrustStoreError(str(path), f"holds an entry that does not verify: {exc}") from exc

    @classmethod
    def create(cls, path: Path, *, local_did: str = "") -> TrustContext:
        """A new, empty context saved at ``path`` (``dms cap new``); refuses to overwrite."""
        path = Path(path)
        if path.exists():
            raise TrustStoreError(str(path), "already exists; load it instead")
        context = cls(local_did=local_did, path=path)
        context.save()
        return context

    def snapshot(self) -> TrustFile:
        return TrustFile(
            roots=tuple(self._roots),
            require=tuple(self._require.values()),
            provide=tuple(self._provide.values()),
            revocations=tuple(self._revoked.values()),
        )

    def save(self, path: Path | None = None) -> Path:
        """Write atomically (temporary file, then rename), readable by the owner only."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise TrustStoreError("", "no path given and the context was not loaded from one")
        data = msgspec.json.encode(self.snapshot())
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            raise TrustStoreError(str(target), f"cannot be written: {exc.strerror}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self.path = target
        return target

    # -- anchors -----------------------------------------------------------------------------

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(self._roots)

    @property
    def require_anchors(self) -> tuple[Token, ...]:
        return tuple(self._require.values())

    @property
    def provide_anchors(self) -> tuple[Token, ...]:
        return tuple(self._provide.values())

    def add_root(self, did: str) -> None:
        if not is_did(did):
            raise InvalidDID(did, "cannot be a root")
        self._roots[did] = None
        log.debug("root added", did=did)

    def remove_root(self, did: str) -> bool:
        if did not in self._roots:
            return False
        del self._roots[did]
        return True

    def add_require_anchor(self, token: Token) -> None:
        """Accept chains that start at ``token.subject``, within ``token``'s scope."""
        verified = self._verifier.verify(token)
        if token.action != Action.DELEGATE:
            raise DelegationError(token_id(token), "action", str(token.action), "delegate")
        self._require[revocation_id(token)] = token
        self._require_by_subject.setdefault(token.subject, []).append(verified)
        log.debug("require anchor added", subject=token.subject, capabilities=token.capabilities)

    def add_provide_anchor(self, token: Token) -> None:
        """A token to present to others (see :meth:`tokens_for`)."""
        self._verifier.verify(token)
        self._provide[revocation_id(token)] = token
        log.debug("provide anchor added", issuer=token.root.issuer, capabilities=token.capabilities)

    def remove_anchor(self, rid: str) -> bool:
        """Forget a require or provide anchor by its ``issuer#subject#nonce``."""
        removed = self._provide.pop(rid, None) is not None
        anchor = self._require.pop(rid, None)
        if anchor is not None:
            kept = [v for v in self._require_by_subject[anchor.subject] if v.token != anchor]
            self._require_by_subject[anchor.subject] = kept
            removed = True
        return removed

    # -- revocation --------------------------------------------------------------------------

    def revoke(self, revoke_token: Token) -> bool:
        """Apply a revoke token (signed by the revoked token's issuer). True when it is new."""
        if not isinstance(revoke_token, Token) or revoke_token.action != Action.REVOKE:
            shown = getattr(revoke_token, "action", type(revoke_token).__name__)
            raise InvalidToken("action", str(shown), "revoke (make one with revocation())")
        if revoke_token.chain:
            raise InvalidToken("chain", len(revoke_token.chain), "empty for a revoke token")
        self._verifier.verify(revoke_token)
        rid = revocation_id(revoke_token)
        new = rid not in self._revoked
        self._revoked[rid] = revoke_token
        if new:
            log.debug("token revoked", revocation=rid)
        return new

    def is_revoked(self, token: Grant | str) -> bool:
        """Whether a revocation id, or any link of a token's chain, is revoked."""
        if isinstance(token, str):
            return token in self._revoked
        links = token.links() if isinstance(token, Token) else (token,)
        return any(revocation_id(link) in self._revoked for link in links)

    @property
    def revocations(self) -> tuple[Token, ...]:
        return tuple(self._revoked.values())

    def prune(self, now_ns: int) -> int:
        """Forget revocations of tokens that have expired anyway; returns how many."""
        stale = [rid for rid, t in self._revoked.items() if t.expires_ns <= now_ns]
        for rid in stale:
            del self._revoked[rid]
        return len(stale)

    # -- decisions ---------------------------------------------------------------------------

    def authorize(
        self,
        caller_did: str,
        action: Action,
        capability: str,
        tokens: Sequence[Token],
        now_ns: int,
        *,
        audience: str | None = None,
    ) -> None:
        """Pass, or raise why ``caller_did`` may not perform ``action`` on ``capability``.

        ``capability`` is a behavior path (invoke) or a topic (broadcast). ``audience`` is the
        DID the message was addressed to (default: ``local_did``). Passes when the capability
        is public, the caller is a root, the caller is the subject of a require anchor that
        grants it, or one of ``tokens`` grants it through a valid chain. Otherwise raises the
        most telling refusal among the tokens: InvalidSignature, InvalidToken,
        DelegationError, Revoked, TokenExpired, WrongAudience, NotRooted, WrongSubject or
        Unauthorized (all SecurityError).
        """
        action = _action(action)
        if capability.startswith(PUBLIC_PREFIX):
            return
        if caller_did in self._roots or (self.local_did and caller_did == self.local_did):
            return
        receiver = self.local_did if audience is None else audience
        refusal: SecurityError | None = None
        for anchor in self._require_by_subject.get(caller_did, ()):
            try:
                self._check_use(anchor, caller_did, action, capability, receiver, now_ns)
                return
            except SecurityError as exc:
                refusal = _worse(refusal, exc)
        for token in tokens:
            try:
                verified = self._verifier.verify(token)
                self._check_use(verified, caller_did, action, capability, receiver, now_ns)
                self._check_rooted(verified, caller_did, action, capability, now_ns)
                return
            except SecurityError as exc:
                refusal = _worse(refusal, exc)
        if refusal is None:
            refusal = Unauthorized(
                caller_did, action, capability, "not a root, and no token grants it"
            )
        raise refusal

    def _check_use(
        self,
        verified: VerifiedChain,
        caller: str,
        action: Action,
        capability: str,
        receiver: str,
        now_ns: int,
    ) -> None:
        token = verified.token
        if token.subject != caller:
            raise WrongSubject(
                caller, action, capability, f"token {token_id(token)} is for {token.subject}"
            )
        if not grants(token, action, capability):
            scope = token.topics if action == Action.BROADCAST else token.capabilities
            raise Unauthorized(
                caller,
                action,
                capability,
                f"token {token_id(token)} grants {token.action} on {list(scope)} only",
            )
        if token.audience and token.audience != receiver:
            raise WrongAudience(
                caller,
                action,
                capability,
                f"token {token_id(token)} is for audience {token.audience}, "
                f"not {receiver or 'an unnamed receiver'}",
            )
        self._check_current(verified, now_ns)

    def _check_current(self, verified: VerifiedChain, now_ns: int) -> None:
        if verified.expires_ns <= now_ns:
            expired = next(t for t in verified.token.links() if t.expires_ns <= now_ns)
            raise TokenExpired(token_id(expired), expired.expires_ns, now_ns)
        for rid in verified.revocation_ids:
            if rid in self._revoked:
                raise Revoked(rid)

    def _check_rooted(
        self, verified: VerifiedChain, caller: str, action: Action, capability: str, now_ns: int
    ) -> None:
        root = verified.root
        if root.issuer in self._roots or (self.local_did and root.issuer == self.local_did):
            return
        refusal: SecurityError | None = None
        for anchor in self._require_by_subject.get(root.issuer, ()):
            try:
                check_narrows(anchor.token, root)
                self._check_current(anchor, now_ns)
                return
            except SecurityError as exc:
                refusal = _worse(refusal, exc)
        raise refusal or NotRooted(
            caller,
            action,
            capability,
            f"the chain starts at {root.issuer}, which is neither a root nor anchored",
        )

    def tokens_for(
        self,
        audience_did: str,
        capability: str,
        action: Action,
        now_ns: int,
        *,
        subject: str | None = None,
    ) -> tuple[Token, ...]:
        """Provide anchors that grant ``action`` on ``capability`` to ``audience_did`` now.

        ``subject`` keeps only tokens granted to that DID (the sender of the message).
        """
        action = _action(action)
        if not self._provide or capability.startswith(PUBLIC_PREFIX):
            return ()
        found: list[Token] = []
        for token in self._provide.values():
            if subject is not None and token.subject != subject:
                continue
            if token.audience and token.audience != audience_did:
                continue
            if not grants(token, action, capability):
                continue
            try:
                self._check_current(self._verifier.verify(token), now_ns)
            except SecurityError:
                continue
            found.append(token)
        return tuple(found)
