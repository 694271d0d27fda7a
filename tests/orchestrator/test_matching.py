"""Matching: feasibility filters with reasons, rankers follow the preferences, plans hold."""

from __future__ import annotations

import itertools
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dms.errors import InsufficientResources
from dms.jobs import parse_ensemble
from dms.orchestrator.matching import (
    Candidate,
    EdgeConstraint,
    LoadStrategy,
    Placement,
    default_rankers,
    plan,
)
from dms.orchestrator.matching.ensemble import edges, placements
from dms.types import (
    CPU,
    GPU,
    Capability,
    ExecutorType,
    GPUVendor,
    JobType,
    Location,
    PriceInformation,
    Resources,
    TimeInformation,
)

GiB = 1024**3
GERMANY = Location(continent="EU", country="DE")


def provider(
    name: str,
    cores: float = 4,
    ram: int = 8 * GiB,
    price: int = 1_000_000,
    clock: int = 2_000_000_000,
    where: Location = GERMANY,
    gpus: tuple[GPU, ...] = (),
    rtt: dict[str, float] | None = None,
    onboarded: float = 8,
) -> Candidate:
    return Candidate(
        provider=name,
        capability=Capability(
            executors=(ExecutorType.WASM, ExecutorType.PROCESS),
            job_types=(JobType.TASK, JobType.SERVICE, JobType.BATCH),
            resources=Resources(
                cpu=CPU(cores=cores, clock_hz=clock), ram=ram, disk=100 * GiB, gpus=gpus
            ),
            price=PriceInformation(currency="NTX", currency_per_hour=price),
        ),
        location=where,
        onboarded_cores=onboarded,
        peer_rtt_ms=rtt or {},
    )


def need(
    cores: float = 1,
    ram: int = GiB,
    price_pref: int = 50,
    time_pref: int = 50,
    max_price: int = 0,
    **kw: object,
) -> Capability:
    return Capability(
        executors=(ExecutorType.WASM,),
        job_types=(JobType.TASK,),
        resources=Resources(cpu=CPU(cores=cores), ram=ram, **kw),  # type: ignore[arg-type]
        price=PriceInformation(currency="NTX", currency_per_hour=max_price, preference=price_pref),
        time=TimeInformation(preference=time_pref),
    )


class TestPreferences:
    """Changing the price/time preference changes the choice as specified."""

    pool = (
        provider("cheap-slow", cores=2, price=100_000, clock=1_000_000_000),
        provider("dear-fast", cores=8, price=5_000_000, clock=3_500_000_000),
    )

    @pytest.mark.parametrize(
        ("price_pref", "time_pref", "winner"),
        [
            (100, 0, "cheap-slow"),
            (0, 100, "dear-fast"),
            (90, 10, "cheap-slow"),
            (10, 90, "dear-fast"),
        ],
    )
    def test_preference_decides(self, price_pref: int, time_pref: int, winner: str) -> None:
        p = Placement(node="n", requirement=need(price_pref=price_pref, time_pref=time_pref))
        result = plan([p], self.pool, rankers=default_rankers(), seed="d1")
        assert result.assignment == {"n": (winner,)}
        ranked = result.decisions["n"].ranked
        assert {s.ranker for s in ranked[0].scores} == {"price", "time", "load", "devices", "rtt"}

    def test_scores_are_recorded_with_weights(self) -> None:
        p = Placement(node="n", requirement=need(price_pref=100, time_pref=0))
        result = plan([p], self.pool, seed="d1")
        top = result.decisions["n"].ranked[0]
        price = next(s for s in top.scores if s.ranker == "price")
        assert (price.score, price.weight) == (1.0, 1.0)
        assert "0.1NTX/h" in price.detail

    def test_work_without_gpus_leaves_the_gpu_machine_alone(self) -> None:
        """Even when the GPU machine is faster and has more cores free."""
        gpu = GPU(index=0, vendor=GPUVendor.NVIDIA, model="RTX 4090", vram=24 * GiB)
        pool = [
            provider("gpu-box", cores=16, onboarded=16, gpus=(gpu,)),
            provider("plain", cores=8, onboarded=16),
        ]
        cpu_only = Placement(node="n", requirement=need(price_pref=50, time_pref=50))
        result = plan([cpu_only], pool, seed="d1")
        assert result.assignment == {"n": ("plain",)}
        scores = {s.ranker: s for s in result.decisions["n"].ranked[1].scores}
        assert "kept for GPU work" in scores["devices"].detail
        with_gpu = Placement(
            node="n",
            requirement=need(
                price_pref=50, time_pref=50, gpus=(GPU(vendor=GPUVendor.NVIDIA, vram=8 * GiB),)
            ),
        )
        assert plan([with_gpu], pool, seed="d1").assignment == {"n": ("gpu-box",)}

    def test_load_strategy(self) -> None:
        pool = [provider("busy", cores=1, onboarded=8), provider("idle", cores=8, onboarded=8)]
        p = Placement(node="n", requirement=need(price_pref=0, time_pref=0))
        spread = plan([p], pool, rankers=default_rankers(LoadStrategy.SPREAD))
        pack = plan([p], pool, rankers=default_rankers(LoadStrategy.BINPACK))
        assert spread.assignment["n"] == ("idle",)
        assert pack.assignment["n"] == ("busy",)


