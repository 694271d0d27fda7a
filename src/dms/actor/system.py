"""The actor system of one node: its key, trust context, network, root supervisor and actors.

Receive pipeline for a frame from the network (each step raises a typed error; refusals are
counted by error type in the statistics)::

    open_frame (decode, signature)  ->  expiry, replay  ->  reply?  ->  actor by inbox
        -> audience, behavior, capability (Authorizer), rate limit  ->  decode payload
        -> handler (inline for a plain handler on an idle actor, else the actor's mailbox)

The signature step alone is skipped for a direct frame whose envelope names as its sender the
DID the network authenticated for the connection it came on (``Network.authenticated_did``:
libp2p's Noise handshake proves the peer holds that key, so the envelope cannot come from
anyone else). Expiry, replay, audience, capability tokens (with their own signatures) and rate
limits are checked all the same. The in-memory network vouches for nobody, and topic frames
(relayed by third parties) are always verified.

A frame that fails before it is authenticated (undecodable, bad signature, expired, replayed)
is dropped silently; after that, an invoke gets an error reply and its caller a RemoteError.
The reply to an invoke leaves from the task that ran the handler (the peer's reader task for a
plain handler on an idle actor), with no queue in between.

Messages between actors of this node skip the wire (no encoding, no signature: the sender is
this process) but never the audience, capability and rate-limit checks. With
``local_wire=True`` they are encoded, signed and verified like remote ones (tests, benchmarks).
"""

from __future__ import annotations

import functools
import itertools
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from dms.actor.actor import Actor, ActorCell, ActorFactory, actor_start
from dms.actor.auth import Authorizer
from dms.actor.behavior import Empty, bind, decoder_for, make_spec
from dms.actor.deadline import Deadlines
from dms.actor.envelope import (
    REPLY_PREFIX,
    Envelope,
    ErrorInfo,
    Reply,
    decode_reply,
    encode_payload,
    field_of,
    open_frame,
    seal,
)
from dms.actor.errors import (
    ActorStopped,
    BadMessage,
    ErrorCode,
    InvokeTimeout,
    MalformedEnvelope,
    RateLimited,
    RemoteError,
    UnknownActor,
    UnknownBehavior,
)
from dms.actor.handle import NOBODY, Address, Handle
from dms.actor.ratelimit import RateLimiter, RateLimitPolicy
from dms.actor.statistics import SupervisorStatistics, SystemStatistics
from dms.actor.supervisor import (
    DEFAULT_SHUTDOWN_NS,
    ChildContext,
    ChildSpec,
    Restart,
    Supervisor,
    SupervisorState,
)
from dms.clock import Clock, RealClock
from dms.config import ActorConfig
from dms.errors import ActorError, DMSError, NetworkError, SecurityError
from dms.log import get_logger
from dms.network import Network, PeerID
from dms.security import (
    Action,
    Expired,
    KeyPair,
    ReplayGuard,
    TokenExpired,
    TrustContext,
    Unauthorized,
)
from dms.types.units import parse_duration

R = TypeVar("R")
NS_PER_S = 1_000_000_000
ROOT_INBOX = "root"
STATS_BEHAVIOR = "/dms/actor/stats"
_VALIDATED_CACHE = 128
_VALIDATED_MAX_FRAME = 64 * 1024
"""Topic frames verified by the validator are kept (up to this many, this large) so the
handler that follows does not verify the signature a second time."""


class RootActor(Actor):
    """The default root actor: only the system's own behaviors (``/dms/actor/stats``)."""


class LocalReply:
    """Where the reply to an invoke made from this node lands."""

    __slots__ = ("caller", "done", "error", "event", "expected_did", "response", "value")

    def __init__(self, response: type[Any] | None, expected_did: str, caller: str) -> None:
        self.response = response
        self.expected_did = expected_did
        self.caller = caller
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None
        self.event: anyio.Event | None = None

    def resolve(self, value: Any) -> None:
        if not self.done:
            self.done = True
            self.value = value
            if self.event is not None:
                self.event.set()

    def fail(self, error: BaseException) -> None:
        if not self.done:
            self.done = True
            self.error = error
            if self.event is not None:
                self.event.set()

    async def wait(self) -> None:
        if not self.done:
            self.event = anyio.Event()
            await self.event.wait()

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        response = self.response
        if response is not None and response is not type(None):
            value = self.value
            if type(value) is not response and not isinstance(value, response):
                raise RemoteError(
                    ErrorCode.BAD_RESPONSE,
                    type(value).__name__,
                    f"expected a {response.__name__}, got {type(value).__name__}",
                )
        return self.value


