"""Actors on different nodes over the in-memory network: signed frames, replies, topics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import cast

import anyio
import msgspec
import pytest
import trio
import trio.testing

from dms.actor import (
    Actor,
    ActorSystem,
    Envelope,
    ErrorCode,
    InvokeTimeout,
    RemoteError,
    behavior,
)
from dms.actor.handle import Address, Handle
from dms.network import PeerUnreachable
from dms.network.memory import Fabric, LinkSpec
from dms.security import KeyPair, TrustContext
from tests.actor.actors import Echo, Note, Ping, Pong, system

MS = 1_000_000


class WrongPing(msgspec.Struct, frozen=True):
    n: str


@asynccontextmanager
async def two_nodes(
    fabric: Fabric | None = None, **kw: object
) -> AsyncIterator[tuple[ActorSystem, ActorSystem]]:
    """Node a and node b; each trusts the other's key as a root."""
    fabric = fabric or Fabric()
    key_a, key_b = KeyPair.generate(), KeyPair.generate()
    trust_a = TrustContext(local_did=key_a.did, roots=[key_b.did])
    trust_b = TrustContext(local_did=key_b.did, roots=[key_a.did])
    async with (
        system(fabric, "a", keypair=key_a, trust=trust_a, **kw) as a,  # type: ignore[arg-type]
        system(fabric, "b", keypair=key_b, trust=trust_b, **kw) as b,  # type: ignore[arg-type]
    ):
        yield a, b


