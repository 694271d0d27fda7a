"""Actors: the base class users extend, and the cell that runs one actor instance.

An actor handles one message at a time, in arrival order. ``send`` is fire-and-forget;
``invoke`` waits for the reply (always under a deadline). If the handler of a sent message
raises, the actor crashes and its supervisor decides what happens next; if the handler of an
invoke raises, the error goes back to the caller and the actor carries on.

When an actor stops, every message still queued fails: local invokes with ActorStopped, remote
ones with an ``actor_stopped`` error reply. Nobody waits forever.

Life cycle (:class:`ActorState`): NEW -> STARTING -> RUNNING -> STOPPING -> STOPPED, and
STARTING -> STOPPING when ``on_start`` fails.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus

from dms.actor.behavior import (
    MAX_CONCURRENT,
    Behavior,
    BehaviorOptions,
    BehaviorSpec,
    Handler,
    bind,
    declared,
    make_spec,
)
from dms.actor.envelope import Envelope
from dms.actor.errors import (
    ActorStopped,
    BadMessage,
    InvalidTransition,
    SupervisorError,
    UnknownBehavior,
)
from dms.actor.handle import Address, Handle
from dms.actor.mailbox import Mailbox
from dms.actor.statistics import ActorStatistics
from dms.actor.supervisor import (
    DEFAULT_SHUTDOWN_NS,
    ChildContext,
    ChildSpec,
    Restart,
    Supervisor,
    SupervisorStrategy,
)
from dms.security import Action, KeyPair, WrongAudience

if TYPE_CHECKING:
    from dms.actor.system import ActorSystem, ReplySlot

R = TypeVar("R")
ActorFactory = Callable[[], "Actor"]


class ActorState(enum.StrEnum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


_TRANSITIONS = {
    ActorState.NEW: {ActorState.STARTING},
    ActorState.STARTING: {ActorState.RUNNING, ActorState.STOPPING},
    ActorState.RUNNING: {ActorState.STOPPING},
    ActorState.STOPPING: {ActorState.STOPPED},
    ActorState.STOPPED: set(),
}


class Actor:
    """Base class of actors. Declare behaviors with :func:`dms.actor.behavior`."""

    _declared: ClassVar[dict[str, tuple[str, BehaviorSpec]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._declared = declared(cls)

    _cell: ActorCell | None = None

    # -- hooks ---------------------------------------------------------------------------------

    async def on_start(self) -> None:
        """Runs before the first message. Raising here fails the actor's start."""

    async def on_stop(self) -> None:
        """Runs after the last message when the actor is stopped (not when it crashes)."""

    # -- identity ------------------------------------------------------------------------------

    @property
    def cell(self) -> ActorCell:
        if self._cell is None:
            raise ActorStopped("?", "call: the actor is not running")
        return self._cell

    @property
    def handle(self) -> Handle:
        return self.cell.handle

    @property
    def system(self) -> ActorSystem:
        return self.cell.system

    # -- messaging -----------------------------------------------------------------------------

    async def send(
        self, to: Handle, behavior: str, message: Any, *, ttl_ns: int | None = None
    ) -> None:
        cell = self.cell
        await cell.system.send(to, behavior, message, ttl_ns=ttl_ns, sender=cell)

    async def invoke(
        self,
        to: Handle,
        behavior: str,
        message: Any,
        response: type[R],
        *,
        timeout_s: float | None = None,
    ) -> R:
        cell = self.cell
        return await cell.system.invoke(
            to, behavior, message, response, timeout_s=timeout_s, sender=cell
        )

    async def publish(self, topic: str, behavior: str, message: Any) -> None:
        cell = self.cell
        await cell.system.publish(topic, behavior, message, sender=cell)

    async def subscribe(self, topic: str, behavior: str) -> None:
        """Receive broadcasts on ``topic`` that name ``behavior`` (one of this actor's)."""
        await self.cell.system.subscribe(topic, self.cell, behavior)

    async def unsubscribe(self, topic: str) -> None:
        await self.cell.system.unsubscribe(topic, self.cell)

    # -- behaviors at run time -----------------------------------------------------------------

    def register(
        self,
        path: str,
        request: type[Any] | None,
        response: type[Any] | None,
        handler: Handler,
        options: BehaviorOptions | None = None,
    ) -> None:
        self.cell.behaviors[path] = bind(make_spec(path, request, response, options), handler)

    def unregister(self, path: str) -> None:
        self.cell.behaviors.pop(path, None)

    # -- children ------------------------------------------------------------------------------

    async def spawn(
        self,
        factory: ActorFactory,
        inbox: str,
        *,
        restart: Restart = Restart.PERMANENT,
        shutdown_ns: int = DEFAULT_SHUTDOWN_NS,
        keypair: KeyPair | None = None,
    ) -> Handle:
        """Start a child actor under this actor's own supervisor (one_for_one)."""
        return await self.cell.spawn(
            factory, inbox, restart=restart, shutdown_ns=shutdown_ns, keypair=keypair
        )

    async def stop_child(self, inbox: str) -> None:
        await self.cell.children().terminate_child(inbox)

    def stop(self) -> None:
        """Stop after the message in hand; queued messages fail with ActorStopped.

        This is a normal exit: a permanent actor is started again by its supervisor (as in
        OTP); spawn it ``transient`` or ``temporary`` to make the stop final.
        """
        self.cell.request_stop()