class RemoteReply:
    """Where the reply to an invoke that came over the wire goes: back to its sender."""

    __slots__ = ("request", "responder")

    def __init__(self, request: Envelope, responder: ActorCell) -> None:
        self.request = request
        self.responder = responder


ReplySlot = LocalReply | RemoteReply


def only_error(group: BaseExceptionGroup[BaseException], error: BaseException | None) -> bool:
    """Whether ``group`` holds nothing but ``error`` (however deeply nested)."""
    leaves = group.exceptions
    while len(leaves) == 1 and isinstance(leaves[0], BaseExceptionGroup):
        leaves = leaves[0].exceptions
    return error is not None and len(leaves) == 1 and leaves[0] is error


def error_info(error: BaseException) -> ErrorInfo:
    """How an error travels back to a remote caller."""
    code = ErrorCode.HANDLER_FAILED
    field = ""
    if isinstance(error, BadMessage):
        code, field = ErrorCode.BAD_REQUEST, error.field
    elif isinstance(error, UnknownActor):
        code = ErrorCode.UNKNOWN_ACTOR
    elif isinstance(error, UnknownBehavior):
        code = ErrorCode.UNKNOWN_BEHAVIOR
    elif isinstance(error, RateLimited):
        code = ErrorCode.RATE_LIMITED
    elif isinstance(error, ActorStopped):
        code = ErrorCode.ACTOR_STOPPED
    elif isinstance(error, Expired) and not isinstance(error, TokenExpired):
        code = ErrorCode.EXPIRED
    elif isinstance(error, SecurityError):
        code = ErrorCode.UNAUTHORIZED
    return ErrorInfo(code=code, type=type(error).__name__, message=str(error), field=field)


def as_caller_error(error: BaseException) -> BaseException:
    """What a local caller sees: actor errors as they are, handler failures as RemoteError."""
    if isinstance(error, ActorError):
        return error
    info = error_info(error)
    remote = RemoteError(info.code, info.type, info.message, info.field)
    remote.__cause__ = error
    return remote


