"""Over random ensembles and random provider pools: every deployment ends in a final state by
its deadline, placements never break a location constraint, and no provider ever gives out
more than it has (the scripted providers refuse to hold what they do not have)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dms.jobs.status import DeploymentStatus
from dms.orchestrator.messages import DeploymentRef, NewDeployment
from dms.types import Location
from tests.orchestrator.harness import Script, network

S = 10**9
PLACES = [Location(continent="EU", country="DE"), Location(continent="NA", country="US")]


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, Script], str, dict[str, str]]:
    scripts = {
        f"p{i}": Script(
            cores=draw(st.integers(1, 4)),
            location=draw(st.sampled_from(PLACES)),
            price=draw(st.integers(1, 5)) * 100_000,
            run_s=float(draw(st.integers(1, 3))),
        )
        for i in range(draw(st.integers(1, 4)))
    }
    allocations, nodes = [], []
    accepts: dict[str, str] = {}
    for i in range(draw(st.integers(1, 3))):
        cores = draw(st.integers(1, 3))
        allocations.append(
            f"  a{i}: {{resources: {{cpu: {cores}, ram: 1MiB}}, execution: {{module: m.wasm}}}}"
        )
        accept = draw(st.sampled_from(["", "EU", "NA"]))
        accepts[f"a{i}"] = accept
        replicas = draw(st.integers(1, 2))
        location = f", location: {{accept: [{accept}]}}" if accept else ""
        nodes.append(f"  n{i}: {{allocations: [a{i}], redundancy: {replicas}{location}}}")
    text = "version: V1\nallocations:\n" + "\n".join(allocations) + "\nnodes:\n" + "\n".join(nodes)
    return scripts, text + "\n", accepts


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=cases())
def test_every_deployment_ends_and_nothing_is_overcommitted(
    tmp_path_factory: object, case: tuple[dict[str, Script], str, dict[str, str]]
) -> None:
    scripts, text, accepts = case

    async def scenario() -> None:
        tmp = Path(tmp_path_factory.mktemp("prop"))  # type: ignore[attr-defined]
        async with network(tmp, scripts) as net:
            request = NewDeployment(
                ensemble=textwrap.dedent(text), files={"m.wasm": b"\0asm"}, timeout_ns=20 * S
            )
            summary = await net.orchestrator.new(request)
            ref = DeploymentRef(deployment_id=summary.deployment_id)
            with anyio.fail_after(200):
                while not (await net.orchestrator.status(ref)).status.final:
                    for provider in net.providers.values():
                        assert provider.free >= 0, provider.name
                    await net.orchestrator.wait_for_update(summary.deployment_id, 1.0)
            info = await net.orchestrator.info(ref)
            by_did = {p.handle.did: p for p in net.providers.values()}
            if info.summary.status is DeploymentStatus.COMPLETED:
                assert info.allocations
                for a in info.allocations:
                    if accepts[a.name]:
                        assert by_did[a.provider].script.location.continent == accepts[a.name]
            else:
                assert info.summary.reason
            await anyio.sleep(5)
            for provider in net.providers.values():
                assert provider.free == provider.script.cores, provider.name
                assert not provider.held, provider.name

    import trio
    import trio.testing

    trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))
