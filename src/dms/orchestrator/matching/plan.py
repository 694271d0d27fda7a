"""Planning: pick providers for every ensemble node at once.

The pipeline, per ensemble node: feasibility (filter, with the reason for each provider left
out) -> rank (scores, best first). Then one search over all nodes together: each node gets
``replicas`` distinct providers, a provider hosting several nodes must have room for all of them,
and every edge's RTT / bandwidth limit must hold between the providers chosen for its two ends.
The search tries the most constrained node first and the best-ranked providers first, with a
step budget so a hopeless ensemble fails quickly. Everything it decided is returned so
``explain`` can answer "why there" and "why pending".
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import msgspec

from dms.errors import InsufficientResources
from dms.orchestrator.matching.candidate import Candidate, Placement
from dms.orchestrator.matching.feasibility import CHECKERS, FeasibilityChecker
from dms.orchestrator.matching.rank import Ranked, Ranker, default_rankers, rank
from dms.types import Capability


class EdgeConstraint(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    target: str
    max_rtt_ms: float = 0.0
    """0 = no limit."""
    min_bandwidth_bps: int = 0
    """0 = no limit."""


class Filtered(msgspec.Struct, frozen=True):
    provider: str
    checker: str
    reason: str


class NodeDecision(msgspec.Struct, frozen=True, kw_only=True):
    node: str
    filtered: tuple[Filtered, ...]
    ranked: tuple[Ranked, ...]
    chosen: tuple[str, ...] = ()
    considered: int = 0
    """Candidates looked at (filtered or ranked): fewer than ``known`` under a limit."""
    known: int = 0
    """Candidates there were for this node."""


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    assignment: dict[str, tuple[str, ...]]
    """Ensemble node -> providers (one per replica). Empty when no plan was found."""
    decisions: dict[str, NodeDecision]
    problem: str = ""
    """Why no plan was found (empty on success)."""

    @property
    def ok(self) -> bool:
        return not self.problem


def filter_candidates(
    candidates: Sequence[Candidate],
    placement: Placement,
    checkers: Sequence[FeasibilityChecker] = CHECKERS,
    *,
    limit: int = 0,
    start: int = 0,
) -> tuple[list[Candidate], list[Filtered]]:
    """The feasible candidates and why the others are not. With ``limit`` (0: none), stop
    once that many are feasible, looking from index ``start`` on (and around)."""
    feasible: list[Candidate] = []
    filtered: list[Filtered] = []
    count = len(candidates)
    for i in range(count):
        candidate = candidates[(start + i) % count] if start else candidates[i]
        for checker in checkers:
            reason = checker.check(candidate, placement)
            if reason is not None:
                filtered.append(Filtered(candidate.provider, checker.name, reason))
                break
        else:
            feasible.append(candidate)
            if limit and len(feasible) >= limit:
                break
    return feasible, filtered


def _start(seed: str, node: str, count: int) -> int:
    """Where a limited search starts: spread over the pool by deployment, replayable."""
    if count <= 1:
        return 0
    digest = hashlib.blake2b(f"{seed}/{node}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def _edge_ok(edge: EdgeConstraint, a: Candidate, b: Candidate) -> bool:
    if edge.max_rtt_ms:
        rtt = a.rtt_to(b)
        if rtt is None or rtt > edge.max_rtt_ms:
            return False
    if edge.min_bandwidth_bps and a.provider != b.provider:
        known = [
            bw
            for bw in (a.peer_bandwidth_bps.get(b.provider), b.peer_bandwidth_bps.get(a.provider))
            if bw is not None
        ]
        if not known or max(known) < edge.min_bandwidth_bps:
            return False
    return True


def _summarise(filtered: Sequence[Filtered], total: int) -> str:
    by_checker: dict[str, int] = {}
    example: dict[str, str] = {}
    for f in filtered:
        by_checker[f.checker] = by_checker.get(f.checker, 0) + 1
        example.setdefault(f.checker, f.reason)
    parts = [
        f"{n} by {name} (e.g. {example[name]})"
        for name, n in sorted(by_checker.items(), key=lambda kv: -kv[1])
    ]
    return (
        f"{total} provider(s) known, filtered: " + "; ".join(parts)
        if parts
        else ("no providers known")
    )


def plan(
    placements: Sequence[Placement],
    candidates: Sequence[Candidate],
    *,
    edges: Sequence[EdgeConstraint] = (),
    rankers: Sequence[Ranker] | None = None,
    seed: str = "",
    max_steps: int = 20_000,
    pools: Mapping[str, Sequence[Candidate]] | None = None,
    reserved: bool = False,
    limit: int = 0,
) -> Plan:
    """Choose providers for every placement, or say why that is impossible now.

    ``pools`` gives each node its own candidates (the providers that bid for it) instead of
    ``candidates`` for all; with ``reserved`` their capacity is already held for that node (a
    bid's hold), so nodes sharing a provider are not checked against each other's needs.

    ``limit`` (0: none) bounds the work per node on a large pool, as Nomad's limit iterator
    does: candidates are looked at from a point that depends on ``seed`` and the node, and
    the search stops once ``limit`` of them (at least the node's replicas) are feasible. The
    rest are neither filtered nor ranked; each decision says how many were considered.
    """
    rankers = default_rankers() if rankers is None else rankers
    decisions: dict[str, NodeDecision] = {}
    order: dict[str, list[Candidate]] = {}
    for placement in placements:
        pool = candidates if pools is None else pools.get(placement.node, ())
        if limit:
            feasible, filtered = filter_candidates(
                pool,
                placement,
                limit=max(limit, placement.replicas),
                start=_start(seed, placement.node, len(pool)),
            )
        else:
            feasible, filtered = filter_candidates(pool, placement)
        ranked = rank(feasible, placement, rankers, seed)
        decisions[placement.node] = NodeDecision(
            node=placement.node,
            filtered=tuple(filtered),
            ranked=tuple(ranked),
            considered=len(feasible) + len(filtered),
            known=len(pool),
        )
        order[placement.node] = [r.candidate for r in ranked]

    for placement in placements:
        have = len(order[placement.node])
        if have < placement.replicas:
            known = len(candidates) if pools is None else len(pools.get(placement.node, ()))
            detail = _summarise(decisions[placement.node].filtered, known)
            need = f"{placement.replicas} providers" if placement.replicas > 1 else "a provider"
            return Plan(
                assignment={},
                decisions=decisions,
                problem=f"node {placement.node}: needs {need}, {have} feasible; {detail}",
            )

    by_node = {p.node: p for p in placements}
    slots = [
        (p.node, i)
        for p in sorted(placements, key=lambda p: (len(order[p.node]) / p.replicas, p.node))
        for i in range(p.replicas)
    ]
    remaining: dict[str, Capability] = {}
    ranked_providers = {c.provider for picked in order.values() for c in picked}
    for pool in [candidates, *(pools or {}).values()]:
        for c in pool:
            if c.provider in ranked_providers:
                remaining.setdefault(c.provider, c.capability)
    chosen: dict[str, list[Candidate]] = {p.node: [] for p in placements}
    steps = 0
    deepest_index, deepest_why = 0, ""

    def note(index: int, why: str) -> None:
        nonlocal deepest_index, deepest_why
        if index >= deepest_index:
            deepest_index, deepest_why = index, why

    def related_edges(node: str) -> list[tuple[EdgeConstraint, str]]:
        out = []
        for e in edges:
            if e.source == node:
                out.append((e, e.target))
            elif e.target == node:
                out.append((e, e.source))
        return out

    def search(index: int) -> bool:
        nonlocal steps
        if index == len(slots):
            return True
        node, _ = slots[index]
        placement = by_node[node]
        for candidate in order[node]:
            steps += 1
            if steps > max_steps:
                return False
            if any(c.provider == candidate.provider for c in chosen[node]):
                continue  # replicas of one node never share a provider
            if not all(
                _edge_ok(edge, candidate, other)
                for edge, other_node in related_edges(node)
                for other in chosen.get(other_node, [])
            ):
                note(index, f"node {node}: no provider meets the edge constraints")
                continue
            before = remaining[candidate.provider]
            try:
                if not reserved:
                    remaining[candidate.provider] = before.subtract(placement.requirement)
            except InsufficientResources as exc:
                note(
                    index,
                    f"node {node}: {candidate.provider} has no room left once other "
                    f"nodes are placed ({exc})",
                )
                continue
            chosen[node].append(candidate)
            if search(index + 1):
                return True
            chosen[node].pop()
            remaining[candidate.provider] = before
        return False

    if not search(0):
        why = deepest_why or "no combination of providers satisfies every constraint"
        if steps > max_steps:
            why += f" (search stopped after {max_steps} steps)"
        return Plan(assignment={}, decisions=decisions, problem=why)
    assignment = {node: tuple(c.provider for c in picked) for node, picked in chosen.items()}
    decisions = {
        node: msgspec.structs.replace(d, chosen=assignment[node]) for node, d in decisions.items()
    }
    return Plan(assignment=assignment, decisions=decisions)
