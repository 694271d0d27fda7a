"""Where the CPU goes in a simulation: time per role (orchestrator, provider, ...), measured
per task step with a trio instrument.

A simulated node's host task marks itself with :func:`mark_role` (a context variable, which
trio copies into every task started from there). A task counts for its own role, or else for
the role of the nearest task up its chain of nurseries that has one: an actor started by a
call from outside (a submission from the driver) still counts for the node whose nursery runs
it. Tasks with no role anywhere up the chain count as ``"other"`` (the driver, the event
loop's own tasks). All nodes share one
thread, so the time a step takes is that step's CPU time, whatever else the machine does.

With providers on machines of their own only the orchestrator's share would remain on the
orchestrator's machine: ``allocations / seconds["orchestrator"]`` is what one orchestrator
core places per second.
"""

from __future__ import annotations

import contextvars
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import trio
import trio.lowlevel

OTHER = "other"
_ROLE: contextvars.ContextVar[str] = contextvars.ContextVar("dms_sim_role", default=OTHER)


def mark_role(role: str) -> None:
    """The current task and every task it (or they) start from now on count as ``role``."""
    _ROLE.set(role)


class RoleClock(trio.abc.Instrument):
    """Adds each task step's duration to its task's role."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.steps = 0
        self._started = 0.0
        self._roles: weakref.WeakKeyDictionary[trio.lowlevel.Task, str] = (
            weakref.WeakKeyDictionary()
        )

    def _role(self, task: trio.lowlevel.Task) -> str:
        role = self._roles.get(task)
        if role is not None:
            return role
        current: trio.lowlevel.Task | None = task
        role = OTHER
        while current is not None:
            role = current.context.get(_ROLE, OTHER)
            if role != OTHER:
                break
            nursery = current.parent_nursery
            current = nursery.parent_task if nursery is not None else None
        self._roles[task] = role
        return role

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if not self._started:  # the step that installed this instrument
            return
        elapsed = time.perf_counter() - self._started
        role = self._role(task)
        self.seconds[role] = self.seconds.get(role, 0.0) + elapsed
        self.steps += 1


@contextmanager
def role_clock() -> Iterator[RoleClock]:
    """Measure CPU per role while the block runs (inside ``trio.run``)."""
    clock = RoleClock()
    trio.lowlevel.add_instrument(clock)
    try:
        yield clock
    finally:
        trio.lowlevel.remove_instrument(clock)
