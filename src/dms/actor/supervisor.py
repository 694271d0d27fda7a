"""Supervision with Erlang/OTP semantics, on structured concurrency.

A :class:`Supervisor` owns its children (actors, plain async callables, other supervisors) in
one task group: no child outlives it. When a child exits, its restart type decides whether it
comes back, and the strategy decides who else is restarted with it:

=====================  ========================================================================
ONE_FOR_ONE            restart the child that exited
ONE_FOR_ALL            stop every other child (reverse start order), restart all in start order
REST_FOR_ONE           stop the children started after it (reverse order), restart it and them
SIMPLE_ONE_FOR_ONE     dynamic children of one template, each restarted on its own
=====================  ========================================================================

=========  ====================================================================================
PERMANENT  always restarted
TRANSIENT  restarted only after a failure (an exception); a normal return is final
TEMPORARY  never restarted (and not restarted when a sibling's failure stops it either)
=========  ====================================================================================

More than ``intensity`` restarts within ``period_ns`` (on the supervisor's Clock; default 1 in
5 s) and the supervisor stops all its children and raises :class:`RestartIntensityExceeded`:
its parent sees a failed child and applies its own strategy (escalation).

Shutdown is in reverse start order. A child that registered a stop callback
(``context.on_stop``: actors and supervisors do) is asked to stop and given ``shutdown_ns``
before it is cancelled ("killed"); a plain task is cancelled at once (cancellation is its stop
signal), and its clean-up is expected to finish within ``shutdown_ns``.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from dms.actor.errors import (
    ChildStartFailed,
    InvalidTransition,
    RestartIntensityExceeded,
    SupervisorError,
)
from dms.actor.statistics import ChildStatistics, FailureCounter, SupervisorStatistics
from dms.clock import Clock, RealClock
from dms.log import get_logger

NS_PER_S = 1_000_000_000
DEFAULT_SHUTDOWN_NS = 5 * NS_PER_S

log = get_logger(component="supervisor")


class _Children:
    """Children in start order, found by id in constant time (a node's root supervisor holds
    one child per deployment and allocation: thousands)."""

    def __init__(self, children: Iterable[_Child] = ()) -> None:
        self._by_id: dict[str, _Child] = {c.spec.id: c for c in children}

    def __iter__(self) -> Iterator[_Child]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, child: object) -> bool:
        return isinstance(child, _Child) and self._by_id.get(child.spec.id) is child

    def get(self, child_id: str) -> _Child | None:
        return self._by_id.get(child_id)

    def append(self, child: _Child) -> None:
        assert child.spec.id not in self._by_id, child.spec.id
        self._by_id[child.spec.id] = child

    def remove(self, child: _Child) -> None:
        if self._by_id.get(child.spec.id) is child:
            del self._by_id[child.spec.id]

    def starting_from(self, child: _Child) -> list[_Child]:
        """``child`` and every child started after it."""
        ordered = list(self._by_id.values())
        return ordered[ordered.index(child) :]


class SupervisorStrategy(enum.StrEnum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"
    SIMPLE_ONE_FOR_ONE = "simple_one_for_one"


class Restart(enum.StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class ExitKind(enum.StrEnum):
    NORMAL = "normal"
    """The child returned."""
    SHUTDOWN = "shutdown"
    """The supervisor stopped it."""
    KILLED = "killed"
    """It did not stop within its shutdown time and was cancelled."""
    FAILED = "failed"
    """It raised."""


class ChildState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class SupervisorState(enum.StrEnum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


_SUPERVISOR_TRANSITIONS = {
    SupervisorState.NEW: {SupervisorState.RUNNING},
    SupervisorState.RUNNING: {SupervisorState.STOPPING},
    SupervisorState.STOPPING: {SupervisorState.STOPPED},
    SupervisorState.STOPPED: set(),
}


class EventKind(enum.StrEnum):
    STARTED = "started"
    EXITED = "exited"
    RESTARTING = "restarting"
    ESCALATED = "escalated"


class SupervisorEvent(msgspec.Struct, frozen=True, kw_only=True):
    """What an observer of a supervisor is told (tests and logs use it)."""

    supervisor: str
    kind: EventKind
    child: str = ""
    exit: ExitKind | None = None
    reason: str = ""
    at_ns: int = 0


Observer = Callable[[SupervisorEvent], None]


class ChildContext:
    """Given to a child's start function: say when it is ready, and how to ask it to stop.

    ``started`` matches anyio's ``TaskStatus``, so ``supervisor.run(task_status=context)``
    works.
    """

    __slots__ = ("_on_started", "_stop", "is_started")

    def __init__(self, on_started: Callable[[], None]) -> None:
        self._on_started = on_started
        self._stop: Callable[[], None] | None = None
        self.is_started = False

    def started(self, value: object = None) -> None:
        if not self.is_started:
            self.is_started = True
            self._on_started()

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Ask for a graceful stop with ``callback`` instead of cancelling at once."""
        self._stop = callback


