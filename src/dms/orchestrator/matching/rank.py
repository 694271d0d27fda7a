"""Ranking: where is best? Each ranker scores a candidate in [0, 1] and says how much it counts.

Scores are relative to the other candidates of the same placement (the cheapest scores 1 on
price). The final score is the weighted mean; ties are broken by a hash seeded with the
deployment id, so a placement can be replayed for a post-mortem.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Sequence
from typing import Protocol

import msgspec

from dms.orchestrator.matching.candidate import Candidate, Placement


class Score(msgspec.Struct, frozen=True):
    ranker: str
    score: float
    weight: float
    detail: str


class Ranked(msgspec.Struct, frozen=True, kw_only=True):
    candidate: Candidate
    total: float
    scores: tuple[Score, ...]
    tiebreak: int


class Ranker(Protocol):
    name: str

    def score(
        self, candidate: Candidate, placement: Placement, pool: Sequence[Candidate]
    ) -> Score: ...


class _Bounds:
    """The lowest and highest value over the pool being ranked, computed once per pool.

    :func:`rank` hands every ranker the same tuple for all candidates of one placement, so
    the bounds are kept for that tuple (by identity: a tuple never changes) instead of being
    recomputed for each candidate, which would make ranking quadratic in the pool's size.
    """

    __slots__ = ("_bounds", "_pool", "_value")

    def __init__(self, value: Callable[[Candidate], float | None]) -> None:
        self._value = value
        self._pool: tuple[Candidate, ...] | None = None
        self._bounds: tuple[float, float] | None = None

    def __call__(self, pool: Sequence[Candidate]) -> tuple[float, float] | None:
        if pool is self._pool:
            return self._bounds
        values = [v for c in pool if (v := self._value(c)) is not None]
        bounds = (min(values), max(values)) if values else None
        if isinstance(pool, tuple):
            self._pool, self._bounds = pool, bounds
        return bounds


def _spread(value: float, low: float, high: float, *, lower_is_better: bool) -> float:
    if high <= low:
        return 1.0
    fraction = (value - low) / (high - low)
    return 1.0 - fraction if lower_is_better else fraction


class PriceRanker:
    """Cheaper is better, weighted by the deployment's PriceInformation.preference."""

    name = "price"

    def __init__(self) -> None:
        self._bounds = _Bounds(lambda c: c.capability.price.currency_per_hour)

    def score(self, candidate: Candidate, placement: Placement, pool: Sequence[Candidate]) -> Score:
        mine = candidate.capability.price.currency_per_hour
        low, high = self._bounds(pool) or (mine, mine)
        value = _spread(mine, low, high, lower_is_better=True)
        weight = placement.requirement.price.preference / 100
        return Score(self.name, value, weight, f"asks {candidate.capability.price.describe()}")


def _speed(candidate: Candidate) -> float:
    """Higher is faster: the bid's estimate when known, else free cores times clock."""
    if candidate.time_estimate_s is not None:
        return 1.0 / max(candidate.time_estimate_s, 1e-3)
    cpu = candidate.capability.resources.cpu
    return cpu.cores * (cpu.clock_hz or 1_000_000_000)


class TimeRanker:
    """Faster is better, weighted by the deployment's TimeInformation.preference."""

    name = "time"

    def __init__(self) -> None:
        self._bounds = _Bounds(_speed)

    def score(self, candidate: Candidate, placement: Placement, pool: Sequence[Candidate]) -> Score:
        mine = _speed(candidate)
        low, high = self._bounds(pool) or (mine, mine)
        value = _spread(mine, low, high, lower_is_better=False)
        weight = placement.requirement.time.preference / 100
        if candidate.time_estimate_s is not None:
            detail = f"estimates {candidate.time_estimate_s:.1f}s"
        else:
            detail = f"{candidate.capability.resources.cpu.describe()} free"
        return Score(self.name, value, weight, detail)


class LoadStrategy(enum.StrEnum):
    SPREAD = "spread"
    """Prefer the least loaded providers (resilience, less contention)."""
    BINPACK = "binpack"
    """Prefer the most loaded providers that still fit (keeps others free for big jobs)."""


class LoadRanker:
    name = "load"

    def __init__(self, strategy: LoadStrategy = LoadStrategy.SPREAD, weight: float = 0.3) -> None:
        self.strategy = strategy
        self.weight = weight

    def score(self, candidate: Candidate, placement: Placement, pool: Sequence[Candidate]) -> Score:
        free = candidate.free_fraction()
        value = free if self.strategy is LoadStrategy.SPREAD else 1.0 - free
        return Score(
            self.name, value, self.weight, f"{free:.0%} of its cores free ({self.strategy})"
        )


class DeviceKeeper:
    """GPUs are scarce: work that needs none goes to machines without free GPUs first, so a
    GPU machine's cores, memory and disk stay for the work that needs its GPUs (otherwise a
    GPU machine with many free cores attracts everything, and GPU work finds its GPUs free
    but the machine full). Weighted like a full price or time preference: a deployment that
    cares only for speed may still take the GPU machine. Neutral for work that needs GPUs."""

    name = "devices"

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def score(self, candidate: Candidate, placement: Placement, pool: Sequence[Candidate]) -> Score:
        if placement.requirement.resources.gpus:
            return Score(self.name, 1.0, 0.0, "needs GPUs")
        free = len(candidate.capability.resources.gpus)
        if free:
            return Score(self.name, 0.0, self.weight, f"{free} GPU(s) free: kept for GPU work")
        return Score(self.name, 1.0, self.weight, "no GPU free")


class RTTRanker:
    """Closer is better; unknown RTT scores as the worst known one."""

    name = "rtt"

    def __init__(self, weight: float = 0.2) -> None:
        self.weight = weight
        self._bounds = _Bounds(lambda c: c.rtt_ms)

    def score(self, candidate: Candidate, placement: Placement, pool: Sequence[Candidate]) -> Score:
        bounds = self._bounds(pool)
        if bounds is None:
            return Score(self.name, 1.0, 0.0, "no RTT measured")
        best, worst = bounds
        mine = candidate.rtt_ms if candidate.rtt_ms is not None else worst
        value = _spread(mine, best, worst, lower_is_better=True)
        detail = f"{candidate.rtt_ms:.1f} ms" if candidate.rtt_ms is not None else "RTT unknown"
        return Score(self.name, value, self.weight, detail)


def default_rankers(load: LoadStrategy = LoadStrategy.SPREAD) -> tuple[Ranker, ...]:
    return (PriceRanker(), TimeRanker(), LoadRanker(load), DeviceKeeper(), RTTRanker())


def _tiebreak(seed: str, provider: str) -> int:
    digest = hashlib.blake2b(f"{seed}/{provider}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank(
    candidates: Sequence[Candidate],
    placement: Placement,
    rankers: Sequence[Ranker],
    seed: str,
) -> list[Ranked]:
    """Candidates best first, each with the scores that put it there."""
    out: list[Ranked] = []
    pool = tuple(candidates)
    for candidate in pool:
        scores = tuple(r.score(candidate, placement, pool) for r in rankers)
        weights = sum(s.weight for s in scores)
        total = sum(s.score * s.weight for s in scores) / weights if weights else 0.0
        out.append(
            Ranked(
                candidate=candidate,
                total=total,
                scores=scores,
                tiebreak=_tiebreak(seed, candidate.provider),
            )
        )
    out.sort(key=lambda r: (-r.total, r.tiebreak))
    return out
