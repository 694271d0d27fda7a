"""Who trusts whom in a simulated network.

Two set-ups (:class:`TrustMode`):

* ``ROOTS``: every provider lists every orchestrator's DID as a root, and every orchestrator
  every provider's (only the pairs that talk; providers never call each other). No token
  travels; a message is authorized by a dictionary look-up.
* ``TOKENS``: one network key (an operator) is the only root everywhere. It grants each node a
  delegate token on ``/dms`` (behaviors and topics), which the node presents with every
  message; the receiver verifies the chain once and caches it. This is how separate
  organisations would run it, and what it costs.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from dms.security import Action, KeyPair, Token, TrustContext, grant

NS_PER_S = 1_000_000_000
TOKEN_LIFETIME_NS = 10 * 365 * 86_400 * NS_PER_S


class TrustMode(enum.StrEnum):
    ROOTS = "roots"
    TOKENS = "tokens"


class Trust:
    """Makes each simulated node's TrustContext."""

    def __init__(self, mode: TrustMode, *, operator: KeyPair, now_ns: int) -> None:
        self.mode = mode
        self.now_ns = now_ns
        self.operator = operator
        self._orchestrators: list[str] = []
        self._providers: list[str] = []

    def add_orchestrators(self, dids: Iterable[str]) -> None:
        self._orchestrators.extend(dids)

    def add_providers(self, dids: Iterable[str]) -> None:
        self._providers.extend(dids)

    def token_for(self, did: str) -> Token:
        return grant(
            self.operator,
            did,
            expires_ns=self.now_ns + TOKEN_LIFETIME_NS,
            action=Action.DELEGATE,
            capabilities=("/dms",),
            topics=("/dms",),
        )

    def provider(self, did: str) -> TrustContext:
        if self.mode is TrustMode.TOKENS:
            return TrustContext(
                local_did=did, roots=[self.operator.did], provide=[self.token_for(did)]
            )
        return TrustContext(local_did=did, roots=self._orchestrators)

    def orchestrator(self, did: str) -> TrustContext:
        if self.mode is TrustMode.TOKENS:
            return TrustContext(
                local_did=did, roots=[self.operator.did], provide=[self.token_for(did)]
            )
        return TrustContext(local_did=did, roots=self._providers)
