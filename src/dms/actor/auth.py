"""The authorization plug-in point, and fakes for tests.

The actor system asks an :class:`Authorizer` whether a caller may perform an action on a
capability (a behavior path, or a topic for broadcasts), and which tokens to attach to what it
sends. :class:`dms.security.TrustContext` is the real one, and the default.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from dms.security import Action, Token, Unauthorized


class Authorizer(Protocol):
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
        """Pass, or raise a SecurityError saying why not."""
        ...

    def tokens_for(
        self,
        audience_did: str,
        capability: str,
        action: Action,
        now_ns: int,
        *,
        subject: str | None = None,
    ) -> tuple[Token, ...]:
        """Tokens to present to ``audience_did`` for ``action`` on ``capability``."""
        ...


class AllowList:
    """A fake: ``(caller DID, capability)`` pairs that pass; everything else is Unauthorized.

    A capability of ``"/"`` lets that caller do anything. Records every decision in ``calls``.
    """

    def __init__(self, allowed: Iterable[tuple[str, str]] = ()) -> None:
        self.allowed = set(allowed)
        self.calls: list[tuple[str, Action, str]] = []

    def allow(self, caller_did: str, capability: str = "/") -> None:
        self.allowed.add((caller_did, capability))

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
        self.calls.append((caller_did, action, capability))
        if (caller_did, capability) in self.allowed or (caller_did, "/") in self.allowed:
            return
        raise Unauthorized(caller_did, str(action), capability, "not on the allow list")

    def tokens_for(
        self,
        audience_did: str,
        capability: str,
        action: Action,
        now_ns: int,
        *,
        subject: str | None = None,
    ) -> tuple[Token, ...]:
        return ()