class ActorSystem:
    """One node's actors. ``async with ActorSystem(keypair, network) as system:``."""

    def __init__(
        self,
        keypair: KeyPair,
        network: Network,
        *,
        trust: Authorizer | None = None,
        clock: Clock | None = None,
        config: ActorConfig | None = None,
        rate_limits: RateLimitPolicy | None = None,
        root: ActorFactory | None = None,
        mailbox_capacity: int = 1024,
        local_wire: bool = False,
        replay_window_ns: int = 10 * 60 * NS_PER_S,
    ) -> None:
        config = config or ActorConfig()
        self.keypair = keypair
        self.did = keypair.did
        self.network = network
        self.peer_id: PeerID = network.peer_id
        self.authorizer: Authorizer = (
            trust if trust is not None else TrustContext(local_did=self.did)
        )
        self.clock: Clock = clock or RealClock()
        self.default_expiry_ns = parse_duration(config.default_expiry, "actor.default_expiry")
        self.invoke_timeout_s = (
            parse_duration(config.invoke_timeout, "actor.invoke_timeout") / NS_PER_S
        )
        self.limiter = RateLimiter(rate_limits)
        self._exempt_local = self.limiter.policy.exempt_local
        self.mailbox_capacity = mailbox_capacity
        self.local_wire = local_wire
        self.log = get_logger(node=self.peer_id)
        self._root_factory: ActorFactory = root or RootActor
        self._replay = ReplayGuard(window_ns=replay_window_ns)
        self._cells: dict[str, ActorCell] = {}
        self._pending: dict[str, LocalReply] = {}
        self._topics: dict[str, dict[str, str]] = {}
        self._network_topics: set[str] = set()
        self._validated: OrderedDict[bytes, Envelope] = OrderedDict()
        self._outbox: deque[tuple[PeerID, bytes]] = deque()
        self._outbox_wake = anyio.Event()
        self._deadlines = Deadlines()
        self._nonce_prefix = secrets.token_hex(4)
        self._counter = itertools.count(1)
        self.refusals: dict[str, int] = {}
        self._task_group: TaskGroup | None = None
        self._supervisor = Supervisor("root", clock=self.clock)
        self.root = Handle(
            id=keypair.public_key.hex(),
            did=self.did,
            address=Address(host=self.peer_id, inbox=ROOT_INBOX),
        )

    # -- life cycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.network.__aenter__()
        try:
            self.network.on_receive(self._on_frame)
            task_group = anyio.create_task_group()
            await task_group.__aenter__()
        except BaseException as exc:
            await self.network.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._task_group = task_group
        try:
            task_group.start_soon(self._send_outbox)
            task_group.start_soon(self._deadlines.run)
            await task_group.start(self._run_root)
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task_group, self._task_group = self._task_group, None
        try:
            if task_group is not None:
                try:
                    if exc_type is None and self._supervisor.state is SupervisorState.RUNNING:
                        await self._supervisor.stop()
                finally:
                    # Even when the graceful stop is cancelled from outside, the task group
                    # entered in __aenter__ must be exited here, in this task.
                    self._fail_pending()
                    task_group.cancel_scope.cancel()
                    try:
                        await task_group.__aexit__(exc_type, exc, tb)
                    except BaseExceptionGroup as group:
                        if not only_error(group, exc):
                            raise
                        # The body's own error, merely wrapped: let it propagate as raised.
        finally:
            self._fail_pending()
            await self.network.__aexit__(exc_type, exc, tb)

    async def _run_root(self, *, task_status: TaskStatus[None]) -> None:
        async with anyio.create_task_group() as task_group:
            await task_group.start(self._supervise_root)
            await self._supervisor.start_child(
                ChildSpec(id=ROOT_INBOX, start=self._root_start(), restart=Restart.PERMANENT)
            )
            task_status.started()

    async def _supervise_root(self, *, task_status: TaskStatus[None]) -> None:
        await self._supervisor.run(task_status=task_status)

    def _root_start(self) -> Callable[[ChildContext], Any]:
        async def start(context: ChildContext) -> None:
            cell = ActorCell(
                self, self._root_factory(), ROOT_INBOX, self.keypair, self.mailbox_capacity
            )
            cell.behaviors[STATS_BEHAVIOR] = bind(
                make_spec(STATS_BEHAVIOR, Empty, SystemStatistics, None),
                lambda message, envelope: self.statistics(),
            )
            await cell.run(context)

        return start

    def _fail_pending(self) -> None:
        for slot in list(self._pending.values()):
            slot.fail(ActorStopped(slot.caller, "invoke (the actor system stopped)"))
        self._pending.clear()

    @property
    def supervisor(self) -> Supervisor:
        return self._supervisor

    # -- actors --------------------------------------------------------------------------------

    def actor_child(
        self,
        factory: ActorFactory,
        inbox: str,
        *,
        restart: Restart = Restart.PERMANENT,
        shutdown_ns: int = DEFAULT_SHUTDOWN_NS,
        keypair: KeyPair | None = None,
    ) -> tuple[ChildSpec, Handle]:
        """A supervisor child spec that runs a fresh ``factory()`` actor at ``inbox``."""
        if not inbox or "/" in inbox or len(inbox) > 128:
            raise ValueError(f"inbox: {inbox!r}; accepted: 1-128 characters without '/'")
        keypair = keypair or self.keypair
        start = actor_start(self, factory, inbox, keypair, self.mailbox_capacity)
        cells = self._cells

        def inspect() -> SupervisorStatistics | None:
            cell = cells.get(inbox)
            return cell.statistics().children if cell is not None else None

        spec = ChildSpec(
            id=inbox, start=start, restart=restart, shutdown_ns=shutdown_ns, inspect=inspect
        )
        handle = Handle(
            id=keypair.public_key.hex(),
            did=keypair.did,
            address=Address(host=self.peer_id, inbox=inbox),
        )
        return spec, handle

    async def spawn(
        self,
        factory: ActorFactory,
        inbox: str,
        *,
        restart: Restart = Restart.PERMANENT,
        shutdown_ns: int = DEFAULT_SHUTDOWN_NS,
        keypair: KeyPair | None = None,
    ) -> Handle:
        """Start an actor under the root supervisor; returns its handle."""
        spec, handle = self.actor_child(
            factory, inbox, restart=restart, shutdown_ns=shutdown_ns, keypair=keypair
        )
        await self._supervisor.start_child(spec)
        return handle

    async def stop_actor(self, inbox: str) -> None:
        await self._supervisor.terminate_child(inbox)

    def handle_of(self, inbox: str) -> Handle:
        cell = self._cells.get(inbox)
        if cell is None:
            raise UnknownActor(inbox, self.peer_id)
        return cell.handle

    def actor(self, inbox: str) -> Actor:
        """The running actor instance at ``inbox`` (for tests and the node's own wiring)."""
        cell = self._cells.get(inbox)
        if cell is None:
            raise UnknownActor(inbox, self.peer_id)
        return cell.actor

    def _register(self, cell: ActorCell) -> None:
        if cell.inbox in self._cells:
            raise ActorError(f"inbox: {cell.inbox!r} is already taken on {self.peer_id}")
        self._cells[cell.inbox] = cell

    def _unregister(self, cell: ActorCell) -> None:
        if self._cells.get(cell.inbox) is cell:
            del self._cells[cell.inbox]
        for slot in [s for s in self._pending.values() if s.caller == cell.inbox]:
            slot.fail(ActorStopped(cell.inbox, "invoke (the caller stopped)"))

    def _sender(self, sender: ActorCell | None) -> ActorCell:
        if sender is not None:
            return sender
        cell = self._cells.get(ROOT_INBOX)
        if cell is None:
            raise ActorStopped(ROOT_INBOX, "message (the root actor is not running)")
        return cell

    def _nonce(self) -> str:
        return f"{self._nonce_prefix}{next(self._counter):x}"

    def _tokens(
        self, cell: ActorCell, audience: str, capability: str, action: Action, now: int
    ) -> Any:
        if audience == cell.did:
            return ()
        return self.authorizer.tokens_for(audience, capability, action, now, subject=cell.did)

    def rate_check(self, sender_did: str, rate_class: str, now_ns: int) -> None:
        """Take one token from the sender's budget for ``rate_class`` (wall-clock ``now_ns``)."""
        if self._exempt_local and sender_did == self.did:
            return
        self.limiter.check(sender_did, rate_class, now_ns)

    # -- sending -------------------------------------------------------------------------------

    async def send(
        self,
        to: Handle,
        behavior: str,
        message: Any,
        *,
        ttl_ns: int | None = None,
        sender: ActorCell | None = None,
    ) -> None:
        """Fire and forget; the message expires ``ttl_ns`` from now (``actor.default_expiry``).

        Local refusals raise at once; remote ones are only counted on the receiving node.
        """
        cell = self._sender(sender)
        now = self.clock.now_ns()
        local = to.address.host == self.peer_id and not self.local_wire
        envelope = Envelope(
            to,
            cell.handle,
            behavior,
            self._nonce(),
            now + (ttl_ns or self.default_expiry_ns),
            "",
            "",
            b"" if local else encode_payload(message),
            self._tokens(cell, to.did, behavior, Action.INVOKE, now),
        )
        if local:
            target = self._cells.get(to.address.inbox)
            if target is None:
                raise UnknownActor(to.address.inbox, self.peer_id)
            await target.deliver(envelope, message, None, target.admit(envelope, now))
            return
        await self._send_frame(to.address.host, seal(envelope, cell.keypair))

    async def invoke(
        self,
        to: Handle,
        behavior: str,
        message: Any,
        response: type[R],
        *,
        timeout_s: float | None = None,
        sender: ActorCell | None = None,
    ) -> R:
        """Request/reply under a deadline (``actor.invoke_timeout`` unless given).

        Raises InvokeTimeout, RemoteError (the other side refused or its handler failed),
        ActorStopped, or, for a local target, the refusal itself (e.g. Unauthorized).
        """
        cell = self._sender(sender)
        timeout = self.invoke_timeout_s if timeout_s is None else timeout_s
        now = self.clock.now_ns()
        nonce = self._nonce()
        local = to.address.host == self.peer_id and not self.local_wire
        envelope = Envelope(
            to,
            cell.handle,
            behavior,
            nonce,
            now + self.default_expiry_ns,
            REPLY_PREFIX + nonce,
            "",
            b"" if local else encode_payload(message),
            self._tokens(cell, to.did, behavior, Action.INVOKE, now),
        )
        slot = LocalReply(response, to.did, cell.inbox)

        def timed_out() -> InvokeTimeout:
            return InvokeTimeout(behavior, str(to), timeout)

        if local:
            target = self._cells.get(to.address.inbox)
            if target is None:
                raise UnknownActor(to.address.inbox, self.peer_id)
            admitted = target.admit(envelope, now)
            if target.can_inline(admitted):
                # A plain handler on an idle actor: answered before deliver() returns.
                await target.deliver(envelope, message, slot, admitted)
            elif len(target.mailbox) < target.mailbox.capacity:
                # Room in the mailbox: only the reply is waited for, under the shared timer.
                with self._deadlines.waiting(slot, timeout, timed_out):
                    await target.deliver(envelope, message, slot, admitted)
                    await slot.wait()
            else:
                with anyio.move_on_after(timeout):
                    await target.deliver(envelope, message, slot, admitted)
                    await slot.wait()
        else:
            host = to.address.host
            frame = seal(envelope, cell.keypair)
            self._pending[nonce] = slot
            try:
                if host != self.peer_id and self.network.ready(host):
                    # The send will not wait: only the reply is waited for, under the shared
                    # timer (a cancel scope per invoke costs more than the rest of it).
                    with self._deadlines.waiting(slot, timeout, timed_out):
                        await self.network.send(host, frame)
                        await slot.wait()
                else:
                    with anyio.move_on_after(timeout):
                        await self._send_frame(host, frame)
                        await slot.wait()
            finally:
                self._pending.pop(nonce, None)
        if not slot.done:
            slot.fail(timed_out())
        return slot.result()  # type: ignore[no-any-return]

    async def publish(
        self, topic: str, behavior: str, message: Any, *, sender: ActorCell | None = None
    ) -> None:
        """Broadcast to every actor subscribed to ``topic`` with ``behavior``, on every node."""
        cell = self._sender(sender)
        now = self.clock.now_ns()
        envelope = Envelope(
            NOBODY,
            cell.handle,
            behavior,
            self._nonce(),
            now + self.default_expiry_ns,
            "",
            topic,
            encode_payload(message),
            self._tokens(cell, "", topic, Action.BROADCAST, now),
        )
        await self.network.publish(topic, seal(envelope, cell.keypair))

    async def subscribe(self, topic: str, cell: ActorCell, behavior: str) -> None:
        if behavior not in cell.behaviors:
            raise UnknownBehavior(cell.inbox, behavior, len(cell.behaviors))
        self._topics.setdefault(topic, {})[cell.inbox] = behavior
        cell.topics[topic] = behavior
        if topic not in self._network_topics:
            self._network_topics.add(topic)
            await self.network.subscribe(
                topic,
                functools.partial(self._on_topic, topic),
                functools.partial(self._validate_topic, topic),
            )

    async def unsubscribe(self, topic: str, cell: ActorCell) -> None:
        self._drop_subscription(topic, cell)
        if not self._topics.get(topic) and topic in self._network_topics:
            self._network_topics.discard(topic)
            self._topics.pop(topic, None)
            await self.network.unsubscribe(topic)

    def _drop_subscription(self, topic: str, cell: ActorCell) -> None:
        cell.topics.pop(topic, None)
        subscribers = self._topics.get(topic)
        if subscribers is not None and subscribers.get(cell.inbox) is not None:
            del subscribers[cell.inbox]

    async def _send_frame(self, host: PeerID, frame: bytes) -> None:
        if host == self.peer_id:
            await self._on_frame(host, frame)
        else:
            await self.network.send(host, frame)

    async def _send_outbox(self) -> None:
        """Frames queued where no await was possible (error replies of a stopping actor)."""
        while True:
            while self._outbox:
                host, frame = self._outbox.popleft()
                try:
                    await self._send_frame(host, frame)
                except NetworkError as exc:
                    self.log.debug("reply not delivered", peer=host, error=str(exc))
            self._outbox_wake = anyio.Event()
            await self._outbox_wake.wait()

    # -- replies -------------------------------------------------------------------------------

    def _reply_frame(self, reply: RemoteReply, error: BaseException | None, value: Any) -> bytes:
        request = reply.request
        responder = reply.responder
        if error is None:
            payload = Reply(result=msgspec.Raw(encode_payload(value)))
        else:
            payload = Reply(error=error_info(error))
        envelope = Envelope(
            request.sender,
            responder.handle,
            request.reply_to,
            self._nonce(),
            self.clock.now_ns() + self.default_expiry_ns,
            "",
            "",
            encode_payload(payload),
            (),
        )
        return seal(envelope, responder.keypair)

    async def _complete(
        self, reply: ReplySlot, error: BaseException | None, value: Any = None
    ) -> None:
        if isinstance(reply, LocalReply):
            if error is None:
                reply.resolve(value)
            else:
                reply.fail(as_caller_error(error))
            return
        frame = self._reply_frame(reply, error, value)
        try:
            await self._send_frame(reply.request.sender.address.host, frame)
        except NetworkError as exc:
            self.log.debug("reply not delivered", to=str(reply.request.sender), error=str(exc))

    def _complete_nowait(
        self, reply: ReplySlot, error: BaseException | None, value: Any = None
    ) -> None:
        if isinstance(reply, LocalReply):
            if error is None:
                reply.resolve(value)
            else:
                reply.fail(as_caller_error(error))
            return
        self._outbox.append(
            (reply.request.sender.address.host, self._reply_frame(reply, error, value))
        )
        self._outbox_wake.set()

    def _expired(self, envelope: Envelope, reply: ReplySlot | None, now: int) -> None:
        error = Expired(f"message {envelope.nonce} to {envelope.behavior}", envelope.expiry, now)
        self._refused(error)
        if reply is not None:
            self._complete_nowait(reply, error)

    def _refused(self, error: BaseException) -> None:
        name = type(error).__name__
        self.refusals[name] = self.refusals.get(name, 0) + 1

    # -- receiving -----------------------------------------------------------------------------

    async def _on_frame(self, peer: PeerID, frame: bytes) -> None:
        """A direct frame from the network (or looped back): the receive pipeline."""
        now = self.clock.now_ns()
        try:
            envelope = self.accept(frame, now, self.network.authenticated_did(peer))
        except DMSError as exc:
            self._refused(exc)
            self.log.debug("frame refused", peer=peer, error=str(exc))
            return
        if envelope.behavior.startswith(REPLY_PREFIX):
            self._on_reply(envelope)
            return
        reply: RemoteReply | None = None
        try:
            cell = self._cells.get(envelope.to.address.inbox)
            if cell is None or envelope.to.address.host != self.peer_id:
                raise UnknownActor(envelope.to.address.inbox, self.peer_id)
            if envelope.reply_to:
                if not envelope.reply_to.startswith(REPLY_PREFIX):
                    raise MalformedEnvelope(
                        "reply_to", envelope.reply_to, f"a path under {REPLY_PREFIX}"
                    )
                reply = RemoteReply(envelope, cell)
            behavior = cell.admit(envelope, now)
            message = self._decode(behavior.decoder, envelope.payload, behavior.path)
            await cell.deliver(envelope, message, reply, behavior)
        except DMSError as exc:
            self._refused(exc)
            self.log.debug("message refused", peer=peer, behavior=envelope.behavior, error=str(exc))
            if envelope.reply_to.startswith(REPLY_PREFIX):
                responder = self._cells.get(envelope.to.address.inbox) or self._cells.get(
                    ROOT_INBOX
                )
                if responder is not None:
                    await self._complete(RemoteReply(envelope, responder), exc)

    def accept(self, frame: bytes, now_ns: int, authenticated_did: str | None = None) -> Envelope:
        """Decode, verify the signature, check expiry and replay. Raises the typed refusal.

        The signature is not verified when the envelope's sender is ``authenticated_did`` (the
        DID the transport authenticated for the frame's connection; see :func:`open_frame`).
        """
        envelope = open_frame(frame, authenticated_did)
        self._replay.check(envelope.sender.did, envelope.nonce, envelope.expiry, now_ns)
        return envelope

    @staticmethod
    def _decode(decoder: msgspec.json.Decoder[Any], payload: bytes, path: str) -> Any:
        try:
            return decoder.decode(payload)
        except msgspec.ValidationError as exc:
            raise BadMessage(
                field_of(exc) or "payload", None, f"the request of {path}", detail=str(exc)
            ) from exc
        except msgspec.DecodeError as exc:
            raise BadMessage("payload", None, f"JSON for {path}", detail=str(exc)) from exc

    def _on_reply(self, envelope: Envelope) -> None:
        nonce = envelope.behavior[len(REPLY_PREFIX) :]
        slot = self._pending.get(nonce)
        if slot is None:
            self._refused(UnknownBehavior(envelope.to.address.inbox, envelope.behavior, 0))
            return
        if envelope.sender.did != slot.expected_did:
            self._refused(
                Unauthorized(
                    envelope.sender.did,
                    "reply",
                    envelope.behavior,
                    f"only the invoked actor's DID {slot.expected_did} may answer",
                )
            )
            return
        try:
            reply = decode_reply(envelope.payload)
            if reply.error is not None:
                info = reply.error
                slot.fail(RemoteError(info.code, info.type, info.message, info.field))
            elif slot.response is None or slot.response is type(None):
                slot.resolve(None)
            else:
                slot.resolve(decoder_for(slot.response).decode(reply.result))
        except (MalformedEnvelope, msgspec.DecodeError) as exc:
            field = field_of(exc) if isinstance(exc, msgspec.ValidationError) else ""
            slot.fail(RemoteError(ErrorCode.BAD_RESPONSE, type(exc).__name__, str(exc), field))

    def _validate_topic(self, topic: str, origin: PeerID, frame: bytes) -> bool:
        """Before a topic frame is delivered or forwarded: decodes, is signed, is fresh."""
        try:
            envelope = open_frame(frame)
            if envelope.topic != topic:
                raise MalformedEnvelope("topic", envelope.topic, f"the topic it came on ({topic})")
            now = self.clock.now_ns()
            if envelope.expiry <= now:
                raise Expired(f"broadcast {envelope.nonce}", envelope.expiry, now)
        except DMSError as exc:
            self._refused(exc)
            return False
        if len(frame) <= _VALIDATED_MAX_FRAME:
            self._validated[frame] = envelope
            if len(self._validated) > _VALIDATED_CACHE:
                self._validated.popitem(last=False)
        return True

    async def _on_topic(self, topic: str, origin: PeerID, frame: bytes) -> None:
        now = self.clock.now_ns()
        try:
            envelope = self._validated.pop(frame, None)
            if envelope is None:
                envelope = open_frame(frame)
                if envelope.topic != topic:
                    raise MalformedEnvelope(
                        "topic", envelope.topic, f"the topic it came on ({topic})"
                    )
            self._replay.check(envelope.sender.did, envelope.nonce, envelope.expiry, now)
            self.authorizer.authorize(
                envelope.sender.did, Action.BROADCAST, topic, envelope.tokens, now
            )
        except DMSError as exc:
            self._refused(exc)
            return
        decoded: dict[type[Any], Any] = {}
        for inbox, path in list(self._topics.get(topic, {}).items()):
            if path != envelope.behavior:
                continue
            cell = self._cells.get(inbox)
            try:
                if cell is None or not cell.accepting:
                    raise ActorStopped(inbox)
                behavior = cell.behaviors.get(path)
                if behavior is None:
                    raise UnknownBehavior(inbox, path, len(cell.behaviors))
                self.rate_check(envelope.sender.did, behavior.rate_class, now)
                if behavior.request not in decoded:
                    decoded[behavior.request] = self._decode(
                        behavior.decoder, envelope.payload, path
                    )
                await cell.deliver(envelope, decoded[behavior.request], None, behavior)
            except DMSError as exc:
                self._refused(exc)

    # -- statistics ----------------------------------------------------------------------------

    def statistics(self) -> SystemStatistics:
        return SystemStatistics(
            peer_id=self.peer_id,
            did=self.did,
            actors=tuple(cell.statistics() for cell in self._cells.values()),
            supervisor=self._supervisor.statistics(),
            refusals=dict(self.refusals),
            pending_invokes=len(self._pending),
        )
