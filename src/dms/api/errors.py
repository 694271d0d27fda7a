"""How errors travel over REST: one body shape, one status per kind of error.

Every error response has the body :class:`ErrorBody` (``status``, ``error``, ``message``,
``field``). The server picks the status with :func:`status_for`; the client
(:mod:`dms.api.client`) turns the body back into an :class:`APIError` (or its subclass
:class:`APIInputError` for 4xx caused by the request, which the CLI reports with exit code 2).

=====================================================================  ======
error                                                                  status
=====================================================================  ======
malformed JSON, wrong types, out-of-range values (Litestar's checks)   400
missing or wrong bearer token                                          401
refused by capability checks (SecurityError)                           403
unknown deployment, allocation or peer; unreachable peer               404
any other refusal (OnboardingError, ResourceError, OrchestrationError)  409
input that parses but does not validate (InputError: ensembles, ...)   422
rate limited                                                           429
a behavior this node does not serve (e.g. no orchestrator)             501
the node took too long (invoke deadline)                               504
anything else (a bug)                                                  500
=====================================================================  ======
"""

from __future__ import annotations

import msgspec

from dms.actor.errors import ErrorCode, InvokeTimeout, RateLimited, RemoteError, UnknownBehavior
from dms.errors import NOTHING, DMSError, InputError, SecurityError
from dms.network.base import PeerUnreachable


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """The body of every error response."""

    status: int
    error: str
    """The error's type, e.g. ``InvalidEnsemble``."""
    message: str
    """What is wrong: the field, the value and what is accepted."""
    field: str = ""
    """The request field at fault, when there is one (``cpu``, ``allocations.web.resources``)."""


class APIError(DMSError):
    """An error answer from a node's REST API (or no answer at all: ``status`` 0)."""

    def __init__(self, status: int, error: str, message: str, field: str = "") -> None:
        self.status = status
        self.error = error
        self.message = message
        self.field = field
        Exception.__init__(self, message)


class APIInputError(APIError, InputError):
    """The node refused the request itself (400, 404, 422): the caller's input is at fault."""

    def __init__(self, status: int, error: str, message: str, field: str = "") -> None:
        APIError.__init__(self, status, error, message, field)
        self.value = NOTHING
        self.accepted = ""
        self.detail = message


class NodeUnreachable(APIError):
    """No node answers at the API address."""


_NOT_FOUND_NAMES = ("NotFound", "Unknown")
"""Error types of the orchestrator and provider that name an id nobody knows."""


def root_cause(error: BaseException) -> BaseException:
    """A handler's own error behind the RemoteError a local invoke wraps it in."""
    if isinstance(error, RemoteError) and isinstance(error.__cause__, BaseException):
        return error.__cause__
    return error


_REMOTE_STATUS = {
    ErrorCode.BAD_REQUEST: 422,
    ErrorCode.UNKNOWN_BEHAVIOR: 501,
    ErrorCode.UNKNOWN_ACTOR: 404,
    ErrorCode.UNAUTHORIZED: 403,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.EXPIRED: 504,
}


def status_for(error: BaseException) -> int:
    error = root_cause(error)
    name = type(error).__name__
    if isinstance(error, RemoteError):
        if any(part in error.error_type for part in _NOT_FOUND_NAMES):
            return 404
        return _REMOTE_STATUS.get(error.code, 409)
    if isinstance(error, UnknownBehavior):
        return 501
    if isinstance(error, InvokeTimeout):
        return 504
    if isinstance(error, RateLimited):
        return 429
    if isinstance(error, PeerUnreachable) or name == "PeerNotFound":
        return 404
    if isinstance(error, DMSError) and any(part in name for part in _NOT_FOUND_NAMES):
        return 404
    if isinstance(error, InputError):
        return 422
    if isinstance(error, SecurityError):
        return 403
    if isinstance(error, DMSError):
        return 409
    return 500


def body_for(error: BaseException) -> ErrorBody:
    """The response body for an error raised while serving a request."""
    cause = root_cause(error)
    status = status_for(cause)
    if isinstance(cause, RemoteError):
        return ErrorBody(
            status=status, error=cause.error_type, message=cause.remote_message, field=cause.field
        )
    field = getattr(cause, "field", "")
    return ErrorBody(
        status=status,
        error=type(cause).__name__,
        message=str(cause) if isinstance(cause, DMSError) else "internal error",
        field=field if isinstance(field, str) else "",
    )
