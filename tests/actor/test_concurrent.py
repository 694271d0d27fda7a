"""Concurrent behaviors: a handler waiting on others does not hold up the actor's mailbox."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import msgspec
import pytest

from dms.actor import ActorStopped, ActorSystem, Empty, Envelope, behavior
from dms.actor.actor import Actor
from dms.clock import LoopClock
from dms.network.memory import Fabric
from dms.security import KeyPair


class Answer(msgspec.Struct, frozen=True):
    text: str


class Waiter(Actor):
    def __init__(self) -> None:
        self.release = anyio.Event()
        self.entered = 0
        self.serial_entered = anyio.Event()

    @behavior("/test/slow", Empty, Answer, concurrent=True)
    async def slow(self, message: Empty, envelope: Envelope) -> Answer:
        self.entered += 1
        await self.release.wait()
        return Answer("slow")

    @behavior("/test/slow-serial", Empty, Answer)
    async def slow_serial(self, message: Empty, envelope: Envelope) -> Answer:
        self.serial_entered.set()
        await self.release.wait()
        return Answer("serial")

    @behavior("/test/quick", Empty, Answer)
    async def quick(self, message: Empty, envelope: Envelope) -> Answer:
        return Answer("quick")

    @behavior("/test/boom", Empty, Answer, concurrent=True)
    async def boom(self, message: Empty, envelope: Envelope) -> Answer:
        raise ValueError("boom")


@pytest.fixture
async def system() -> AsyncIterator[ActorSystem]:
    async with ActorSystem(KeyPair.generate(), Fabric().network("a"), clock=LoopClock()) as sys:
        yield sys


class TestConcurrentBehaviors:
    """A concurrent handler runs in its own task; replies, errors and stops still arrive."""

    async def test_a_waiting_concurrent_handler_lets_others_through(
        self, system: ActorSystem, autojump_clock: object
    ) -> None:
        waiter = Waiter()
        handle = await system.spawn(lambda: waiter, "waiter")
        results: list[str] = []

        async def call(path: str) -> None:
            results.append((await system.invoke(handle, path, Empty(), Answer, timeout_s=60)).text)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "/test/slow")
            tg.start_soon(call, "/test/slow")
            await anyio.sleep(1)
            await call("/test/quick")
            assert results == ["quick"] and waiter.entered == 2
            waiter.release.set()
        assert sorted(results) == ["quick", "slow", "slow"]

    async def test_a_serial_handler_still_holds_the_mailbox(
        self, system: ActorSystem, autojump_clock: object
    ) -> None:
        waiter = Waiter()
        handle = await system.spawn(lambda: waiter, "waiter")
        results: list[str] = []

        async def call(path: str) -> None:
            results.append((await system.invoke(handle, path, Empty(), Answer, timeout_s=60)).text)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "/test/slow-serial")
            await waiter.serial_entered.wait()
            tg.start_soon(call, "/test/quick")
            await anyio.sleep(5)
            assert results == []  # quick waits behind the serial handler
            waiter.release.set()
        assert sorted(results) == ["quick", "serial"]

    async def test_errors_go_back_to_the_caller(
        self, system: ActorSystem, autojump_clock: object
    ) -> None:
        handle = await system.spawn(Waiter, "waiter")
        with pytest.raises(Exception, match="boom"):
            await system.invoke(handle, "/test/boom", Empty(), Answer, timeout_s=5)
        assert (await system.invoke(handle, "/test/quick", Empty(), Answer)).text == "quick"

    async def test_stopping_the_actor_fails_the_waiting_caller_at_once(
        self, system: ActorSystem, autojump_clock: object
    ) -> None:
        handle = await system.spawn(Waiter, "waiter")
        failure: list[BaseException] = []

        async def call() -> None:
            try:
                await system.invoke(handle, "/test/slow", Empty(), Answer, timeout_s=3600)
            except ActorStopped as exc:
                failure.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await anyio.sleep(1)
            started = anyio.current_time()
            await system.stop_actor("waiter")
        assert failure and anyio.current_time() - started < 60
