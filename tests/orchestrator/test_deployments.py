"""Deployments end to end over the in-memory network, on virtual time, against scripted
providers: placement, preferences, constraints, failed commits, lost providers, restore."""

from __future__ import annotations

import textwrap
from pathlib import Path

import anyio
import pytest

from dms.errors import InputError
from dms.jobs.protocol import HEARTBEATS, Heartbeats, Liveness
from dms.jobs.status import AllocationStatus, DeploymentStatus
from dms.orchestrator.messages import (
    DeploymentLogsRequest,
    DeploymentRef,
    ListDeployments,
    NewDeployment,
    PruneRequest,
    ShutdownRequest,
)
from dms.types import Location
from tests.orchestrator.harness import FakeProvider, Network, Script, network

S = 10**9

TASK = """\
version: V1
metadata: {name: hello, team: demo}
allocations:
  hello:
    executor: wasm
    resources: {cpu: 1, ram: 64MiB}
    execution: {module: hello.wasm}
"""


def ensemble(text: str = TASK, **replace: str) -> NewDeployment:
    for old, new in replace.items():
        text = text.replace(old, new)
    return NewDeployment(
        ensemble=textwrap.dedent(text), files={"hello.wasm": b"\0asm"}, timeout_ns=30 * S
    )


async def wait_final(net: Network, deployment_id: str, limit_s: float = 120) -> DeploymentStatus:
    with anyio.fail_after(limit_s):
        while True:
            summary = await net.orchestrator.status(DeploymentRef(deployment_id=deployment_id))
            if summary.status.final:
                return summary.status
            await net.orchestrator.wait_for_update(deployment_id, 1.0)


async def wait_status(net: Network, deployment_id: str, status: DeploymentStatus) -> None:
    with anyio.fail_after(60):
        while (
            await net.orchestrator.status(DeploymentRef(deployment_id=deployment_id))
        ).status is not status:
            await net.orchestrator.wait_for_update(deployment_id, 1.0)


