"""The ``Clock`` protocol: what time it is, and how to wait.

Two readings, for two jobs:

- ``now_ns()``: wall-clock nanoseconds since the Unix epoch. Comparable between machines; used
  for message and token expiry.
- ``monotonic_ns()``: a clock that never jumps; used for intervals (rate limits,
  restart-intensity windows, uptime).

``RealClock`` is production: the system's clocks, cheap enough to read for every message.
``LoopClock`` derives both readings from the event loop's clock, so under trio's ``MockClock``
(the ``autojump_clock`` fixture) expiry, rate limits and restart windows all move with virtual
time; every ``LoopClock`` with the same epoch agrees with every other in the same run. Tests
that sleep in virtual time use a ``LoopClock``. ``ManualClock``
is set by hand, for synchronous unit tests.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

import anyio

NS_PER_S = 1_000_000_000
DEFAULT_EPOCH_NS = 1_700_000_000 * NS_PER_S
"""Where ``LoopClock`` puts loop time 0 on the wall clock (November 2023)."""


@runtime_checkable
class Clock(Protocol):
    def now_ns(self) -> int:
        """Wall-clock time, nanoseconds since the Unix epoch."""
        ...

    def monotonic_ns(self) -> int:
        """Monotonic time in nanoseconds (arbitrary origin)."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    """The system's wall clock and monotonic clock; sleeps on the event loop."""

    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class LoopClock:
    """Both readings from the event loop's clock; wall time is ``epoch_ns`` + loop time."""

    def __init__(self, epoch_ns: int = DEFAULT_EPOCH_NS) -> None:
        self.epoch_ns = epoch_ns

    def now_ns(self) -> int:
        return self.epoch_ns + int(anyio.current_time() * NS_PER_S)

    def monotonic_ns(self) -> int:
        return int(anyio.current_time() * NS_PER_S)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class ManualClock:
    """A clock that moves only when told to. ``sleep`` advances it instead of waiting."""

    def __init__(self, now_ns: int = DEFAULT_EPOCH_NS) -> None:
        self._now = now_ns
        self._origin = now_ns

    def now_ns(self) -> int:
        return self._now

    def monotonic_ns(self) -> int:
        return self._now - self._origin

    def advance(self, ns: int) -> None:
        if ns < 0:
            raise ValueError(f"advance: {ns} is negative; a clock only moves forward")
        self._now += ns

    async def sleep(self, seconds: float) -> None:
        self.advance(int(seconds * NS_PER_S))
        await anyio.lowlevel.checkpoint()