ChildStart = Callable[[ChildContext], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How to start a child and how to treat its exits."""

    id: str
    start: ChildStart
    restart: Restart = Restart.PERMANENT
    shutdown_ns: int = DEFAULT_SHUTDOWN_NS
    inspect: Callable[[], SupervisorStatistics | None] | None = None
    """Statistics of the child's own children (supervisors and actors with children)."""

    @classmethod
    def task(
        cls,
        id: str,
        fn: Callable[[], Awaitable[Any]],
        *,
        restart: Restart = Restart.PERMANENT,
        shutdown_ns: int = DEFAULT_SHUTDOWN_NS,
    ) -> ChildSpec:
        """A plain async callable: started at once; cancelling it is how it is stopped."""

        async def start(context: ChildContext) -> None:
            context.started()
            await fn()

        return cls(id=id, start=start, restart=restart, shutdown_ns=shutdown_ns)

    @classmethod
    def of(
        cls,
        id: str,
        factory: Callable[[], Supervisor],
        *,
        restart: Restart = Restart.PERMANENT,
        shutdown_ns: int = DEFAULT_SHUTDOWN_NS,
    ) -> ChildSpec:
        """A nested supervisor; ``factory`` makes a fresh one for each (re)start."""
        current: list[Supervisor] = []

        async def start(context: ChildContext) -> None:
            supervisor = factory()
            current[:] = [supervisor]
            context.on_stop(supervisor.request_stop)
            await supervisor.run(task_status=context)

        def inspect() -> SupervisorStatistics | None:
            return current[0].statistics() if current else None

        return cls(id=id, start=start, restart=restart, shutdown_ns=shutdown_ns, inspect=inspect)


@dataclass(frozen=True, slots=True)
class ChildTemplate:
    """The one spec of a SIMPLE_ONE_FOR_ONE supervisor: ``factory(*args)`` makes a start."""

    id: str
    factory: Callable[..., ChildStart]
    restart: Restart = Restart.PERMANENT
    shutdown_ns: int = DEFAULT_SHUTDOWN_NS


@dataclass(eq=False, slots=True)
class _Exit:
    kind: ExitKind
    error: BaseException | None = None

    @property
    def reason(self) -> str:
        return type(self.error).__name__ if self.error is not None else self.kind.value


@dataclass(eq=False, slots=True)
class _Child:
    spec: ChildSpec
    state: ChildState = ChildState.STOPPED
    generation: int = 0
    scope: anyio.CancelScope | None = None
    context: ChildContext | None = None
    exited: anyio.Event = field(default_factory=anyio.Event)
    terminating: bool = False
    killed: bool = False
    starts: int = 0
    restarts: int = 0
    failures: FailureCounter = field(default_factory=FailureCounter)
    started_at: int = 0


class Supervisor:
    """Runs children, restarts them by strategy, escalates past its restart intensity."""

    def __init__(
        self,
        name: str,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: SupervisorStrategy = SupervisorStrategy.ONE_FOR_ONE,
        intensity: int = 1,
        period_ns: int = 5 * NS_PER_S,
        template: ChildTemplate | None = None,
        clock: Clock | None = None,
        observer: Observer | None = None,
    ) -> None:
        if intensity < 0 or period_ns <= 0:
            raise ValueError(
                f"supervisor {name!r}: intensity={intensity}, period_ns={period_ns}; "
                "accepted: intensity >= 0 and period_ns > 0"
            )
        simple = strategy is SupervisorStrategy.SIMPLE_ONE_FOR_ONE
        if simple and (template is None or children):
            raise ValueError(
                f"supervisor {name!r}: simple_one_for_one takes a template and no static children"
            )
        if not simple and template is not None:
            raise ValueError(f"supervisor {name!r}: only simple_one_for_one takes a template")
        ids = [spec.id for spec in children]
        if len(set(ids)) != len(ids):
            raise ValueError(f"supervisor {name!r}: child ids must be unique, got {ids}")
        self.name = name
        self.strategy = strategy
        self.intensity = intensity
        self.period_ns = period_ns
        self.template = template
        self._clock: Clock = clock or RealClock()
        self._observer = observer
        self._children = _Children(_Child(spec) for spec in children)
        self._events: deque[tuple[_Child, int, _Exit]] = deque()
        self._wake = anyio.Event()
        self._stopped = anyio.Event()
        self._stop_requested = False
        self._task_group: TaskGroup | None = None
        self._restart_times: deque[int] = deque()
        self._instances = 0
        self.state = SupervisorState.NEW
        self._restarts = 0
        self._escalations = 0
        self._failures = FailureCounter()
        self._started_at = 0

    # -- public API ----------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[Any] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the children in order, supervise them until stopped, then stop them.

        Raises ChildStartFailed when a child fails to start at first, and
        RestartIntensityExceeded when restarts come too fast; children are stopped first.
        """
        self._transition(SupervisorState.RUNNING)
        self._started_at = self._clock.monotonic_ns()
        error: SupervisorError | None = None
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                for child in list(self._children):
                    exit = await self._start(child)
                    if exit is not None and exit.kind is ExitKind.FAILED:
                        error = ChildStartFailed(self.name, child.spec.id, _describe(exit.error))
                        break
                    if exit is not None:
                        self._report(child, exit)
                if error is None:
                    task_status.started()
                    error = await self._supervise()
                self._transition(SupervisorState.STOPPING)
                await self._terminate_all()
        finally:
            self._task_group = None
            if self.state is not SupervisorState.STOPPED:
                self.state = SupervisorState.STOPPED
            self._stopped.set()
        if error is not None:
            raise error

    def request_stop(self) -> None:
        """Ask the supervisor to stop its children (reverse order) and return from run()."""
        self._stop_requested = True
        self._wake.set()

    async def stop(self) -> None:
        self.request_stop()
        if self.state is not SupervisorState.NEW:
            await self._stopped.wait()

    async def start_child(self, spec: ChildSpec) -> None:
        """Add a child at the end of the start order and start it (not for simple_one_for_one).

        Raises ChildStartFailed if it fails before it says it started.
        """
        if self.strategy is SupervisorStrategy.SIMPLE_ONE_FOR_ONE:
            raise SupervisorError(
                f"supervisor {self.name!r} is simple_one_for_one: use start_instance(*args)"
            )
        if self._children.get(spec.id) is not None:
            raise SupervisorError(f"supervisor {self.name!r} already has a child {spec.id!r}")
        await self._add_and_start(_Child(spec))

    async def start_instance(self, *args: Any) -> str:
        """Start one more child of a simple_one_for_one template; returns its id."""
        if self.template is None:
            raise SupervisorError(f"supervisor {self.name!r} has no template: use start_child()")
        self._instances += 1
        template = self.template
        spec = ChildSpec(
            id=f"{template.id}-{self._instances}",
            start=template.factory(*args),
            restart=template.restart,
            shutdown_ns=template.shutdown_ns,
        )
        await self._add_and_start(_Child(spec))
        return spec.id

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child and forget it (it is not restarted)."""
        child = self._find(child_id)
        await self._terminate(child)
        self._children.remove(child)

    def which_children(self) -> list[tuple[str, ChildState]]:
        return [(c.spec.id, c.state) for c in self._children]

    def statistics(self) -> SupervisorStatistics:
        now = self._clock.monotonic_ns()
        return SupervisorStatistics(
            name=self.name,
            strategy=self.strategy.value,
            state=self.state.value,
            intensity=self.intensity,
            period_ns=self.period_ns,
            restarts=self._restarts,
            escalations=self._escalations,
            failures=dict(self._failures.by_reason),
            last_failure=self._failures.last,
            uptime_ns=now - self._started_at if self.state is SupervisorState.RUNNING else 0,
            children=tuple(self._child_statistics(c, now) for c in self._children),
        )

    # -- starting ------------------------------------------------------------------------------

    async def _add_and_start(self, child: _Child) -> None:
        if self.state is not SupervisorState.RUNNING or self._stop_requested:
            raise SupervisorError(f"supervisor {self.name!r} is {self.state.value}, not running")
        self._children.append(child)
        exit = await self._start(child)
        if exit is not None and exit.kind is ExitKind.FAILED:
            self._children.remove(child)
            raise ChildStartFailed(self.name, child.spec.id, _describe(exit.error))
        if exit is not None:
            self._report(child, exit)

    async def _start(self, child: _Child) -> _Exit | None:
        """Start one incarnation; None once it said it started, its exit if it ended first."""
        assert self._task_group is not None
        child.generation += 1
        child.exited = anyio.Event()
        child.terminating = child.killed = False
        child.state = ChildState.STARTING
        child.starts += 1
        result: _Exit | None = await self._task_group.start(self._run_child, child)
        return result

    async def _run_child(self, child: _Child, *, task_status: TaskStatus[_Exit | None]) -> None:
        generation = child.generation

        def on_started() -> None:
            child.state = ChildState.RUNNING
            child.started_at = self._clock.monotonic_ns()
            self._notify(EventKind.STARTED, child.spec.id)
            task_status.started(None)

        context = child.context = ChildContext(on_started)
        scope = child.scope = anyio.CancelScope()
        error: Exception | None = None
        try:
            with scope:
                await child.spec.start(context)
        except Exception as exc:  # recorded and acted on: this is what a supervisor is for
            error = exc
        if error is not None:
            exit = _Exit(ExitKind.FAILED, error)
            record = child.failures.record(error, self._clock.monotonic_ns())
            self._failures.record(error, record.at_ns)
        elif child.killed:
            exit = _Exit(ExitKind.KILLED)
        elif child.terminating or scope.cancelled_caught:
            exit = _Exit(ExitKind.SHUTDOWN)
        else:
            exit = _Exit(ExitKind.NORMAL)
        child.state = ChildState.STOPPED
        child.exited.set()
        self._notify(EventKind.EXITED, child.spec.id, exit)
        if not context.is_started:
            task_status.started(exit)
        elif generation == child.generation and not child.terminating:
            self._report(child, exit)

    def _report(self, child: _Child, exit: _Exit) -> None:
        self._events.append((child, child.generation, exit))
        self._wake.set()

    # -- supervising ---------------------------------------------------------------------------

    async def _supervise(self) -> SupervisorError | None:
        while not self._stop_requested:
            if not self._events:
                self._wake = anyio.Event()
                if self._stop_requested:
                    break
                await self._wake.wait()
                continue
            child, generation, exit = self._events.popleft()
            if generation != child.generation or child not in self._children:
                continue
            error = await self._on_exit(child, exit)
            if error is not None:
                return error
        return None

    async def _on_exit(self, child: _Child, exit: _Exit) -> SupervisorError | None:
        restart = child.spec.restart
        if restart is Restart.TEMPORARY or (
            restart is Restart.TRANSIENT and exit.kind is not ExitKind.FAILED
        ):
            if restart is Restart.TEMPORARY or self.template is not None:
                self._children.remove(child)
            return None
        now = self._clock.monotonic_ns()
        self._restart_times.append(now)
        while self._restart_times and now - self._restart_times[0] > self.period_ns:
            self._restart_times.popleft()
        if len(self._restart_times) > self.intensity:
            self._escalations += 1
            self._notify(EventKind.ESCALATED, child.spec.id, exit)
            log.warning(
                "restart intensity exceeded",
                supervisor=self.name,
                child=child.spec.id,
                reason=exit.reason,
            )
            return RestartIntensityExceeded(
                self.name,
                len(self._restart_times),
                self.period_ns / NS_PER_S,
                f"{child.spec.id}: {_describe(exit.error) if exit.error else exit.reason}",
            )
        self._restarts += 1
        if self.strategy is SupervisorStrategy.ONE_FOR_ALL:
            group = list(self._children)
        elif self.strategy is SupervisorStrategy.REST_FOR_ONE:
            group = self._children.starting_from(child)
        else:
            group = [child]
        for sibling in reversed(group):
            if sibling is not child:
                await self._terminate(sibling)
        for member in group:
            if member is not child and member.spec.restart is Restart.TEMPORARY:
                self._children.remove(member)
        for member in group:
            if member not in self._children or self._stop_requested:
                continue
            member.restarts += 1
            self._notify(EventKind.RESTARTING, member.spec.id, exit if member is child else None)
            failed = await self._start(member)
            if failed is not None:
                # A failed restart is one more exit: the loop retries it, counting intensity.
                self._report(member, failed)
        return None

    # -- stopping ------------------------------------------------------------------------------

    async def _terminate_all(self) -> None:
        for child in reversed(list(self._children)):
            await self._terminate(child)

    async def _terminate(self, child: _Child) -> None:
        if child.state is ChildState.STOPPED:
            return
        child.terminating = True
        child.state = ChildState.STOPPING
        timeout = child.spec.shutdown_ns / NS_PER_S
        stop = child.context._stop if child.context is not None else None
        if stop is not None and child.spec.shutdown_ns > 0:
            stop()
            with anyio.move_on_after(timeout):
                await child.exited.wait()
            if not child.exited.is_set():
                child.killed = True
        if not child.exited.is_set() and child.scope is not None:
            child.scope.cancel()
            with anyio.move_on_after(timeout):
                await child.exited.wait()
            if not child.exited.is_set():
                log.warning(
                    "child ignores cancellation past its shutdown time",
                    supervisor=self.name,
                    child=child.spec.id,
                )
                await child.exited.wait()

    # -- helpers -------------------------------------------------------------------------------

    def _find(self, child_id: str) -> _Child:
        child = self._children.get(child_id)
        if child is not None:
            return child
        raise SupervisorError(f"supervisor {self.name!r} has no child {child_id!r}")

    def _transition(self, new: SupervisorState) -> None:
        if new not in _SUPERVISOR_TRANSITIONS[self.state]:
            raise InvalidTransition(f"supervisor {self.name!r}", self.state.value, new.value)
        self.state = new

    def _notify(self, kind: EventKind, child: str, exit: _Exit | None = None) -> None:
        if self._observer is not None:
            self._observer(
                SupervisorEvent(
                    supervisor=self.name,
                    kind=kind,
                    child=child,
                    exit=exit.kind if exit else None,
                    reason=exit.reason if exit else "",
                    at_ns=self._clock.monotonic_ns(),
                )
            )

    def _child_statistics(self, child: _Child, now: int) -> ChildStatistics:
        return ChildStatistics(
            id=child.spec.id,
            state=child.state.value,
            restart=child.spec.restart.value,
            starts=child.starts,
            restarts=child.restarts,
            failures=dict(child.failures.by_reason),
            last_failure=child.failures.last,
            uptime_ns=now - child.started_at if child.state is ChildState.RUNNING else 0,
            supervisor=child.spec.inspect() if child.spec.inspect else None,
        )


def _describe(error: BaseException | None) -> str:
    return f"{type(error).__name__}: {error}" if error is not None else "no error"