class TestFeasibility:
    """Providers that cannot host a node are filtered out with the checker and reason."""

    def test_location_accept_and_reject(self) -> None:
        pool = [
            provider("de", where=Location(continent="EU", country="DE")),
            provider("fr", where=Location(continent="EU", country="FR")),
            provider("us", where=Location(continent="NA", country="US")),
        ]
        p = Placement(
            node="n",
            requirement=need(),
            accept=(Location(continent="EU"),),
            reject=(Location(continent="EU", country="FR"),),
        )
        result = plan([p], pool)
        assert result.assignment == {"n": ("de",)}
        reasons = {f.provider: (f.checker, f.reason) for f in result.decisions["n"].filtered}
        assert reasons["fr"] == ("location", "located in EU/FR, rejected (EU/FR)")
        assert reasons["us"] == ("location", "located in NA/US; accepts EU")

    def test_nothing_eligible_says_why(self) -> None:
        pool = [provider("us", where=Location(continent="NA"))]
        p = Placement(node="web", requirement=need(), accept=(Location(continent="AS"),))
        result = plan([p], pool)
        assert not result.ok
        assert result.problem.startswith("node web: needs a provider, 0 feasible")
        assert "1 by location" in result.problem

    @pytest.mark.parametrize(
        ("requirement", "checker"),
        [
            (need(cores=16), "resources"),
            (need(gpus=(GPU(vendor=GPUVendor.NVIDIA, vram=GiB),)), "resources"),
            (need(max_price=10), "budget"),
            (Capability(executors=(ExecutorType.DOCKER,)), "executor"),
            (Capability(job_types=(JobType.RECURRING,)), "job_type"),
            (Capability(libraries=("cuda",)), "libraries"),
        ],
        ids=["cores", "gpu", "price", "executor", "job-type", "libraries"],
    )
    def test_each_checker_filters(self, requirement: Capability, checker: str) -> None:
        result = plan([Placement(node="n", requirement=requirement)], [provider("p")])
        assert [f.checker for f in result.decisions["n"].filtered] == [checker]

    def test_pinned_and_excluded(self) -> None:
        pool = [provider("a"), provider("b"), provider("c")]
        pinned = plan([Placement(node="n", requirement=need(), pinned="c")], pool)
        assert pinned.assignment == {"n": ("c",)}
        excluded = plan(
            [Placement(node="n", requirement=need(), excluded=frozenset({"a", "b"}))], pool
        )
        assert excluded.assignment == {"n": ("c",)}


