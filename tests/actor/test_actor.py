"""Actors on one node: send, invoke, deadlines, failures, stopping, children, statistics."""

from __future__ import annotations

from typing import cast

import anyio
import msgspec
import pytest
import trio
import trio.testing

from dms.actor import (
    STATS_BEHAVIOR,
    Actor,
    ActorState,
    ActorStopped,
    BadMessage,
    Empty,
    Envelope,
    ErrorCode,
    Handle,
    InvokeTimeout,
    RemoteError,
    Restart,
    SystemStatistics,
    UnknownActor,
    UnknownBehavior,
    behavior,
)
from dms.actor.handle import Address
from dms.security import KeyPair, WrongAudience
from tests.actor.actors import Echo, Note, Ping, Pong, one_node


def echo_of(node: object, inbox: str = "echo") -> Echo:
    return cast(Echo, node.actor(inbox))  # type: ignore[attr-defined]


class TestSendAndInvoke:
    """Messages reach typed handlers, one at a time, in order; invokes return typed replies."""

    @pytest.mark.parametrize("path", ["/test/tell", "/test/async-tell"], ids=["plain", "async"])
    async def test_sent_messages_arrive_in_order(self, path: str) -> None:
        async with one_node() as node:
            handle = await node.spawn(Echo, "echo")
            for i in range(50):
                await node.send(handle, path, Ping(i))
            await anyio.wait_all_tasks_blocked()
            assert echo_of(node).seen == list(range(50))

    @pytest.mark.parametrize("path", ["/test/echo", "/test/slow-echo"], ids=["plain", "async"])
    async def test_invoke_returns_the_typed_reply(
        self, path: str, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with one_node() as node:
            handle = await node.spawn(Echo, "echo")
            assert await node.invoke(handle, path, Ping(7), Pong) == Pong(7)

    async def test_a_handler_error_goes_back_to_the_caller_and_the_actor_carries_on(
        self,
    ) -> None:
        async with one_node() as node:
            handle = await node.spawn(Echo, "echo")
            with pytest.raises(RemoteError) as caught:
                await node.invoke(handle, "/test/boom", Ping(1), Pong)
            assert caught.value.code is ErrorCode.HANDLER_FAILED
            assert (caught.value.error_type, caught.value.remote_message) == (
                "ValueError",
                "boom 1",
            )
            assert isinstance(caught.value.__cause__, ValueError)
            assert await node.invoke(handle, "/test/echo", Ping(2), Pong) == Pong(2)

    async def test_a_message_of_the_wrong_type_is_refused_naming_the_expected_type(
        self,
    ) -> None:
        async with one_node() as node:
            handle = await node.spawn(Echo, "echo")
            with pytest.raises(BadMessage, match='payload: "Note" is not a Ping'):
                await node.send(handle, "/test/tell", Note("hi"))

    async def test_an_unknown_inbox_and_an_unknown_behavior_are_refused(self) -> None:
        async with one_node() as node:
            handle = await node.spawn(Echo, "echo")
            elsewhere = Handle(handle.id, handle.did, Address(node.peer_id, "nobody"))
            with pytest.raises(UnknownActor, match="'nobody'"):
                await node.send(elsewhere, "/test/tell", Ping(1))
            with pytest.raises(UnknownBehavior, match="'/test/nope' is not registered"):
                await node.invoke(handle, "/test/nope", Ping(1), Pong)

    async def test_a_message_for_another_did_is_refused_as_wrong_audience(self) -> None:
        async with one_node() as node:
            handle = await node.spawn(Echo, "echo")
            stranger = Handle(handle.id, KeyPair.generate().did, handle.address)
            with pytest.raises(WrongAudience, match="addressed to"):
                await node.send(stranger, "/test/tell", Ping(1))

    async def test_a_one_shot_behavior_answers_once(self) -> None:
        async with one_node() as node:
            handle = await node.spawn(Echo, "echo")
            assert await node.invoke(handle, "/test/once", Ping(1), Pong) == Pong(1)
            with pytest.raises(UnknownBehavior):
                await node.invoke(handle, "/test/once", Ping(2), Pong)

    async def test_a_behavior_registered_at_run_time_with_an_expiry_disappears(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with one_node() as node:
            handle = await node.spawn(Echo, "echo")
            actor = echo_of(node)
            expiry = node.clock.now_ns() + 10 * 1_000_000_000
            from dms.actor import BehaviorOptions

            actor.register(
                "/test/temporary",
                Ping,
                Pong,
                lambda message, envelope: Pong(-message.n),
                BehaviorOptions(expiry_ns=expiry),
            )
            assert await node.invoke(handle, "/test/temporary", Ping(3), Pong) == Pong(-3)
            await anyio.sleep(10)
            with pytest.raises(UnknownBehavior):
                await node.invoke(handle, "/test/temporary", Ping(3), Pong)


class TestDeadlines:
    """No caller waits forever: every invoke has a deadline, measured in virtual time."""

    async def test_an_invoke_without_a_reply_times_out_at_its_deadline(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with one_node() as node:
            handle = await node.spawn(Echo, "echo")
            start = trio.current_time()
            with pytest.raises(InvokeTimeout, match="no reply within 2.5 s"):
                await node.invoke(handle, "/test/hang", Ping(1), Pong, timeout_s=2.5)
            assert trio.current_time() - start == pytest.approx(2.5)

    async def test_the_default_deadline_comes_from_the_config(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with one_node(invoke_timeout="7s") as node:
            handle = await node.spawn(Echo, "echo")
            start = trio.current_time()
            with pytest.raises(InvokeTimeout):
                await node.invoke(handle, "/test/hang", Ping(1), Pong)
            assert trio.current_time() - start == pytest.approx(7)

    async def test_a_message_that_expired_in_the_mailbox_is_not_handled(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with one_node() as node:
            handle = await node.spawn(Echo, "echo")
            async with anyio.create_task_group() as tg:
                tg.start_soon(node.invoke, handle, "/test/gated", Ping(1), Pong)
                await echo_of(node).entered.wait()
                await node.send(handle, "/test/async-tell", Ping(2), ttl_ns=1_000_000_000)
                await anyio.sleep(2)
                echo_of(node).gate.set()
            assert echo_of(node).seen == [1]
            assert node.statistics().refusals == {"Expired": 1}


class TestStopping:
    """A stopping actor fails what it holds: the message in hand and everything queued."""

    async def test_stopping_fails_the_invoke_in_hand_and_every_queued_one(self) -> None:
        async with one_node() as node:
            handle = await node.spawn(Echo, "echo", shutdown_ns=0)
            errors: list[BaseException] = []

            async def call(n: int) -> None:
                try:
                    await node.invoke(handle, "/test/gated", Ping(n), Pong)
                except ActorStopped as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                for n in range(5):
                    tg.start_soon(call, n)
                await anyio.wait_all_tasks_blocked()
                assert echo_of(node).cell.mailbox.items
                await node.stop_actor("echo")
            assert len(errors) == 5
            assert all("'echo' stopped" in str(e) for e in errors)

    async def test_a_graceful_stop_lets_the_message_in_hand_finish(self) -> None:
        async with one_node() as node:
            handle = await node.spawn(Echo, "echo")
            results: list[Pong] = []

            async def call() -> None:
                results.append(await node.invoke(handle, "/test/gated", Ping(1), Pong))

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                actor = echo_of(node)
                await actor.entered.wait()
                tg.start_soon(node.stop_actor, "echo")
                await anyio.wait_all_tasks_blocked()
                assert actor.cell.state is ActorState.RUNNING
                actor.gate.set()
            assert results == [Pong(1)]

    async def test_sending_to_a_stopped_actor_is_refused(self) -> None:
        async with one_node() as node:
            handle = await node.spawn(Echo, "echo", restart=Restart.TEMPORARY)
            await node.stop_actor("echo")
            with pytest.raises(UnknownActor):
                await node.send(handle, "/test/tell", Ping(1))


class TestFailures:
    """A sent message whose handler raises crashes the actor; its supervisor restarts it."""

    @pytest.mark.parametrize("path", ["/test/crash", "/test/async-crash"], ids=["plain", "async"])
    async def test_a_crashed_actor_is_restarted_fresh(self, path: str) -> None:
        async with one_node() as node:
            handle = await node.spawn(Echo, "echo")
            await node.send(handle, "/test/tell", Ping(1))
            first = echo_of(node)
            await node.send(handle, path, Ping(2))
            await anyio.wait_all_tasks_blocked()
            second = echo_of(node)
            assert second is not first and second.seen == []
            assert await node.invoke(handle, "/test/echo", Ping(3), Pong) == Pong(3)
            child = next(c for c in node.supervisor.statistics().children if c.id == "echo")
            assert (child.restarts, child.failures) == (1, {"RuntimeError": 1})
            assert child.last_failure is not None and child.last_failure.message == "crash 2"


class Parent(Actor):
    """Spawns a child actor when asked to."""

    @behavior("/test/spawn", Note)
    async def spawn_child(self, message: Note, envelope: Envelope) -> None:
        await self.spawn(Echo, message.text)


class TestChildren:
    """Actors own child actors; a parent's stop stops its children first."""

    async def test_a_child_actor_answers_and_is_restarted_by_its_parent(self) -> None:
        async with one_node() as node:
            parent = await node.spawn(Parent, "parent")
            await node.invoke(parent, "/test/spawn", Note("kid"), type(None))
            kid = node.handle_of("kid")
            assert await node.invoke(kid, "/test/echo", Ping(4), Pong) == Pong(4)
            await node.send(kid, "/test/crash", Ping(0))
            await anyio.wait_all_tasks_blocked()
            assert await node.invoke(kid, "/test/echo", Ping(5), Pong) == Pong(5)
            stats = node.statistics()
            parent_stats = next(a for a in stats.actors if a.inbox == "parent")
            assert parent_stats.children is not None
            assert parent_stats.children.children[0].restarts == 1

    async def test_a_child_that_keeps_failing_takes_its_parent_down(self) -> None:
        async with one_node() as node:
            parent = await node.spawn(Parent, "parent")
            await node.invoke(parent, "/test/spawn", Note("kid"), type(None))
            first = node.actor("parent")
            for n in range(2):
                await node.send(node.handle_of("kid"), "/test/crash", Ping(n))
                await anyio.wait_all_tasks_blocked()
            assert node.actor("parent") is not first
            stats = next(c for c in node.supervisor.statistics().children if c.id == "parent")
            assert stats.failures == {"RestartIntensityExceeded": 1}
            with pytest.raises(UnknownActor):
                node.handle_of("kid")

    async def test_stopping_a_parent_stops_its_children(self) -> None:
        async with one_node() as node:
            parent = await node.spawn(Parent, "parent", restart=Restart.TEMPORARY)
            await node.invoke(parent, "/test/spawn", Note("kid"), type(None))
            kid = echo_of(node, "kid")
            await node.stop_actor("parent")
            assert kid._cell is None
            with pytest.raises(UnknownActor):
                node.handle_of("kid")


class TestMailbox:
    """A full mailbox makes senders wait (backpressure)."""

    async def test_a_sender_waits_while_the_mailbox_is_full(self) -> None:
        async with one_node(mailbox_capacity=2) as node:
            handle = await node.spawn(Echo, "echo")
            sent: list[int] = []

            async def sender() -> None:
                for n in range(1, 5):
                    await node.send(handle, "/test/async-tell", Ping(n))
                    sent.append(n)

            async with anyio.create_task_group() as tg:
                tg.start_soon(node.invoke, handle, "/test/gated", Ping(0), Pong)
                await echo_of(node).entered.wait()
                tg.start_soon(sender)
                await anyio.wait_all_tasks_blocked()
                assert sent == [1, 2]
                echo_of(node).gate.set()
            await anyio.wait_all_tasks_blocked()
            assert echo_of(node).seen == [0, 1, 2, 3, 4]


class TestStatistics:
    """Statistics are readable through the root actor's behavior."""

    async def test_the_stats_behavior_reports_actors_supervisors_and_refusals(self) -> None:
        async with one_node() as node:
            handle = await node.spawn(Echo, "echo")
            await node.invoke(handle, "/test/echo", Ping(1), Pong)
            await node.send(handle, "/test/tell", Ping(1))
            stats = await node.invoke(node.root, STATS_BEHAVIOR, Empty(), SystemStatistics)
            assert stats.did == node.did and stats.peer_id == node.peer_id
            echo = next(a for a in stats.actors if a.inbox == "echo")
            assert (echo.processed, echo.failed) == (2, 0)
            assert [c.id for c in stats.supervisor.children] == ["root", "echo"]
            assert msgspec.json.decode(msgspec.json.encode(stats), type=SystemStatistics) == stats
