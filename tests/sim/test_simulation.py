"""Simulated networks of real nodes on virtual time: ensembles placed, constraints kept,
nothing over-allocated, every deployment ends when it is shut down."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
import trio.testing

from dms.jobs import parse_ensemble
from dms.jobs.status import AllocationStatus, DeploymentStatus
from dms.sim import (
    InvalidSimulation,
    OrchestratorSettings,
    Simulation,
    SimulationConfig,
    TrustMode,
    WorkItem,
    WorkloadSpec,
    ensembles,
)
from dms.sim.profiles import ProviderProfile
from dms.types import Location

RUNNING = DeploymentStatus.RUNNING


async def deploy_all(sim: Simulation, items: list[WorkItem]) -> dict[str, DeploymentStatus]:
    """Submit every item at once; the status each reached (Running, or where it ended)."""
    reached: dict[str, DeploymentStatus] = {}

    async def one(item: WorkItem) -> None:
        deployment_id = await sim.submit(item)
        reached[deployment_id] = await sim.wait(deployment_id, RUNNING)

    async with anyio.create_task_group() as tg:
        for item in items:
            tg.start_soon(one, item)
    return reached


async def shut_down_all(sim: Simulation, ids: list[str]) -> dict[str, DeploymentStatus]:
    for deployment_id in ids:
        await sim.shutdown(deployment_id)
    return {d: await sim.wait(d, DeploymentStatus.COMPLETED) for d in ids}


class TestPlacement:
    """Two dozen providers and two orchestrators place a batch of mixed ensembles."""

    async def test_a_batch_is_placed_and_nothing_is_over_allocated(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        # 24 providers: three GPU machines (two would leave the one ensemble that rejects Asia
        # no room whenever the big GPU ensemble happened to take the American machine's cores).
        config = SimulationConfig(providers=24, orchestrators=2, seed=1, latency_ms=5)
        items = list(ensembles(60, seed=1, spec=WorkloadSpec(gpu_fraction=0.2)))
        async with Simulation(config, tmp_path) as sim:
            reached = await deploy_all(sim, items)
            assert set(reached.values()) == {RUNNING}
            assert {node.name for node in sim.orchestrators} == {"o0", "o1"}
            assert {sim.owner[d].name for d in reached} == {"o0", "o1"}
            audit = await sim.audit()
            assert audit.ok, audit.describe()
            assert audit.running_on_providers == audit.running_in_orchestrators == 60
            assert sim.refusals() == {}
            for deployment_id in reached:
                latency = sim.latency_s(deployment_id, RUNNING)
                assert latency is not None and latency > 0
            ended = await shut_down_all(sim, list(reached))
            assert set(ended.values()) == {DeploymentStatus.COMPLETED}
            audit = await sim.audit()
            assert audit.ok, audit.describe()
            assert audit.running_on_providers == 0
            assert audit.used_cores == 0

    async def test_allocations_land_only_where_their_constraints_allow(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        config = SimulationConfig(providers=21, orchestrators=1, seed=2, gpu_share=0.3)
        spec = WorkloadSpec(gpu_fraction=0.4, located_fraction=0.8)
        items = list(ensembles(50, seed=2, spec=spec))
        async with Simulation(config, tmp_path) as sim:
            reached = await deploy_all(sim, items)
            assert set(reached.values()) == {RUNNING}
            checked = 0
            for deployment_id in reached:
                info = await sim.info(deployment_id)
                ens = parse_ensemble(info.ensemble)
                by_node: dict[str, set[str]] = {}
                for allocation in info.allocations:
                    assert allocation.status is AllocationStatus.RUNNING
                    profile = sim.provider(allocation.provider).profile
                    node = ens.nodes[allocation.node]
                    where = profile.location
                    accept = [Location.parse(p) for p in node.location.accept]
                    reject = [Location.parse(p) for p in node.location.reject]
                    assert not accept or any(where.within(a) for a in accept)
                    assert not any(where.within(r) for r in reject)
                    if ens.allocations[allocation.name].resources.gpus:
                        assert profile.gpus, allocation.name
                    by_node.setdefault(allocation.node, set()).add(allocation.provider)
                    checked += 1
                assert all(len(providers) == 1 for providers in by_node.values())
            assert checked == 50

    async def test_explain_says_how_many_providers_were_considered(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        config = SimulationConfig(
            providers=30, orchestrator=OrchestratorSettings(candidate_limit=4)
        )
        item = WorkItem(
            name="one",
            text=next(ensembles(1, seed=3, spec=WorkloadSpec(located_fraction=0))).text,
            allocations=1,
            nodes=1,
            gpus=0,
            located=False,
        )
        async with Simulation(config, tmp_path) as sim:
            (deployment_id,) = await deploy_all(sim, [item])
            explanation = await sim.explain(deployment_id)
            (node,) = explanation.nodes
            assert node.known == 30
            assert 4 <= node.considered < 30
            assert len(node.chosen) == 1


class TestScarcity:
    """More demand than capacity: some deployments fail saying why, none over-allocates."""

    async def test_over_subscribed_network_never_over_allocates(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        profiles = [ProviderProfile(name=f"small{i}", cores=8, ram=32 * 1024**3) for i in range(3)]
        spec = WorkloadSpec(located_fraction=0, sizes=(4, 8))
        items = list(ensembles(64, seed=4, spec=spec))
        config = SimulationConfig(orchestrators=2, deployment_timeout_s=8)
        async with Simulation(config, tmp_path, profiles=profiles) as sim:
            reached = await deploy_all(sim, items)
            placed = [d for d, s in reached.items() if s is RUNNING]
            failed = [d for d, s in reached.items() if s is DeploymentStatus.FAILED]
            assert placed and failed
            assert len(placed) + len(failed) == len(items)
            audit = await sim.audit()
            assert audit.ok, audit.describe()
            assert audit.used_cores <= 24
            for deployment_id in failed[:3]:
                info = await sim.info(deployment_id)
                assert "not placed by the deadline" in info.summary.reason


class TestNetworkConditions:
    """Latency, loss and token-based trust change the cost, not the outcome."""

    async def test_loss_and_latency(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        config = SimulationConfig(providers=10, seed=5, latency_ms=20, loss=0.02)
        items = list(ensembles(20, seed=5, spec=WorkloadSpec(located_fraction=0)))
        async with Simulation(config, tmp_path) as sim:
            reached = await deploy_all(sim, items)
            assert RUNNING in set(reached.values())
            assert sim.traffic().lost > 0
            audit = await sim.audit()
            assert audit.ok, audit.describe()
            ended = await shut_down_all(sim, list(reached))
            assert all(s.final for s in ended.values())
            assert (await sim.audit()).ok

    async def test_token_trust_places_and_keeps_running_without_refusals(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        config = SimulationConfig(providers=6, seed=6, trust=TrustMode.TOKENS)
        items = list(ensembles(10, seed=6, spec=WorkloadSpec(located_fraction=0)))
        async with Simulation(config, tmp_path) as sim:
            reached = await deploy_all(sim, items)
            assert set(reached.values()) == {RUNNING}
            # Three heartbeat timeouts later nothing was taken for lost: the providers'
            # heartbeats reach the orchestrator's root, under tokens as well.
            await anyio.sleep(3 * config.orchestrator.heartbeat_timeout_s)
            for deployment_id in reached:
                info = await sim.info(deployment_id)
                assert info.summary.status is RUNNING
                assert [h.status for h in info.history].count(RUNNING) == 1
            assert sim.refusals() == {}
            assert (await sim.audit()).ok

    async def test_databases_in_files(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        config = SimulationConfig(providers=4, seed=7, database="file")
        items = list(ensembles(6, seed=7, spec=WorkloadSpec(located_fraction=0)))
        async with Simulation(config, tmp_path) as sim:
            reached = await deploy_all(sim, items)
            assert set(reached.values()) == {RUNNING}
        assert len(list((tmp_path / "db").glob("*.sqlite3"))) == 5


class TestConfig:
    """Bad settings are refused before anything starts, naming the setting."""

    @pytest.mark.parametrize(
        ("config", "field"),
        [
            (SimulationConfig(providers=-1), "providers"),
            (SimulationConfig(orchestrators=0), "orchestrators"),
            (SimulationConfig(loss=1.0), "loss"),
            (SimulationConfig(latency_ms=-1), "latency_ms"),
            (SimulationConfig(database="postgres"), "database"),
            (SimulationConfig(advert_interval_s=0), "advert_interval_s"),
            (SimulationConfig(deployment_timeout_s=0), "deployment_timeout_s"),
            (SimulationConfig(heartbeat_interval_s=30), "heartbeat_timeout_s"),
        ],
        ids=[
            "providers",
            "orchestrators",
            "loss",
            "latency",
            "database",
            "advert",
            "timeout",
            "heartbeat",
        ],
    )
    def test_refused(self, tmp_path: Path, config: SimulationConfig, field: str) -> None:
        with pytest.raises(InvalidSimulation, match=field):
            Simulation(config, tmp_path)

    async def test_unknown_deployment_and_orchestrator(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with Simulation(SimulationConfig(providers=1), tmp_path) as sim:
            with pytest.raises(InvalidSimulation, match="deployment_id"):
                await sim.shutdown("d-nope")
            with pytest.raises(InvalidSimulation, match="orchestrator"):
                sim.orchestrator(3)
