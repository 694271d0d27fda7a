"""Edges found by running thousands of nodes in one process: concurrent first spawns, and
a node whose graceful stop is cancelled from outside."""

from __future__ import annotations

import anyio
import pytest
import trio
import trio.testing

from dms.actor import ROOT_INBOX, ActorState, ActorSystem
from dms.network.memory import Fabric
from dms.security import KeyPair
from tests.actor.actors import Echo, one_node


class TestConcurrentSpawns:
    """Children spawned at once from many tasks all start, under one supervisor."""

    @pytest.mark.parametrize("count", [2, 50], ids=["two", "fifty"])
    async def test_first_spawns_from_many_tasks_all_start(self, count: int) -> None:
        async with one_node() as node:
            root = node.actor(ROOT_INBOX)
            handles = []

            async def spawn(i: int) -> None:
                handles.append(await root.spawn(Echo, f"child-{i}"))

            async with anyio.create_task_group() as tg:
                for i in range(count):
                    tg.start_soon(spawn, i)
            assert sorted(h.address.inbox for h in handles) == sorted(
                f"child-{i}" for i in range(count)
            )
            for i in range(count):
                assert node.actor(f"child-{i}").cell.state is ActorState.RUNNING


class TestCancelledStop:
    """A node cancelled while it stops gracefully still closes everything it opened."""

    async def test_cancel_during_a_graceful_stop_leaves_trio_consistent(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        fabric = Fabric()
        stopping = anyio.Event()

        async def host(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            async with ActorSystem(KeyPair.generate(), fabric.network("a")) as node:
                await node.spawn(Echo, "echo")
                task_status.started()
                await stopping.wait()
            # Leaving the block stops the actors gracefully; the cancel below lands in it.

        with trio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                await tg.start(host)
                stopping.set()
                await trio.lowlevel.checkpoint()
                scope.cancel()
        assert scope.cancelled_caught
        assert fabric.running() == []