class TestRemoteInvoke:
    """Invokes travel as signed frames and come back typed, errors included."""

    async def test_an_invoke_crosses_the_network_and_pays_the_round_trip(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        fabric = Fabric(default_link=LinkSpec(latency_ns=20 * MS))
        async with two_nodes(fabric) as (a, b):
            echo = await b.spawn(Echo, "echo")
            start = trio.current_time()
            assert await a.invoke(echo, "/test/echo", Ping(5), Pong) == Pong(5)
            assert trio.current_time() - start == pytest.approx(0.040)
            assert await a.invoke(echo, "/test/slow-echo", Ping(6), Pong) == Pong(6)

    async def test_a_sent_message_is_handled_on_the_other_node(self) -> None:
        async with two_nodes() as (a, b):
            echo = await b.spawn(Echo, "echo")
            for n in range(3):
                await a.send(echo, "/test/tell", Ping(n))
            await anyio.wait_all_tasks_blocked()
            assert cast(Echo, b.actor("echo")).seen == [0, 1, 2]

    async def test_a_remote_handler_error_comes_back_as_a_remote_error(self) -> None:
        async with two_nodes() as (a, b):
            echo = await b.spawn(Echo, "echo")
            with pytest.raises(RemoteError) as caught:
                await a.invoke(echo, "/test/boom", Ping(9), Pong)
            assert (caught.value.code, caught.value.error_type) == (
                ErrorCode.HANDLER_FAILED,
                "ValueError",
            )
            assert caught.value.remote_message == "boom 9"

    async def test_a_payload_that_does_not_decode_is_refused_naming_the_field(self) -> None:
        async with two_nodes() as (a, b):
            echo = await b.spawn(Echo, "echo")
            with pytest.raises(RemoteError) as caught:
                await a.invoke(echo, "/test/echo", WrongPing("seven"), Pong)
            assert caught.value.code is ErrorCode.BAD_REQUEST
            assert caught.value.field == "n"
            assert "Expected `int`, got `str`" in caught.value.remote_message
            assert b.statistics().refusals == {"BadMessage": 1}

    async def test_an_unknown_remote_behavior_is_refused(self) -> None:
        async with two_nodes() as (a, b):
            echo = await b.spawn(Echo, "echo")
            with pytest.raises(RemoteError) as caught:
                await a.invoke(echo, "/test/missing", Ping(1), Pong)
            assert caught.value.code is ErrorCode.UNKNOWN_BEHAVIOR

    async def test_a_reply_that_does_not_decode_as_the_expected_type_is_a_bad_response(
        self,
    ) -> None:
        async with two_nodes() as (a, b):
            echo = await b.spawn(Echo, "echo")
            with pytest.raises(RemoteError) as caught:
                await a.invoke(echo, "/test/echo", Ping(1), Note)
            assert (caught.value.code, caught.value.error_type) == (
                ErrorCode.BAD_RESPONSE,
                "ValidationError",
            )
            assert "missing required field `text`" in caught.value.remote_message

    async def test_a_lost_request_times_out_at_its_deadline(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        fabric = Fabric(default_link=LinkSpec(loss=1.0))
        async with two_nodes(fabric) as (a, b):
            echo = await b.spawn(Echo, "echo")
            start = trio.current_time()
            with pytest.raises(InvokeTimeout):
                await a.invoke(echo, "/test/echo", Ping(1), Pong, timeout_s=3)
            assert trio.current_time() - start == pytest.approx(3)
            assert a.statistics().pending_invokes == 0

    async def test_an_invoke_waiting_for_room_on_a_full_link_times_out_at_its_deadline(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        fabric = Fabric(link_capacity=1)
        key = KeyPair.generate()
        stuck = anyio.Event()
        async with (
            system(fabric, "a", trust=TrustContext(local_did="", roots=[key.did])) as a,
            fabric.network("b") as b,  # a node whose receiver hangs on the first frame
        ):

            async def hang(_peer: str, _frame: bytes) -> None:
                await stuck.wait()

            b.on_receive(hang)
            target = Handle(key.public_key.hex(), key.did, Address("b", "echo"))
            for sent in range(2):  # one frame in the hung receiver, one fills the link
                assert a.network.ready("b"), sent
                with pytest.raises(InvokeTimeout):
                    await a.invoke(target, "/test/echo", Ping(sent), Pong, timeout_s=1)
            assert not a.network.ready("b")
            start = trio.current_time()
            with trio.fail_after(60), pytest.raises(InvokeTimeout):
                await a.invoke(target, "/test/echo", Ping(3), Pong, timeout_s=2)
            assert trio.current_time() - start == pytest.approx(2)  # not stuck in send()
            assert a.statistics().pending_invokes == 0
            stuck.set()

    async def test_a_partitioned_peer_is_unreachable(self) -> None:
        fabric = Fabric()
        async with two_nodes(fabric) as (a, b):
            echo = await b.spawn(Echo, "echo")
            fabric.partition({"a"}, {"b"})
            with pytest.raises(PeerUnreachable, match="partitioned"):
                await a.invoke(echo, "/test/echo", Ping(1), Pong)

    async def test_queued_remote_invokes_fail_with_actor_stopped_when_the_actor_stops(
        self,
    ) -> None:
        async with two_nodes() as (a, b):
            echo = await b.spawn(Echo, "echo", shutdown_ns=0)
            codes: list[ErrorCode] = []

            async def call(n: int) -> None:
                try:
                    await a.invoke(echo, "/test/gated", Ping(n), Pong)
                except RemoteError as exc:
                    codes.append(exc.code)

            async with anyio.create_task_group() as tg:
                for n in range(3):
                    tg.start_soon(call, n)
                await anyio.wait_all_tasks_blocked()
                await b.stop_actor("echo")
            assert codes == [ErrorCode.ACTOR_STOPPED] * 3

    async def test_with_local_wire_local_messages_are_signed_and_verified(self) -> None:
        async with system(Fabric(), "a", local_wire=True) as node:
            echo = await node.spawn(Echo, "echo")
            assert await node.invoke(echo, "/test/echo", Ping(2), Pong) == Pong(2)
            with pytest.raises(RemoteError) as caught:
                await node.invoke(echo, "/test/echo", WrongPing("x"), Pong)
            assert caught.value.field == "n"


class Listener(Actor):
    """Hears adverts on a topic (declared with the behavior's topic option)."""

    def __init__(self) -> None:
        self.heard: list[str] = []

    @behavior("/test/advert", Note, topic="/test/status")
    def advert(self, message: Note, envelope: Envelope) -> None:
        self.heard.append(f"{message.text} from {envelope.sender.did[-6:]}")


class TestTopics:
    """publish() reaches every subscribed actor on every node, the publisher's own included."""

    async def test_every_subscriber_hears_a_broadcast(self) -> None:
        async with two_nodes() as (a, b):
            await a.spawn(Listener, "listener")
            await b.spawn(Listener, "listener")
            await a.publish("/test/status", "/test/advert", Note("hello"))
            await anyio.wait_all_tasks_blocked()
            tail = a.did[-6:]
            for node in (a, b):
                assert cast(Listener, node.actor("listener")).heard == [f"hello from {tail}"]

    async def test_a_broadcast_from_an_untrusted_publisher_is_refused(self) -> None:
        fabric = Fabric()
        async with (
            two_nodes(fabric) as (a, b),
            system(fabric, "stranger") as stranger,
        ):
            await b.spawn(Listener, "listener")
            await stranger.publish("/test/status", "/test/advert", Note("spam"))
            await anyio.wait_all_tasks_blocked()
            assert cast(Listener, b.actor("listener")).heard == []
            assert b.statistics().refusals == {"Unauthorized": 1}
            assert a.statistics().refusals == {}

    async def test_an_actor_can_subscribe_and_unsubscribe_at_run_time(self) -> None:
        async with two_nodes() as (a, b):
            await b.spawn(Echo, "echo")
            actor = cast(Echo, b.actor("echo"))
            await actor.subscribe("/test/numbers", "/test/tell")
            await a.publish("/test/numbers", "/test/tell", Ping(1))
            await anyio.wait_all_tasks_blocked()
            await actor.unsubscribe("/test/numbers")
            await a.publish("/test/numbers", "/test/tell", Ping(2))
            await anyio.wait_all_tasks_blocked()
            assert actor.seen == [1]


class TestSimulation:
    """Hundreds of whole nodes in one process, on virtual time."""

    async def test_five_hundred_nodes_each_invoke_their_neighbour(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        count = 500
        fabric = Fabric(seed=3, default_link=LinkSpec(latency_ns=10 * MS))
        keys = [KeyPair.generate() for _ in range(count)]
        async with AsyncExitStack() as stack:
            nodes = []
            for i, key in enumerate(keys):
                # Node i is called by node i - 1 only: that is the one key it trusts.
                trust = TrustContext(local_did=key.did, roots=[keys[i - 1].did])
                node = system(fabric, f"n{i}", keypair=key, trust=trust)
                nodes.append(await stack.enter_async_context(node))
            echoes = [await node.spawn(Echo, "echo") for node in nodes]
            answers: list[Pong] = []
            start = trio.current_time()

            async def ask(i: int) -> None:
                answers.append(
                    await nodes[i].invoke(echoes[(i + 1) % count], "/test/echo", Ping(i), Pong)
                )

            async with anyio.create_task_group() as tg:
                for i in range(count):
                    tg.start_soon(ask, i)
            assert sorted(a.n for a in answers) == list(range(count))
            assert trio.current_time() - start == pytest.approx(0.020)