class TestPlacement:
    """A deployment is placed, runs and completes; the explanation says why there."""

    @pytest.mark.parametrize(
        ("cores", "asked"), [(1.5, 2), (4.0, 1)], ids=["tight-asks-a-spare", "roomy-asks-one"]
    )
    async def test_spare_bids_are_asked_only_when_the_first_choice_is_tight(
        self, tmp_path: Path, clock: object, cores: float, asked: int
    ) -> None:
        """A first choice with room for the need fewer than twice might decline (another
        placement may have taken it since its advert): a spare candidate is asked too."""
        scripts = {"p1": Script(cores=cores), "p2": Script(cores=cores)}
        async with network(tmp_path, scripts) as net:
            summary = await net.orchestrator.new(ensemble())
            assert await wait_final(net, summary.deployment_id) is DeploymentStatus.COMPLETED
            explanation = await net.orchestrator.explain(
                DeploymentRef(deployment_id=summary.deployment_id)
            )
            (node,) = explanation.nodes
            assert len(node.candidates) == asked
            for provider in net.providers.values():
                assert provider.free == provider.script.cores and not provider.held

    async def test_a_lost_start_is_sent_again(self, tmp_path: Path, clock: object) -> None:
        """Starts are one-way: the deployment is Running only once the allocation says it
        started, and a start that went missing is repeated."""
        async with network(tmp_path, {"p1": Script(lose_starts=2, run_s=5)}) as net:
            summary = await net.orchestrator.new(ensemble())
            await wait_status(net, summary.deployment_id, DeploymentStatus.RUNNING)
            info = await net.orchestrator.info(DeploymentRef(deployment_id=summary.deployment_id))
            assert [a.status for a in info.allocations] != [AllocationStatus.PENDING]
            assert await wait_final(net, summary.deployment_id) is DeploymentStatus.COMPLETED

    async def test_single_task_completes(self, tmp_path: Path, clock: object) -> None:
        async with network(tmp_path, {"p1": Script(), "p2": Script()}) as net:
            summary = await net.orchestrator.new(ensemble())
            assert await wait_final(net, summary.deployment_id) is DeploymentStatus.COMPLETED
            info = await net.orchestrator.info(DeploymentRef(deployment_id=summary.deployment_id))
            assert [s.status for s in info.history][-1] is DeploymentStatus.COMPLETED
            assert [a.status for a in info.allocations] == [AllocationStatus.COMPLETED]
            assert info.allocations[0].stdout_tail == "hello\n"
            statuses = [c.status.value for c in info.history]
            assert statuses[:4] == ["Committing", "Provisioning", "Running", "Completed"]
            explanation = await net.orchestrator.explain(
                DeploymentRef(deployment_id=summary.deployment_id)
            )
            (node,) = explanation.nodes
            assert len(node.chosen) == 1
            # Both have room for the need many times over: only the first choice was asked.
            assert [c.provider for c in node.candidates] == list(node.chosen)
            for provider in net.providers.values():
                assert provider.free == provider.script.cores
                assert not provider.held

    @pytest.mark.parametrize(
        ("price_pref", "time_pref", "winner"), [(100, 0, "cheap"), (0, 100, "big")]
    )
    async def test_preferences_decide(
        self, tmp_path: Path, clock: object, price_pref: int, time_pref: int, winner: str
    ) -> None:
        scripts = {
            "cheap": Script(cores=2, price=100_000),
            "big": Script(cores=16, price=9_000_000),
        }
        text = (
            TASK + f"price: {{currency: NTX, preference: {price_pref}}}\n"
            f"time: {{preference: {time_pref}}}\n"
        )
        async with network(tmp_path, scripts) as net:
            summary = await net.orchestrator.new(ensemble(text))
            await wait_final(net, summary.deployment_id)
            info = await net.orchestrator.info(DeploymentRef(deployment_id=summary.deployment_id))
            assert info.allocations[0].provider == net.providers[winner].handle.did

    async def test_location_constraint(self, tmp_path: Path, clock: object) -> None:
        scripts = {
            "us": Script(location=Location(continent="NA", country="US")),
            "de": Script(location=Location(continent="EU", country="DE")),
        }
        text = TASK + "nodes:\n  n: {allocations: [hello], location: {accept: [EU]}}\n"
        async with network(tmp_path, scripts) as net:
            summary = await net.orchestrator.new(ensemble(text))
            assert await wait_final(net, summary.deployment_id) is DeploymentStatus.COMPLETED
            info = await net.orchestrator.info(DeploymentRef(deployment_id=summary.deployment_id))
            assert info.allocations[0].provider == net.providers["de"].handle.did
            assert net.providers["us"].requests == 0

    async def test_no_eligible_provider_fails_saying_why(
        self, tmp_path: Path, clock: object
    ) -> None:
        scripts = {"us": Script(location=Location(continent="NA", country="US"))}
        text = TASK + "nodes:\n  n: {allocations: [hello], location: {accept: [AS]}}\n"
        async with network(tmp_path, scripts) as net:
            summary = await net.orchestrator.new(ensemble(text))
            assert await wait_final(net, summary.deployment_id) is DeploymentStatus.FAILED
            status = await net.orchestrator.status(
                DeploymentRef(deployment_id=summary.deployment_id)
            )
            assert "not placed by the deadline" in status.reason
            assert "location" in status.reason
            explanation = await net.orchestrator.explain(
                DeploymentRef(deployment_id=summary.deployment_id)
            )
            assert explanation.nodes[0].candidates[0].filtered_by == "location"


