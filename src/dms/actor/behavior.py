"""Behaviors: named handlers with a typed request and response, and their options.

Declare them on an :class:`~dms.actor.actor.Actor` subclass::

    class Pinger(Actor):
        @behavior("/dms/node/peers/ping", Ping, Pong)
        def ping(self, message: Ping, envelope: Envelope) -> Pong:
            return Pong(sent=message.sent)

or register them at run time with ``actor.register(path, Request, Response, handler)``.
A plain ``def`` handler cannot wait, so when its actor is idle it runs straight away in the
sender's task (no task switch); an ``async def`` handler runs in the actor's own task. Either
way an actor handles one message at a time, in arrival order.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from dms.actor.envelope import Envelope
from dms.types import quantity

PUBLIC_PREFIX = "/public/"
MAX_CONCURRENT = 64
"""Concurrent handlers running at once per actor."""
DEFAULT_RATE_CLASS = "default"

Handler = Callable[[Any, Envelope], Any]
F = TypeVar("F", bound=Callable[..., Any])


class Empty(msgspec.Struct, frozen=True):
    """The request of a behavior that takes no arguments."""


class BehaviorOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How a behavior may be called.

    ``capability``: what the caller must be granted ("" = the behavior's path; paths under
    ``/public/`` need nothing). ``one_shot``: removed after its first message. ``expiry_ns``:
    wall-clock time after which it is removed (0 = never). ``topic``: also receive broadcasts
    on this topic. ``rate_class``: which rate limit applies to callers. ``concurrent``: an
    ``async def`` handler that only waits on others (another actor, I/O) and keeps no state of
    its own across awaits runs in a task of its own, so the actor's mailbox keeps moving
    meanwhile (at most ``MAX_CONCURRENT`` at once per actor; callers beyond wait).
    """

    capability: str = ""
    one_shot: bool = False
    expiry_ns: int = 0
    topic: str = ""
    rate_class: str = DEFAULT_RATE_CLASS
    concurrent: bool = False


@dataclass(frozen=True, slots=True)
class BehaviorSpec:
    path: str
    request: type[Any]
    response: type[Any] | None
    options: BehaviorOptions


@dataclass(frozen=True, slots=True)
class Behavior:
    """A behavior bound to one actor instance."""

    path: str
    request: type[Any]
    response: type[Any] | None
    handler: Handler
    options: BehaviorOptions
    is_async: bool
    capability: str
    decoder: msgspec.json.Decoder[Any]
    # Copied out of ``options``: read for every message.
    expiry_ns: int
    rate_class: str
    one_shot: bool


_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def decoder_for(kind: type[Any]) -> msgspec.json.Decoder[Any]:
    """One JSON decoder per message type (building one costs more than decoding)."""
    decoder = _DECODERS.get(kind)
    if decoder is None:
        decoder = _DECODERS[kind] = msgspec.json.Decoder(kind, dec_hook=quantity.dec_hook)
    return decoder


def bind(spec: BehaviorSpec, handler: Handler) -> Behavior:
    target = inspect.unwrap(handler)
    is_async = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__func__", None)
    )
    return Behavior(
        path=spec.path,
        request=spec.request,
        response=spec.response,
        handler=handler,
        options=spec.options,
        is_async=is_async,
        capability=spec.options.capability or spec.path,
        decoder=decoder_for(spec.request),
        expiry_ns=spec.options.expiry_ns,
        rate_class=spec.options.rate_class,
        one_shot=spec.options.one_shot,
    )


def make_spec(
    path: str,
    request: type[Any] | None,
    response: type[Any] | None,
    options: BehaviorOptions | None,
) -> BehaviorSpec:
    if not path.startswith("/") or len(path) > 1024:
        raise ValueError(f"behavior path: {path!r} is not an absolute path like /dms/node/ping")
    return BehaviorSpec(
        path=path, request=request or Empty, response=response, options=options or BehaviorOptions()
    )


def behavior(
    path: str,
    request: type[Any] | None = None,
    response: type[Any] | None = None,
    *,
    capability: str = "",
    one_shot: bool = False,
    expiry_ns: int = 0,
    topic: str = "",
    rate_class: str = DEFAULT_RATE_CLASS,
    concurrent: bool = False,
) -> Callable[[F], F]:
    """Mark an actor method as the handler of ``path`` (see the module docstring)."""
    spec = make_spec(
        path,
        request,
        response,
        BehaviorOptions(
            capability=capability,
            one_shot=one_shot,
            expiry_ns=expiry_ns,
            topic=topic,
            rate_class=rate_class,
            concurrent=concurrent,
        ),
    )

    def mark(method: F) -> F:
        method.__dms_behavior__ = spec  # type: ignore[attr-defined]
        return method

    return mark


def declared(cls: type[Any]) -> dict[str, tuple[str, BehaviorSpec]]:
    """Behaviors declared with :func:`behavior` on ``cls`` and its bases: path -> (method, spec)."""
    found: dict[str, tuple[str, BehaviorSpec]] = {}
    for klass in reversed(cls.__mro__):
        for name, member in vars(klass).items():
            spec = getattr(member, "__dms_behavior__", None)
            if isinstance(spec, BehaviorSpec):
                found[spec.path] = (name, spec)
    return found
