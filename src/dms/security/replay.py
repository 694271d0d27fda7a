"""Refusing a message seen before: (sender, nonce) remembered until the message expires.

The actor layer checks each incoming envelope here after its signature and expiry. Memory is
bounded by the window: a message may not ask to be remembered longer than ``window_ns``.
"""

from __future__ import annotations

import heapq

from dms.security.errors import Expired, ExpiryTooFar, Replayed

DEFAULT_WINDOW_NS = 10 * 60 * 1_000_000_000


class ReplayGuard:
    """Accepts each (sender, nonce) once while it is unexpired; time is passed in (virtual)."""

    def __init__(self, *, window_ns: int = DEFAULT_WINDOW_NS) -> None:
        self.window_ns = window_ns
        self._seen: dict[tuple[str, str], int] = {}
        self._expiries: list[tuple[int, str, str]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, sender: str, nonce: str, expires_ns: int, now_ns: int) -> None:
        """Record the message, or raise Expired, ExpiryTooFar or Replayed."""
        self.prune(now_ns)
        if expires_ns <= now_ns:
            raise Expired(f"message {nonce!r} from {sender}", expires_ns, now_ns)
        if expires_ns - now_ns > self.window_ns:
            raise ExpiryTooFar(expires_ns, now_ns, self.window_ns)
        key = (sender, nonce)
        if key in self._seen:
            raise Replayed(sender, nonce)
        self._seen[key] = expires_ns
        heapq.heappush(self._expiries, (expires_ns, sender, nonce))

    def prune(self, now_ns: int) -> None:
        while self._expiries and self._expiries[0][0] <= now_ns:
            _, sender, nonce = heapq.heappop(self._expiries)
            self._seen.pop((sender, nonce), None)
