"""``explain``: why a deployment is pending, or why each node went where it went."""

from __future__ import annotations

from dms.orchestrator.matching import Plan
from dms.orchestrator.messages import (
    CandidateView,
    Explanation,
    NodeExplanation,
    ScoreView,
)
from dms.orchestrator.records import DeploymentRecord


def explanation_of(
    record: DeploymentRecord,
    advertised: Plan,
    bids: Plan | None,
    declined: dict[str, dict[str, str]],
    problem: str,
) -> Explanation:
    """Every candidate of every node: the checker that filtered it, or its scores; bids that
    were declined, with the provider's reason; what is missing when nothing was chosen."""
    nodes: list[NodeExplanation] = []
    for node, decision in advertised.decisions.items():
        final = bids.decisions.get(node) if bids is not None else None
        chosen = final.chosen if final is not None else ()
        views: dict[str, CandidateView] = {}
        for f in decision.filtered:
            views[f.provider] = CandidateView(
                provider=f.provider, filtered_by=f.checker, reason=f.reason
            )
        for ranked in final.ranked if final is not None and final.ranked else decision.ranked:
            did = ranked.candidate.provider
            views[did] = CandidateView(
                provider=did,
                total=round(ranked.total, 4),
                scores=tuple(
                    ScoreView(s.ranker, round(s.score, 4), s.weight, s.detail)
                    for s in ranked.scores
                ),
                chosen=did in chosen,
            )
        for did, reason in declined.get(node, {}).items():
            views[did] = CandidateView(provider=did, filtered_by="bid", reason=reason)
        ordered = sorted(
            views.values(),
            key=lambda v: (not v.chosen, v.filtered_by != "", -(v.total or 0.0), v.provider),
        )
        nodes.append(
            NodeExplanation(
                node=node,
                chosen=chosen,
                candidates=tuple(ordered),
                considered=decision.considered,
                known=decision.known,
            )
        )
    return Explanation(
        deployment_id=record.deployment_id,
        status=record.status,
        pending=problem,
        nodes=tuple(nodes),
        attempts=record.attempts,
    )
