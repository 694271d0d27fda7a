"""Actor errors. Refusals of signatures, tokens, expiry and replays are dms.security's errors.

::

    ActorError
     +-- ActorStopped            the actor stopped before it handled the message
     +-- UnknownActor            no actor at that inbox on this node
     +-- UnknownBehavior         the actor has no such behavior (or it expired / was one-shot)
     +-- BadMessage              a payload that does not decode into the behavior's type
     +-- MalformedEnvelope       a frame that is not a signed envelope
     +-- RateLimited             the sender is over its rate for that behavior class
     +-- InvokeTimeout           no reply before the invoke's deadline
     +-- RemoteError             the other side refused or failed: carries an ErrorCode
     +-- InvalidTransition       a state change the actor's state machine does not allow
     +-- SupervisorError
          +-- RestartIntensityExceeded   too many restarts in the period: escalates
          +-- ChildStartFailed           a child failed before it said it was started
"""

from __future__ import annotations

import enum

from dms.errors import ActorError, InputError


class ActorStopped(ActorError):
    """The target actor stopped (or was stopping) before it handled the message."""

    def __init__(self, inbox: str, what: str = "message") -> None:
        self.inbox = inbox
        super().__init__(f"actor {inbox!r} stopped before it handled the {what}")


class UnknownActor(ActorError):
    def __init__(self, inbox: str, host: str) -> None:
        self.inbox = inbox
        self.host = host
        super().__init__(f"to.address.inbox: no actor {inbox!r} on {host}")


class UnknownBehavior(ActorError):
    def __init__(self, inbox: str, behavior: str, known: int) -> None:
        self.inbox = inbox
        self.behavior = behavior
        super().__init__(
            f"behavior: {behavior!r} is not registered on actor {inbox!r} "
            f"(it has {known} behaviors; one-shot and expired behaviors are removed)"
        )


class BadMessage(ActorError, InputError):
    """A payload that does not decode into the behavior's request (or response) type."""


class MalformedEnvelope(ActorError, InputError):
    """A frame that does not decode as a signed envelope."""


class RateLimited(ActorError):
    def __init__(self, sender: str, rate_class: str, per_s: float, burst: int) -> None:
        self.sender = sender
        self.rate_class = rate_class
        super().__init__(
            f"sender {sender} is over its rate for behavior class {rate_class!r}: "
            f"accepted: at most {per_s:g} messages/s with bursts of {burst}"
        )


class InvokeTimeout(ActorError):
    def __init__(self, behavior: str, target: str, timeout_s: float) -> None:
        self.behavior = behavior
        self.target = target
        self.timeout_s = timeout_s
        super().__init__(f"invoke {behavior} on {target}: no reply within {timeout_s:g} s")


class ErrorCode(enum.StrEnum):
    """Why a remote invoke failed; travels in error replies."""

    HANDLER_FAILED = "handler_failed"
    BAD_REQUEST = "bad_request"
    BAD_RESPONSE = "bad_response"
    UNKNOWN_ACTOR = "unknown_actor"
    UNKNOWN_BEHAVIOR = "unknown_behavior"
    UNAUTHORIZED = "unauthorized"
    RATE_LIMITED = "rate_limited"
    ACTOR_STOPPED = "actor_stopped"
    EXPIRED = "expired"


class RemoteError(ActorError):
    """The invoked side refused the request or its handler failed."""

    def __init__(self, code: ErrorCode, error_type: str, message: str, field: str = "") -> None:
        self.code = code
        self.error_type = error_type
        self.remote_message = message
        self.field = field
        super().__init__(f"remote {code.value} ({error_type}): {message}")


class InvalidTransition(ActorError):
    def __init__(self, what: str, current: str, wanted: str) -> None:
        super().__init__(f"{what}: cannot go from {current} to {wanted}")


class SupervisorError(ActorError):
    """Supervision failures."""


class RestartIntensityExceeded(SupervisorError):
    """More restarts than ``intensity`` within ``period``: the supervisor gives up and escalates."""

    def __init__(self, supervisor: str, restarts: int, period_s: float, last: str) -> None:
        self.supervisor = supervisor
        self.restarts = restarts
        self.period_s = period_s
        super().__init__(
            f"supervisor {supervisor!r}: {restarts} restarts within {period_s:g} s exceed its "
            f"intensity; last failure: {last}"
        )


class ChildStartFailed(SupervisorError):
    def __init__(self, supervisor: str, child: str, reason: str) -> None:
        self.supervisor = supervisor
        self.child = child
        super().__init__(f"supervisor {supervisor!r}: child {child!r} failed to start: {reason}")