class TestPlan:
    """Plans honour replicas, shared capacity and edge constraints."""

    def test_replicas_go_to_distinct_providers(self) -> None:
        pool = [provider("a"), provider("b")]
        result = plan([Placement(node="n", requirement=need(), replicas=2)], pool)
        assert sorted(result.assignment["n"]) == ["a", "b"]
        too_many = plan([Placement(node="n", requirement=need(), replicas=3)], pool)
        assert "needs 3 providers, 2 feasible" in too_many.problem

    def test_nodes_sharing_a_provider_must_fit_together(self) -> None:
        pool = [provider("a", cores=4), provider("b", cores=4)]
        ps = [
            Placement(node="x", requirement=need(cores=3)),
            Placement(node="y", requirement=need(cores=3)),
        ]
        result = plan(ps, pool)
        assert {result.assignment["x"][0], result.assignment["y"][0]} == {"a", "b"}
        crowded = plan(ps, [provider("a", cores=4)])
        assert "no room left" in crowded.problem

    def test_edge_rtt_limits_the_pair(self) -> None:
        pool = [
            provider("a", cores=1, rtt={"b": 80.0, "c": 5.0}),
            provider("b", cores=1, rtt={"a": 80.0, "c": 90.0}),
            provider("c", cores=1),
        ]
        ps = [Placement(node="x", requirement=need()), Placement(node="y", requirement=need())]
        result = plan(ps, pool, edges=[EdgeConstraint(source="x", target="y", max_rtt_ms=10)])
        assert set(result.assignment["x"] + result.assignment["y"]) == {"a", "c"}

    def test_from_an_ensemble(self) -> None:
        ens = parse_ensemble(
            textwrap.dedent("""\
            version: V1
            allocations:
              a: {resources: {cpu: 1, ram: 1GiB}, execution: {module: a.wasm}}
              b: {resources: {cpu: 1, ram: 1GiB}, execution: {module: b.wasm}}
            nodes:
              x: {allocations: [a], location: {accept: [EU]}}
              y: {allocations: [b], redundancy: 2}
            edges: [{from: x, to: y, rtt: 50ms}]
            """)
        )
        pool = [provider(n, rtt={m: 10.0 for m in "pqr" if m != n}) for n in "pqr"]
        result = plan(placements(ens), pool, edges=edges(ens), seed="dep")
        assert result.ok, result.problem
        assert len(set(result.assignment["y"])) == 2


@st.composite
def scenario(draw: st.DrawFn) -> tuple[list[Placement], list[Candidate], list[EdgeConstraint]]:
    names = [f"p{i}" for i in range(draw(st.integers(1, 4)))]
    pool = []
    for n in names:
        rtt = {m: float(draw(st.integers(1, 100))) for m in names if m != n}
        pool.append(
            provider(
                n,
                cores=draw(st.integers(1, 6)),
                ram=draw(st.integers(1, 6)) * GiB,
                where=Location(continent=draw(st.sampled_from(["EU", "NA"]))),
                rtt=rtt,
            )
        )
    ps = []
    for i in range(draw(st.integers(1, 3))):
        accept = draw(st.sampled_from([(), (Location(continent="EU"),)]))
        ps.append(
            Placement(
                node=f"n{i}",
                requirement=need(cores=draw(st.integers(1, 4)), ram=draw(st.integers(1, 4)) * GiB),
                accept=accept,
                replicas=draw(st.integers(1, 2)),
            )
        )
    es = []
    if len(ps) > 1 and draw(st.booleans()):
        es.append(
            EdgeConstraint(source="n0", target="n1", max_rtt_ms=float(draw(st.integers(1, 100))))
        )
    return ps, pool, es


def valid(
    assignment: dict[str, tuple[str, ...]],
    ps: list[Placement],
    pool: list[Candidate],
    es: list[EdgeConstraint],
) -> bool:
    by_name = {c.provider: c for c in pool}
    left = {c.provider: c.capability for c in pool}
    for p in ps:
        chosen = assignment[p.node]
        if len(chosen) != p.replicas or len(set(chosen)) != len(chosen):
            return False
        for name in chosen:
            c = by_name[name]
            if p.accept and not any(c.location.within(a) for a in p.accept):
                return False
            try:
                left[name] = left[name].subtract(p.requirement)
            except InsufficientResources:
                return False
    for e in es:
        for a, b in itertools.product(assignment[e.source], assignment[e.target]):
            rtt = by_name[a].rtt_to(by_name[b])
            if rtt is None or rtt > e.max_rtt_ms:
                return False
    return True


def brute_force(ps: list[Placement], pool: list[Candidate], es: list[EdgeConstraint]) -> bool:
    names = [c.provider for c in pool]
    options = [itertools.permutations(names, p.replicas) for p in ps]
    return any(
        valid({p.node: combo for p, combo in zip(ps, combos, strict=True)}, ps, pool, es)
        for combos in itertools.product(*options)
    )


class TestProperties:
    """Over random pools and ensembles: plans never break a constraint and are never missed."""

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(scenario())
    def test_plan_is_valid_and_complete(
        self, case: tuple[list[Placement], list[Candidate], list[EdgeConstraint]]
    ) -> None:
        ps, pool, es = case
        result = plan(ps, pool, edges=es, seed="x")
        if result.ok:
            assert valid(result.assignment, ps, pool, es)
        else:
            assert result.problem
            assert not brute_force(ps, pool, es)
