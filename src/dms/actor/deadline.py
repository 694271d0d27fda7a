"""One timer for every waiting invoke.

A cancel scope with a deadline per invoke costs more than the rest of an in-process invoke, so
local invokes register their reply slot here instead; one task fails each slot whose deadline
passes. Slots with the same timeout expire in the order they were added, so each timeout value
keeps an insertion-ordered dict and only its oldest entry is ever looked at. Time is the event
loop's (trio's mock clock in tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import anyio


class Failable(Protocol):
    def fail(self, error: BaseException) -> None: ...


class Deadlines:
    __slots__ = ("_next", "_queues", "_wake")

    def __init__(self) -> None:
        # timeout (s) -> {slot: (deadline in loop seconds, makes the error)}
        self._queues: dict[float, dict[Failable, tuple[float, Callable[[], BaseException]]]] = {}
        self._next = math.inf
        self._wake = anyio.Event()

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def add(self, slot: Failable, timeout_s: float, error: Callable[[], BaseException]) -> None:
        """Fail ``slot`` with ``error()`` unless it is discarded within ``timeout_s``."""
        deadline = anyio.current_time() + timeout_s
        queue = self._queues.get(timeout_s)
        if queue is None:
            queue = self._queues[timeout_s] = {}
        queue[slot] = (deadline, error)
        if deadline < self._next:
            self._next = deadline
            self._wake.set()

    def discard(self, slot: Failable, timeout_s: float) -> None:
        queue = self._queues.get(timeout_s)
        if queue is not None:
            queue.pop(slot, None)

    def waiting(
        self, slot: Failable, timeout_s: float, error: Callable[[], BaseException]
    ) -> Waiting:
        """``with deadlines.waiting(...):`` :meth:`add` on entry, :meth:`discard` on exit."""
        return Waiting(self, slot, timeout_s, error)

    async def run(self) -> None:
        """The timer task (owned by the actor system's task group)."""
        while True:
            now = anyio.current_time()
            earliest = math.inf
            for queue in self._queues.values():
                while queue:
                    slot = next(iter(queue))
                    deadline, error = queue[slot]
                    if deadline > now:
                        earliest = min(earliest, deadline)
                        break
                    del queue[slot]
                    slot.fail(error())
            self._next = earliest
            self._wake = anyio.Event()
            if earliest == math.inf:
                await self._wake.wait()
            else:
                with anyio.move_on_after(earliest - now):
                    await self._wake.wait()


class Waiting:
    """The span in which a slot is under a deadline (a plain class: no generator per invoke)."""

    __slots__ = ("_deadlines", "_error", "_slot", "_timeout_s")

    def __init__(
        self,
        deadlines: Deadlines,
        slot: Failable,
        timeout_s: float,
        error: Callable[[], BaseException],
    ) -> None:
        self._deadlines = deadlines
        self._slot = slot
        self._timeout_s = timeout_s
        self._error = error

    def __enter__(self) -> None:
        self._deadlines.add(self._slot, self._timeout_s, self._error)

    def __exit__(self, *exc_info: object) -> None:
        self._deadlines.discard(self._slot, self._timeout_s)
