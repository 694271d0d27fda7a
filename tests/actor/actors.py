"""Messages and actors shared by the actor tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import msgspec

from dms.actor import Actor, ActorSystem, Envelope, RateLimitPolicy, behavior
from dms.actor.auth import Authorizer
from dms.clock import LoopClock
from dms.config import ActorConfig
from dms.network.memory import Fabric
from dms.security import KeyPair

NS_PER_S = 1_000_000_000


class Ping(msgspec.Struct, frozen=True):
    n: int


class Pong(msgspec.Struct, frozen=True):
    n: int


class Note(msgspec.Struct, frozen=True):
    text: str


class Echo(Actor):
    """Plain and async handlers; remembers what it was told."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.gate = anyio.Event()
        self.entered = anyio.Event()

    @behavior("/test/echo", Ping, Pong)
    def echo(self, message: Ping, envelope: Envelope) -> Pong:
        return Pong(message.n)

    @behavior("/test/slow-echo", Ping, Pong)
    async def slow_echo(self, message: Ping, envelope: Envelope) -> Pong:
        await anyio.sleep(1)
        return Pong(message.n)

    @behavior("/test/tell", Ping)
    def tell(self, message: Ping, envelope: Envelope) -> None:
        self.seen.append(message.n)

    @behavior("/test/async-tell", Ping)
    async def async_tell(self, message: Ping, envelope: Envelope) -> None:
        self.seen.append(message.n)

    @behavior("/test/gated", Ping, Pong)
    async def gated(self, message: Ping, envelope: Envelope) -> Pong:
        self.entered.set()
        await self.gate.wait()
        self.seen.append(message.n)
        return Pong(message.n)

    @behavior("/test/hang", Ping, Pong)
    async def hang(self, message: Ping, envelope: Envelope) -> Pong:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    @behavior("/test/boom", Ping, Pong)
    def boom(self, message: Ping, envelope: Envelope) -> Pong:
        raise ValueError(f"boom {message.n}")

    @behavior("/test/crash", Ping)
    def crash(self, message: Ping, envelope: Envelope) -> None:
        raise RuntimeError(f"crash {message.n}")

    @behavior("/test/async-crash", Ping)
    async def async_crash(self, message: Ping, envelope: Envelope) -> None:
        raise RuntimeError(f"crash {message.n}")

    @behavior("/public/hello", Ping, Pong)
    def hello(self, message: Ping, envelope: Envelope) -> Pong:
        return Pong(message.n)

    @behavior("/test/once", Ping, Pong, one_shot=True)
    def once(self, message: Ping, envelope: Envelope) -> Pong:
        return Pong(message.n)


def system(
    fabric: Fabric,
    name: str,
    *,
    keypair: KeyPair | None = None,
    trust: Authorizer | None = None,
    rate_limits: RateLimitPolicy | None = None,
    invoke_timeout: str = "30s",
    **kw: Any,
) -> ActorSystem:
    return ActorSystem(
        keypair or KeyPair.generate(),
        fabric.network(name),
        trust=trust,
        clock=LoopClock(),
        config=ActorConfig(invoke_timeout=invoke_timeout),
        rate_limits=rate_limits,
        **kw,
    )


@asynccontextmanager
async def one_node(**kw: Any) -> AsyncIterator[ActorSystem]:
    async with system(Fabric(), "a", **kw) as node:
        yield node