Item = tuple[Envelope, Any, "ReplySlot | None"]


class ActorCell:
    """Runs one actor instance: its mailbox, its behaviors, its children."""

    def __init__(
        self, system: ActorSystem, actor: Actor, inbox: str, keypair: KeyPair, capacity: int
    ) -> None:
        self.system = system
        self.actor = actor
        self.inbox = inbox
        self.keypair = keypair
        self.did = keypair.did
        self.handle = Handle(
            id=keypair.public_key.hex(),
            did=keypair.did,
            address=Address(host=system.peer_id, inbox=inbox),
        )
        self.behaviors: dict[str, Behavior] = {
            path: bind(spec, getattr(actor, name))
            for path, (name, spec) in type(actor)._declared.items()
        }
        self.mailbox: Mailbox[Item] = Mailbox(inbox, capacity)
        self.state = ActorState.NEW
        self.busy = False
        self.accepting = False
        self.processed = 0
        self.failed = 0
        self.topics: dict[str, str] = {}
        self._crash: Exception | None = None
        self._stop_requested = False
        self._current: ReplySlot | None = None
        self._task_group: TaskGroup | None = None
        self._concurrency = anyio.Semaphore(MAX_CONCURRENT)
        self._children: Supervisor | None = None
        self._children_ready = anyio.Event()

    # -- life cycle ----------------------------------------------------------------------------

    def _transition(self, new: ActorState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise InvalidTransition(f"actor {self.inbox!r}", self.state.value, new.value)
        self.state = new

    async def run(self, context: ChildContext) -> None:
        """The actor's task: start, handle messages until stopped, stop (a supervisor child)."""
        system = self.system
        system._register(self)
        crash: Exception | None = None
        graceful = False
        try:
            self._transition(ActorState.STARTING)
            self.actor._cell = self
            self.accepting = True
            await self.actor.on_start()
            for behavior in list(self.behaviors.values()):
                if behavior.options.topic:
                    await system.subscribe(behavior.options.topic, self, behavior.path)
            context.on_stop(self.request_stop)
            self._transition(ActorState.RUNNING)
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                context.started()
                try:
                    await self._loop()
                except Exception as exc:  # the actor crashed: its supervisor decides
                    crash = exc
                self.accepting = False
                if self._children is not None:
                    await self._children.stop()
                task_group.cancel_scope.cancel()
            graceful = crash is None
            if graceful:
                self._transition(ActorState.STOPPING)
                await self.actor.on_stop()
        finally:
            self._task_group = None
            self.accepting = False
            if self.state is not ActorState.STOPPING:
                self.state = ActorState.STOPPING
            self._fail_all()
            system._unregister(self)
            self.state = ActorState.STOPPED
            self.actor._cell = None
        if crash is not None:
            raise crash

    def request_stop(self) -> None:
        self._stop_requested = True
        self.accepting = False
        self.mailbox.wake()

    def _fail_all(self) -> None:
        """Fail the message in hand and everything queued: nobody waits for a stopped actor."""
        left = self.mailbox.close()
        if self._current is not None:
            self.system._complete_nowait(self._current, ActorStopped(self.inbox, "invoke"))
            self._current = None
        for _, _, reply in left:
            if reply is not None:
                self.system._complete_nowait(reply, ActorStopped(self.inbox, "invoke"))
        for topic in list(self.topics):
            self.system._drop_subscription(topic, self)

    def crash(self, error: Exception) -> None:
        """Make the actor fail with ``error`` (its supervisor sees the failure)."""
        if self._crash is None:
            self._crash = error
        self.accepting = False
        self.mailbox.wake()

    # -- receiving -----------------------------------------------------------------------------

    def admit(self, envelope: Envelope, now_ns: int) -> Behavior:
        """Audience, behavior, capability and rate limit; raises the typed refusal."""
        if not self.accepting:
            raise ActorStopped(self.inbox)
        if envelope.to.did != self.did:
            raise WrongAudience(
                envelope.sender.did,
                Action.INVOKE,
                envelope.behavior,
                f"the message is addressed to {envelope.to.did}, not to {self.did}",
            )
        behavior = self.behaviors.get(envelope.behavior)
        if behavior is None or (behavior.expiry_ns and behavior.expiry_ns <= now_ns):
            if behavior is not None:
                del self.behaviors[envelope.behavior]
            raise UnknownBehavior(self.inbox, envelope.behavior, len(self.behaviors))
        system = self.system
        system.authorizer.authorize(
            envelope.sender.did,
            Action.INVOKE,
            behavior.capability,
            envelope.tokens,
            now_ns,
            audience=self.did,
        )
        system.rate_check(envelope.sender.did, behavior.rate_class, now_ns)
        return behavior

    async def deliver(
        self, envelope: Envelope, message: Any, reply: ReplySlot | None, behavior: Behavior
    ) -> None:
        """Handle now (a plain handler on an idle actor) or queue for the actor's task."""
        if type(message) is not behavior.request and not isinstance(message, behavior.request):
            raise BadMessage(
                "payload",
                type(message).__name__,
                f"a {behavior.request.__name__} (the request type of {behavior.path})",
            )
        if self.can_inline(behavior):
            self.busy = True
            try:
                error, result = self._handle_sync(envelope, message, reply, behavior)
            finally:
                self.busy = False
            if reply is not None:
                # From this task: a remote caller's reply goes straight to the network.
                await self.system._complete(reply, error, result)
            return
        mailbox = self.mailbox
        if not mailbox.push((envelope, message, reply)):
            await mailbox.put((envelope, message, reply))

    def can_inline(self, behavior: Behavior) -> bool:
        """Whether a message for ``behavior`` may be handled in the sender's task right now."""
        return (
            not behavior.is_async
            and not self.busy
            and self.state is ActorState.RUNNING
            and not self.mailbox.items
        )

    def _handle_sync(
        self, envelope: Envelope, message: Any, reply: ReplySlot | None, behavior: Behavior
    ) -> tuple[Exception | None, Any]:
        """Run a plain handler: (its error, its result), for the caller to complete ``reply``.

        A sent message whose handler raises crashes the actor.
        """
        if behavior.one_shot:
            self.behaviors.pop(behavior.path, None)
        try:
            result = behavior.handler(message, envelope)
        except Exception as exc:
            self.failed += 1
            if reply is None:
                self.crash(exc)
            return exc, None
        self.processed += 1
        return None, result

    async def _loop(self) -> None:
        mailbox = self.mailbox
        items = mailbox.items
        system = self.system
        clock = system.clock
        while True:
            if self._crash is not None:
                raise self._crash
            if not items:
                if self._stop_requested:
                    return
                await mailbox.wait()
                continue
            now = clock.now_ns()
            self.busy = True
            try:
                while items and not self._stop_requested and self._crash is None:
                    envelope, message, reply = items.popleft()
                    if envelope.expiry <= now:
                        system._expired(envelope, reply, now)
                        continue
                    behavior = self.behaviors.get(envelope.behavior)
                    if behavior is None:
                        error = UnknownBehavior(self.inbox, envelope.behavior, len(self.behaviors))
                        if reply is not None:
                            system._complete_nowait(reply, error)
                        continue
                    if not behavior.is_async:
                        failure, result = self._handle_sync(envelope, message, reply, behavior)
                        if reply is not None:
                            await system._complete(reply, failure, result)
                        continue
                    if behavior.one_shot:
                        self.behaviors.pop(behavior.path, None)
                    if behavior.options.concurrent and self._task_group is not None:
                        await self._concurrency.acquire()
                        self._task_group.start_soon(
                            self._handle_concurrent, behavior, envelope, message, reply
                        )
                        continue
                    self._current = reply
                    try:
                        result = await behavior.handler(message, envelope)
                    except Exception as exc:
                        self._current = None
                        self.failed += 1
                        if reply is None:
                            raise
                        await system._complete(reply, exc)
                        now = clock.now_ns()
                        continue
                    self._current = None
                    self.processed += 1
                    if reply is not None:
                        await system._complete(reply, None, result)
                    now = clock.now_ns()  # the handler may have waited
            finally:
                self.busy = False
            mailbox.drained()

    async def _handle_concurrent(
        self, behavior: Behavior, envelope: Envelope, message: Any, reply: ReplySlot | None
    ) -> None:
        """One message of a ``concurrent`` behavior, in a task of its own."""
        system = self.system
        try:
            result = await behavior.handler(message, envelope)
        except Exception as exc:
            self.failed += 1
            if reply is None:
                self.crash(exc)
            else:
                await system._complete(reply, exc)
            return
        except BaseException:
            # Cancelled because the actor stops: its caller hears so now, not at its deadline.
            if reply is not None:
                system._complete_nowait(reply, ActorStopped(self.inbox, "invoke"))
            raise
        finally:
            self._concurrency.release()
        self.processed += 1
        if reply is not None:
            await system._complete(reply, None, result)

    # -- children ------------------------------------------------------------------------------

    def children(self) -> Supervisor:
        if self._children is None:
            raise SupervisorError(f"actor {self.inbox!r} has no children")
        return self._children

    async def spawn(
        self,
        factory: ActorFactory,
        inbox: str,
        *,
        restart: Restart,
        shutdown_ns: int,
        keypair: KeyPair | None,
    ) -> Handle:
        if self._task_group is None or not self.accepting:
            raise ActorStopped(self.inbox, "spawn")
        if self._children is None:
            self._children = Supervisor(
                f"{self.inbox}/children",
                strategy=SupervisorStrategy.ONE_FOR_ONE,
                clock=self.system.clock,
            )
            try:
                await self._task_group.start(self._run_children, self._children)
            finally:
                self._children_ready.set()
        else:
            # Another spawn is starting the children's supervisor: wait until it runs.
            await self._children_ready.wait()
        spec, handle = self.system.actor_child(
            factory, inbox, restart=restart, shutdown_ns=shutdown_ns, keypair=keypair
        )
        await self._children.start_child(spec)
        return handle

    async def _run_children(
        self, supervisor: Supervisor, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await supervisor.run(task_status=task_status)
        except SupervisorError as exc:  # the children gave up: so does this actor
            self.crash(exc)

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(
            inbox=self.inbox,
            state=self.state.value,
            behaviors=len(self.behaviors),
            processed=self.processed,
            failed=self.failed,
            queued=len(self.mailbox),
            max_queued=self.mailbox.max_depth,
            children=self._children.statistics() if self._children else None,
        )


def actor_start(
    system: ActorSystem, factory: ActorFactory, inbox: str, keypair: KeyPair, capacity: int
) -> Callable[[ChildContext], Any]:
    """A supervisor child start function: a fresh actor instance for each (re)start."""

    async def start(context: ChildContext) -> None:
        await ActorCell(system, factory(), inbox, keypair, capacity).run(context)

    return start


__all__ = ["Actor", "ActorCell", "ActorFactory", "ActorState", "ChildSpec", "actor_start"]
