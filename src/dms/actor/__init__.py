"""Actors: signed envelopes to named behaviors, request/reply, pub/sub, supervision.

Layers, bottom up: ``handle`` and ``envelope`` (names and the wire format), ``behavior``
(typed handlers), ``mailbox`` and ``ratelimit`` (one queue, fair budgets), ``supervisor`` and
``statistics`` (OTP supervision, on task groups), ``actor`` (the base class and the cell that
runs it), ``system`` (one node: routing, the receive pipeline, invokes, topics).
Must not import: dms.network adapters (only the ``Network`` protocol), or anything above.
"""

from dms.actor.actor import Actor, ActorCell, ActorFactory, ActorState
from dms.actor.auth import AllowList, Authorizer
from dms.actor.behavior import Behavior, BehaviorOptions, Empty, behavior
from dms.actor.envelope import (
    DOMAIN,
    REPLY_PREFIX,
    Envelope,
    ErrorInfo,
    Reply,
    SignedEnvelope,
    open_frame,
    seal,
)
from dms.actor.errors import (
    ActorStopped,
    BadMessage,
    ChildStartFailed,
    ErrorCode,
    InvalidTransition,
    InvokeTimeout,
    MalformedEnvelope,
    RateLimited,
    RemoteError,
    RestartIntensityExceeded,
    SupervisorError,
    UnknownActor,
    UnknownBehavior,
)
from dms.actor.handle import NOBODY, Address, Handle
from dms.actor.mailbox import Mailbox
from dms.actor.ratelimit import Rate, RateLimiter, RateLimitPolicy
from dms.actor.statistics import (
    ActorStatistics,
    ChildStatistics,
    FailureRecord,
    SupervisorStatistics,
    SystemStatistics,
)
from dms.actor.supervisor import (
    ChildContext,
    ChildSpec,
    ChildState,
    ChildTemplate,
    EventKind,
    ExitKind,
    Restart,
    Supervisor,
    SupervisorEvent,
    SupervisorState,
    SupervisorStrategy,
)
from dms.actor.system import ROOT_INBOX, STATS_BEHAVIOR, ActorSystem, RootActor

__all__ = [
    "DOMAIN",
    "NOBODY",
    "REPLY_PREFIX",
    "ROOT_INBOX",
    "STATS_BEHAVIOR",
    "Actor",
    "ActorCell",
    "ActorFactory",
    "ActorState",
    "ActorStatistics",
    "ActorStopped",
    "ActorSystem",
    "Address",
    "AllowList",
    "Authorizer",
    "BadMessage",
    "Behavior",
    "BehaviorOptions",
    "ChildContext",
    "ChildSpec",
    "ChildStartFailed",
    "ChildState",
    "ChildStatistics",
    "ChildTemplate",
    "Empty",
    "Envelope",
    "ErrorCode",
    "ErrorInfo",
    "EventKind",
    "ExitKind",
    "FailureRecord",
    "Handle",
    "InvalidTransition",
    "InvokeTimeout",
    "Mailbox",
    "MalformedEnvelope",
    "Rate",
    "RateLimitPolicy",
    "RateLimited",
    "RateLimiter",
    "RemoteError",
    "Reply",
    "Restart",
    "RestartIntensityExceeded",
    "RootActor",
    "SignedEnvelope",
    "Supervisor",
    "SupervisorError",
    "SupervisorEvent",
    "SupervisorState",
    "SupervisorStatistics",
    "SupervisorStrategy",
    "SystemStatistics",
    "UnknownActor",
    "UnknownBehavior",
    "behavior",
    "open_frame",
    "seal",
]