class TestFailures:
    """Failed commits are reverted; lost providers are replaced; nothing leaks."""

    async def test_failed_commit_is_reverted_and_others_tried(
        self, tmp_path: Path, clock: object
    ) -> None:
        scripts = {"bad": Script(cores=16, fail_commit=True), "good": Script(cores=2)}
        text = TASK + "time: {preference: 100}\nprice: {preference: 0}\n"
        async with network(tmp_path, scripts) as net:
            summary = await net.orchestrator.new(ensemble(text))
            assert await wait_final(net, summary.deployment_id) is DeploymentStatus.COMPLETED
            info = await net.orchestrator.info(DeploymentRef(deployment_id=summary.deployment_id))
            assert info.allocations[0].provider == net.providers["good"].handle.did
            assert net.providers["bad"].commits >= 1
            for provider in net.providers.values():
                assert provider.free == provider.script.cores, provider.name

    async def test_lost_provider_is_replaced(self, tmp_path: Path, clock: object) -> None:
        scripts = {"a": Script(cores=8), "b": Script(cores=8)}
        text = TASK.replace("executor: wasm", "type: service\n    executor: wasm")
        async with network(tmp_path, scripts, heartbeat_timeout_s=5.0) as net:
            summary = await net.orchestrator.new(ensemble(text))
            await wait_status(net, summary.deployment_id, DeploymentStatus.RUNNING)
            ref = DeploymentRef(deployment_id=summary.deployment_id)
            first = (await net.orchestrator.info(ref)).allocations[0].provider
            victim = next(p for p in net.providers.values() if p.handle.did == first)
            victim.dead = True
            others = {"orch"} | {p.name for p in net.providers.values() if p is not victim}
            net.fabric.partition(others, {victim.name})
            with anyio.fail_after(120):
                while True:
                    info = await net.orchestrator.info(ref)
                    running = [
                        a
                        for a in info.allocations
                        if a.status is AllocationStatus.RUNNING and a.provider != first
                    ]
                    if running and info.summary.status is DeploymentStatus.RUNNING:
                        break
                    await net.orchestrator.wait_for_update(summary.deployment_id, 1.0)
            await net.orchestrator.shutdown(ShutdownRequest(deployment_id=summary.deployment_id))
            assert await wait_final(net, summary.deployment_id) is DeploymentStatus.COMPLETED
            survivor = next(p for p in net.providers.values() if p is not victim)
            assert survivor.free == survivor.script.cores


class TestProviderHeartbeats:
    """One heartbeat from a provider keeps its allocations alive and catches up a lost event;
    a heartbeat naming another provider's allocation changes nothing."""

    async def test_heartbeats_keep_alive_catch_up_and_speak_only_for_the_sender(
        self, tmp_path: Path, clock: object
    ) -> None:
        # The scripted allocations send no heartbeat events of their own: only ours count.
        scripts = {"a": Script(cores=8, heartbeats=False), "b": Script(cores=8, heartbeats=False)}
        text = TASK.replace("executor: wasm", "type: service\n    executor: wasm")
        async with network(tmp_path, scripts, heartbeat_timeout_s=5.0) as net:
            summary = await net.orchestrator.new(ensemble(text))
            await wait_status(net, summary.deployment_id, DeploymentStatus.RUNNING)
            ref = DeploymentRef(deployment_id=summary.deployment_id)
            (info,) = (await net.orchestrator.info(ref)).allocations
            runner = next(p for p in net.providers.values() if p.handle.did == info.provider)
            other = next(p for p in net.providers.values() if p is not runner)
            actor = net.orchestrator.actors[summary.deployment_id]
            sequence = actor.sequences[info.allocation_id]

            async def beat(sender: FakeProvider, status: AllocationStatus, seq: int) -> None:
                alive = Liveness(
                    deployment_id=summary.deployment_id,
                    allocation_id=info.allocation_id,
                    status=status,
                    sequence=seq,
                )
                await sender.send(
                    net.node.root, HEARTBEATS, Heartbeats(time_ns=0, allocations=(alive,))
                )
                await anyio.sleep(0.1)

            before = actor.last_seen[info.allocation_id]
            await anyio.sleep(1.0)
            await beat(other, AllocationStatus.FAILED, sequence + 5)
            assert actor.last_seen[info.allocation_id] == before  # not the runner
            assert actor.record.allocations[0].status is AllocationStatus.RUNNING
            await beat(runner, AllocationStatus.RUNNING, sequence)
            assert actor.last_seen[info.allocation_id] > before
            await beat(runner, AllocationStatus.RESTARTING, sequence + 1)  # an event was lost
            assert actor.record.allocations[0].status is AllocationStatus.RESTARTING
            await net.orchestrator.shutdown(ShutdownRequest(deployment_id=summary.deployment_id))
            assert await wait_final(net, summary.deployment_id) is DeploymentStatus.COMPLETED


