"""Feasibility: can this provider run this node at all? One small checker per concern.

A checker returns ``None`` when the candidate passes, or the reason it is filtered out. The
order of :data:`CHECKERS` is the order reasons are reported in; the first failing checker
decides, so cheap and common filters come first.
"""

from __future__ import annotations

from typing import Protocol

from dms.orchestrator.matching.candidate import Candidate, Placement
from dms.types.capability import Check


class FeasibilityChecker(Protocol):
    name: str

    def check(self, candidate: Candidate, placement: Placement) -> str | None: ...


class _DimensionChecker:
    """Checks one dimension of Capability.satisfies."""

    def __init__(self, name: str, dimension: str) -> None:
        self.name = name
        self.dimension = dimension

    def check(self, candidate: Candidate, placement: Placement) -> str | None:
        verdict: Check = candidate.capability.check(self.dimension, placement.requirement)
        return None if verdict.ok else verdict.reason


class PinnedPeer:
    name = "pinned"

    def check(self, candidate: Candidate, placement: Placement) -> str | None:
        if placement.pinned and placement.pinned not in (candidate.provider, candidate.peer_id):
            return f"node is pinned to {placement.pinned}"
        return None


class ExcludedPeer:
    name = "excluded"

    def check(self, candidate: Candidate, placement: Placement) -> str | None:
        if {candidate.provider, candidate.peer_id} & placement.excluded:
            return "provider is in exclude_peers"
        return None


class LocationChecker:
    """Accept/reject lists from the ensemble node against the provider's location."""

    name = "location"

    def check(self, candidate: Candidate, placement: Placement) -> str | None:
        where = candidate.location
        for area in placement.reject:
            if where.within(area):
                return f"located in {where.describe()}, rejected ({area.describe()})"
        if placement.accept and not any(where.within(a) for a in placement.accept):
            accepted = ", ".join(a.describe() for a in placement.accept)
            return f"located in {where.describe()}; accepts {accepted}"
        return None


class BudgetChecker:
    """The provider's asking price against the deployment's per-hour limit and budget."""

    name = "budget"

    def check(self, candidate: Candidate, placement: Placement) -> str | None:
        verdict = candidate.capability.check("price", placement.requirement)
        return None if verdict.ok else verdict.reason


CHECKERS: tuple[FeasibilityChecker, ...] = (
    PinnedPeer(),
    ExcludedPeer(),
    _DimensionChecker("executor", "executors"),
    _DimensionChecker("job_type", "job_types"),
    LocationChecker(),
    _DimensionChecker("resources", "resources"),
    _DimensionChecker("ports", "connectivity"),
    BudgetChecker(),
    _DimensionChecker("time", "time"),
    _DimensionChecker("libraries", "libraries"),
    _DimensionChecker("storage", "storage"),
    _DimensionChecker("kyc", "kyc"),
)
