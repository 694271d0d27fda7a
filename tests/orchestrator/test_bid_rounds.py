"""Declined bids (a stale advert) send the next candidates a request in the same attempt."""

from __future__ import annotations

from pathlib import Path

import msgspec

from dms.jobs.status import DeploymentStatus
from dms.orchestrator.messages import DeploymentRef
from tests.orchestrator.harness import Script, network
from tests.orchestrator.test_deployments import ensemble, wait_final


class TestBidRounds:
    """One attempt asks further down the ranking until a node has its bids."""

    async def test_two_stale_adverts_then_a_bid_in_one_attempt(
        self, tmp_path: Path, clock: object
    ) -> None:
        scripts = {
            "a": Script(cores=16, price=100_000),
            "b": Script(cores=16, price=200_000),
            "c": Script(cores=2, price=9_000_000),
        }
        async with network(tmp_path, scripts, spare_candidates=0) as net:
            # a and b advertised 16 free cores; they have none left now.
            net.providers["a"].script.cores = 0
            net.providers["b"].script.cores = 0
            summary = await net.orchestrator.new(ensemble())
            assert await wait_final(net, summary.deployment_id) is DeploymentStatus.COMPLETED
            ref = DeploymentRef(deployment_id=summary.deployment_id)
            info = await net.orchestrator.info(ref)
            assert info.allocations[0].provider == net.providers["c"].handle.did
            explanation = await net.orchestrator.explain(ref)
            assert explanation.attempts == 1
            assert [p.requests for p in net.providers.values()] == [1, 1, 1]

    async def test_no_more_candidates_ends_the_attempt(self, tmp_path: Path, clock: object) -> None:
        scripts = {"a": Script(cores=16), "b": Script(cores=16)}
        async with network(tmp_path, scripts, spare_candidates=0, retry_interval_s=1.0) as net:
            for provider in net.providers.values():
                provider.script.cores = 0
            request = msgspec.structs.replace(ensemble(), timeout_ns=3 * 10**9)
            summary = await net.orchestrator.new(request)
            assert await wait_final(net, summary.deployment_id) is DeploymentStatus.FAILED
            explanation = await net.orchestrator.explain(
                DeploymentRef(deployment_id=summary.deployment_id)
            )
            assert explanation.attempts >= 2
            # Each attempt asks each of the two once, never more.
            requests = [p.requests for p in net.providers.values()]
            assert requests == [explanation.attempts] * 2