class TestManagement:
    """Listing with filters and paging, logs, cancel, prune, bad requests."""

    async def test_list_filter_page_logs_cancel_prune(self, tmp_path: Path, clock: object) -> None:
        service_text = TASK.replace("executor: wasm", "type: service\n    executor: wasm")
        async with network(tmp_path, {"p": Script(cores=8)}) as net:
            done = [await net.orchestrator.new(ensemble()) for _ in range(3)]
            svc = await net.orchestrator.new(ensemble(service_text, **{"team: demo": "team: web"}))
            for d in done:
                await wait_final(net, d.deployment_id)
            await wait_status(net, svc.deployment_id, DeploymentStatus.RUNNING)
            chunk = await net.orchestrator.logs(
                DeploymentLogsRequest(deployment_id=svc.deployment_id)
            )
            assert chunk.data == b"hello from hello\n"
            page = await net.orchestrator.list(ListDeployments(limit=2))
            assert (page.total, len(page.items), page.next_offset) == (4, 2, 2)
            web = await net.orchestrator.list(ListDeployments(metadata={"team": "web"}))
            assert [s.deployment_id for s in web.items] == [svc.deployment_id]
            running = await net.orchestrator.list(
                ListDeployments(status=(DeploymentStatus.RUNNING,))
            )
            assert [s.deployment_id for s in running.items] == [svc.deployment_id]
            await net.orchestrator.shutdown(ShutdownRequest(deployment_id=svc.deployment_id))
            assert await wait_final(net, svc.deployment_id) is DeploymentStatus.COMPLETED
            assert net.providers["p"].free == 8
            pruned = await net.orchestrator.prune(PruneRequest())
            assert len(pruned.removed) == 4
            assert (await net.orchestrator.list(ListDeployments())).total == 0
            with pytest.raises(InputError, match="limit"):
                await net.orchestrator.list(ListDeployments(limit=0))

    async def test_missing_module_is_refused_naming_the_field(
        self, tmp_path: Path, clock: object
    ) -> None:
        async with network(tmp_path, {"p": Script()}) as net:
            request = ensemble()
            with pytest.raises(InputError, match=r"allocations\.hello\.execution\.module"):
                await net.orchestrator.new(NewDeployment(ensemble=request.ensemble))


class TestRestore:
    """A restarted orchestrator node restores its deployments and carries on."""

    async def test_running_deployment_survives_a_restart(
        self, tmp_path: Path, clock: object
    ) -> None:
        service_text = TASK.replace("executor: wasm", "type: service\n    executor: wasm")
        async with network(tmp_path, {"p": Script(cores=8)}, heartbeat_timeout_s=5.0) as net:
            summary = await net.orchestrator.new(ensemble(service_text))
            await wait_status(net, summary.deployment_id, DeploymentStatus.RUNNING)
        # The whole network goes away; the orchestrator's store stays.
        async with network(tmp_path, {"q": Script(cores=8)}, heartbeat_timeout_s=5.0) as net:
            ref = DeploymentRef(deployment_id=summary.deployment_id)
            assert (await net.orchestrator.status(ref)).deployment_id == summary.deployment_id
            new_provider = net.providers["q"].handle.did
            with anyio.fail_after(120):
                while True:
                    info = await net.orchestrator.info(ref)
                    if info.summary.status is DeploymentStatus.RUNNING and any(
                        a.provider == new_provider and a.status is AllocationStatus.RUNNING
                        for a in info.allocations
                    ):
                        break
                    await net.orchestrator.wait_for_update(summary.deployment_id, 1.0)
            reasons = [c.reason for c in info.history]
            assert any("redeploying" in r for r in reasons)
            await net.orchestrator.shutdown(ShutdownRequest(deployment_id=summary.deployment_id))
            assert await wait_final(net, summary.deployment_id) is DeploymentStatus.COMPLETED
            assert net.providers["q"].free == 8


class TestMessageBounds:
    """Requests decoded from the wire refuse times and sizes the store could not hold."""

    @pytest.mark.parametrize(
        ("kind", "data"),
        [
            (PruneRequest, {"before_ns": 2**63}),
            (PruneRequest, {"before_ns": -1}),
            (ListDeployments, {"limit": 0}),
            (ListDeployments, {"offset": -5}),
            (NewDeployment, {"ensemble": "", "timeout_ns": 0}),
        ],
        ids=["prune-huge", "prune-negative", "limit-zero", "offset-negative", "timeout-zero"],
    )
    def test_out_of_range_is_refused(self, kind: type, data: dict[str, object]) -> None:
        import msgspec

        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(data, kind)
