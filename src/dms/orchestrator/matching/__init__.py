"""Matching: feasibility -> rank -> plan, each stage recording why.

- candidate.py: Candidate (a provider as seen from its advert or bid) and Placement (an
  ensemble node to place, with its requirement and constraints);
- feasibility.py: one checker per concern; the reason a provider was filtered out;
- rank.py: rankers (price, time, load, RTT) that each record a score and its weight;
- plan.py: the search that places every node (replicas, shared capacity, edges) and the
  decisions behind it.
"""

from dms.orchestrator.matching.candidate import Candidate, Placement
from dms.orchestrator.matching.feasibility import CHECKERS, FeasibilityChecker
from dms.orchestrator.matching.plan import (
    EdgeConstraint,
    Filtered,
    NodeDecision,
    Plan,
    filter_candidates,
    plan,
)
from dms.orchestrator.matching.rank import (
    LoadStrategy,
    Ranked,
    Ranker,
    Score,
    default_rankers,
    rank,
)

__all__ = [
    "CHECKERS",
    "Candidate",
    "EdgeConstraint",
    "FeasibilityChecker",
    "Filtered",
    "LoadStrategy",
    "NodeDecision",
    "Placement",
    "Plan",
    "Ranked",
    "Ranker",
    "Score",
    "default_rankers",
    "filter_candidates",
    "plan",
    "rank",
]
