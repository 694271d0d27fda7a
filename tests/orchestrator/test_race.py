"""Two orchestrators racing for one small provider never over-allocate it (real provider,
real orchestrators, real ResourceManager, in-memory network, virtual time)."""

from __future__ import annotations

from pathlib import Path

import anyio
import trio.testing

from dms.jobs.status import DeploymentStatus
from dms.sim import Simulation, SimulationConfig
from dms.sim.profiles import ProviderProfile

GiB = 1024**3

SERVICE = """\
version: V1
metadata: {{name: {name}}}
allocations:
  web:
    type: service
    executor: "null"
    resources: {{cpu: 3, ram: 1GiB}}
    execution: {{args: ["duration=1h"]}}
"""


class TestRace:
    """Both ask at the same moment for 3 of the provider's 4 cores: one wins, one waits."""

    async def test_one_wins_the_other_waits_and_nothing_is_over_allocated(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        profiles = [ProviderProfile(name="small", cores=4, ram=8 * GiB)]
        config = SimulationConfig(orchestrators=2, deployment_timeout_s=20)
        async with Simulation(config, tmp_path, profiles=profiles) as sim:
            ids: dict[int, str] = {}

            async def deploy(orchestrator: int) -> None:
                ids[orchestrator] = await sim.submit(
                    SERVICE.format(name=f"o{orchestrator}"), orchestrator=orchestrator
                )

            async with anyio.create_task_group() as tg:
                tg.start_soon(deploy, 0)
                tg.start_soon(deploy, 1)
            outcomes = {}
            async with anyio.create_task_group() as tg:

                async def watch(i: int) -> None:
                    outcomes[i] = await sim.wait(ids[i], DeploymentStatus.RUNNING)

                tg.start_soon(watch, 0)
                tg.start_soon(watch, 1)
            assert sorted(outcomes.values()) == sorted(
                [DeploymentStatus.RUNNING, DeploymentStatus.FAILED]
            )
            audit = await sim.audit()
            assert audit.ok, audit.describe()
            assert audit.used_cores == 3
            loser = next(i for i, s in outcomes.items() if s is DeploymentStatus.FAILED)
            info = await sim.info(ids[loser])
            assert "not placed by the deadline" in info.summary.reason
            winner = 1 - loser
            await sim.shutdown(ids[winner])
            assert await sim.wait(ids[winner], DeploymentStatus.COMPLETED) is (
                DeploymentStatus.COMPLETED
            )
            assert (await sim.audit()).used_cores == 0
