"""From an ensemble spec to what the matcher places: one Placement per ensemble node."""

from __future__ import annotations

from dms.jobs.spec import Ensemble
from dms.orchestrator.matching.candidate import Placement
from dms.orchestrator.matching.plan import EdgeConstraint
from dms.types import Location


def placements(ensemble: Ensemble) -> list[Placement]:
    out = []
    excluded = frozenset(ensemble.exclude_peers)
    for name, node in ensemble.nodes.items():
        out.append(
            Placement(
                node=name,
                requirement=ensemble.requirement(name),
                accept=tuple(Location.parse(text) for text in node.location.accept),
                reject=tuple(Location.parse(text) for text in node.location.reject),
                pinned=node.peer,
                excluded=excluded,
                replicas=node.redundancy,
            )
        )
    return out


def edges(ensemble: Ensemble) -> list[EdgeConstraint]:
    return [
        EdgeConstraint(
            source=e.source,
            target=e.target,
            max_rtt_ms=e.rtt / 1e6,
            min_bandwidth_bps=int(e.bandwidth),
        )
        for e in ensemble.edges
    ]
