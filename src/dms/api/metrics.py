"""``/metrics``: Prometheus text, gathered from the node's behaviors at each scrape.

Families: ``dms_info``, ``dms_uptime_seconds``, ``dms_peers``, ``dms_actor_messages_total``
(processed and failed, per actor), ``dms_actor_refusals_total`` (per reason),
``dms_resources_*`` (onboarded, allocated and free cores and bytes), ``dms_allocations``
(per status) and ``dms_deployments`` (per status, when the node runs an orchestrator).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dms.actor import Empty
from dms.actor.statistics import SystemStatistics
from dms.api.backend import NodeBackend
from dms.errors import DMSError
from dms.jobs.status import DeploymentStatus
from dms.node import behaviors as names
from dms.node.messages import AllocationList, NodeStatus
from dms.onboarding.behaviors import ResourcesReply
from dms.orchestrator.messages import DeploymentPage, ListDeployments


class _Snapshot(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


async def render_metrics(backend: NodeBackend) -> bytes:
    families: list[Metric] = []
    status = await backend.call(names.NODE_STATUS, Empty(), NodeStatus)
    info = GaugeMetricFamily("dms_info", "This node", labels=["version", "did", "peer_id"])
    info.add_metric([status.version, status.did, status.peer_id], 1)
    families.append(info)
    families.append(GaugeMetricFamily("dms_uptime_seconds", "Since start", value=status.uptime_s))
    families.append(GaugeMetricFamily("dms_peers", "Peers connected", value=status.peers))
    families.append(
        GaugeMetricFamily("dms_onboarded", "1 when providing", value=int(status.onboarded))
    )

    stats = await backend.call(names.STATS_BEHAVIOR, Empty(), SystemStatistics)
    messages = CounterMetricFamily(
        "dms_actor_messages", "Messages handled, per actor", labels=["inbox", "outcome"]
    )
    for actor in stats.actors:
        messages.add_metric([actor.inbox, "processed"], actor.processed)
        messages.add_metric([actor.inbox, "failed"], actor.failed)
    families.append(messages)
    refusals = CounterMetricFamily(
        "dms_actor_refusals", "Messages refused, per reason", labels=["reason"]
    )
    for reason, count in sorted(stats.refusals.items()):
        refusals.add_metric([reason], count)
    families.append(refusals)

    for pool, behavior in (
        ("onboarded", names.RESOURCES_ONBOARDED),
        ("free", names.RESOURCES_FREE),
    ):
        reply = await backend.call(behavior, Empty(), ResourcesReply)
        resources = reply.resources
        families.append(
            GaugeMetricFamily(
                f"dms_resources_{pool}_cpu_cores", f"{pool} CPU", value=resources.cpu.cores
            )
        )
        families.append(
            GaugeMetricFamily(f"dms_resources_{pool}_ram_bytes", f"{pool} RAM", value=resources.ram)
        )
        families.append(
            GaugeMetricFamily(
                f"dms_resources_{pool}_disk_bytes", f"{pool} disk", value=resources.disk
            )
        )

    allocations = await backend.call(names.ALLOCATIONS_LIST, Empty(), AllocationList)
    by_status = GaugeMetricFamily("dms_allocations", "Allocations here", labels=["status"])
    counts: dict[str, int] = {}
    for allocation in allocations.allocations:
        counts[allocation.status.value] = counts.get(allocation.status.value, 0) + 1
    for name, count in sorted(counts.items()):
        by_status.add_metric([name], count)
    families.append(by_status)

    if backend.serves(names.DEPLOYMENT_LIST):
        deployments = GaugeMetricFamily(
            "dms_deployments", "Deployments orchestrated here", labels=["status"]
        )
        for state in DeploymentStatus:
            try:
                page = await backend.call(
                    names.DEPLOYMENT_LIST,
                    ListDeployments(status=(state,), limit=1),
                    DeploymentPage,
                )
            except DMSError:
                break
            deployments.add_metric([state.value], page.total)
        families.append(deployments)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(families))
    return generate_latest(registry)
