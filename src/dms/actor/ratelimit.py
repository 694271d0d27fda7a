"""Rate limits per sender and behavior class: token buckets, so one flooding peer only
exhausts its own budget and everyone else's messages still get through.

Each (sender DID, rate class) pair has its own bucket of ``burst`` tokens refilled at
``per_s``; a message takes one token or is refused with :class:`RateLimited`. Time is passed
in (nanoseconds; a clock that steps back refills nothing), so tests use virtual time. The number of buckets is bounded: past
``max_buckets``, the least recently created ones are forgotten (a forgotten bucket starts full,
which errs on the side of letting a message through, never of refusing one).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from dms.actor.errors import RateLimited

NS_PER_S = 1_000_000_000


class Rate(msgspec.Struct, frozen=True):
    per_s: float
    burst: int

    def __post_init__(self) -> None:
        if self.per_s <= 0 or self.burst < 1:
            raise ValueError(
                f"rate: per_s={self.per_s}, burst={self.burst}; accepted: per_s > 0, burst >= 1"
            )


class RateLimitPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """The rate of each behavior class (``default`` for classes not listed).

    ``exempt_local``: messages from the node's own DID are not limited (its own actors talking
    to each other).
    """

    default: Rate = Rate(per_s=1000.0, burst=2000)
    classes: Mapping[str, Rate] = msgspec.field(default_factory=dict)
    exempt_local: bool = True
    max_buckets: int = 100_000


class RateLimiter:
    __slots__ = ("_buckets", "_policy", "_rates")

    def __init__(self, policy: RateLimitPolicy | None = None) -> None:
        self._policy = policy or RateLimitPolicy()
        self._rates: dict[str, tuple[float, int]] = {}
        # (sender, class) -> [tokens, last refill in ns]
        self._buckets: dict[tuple[str, str], list[float]] = {}

    @property
    def policy(self) -> RateLimitPolicy:
        return self._policy

    def _rate(self, rate_class: str) -> tuple[float, int]:
        rate = self._rates.get(rate_class)
        if rate is None:
            spec = self._policy.classes.get(rate_class, self._policy.default)
            rate = self._rates[rate_class] = (spec.per_s / NS_PER_S, spec.burst)
        return rate

    def check(self, sender: str, rate_class: str, now_ns: int) -> None:
        """Take one token from the (sender, class) bucket, or raise :class:`RateLimited`."""
        per_ns, burst = self._rate(rate_class)
        key = (sender, rate_class)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._policy.max_buckets:
                self._evict()
            self._buckets[key] = [burst - 1.0, float(now_ns)]
            return
        elapsed = now_ns - bucket[1]
        tokens = bucket[0] + elapsed * per_ns if elapsed > 0 else bucket[0]
        if tokens > burst:
            tokens = float(burst)
        if elapsed > 0:
            bucket[1] = float(now_ns)
        if tokens < 1.0:
            bucket[0] = tokens
            raise RateLimited(sender, rate_class, per_ns * NS_PER_S, burst)
        bucket[0] = tokens - 1.0

    def _evict(self) -> None:
        for key in list(self._buckets)[: max(1, len(self._buckets) // 10)]:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
