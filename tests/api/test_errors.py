"""Which HTTP status each kind of error gets, and what its body says."""

from __future__ import annotations

import pytest

from dms.actor.errors import (
    ErrorCode,
    InvokeTimeout,
    RateLimited,
    RemoteError,
    UnknownBehavior,
)
from dms.api.errors import body_for, status_for
from dms.errors import DMSError, InputError, OnboardingError, OrchestrationError, SecurityError
from dms.network.base import PeerUnreachable


class UnknownDeployment(OrchestrationError):
    pass


def wrapped(error: BaseException) -> RemoteError:
    """What a local invoke raises when a handler fails: a RemoteError caused by the error."""
    remote = RemoteError(ErrorCode.HANDLER_FAILED, type(error).__name__, str(error))
    remote.__cause__ = error
    return remote


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InputError("cpu", "x", "a number"), 422),
        (wrapped(InputError("cpu", "x", "a number")), 422),
        (UnknownDeployment("no such deployment"), 404),
        (wrapped(UnknownDeployment("no such deployment")), 404),
        (PeerUnreachable("12D3KooW", "gone"), 404),
        (OnboardingError("draining"), 409),
        (OrchestrationError("deadline passed"), 409),
        (SecurityError("no"), 403),
        (RateLimited("did:key:z", "default", 1.0, 5), 429),
        (UnknownBehavior("root", "/dms/node/deployment/new", 3), 501),
        (InvokeTimeout("/x", "root", 1.0), 504),
        (RemoteError(ErrorCode.BAD_REQUEST, "BadMessage", "payload"), 422),
        (RemoteError(ErrorCode.HANDLER_FAILED, "UnknownAllocation", "none"), 404),
        (RemoteError(ErrorCode.UNAUTHORIZED, "Unauthorized", "no"), 403),
        (RemoteError(ErrorCode.HANDLER_FAILED, "OnboardingError", "no"), 409),
        (DMSError("something refused"), 409),
        (RuntimeError("a bug"), 500),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_status_for(error: BaseException, status: int) -> None:
    assert status_for(error) == status


def test_a_wrapped_error_reports_its_own_type_message_and_field() -> None:
    body = body_for(wrapped(InputError("ram", "4 gigs", "a size")))
    assert (body.status, body.error, body.field) == (422, "InputError", "ram")
    assert body.message == 'ram: "4 gigs" is not a size'


def test_a_bug_does_not_leak_its_message() -> None:
    body = body_for(RuntimeError("secret internals"))
    assert (body.status, body.message) == (500, "internal error")
