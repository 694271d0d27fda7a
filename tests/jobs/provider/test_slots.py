"""Commit, allocate and revert: idempotent, in any order, and the pools always come back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
import trio
import trio.testing

from dms.actor import RemoteError
from dms.jobs.protocol import (
    ALLOCATE,
    COMMIT,
    AllocateReply,
    AllocateRequest,
    AllocationManifest,
    CommitReply,
    CommitRequest,
    PortBinding,
)
from dms.jobs.provider import SlotState
from dms.jobs.status import AllocationStatus
from dms.resources import ReservationState
from dms.security import KeyPair, TrustContext
from dms.types import new_id
from tests.jobs.provider.harness import (
    PORTS,
    SECOND,
    Cluster,
    cluster,
    need,
    null_manifest,
)


class TestCommit:
    """A commit turns a bid's hold into the slot's reservation."""

    async def test_a_commit_takes_over_the_hold_and_fills_in_dynamic_ports(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            bid = await c.bid(need(cores=2))
            ports = (
                PortBinding(allocation="web", private=80),
                PortBinding(allocation="web", private=443, public=PORTS.start + 50),
                PortBinding(allocation="db", private=5432),
            )
            reply = await c.commit(bid, "s1", ports=ports)
            assert [p.public for p in reply.ports] == [
                PORTS.start,
                PORTS.start + 50,
                PORTS.start + 1,
            ]
            assert [p.private for p in reply.ports] == [80, 443, 5432]
            reservation = await c.manager.reservation("s1")
            assert reservation is not None and reservation.state is ReservationState.COMMITTED
            pools = await c.manager.pools()
            assert pools.committed.cpu.cores == 2 and pools.held.cpu.cores == 0

    async def test_a_repeated_commit_gets_the_first_answer(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            bid = await c.bid(need(cores=2))
            first = await c.commit(bid, "s1", ports=(PortBinding(allocation="x", private=1),))
            assert (
                await c.commit(bid, "s1", ports=(PortBinding(allocation="x", private=1),)) == first
            )
            assert (await c.manager.pools()).committed.cpu.cores == 2

    async def test_a_conflicting_commit_is_refused(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            bid = await c.bid(need(cores=2))
            await c.commit(bid, "s1")
            with pytest.raises(RemoteError, match="slot_id"):
                await c.commit(bid, "s1", ttl_ns=5 * SECOND)
            with pytest.raises(RemoteError, match="already committed"):
                await c.commit(bid, "s2")

    async def test_an_unknown_bid_is_refused(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            bid = await c.bid(need())
            with pytest.raises(RemoteError, match="bid_id"):
                await c.commit(msgspec.structs.replace(bid, bid_id="bid-nope"), "s1")

    async def test_a_commit_that_is_never_allocated_lapses(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            bid = await c.bid(need(cores=2))
            await c.commit(bid, "s1", ttl_ns=10 * SECOND)
            await anyio.sleep(11)
            assert await c.free_is_onboarded()
            with pytest.raises(RemoteError, match="too late|expired"):
                await c.allocate("s1", null_manifest())
            assert await c.free_is_onboarded()

    async def test_only_the_orchestrator_of_the_bid_may_commit_it(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            bid = await c.bid(need())
            stranger = KeyPair.generate()
            c.provider.authorizer.add_root(stranger.did)  # type: ignore[attr-defined]
            from dms.actor import ActorSystem

            async with ActorSystem(
                stranger,
                c.fabric.network("stranger"),
                trust=TrustContext(local_did=stranger.did, roots=[c.provider.did]),
                clock=c.provider.clock,
            ) as other:
                request = CommitRequest(
                    deployment_id=c.deployment_id, bid_id=bid.bid_id, slot_id="s1", ttl_ns=SECOND
                )
                with pytest.raises(RemoteError) as caught:
                    await other.invoke(c.root, COMMIT, request, CommitReply)
                assert caught.value.code.value == "unauthorized"
            assert (await c.manager.pools()).held.cpu.cores == 1


class TestAllocate:
    """Allocate starts one PENDING Allocation actor per manifest."""

    async def test_allocate_creates_pending_allocations_and_repeats_answer_the_same(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            bid = await c.bid(need(cores=1))
            await c.commit(bid, "s1")
            manifests = (null_manifest(name="a"), null_manifest(name="b"))
            reply = await c.allocate("s1", *manifests)
            assert set(reply.handles) == {m.allocation_id for m in manifests}
            assert await c.allocate("s1", *manifests) == reply
            states = {s.allocation_id: s.status for s in c.service.allocations()}
            assert set(states.values()) == {AllocationStatus.PENDING}
            reservation = await c.manager.reservation("s1")
            assert reservation is not None and reservation.state is ReservationState.ALLOCATED
            with pytest.raises(RemoteError, match="other allocations"):
                await c.allocate("s1", null_manifest())

    async def test_manifests_asking_more_than_the_bid_are_refused(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            bid = await c.bid(need(cores=1))
            await c.commit(bid, "s1")
            with pytest.raises(RemoteError, match="committed resources"):
                await c.allocate("s1", null_manifest(cpu=2))
            assert c.service.allocations() == []
            assert (await c.manager.pools()).committed.cpu.cores == 1

    @pytest.mark.parametrize(
        ("manifest", "field"),
        [
            pytest.param(null_manifest(allocation_id="bad/id"), "allocation_id", id="bad-id"),
            pytest.param(null_manifest(["nonsense"]), "execution.args", id="bad-null-args"),
        ],
    )
    async def test_a_bad_manifest_is_refused_naming_the_field_and_nothing_starts(
        self,
        tmp_path: Path,
        autojump_clock: trio.testing.MockClock,
        manifest: object,
        field: str,
    ) -> None:
        async with cluster(tmp_path) as c:
            bid = await c.bid(need())
            await c.commit(bid, "s1")
            with pytest.raises(RemoteError) as caught:
                await c.allocate("s1", manifest)  # type: ignore[arg-type]
            assert field in str(caught.value)
            assert c.service.allocations() == []
            slot = c.service.slot("s1")
            assert slot is not None and slot.state is SlotState.COMMITTED

    async def test_an_unknown_slot_is_refused(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            request = AllocateRequest(
                deployment_id=c.deployment_id,
                slot_id="nope",
                orchestrator=c.recorder_handle,
                allocations=(null_manifest(),),
            )
            with pytest.raises(RemoteError, match="never committed"):
                await c.orchestrator.invoke(c.root, ALLOCATE, request, AllocateReply)


class TestCommitInAllocate:
    """An allocate request that carries the commit does both in one step, as two would."""

    def request(
        self, c: Cluster, bid_id: str, slot_id: str, *manifests: AllocationManifest, **commit: Any
    ) -> AllocateRequest:
        fields: dict[str, Any] = {"ttl_ns": 30 * SECOND, **commit}
        return AllocateRequest(
            deployment_id=c.deployment_id,
            slot_id=slot_id,
            orchestrator=c.recorder_handle,
            allocations=manifests,
            commit=CommitRequest(
                deployment_id=c.deployment_id, bid_id=bid_id, slot_id=slot_id, **fields
            ),
        )

    async def test_commit_and_allocate_in_one_request_with_ports_filled_in(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            bid = await c.bid(need(cores=1))
            ports = (PortBinding(allocation="web", private=80),)
            manifest = null_manifest(name="web", cpu=1)
            request = self.request(c, bid.bid_id, "s1", manifest, ports=ports)
            reply = await c.orchestrator.invoke(c.root, ALLOCATE, request, AllocateReply)
            assert reply.committed is not None
            assert [p.public for p in reply.committed.ports] == [PORTS.start]
            assert set(reply.handles) == {manifest.allocation_id}
            allocation = c.service.allocation(manifest.allocation_id)
            assert allocation is not None and allocation.ports == {80: PORTS.start}
            assert allocation.status is AllocationStatus.PENDING  # waits for its start
            reservation = await c.manager.reservation("s1")
            assert reservation is not None and reservation.state is ReservationState.ALLOCATED
            again = await c.orchestrator.invoke(c.root, ALLOCATE, request, AllocateReply)
            assert again == reply
            assert len(c.service.allocations()) == 1

    async def test_a_commit_for_another_slot_is_refused_and_nothing_is_taken(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            bid = await c.bid(need(cores=1))
            request = self.request(c, bid.bid_id, "s1", null_manifest(cpu=1))
            assert request.commit is not None
            wrong = msgspec.structs.replace(
                request, commit=msgspec.structs.replace(request.commit, slot_id="s2")
            )
            with pytest.raises(RemoteError, match="commit.slot_id"):
                await c.orchestrator.invoke(c.root, ALLOCATE, wrong, AllocateReply)
            pools = await c.manager.pools()
            assert pools.committed.cpu.cores == 0 and pools.held.cpu.cores == 1
            assert c.service.allocations() == []

    async def test_an_unknown_bid_is_refused(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            request = self.request(c, "bid-nope", "s1", null_manifest(cpu=1))
            with pytest.raises(RemoteError, match="bid"):
                await c.orchestrator.invoke(c.root, ALLOCATE, request, AllocateReply)
            assert c.service.allocations() == []
            assert await c.free_is_onboarded()


class TestRevert:
    """Revert gives back a bid or a slot once; later and repeated reverts release nothing."""

    async def test_reverting_a_bid_releases_its_hold_once(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            bid = await c.bid(need(cores=2))
            assert await c.revert(bid_id=bid.bid_id) is True
            assert await c.free_is_onboarded()
            assert await c.revert(bid_id=bid.bid_id) is False
            with pytest.raises(RemoteError, match="reverted"):
                await c.commit(bid, "s1")
            assert await c.free_is_onboarded()

    async def test_a_commit_arriving_after_its_revert_revives_nothing(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            bid = await c.bid(need(cores=2))
            assert await c.revert(slot_id="s1") is False
            with pytest.raises(RemoteError, match="reverted"):
                await c.commit(bid, "s1")
            assert await c.revert(bid_id=bid.bid_id) is True
            assert await c.free_is_onboarded()

    async def test_a_commit_of_an_expired_and_reverted_bid_revives_nothing(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            bid = await c.bid(need(cores=2), hold_ns=5 * SECOND)
            await anyio.sleep(6)
            assert await c.revert(bid_id=bid.bid_id) is False
            with pytest.raises(RemoteError, match="reverted"):
                await c.commit(bid, "s1")
            assert await c.free_is_onboarded()

    async def test_reverting_a_committed_slot_releases_it(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            bid = await c.bid(need(cores=2))
            await c.commit(bid, "s1")
            assert await c.revert(slot_id="s1", bid_id=bid.bid_id) is True
            assert await c.free_is_onboarded()
            assert await c.revert(slot_id="s1", bid_id=bid.bid_id) is False
            with pytest.raises(RemoteError, match="reverted"):
                await c.commit(bid, "s1")
            with pytest.raises(RemoteError, match="reverted"):
                await c.allocate("s1", null_manifest())

    async def test_reverting_an_allocated_slot_stops_its_allocations(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            work = null_manifest(["duration=1h"])
            idle = null_manifest(name="idle")
            handles = await c.deploy(work, idle)
            await c.start(handles[work.allocation_id])
            await c.recorder.until(
                lambda: AllocationStatus.RUNNING in c.recorder.statuses(work.allocation_id)
            )
            assert await c.revert(slot_id=c.service.allocations()[0].slot_id) is True
            stopped = await c.ended(work.allocation_id, idle.allocation_id)
            assert {e.status for e in stopped} == {AllocationStatus.STOPPED}
            assert await c.free_is_onboarded()
            assert c.executors.list()[0].status.value == "cancelled"

    async def test_a_revert_after_the_allocations_ended_releases_nothing_more(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            work = null_manifest(["duration=1s"])
            handles = await c.run(work)
            (done,) = await c.ended(work.allocation_id)
            assert done.status is AllocationStatus.COMPLETED
            assert await c.free_is_onboarded()
            slot_id = done.slot_id
            assert await c.revert(slot_id=slot_id) is False
            assert await c.free_is_onboarded()
            assert handles

    async def test_a_revert_for_another_deployment_is_refused(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            bid = await c.bid(need(cores=2))
            await c.commit(bid, "s1")
            c.deployment_id = new_id("d")
            with pytest.raises(RemoteError, match="deployment"):
                await c.revert(slot_id="s1")
            assert (await c.manager.pools()).committed.cpu.cores == 2
