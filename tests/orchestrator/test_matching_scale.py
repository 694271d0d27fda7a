"""Matching on a large view: a bounded search (Nomad's limit), rankers linear in the pool,
and the view's candidates made once per advert."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dms.actor import Handle
from dms.actor.handle import Address
from dms.jobs.protocol import Bid, CapacityAdvert
from dms.orchestrator.matching import Candidate, Placement, default_rankers, plan
from dms.orchestrator.view import AdvertView
from dms.types import CPU, Capability, Location, PriceInformation, Resources
from tests.orchestrator.test_matching import GERMANY, need, provider

FRANCE = Location(continent="EU", country="FR")


def pool(count: int, *, every_nth_german: int = 1) -> list[Candidate]:
    return [
        provider(
            f"p{i:04d}",
            price=100_000 + 7_919 * (i % 97),
            cores=1 + i % 8,
            where=GERMANY if i % every_nth_german == 0 else FRANCE,
        )
        for i in range(count)
    ]


class TestLimit:
    """With a limit the search stops after that many feasible providers and says so."""

    def test_stops_after_limit_feasible_candidates(self) -> None:
        result = plan([Placement(node="n", requirement=need())], pool(500), seed="d1", limit=8)
        decision = result.decisions["n"]
        assert result.ok
        assert (len(decision.ranked), decision.considered, decision.known) == (8, 8, 500)

    def test_infeasible_candidates_on_the_way_are_recorded(self) -> None:
        placement = Placement(node="n", requirement=need(), accept=(GERMANY,))
        result = plan([placement], pool(500, every_nth_german=5), seed="d1", limit=8)
        decision = result.decisions["n"]
        assert len(decision.ranked) == 8
        assert decision.considered == 8 + len(decision.filtered)
        assert {f.checker for f in decision.filtered} == {"location"}
        assert all(r.candidate.location == GERMANY for r in decision.ranked)

    def test_a_node_gets_at_least_its_replicas_whatever_the_limit(self) -> None:
        placement = Placement(node="n", requirement=need(), replicas=5)
        result = plan([placement], pool(100), seed="d1", limit=2)
        assert len(result.assignment["n"]) == 5
        assert len(result.decisions["n"].ranked) == 5

    def test_too_few_feasible_looks_at_everyone_and_says_why(self) -> None:
        placement = Placement(node="n", requirement=need(cores=7.5))
        candidates = pool(40)
        result = plan([placement], candidates, seed="d1", limit=8)
        decision = result.decisions["n"]
        assert decision.considered == 40
        feasible = [c for c in candidates if c.capability.resources.cpu.cores >= 7.5]
        assert {r.candidate.provider for r in decision.ranked} == {c.provider for c in feasible}

    def test_the_same_seed_looks_at_the_same_providers_and_others_spread_out(self) -> None:
        placement = Placement(node="n", requirement=need())
        candidates = pool(1000)

        def looked_at(seed: str) -> set[str]:
            ranked = plan([placement], candidates, seed=seed, limit=8).decisions["n"].ranked
            return {r.candidate.provider for r in ranked}

        assert looked_at("d1") == looked_at("d1")
        firsts = {min(looked_at(f"d{i}")) for i in range(20)}
        assert len(firsts) > 10

    def test_no_limit_considers_every_candidate(self) -> None:
        result = plan([Placement(node="n", requirement=need())], pool(300), seed="d1")
        decision = result.decisions["n"]
        assert (decision.considered, decision.known, len(decision.ranked)) == (300, 300, 300)


def naive_rank(candidates: list[Candidate], placement: Placement) -> list[tuple[str, float]]:
    """The rankers' formulas written out with min/max over the pool for every candidate."""

    def spread(value: float, low: float, high: float, lower_is_better: bool) -> float:
        if high <= low:
            return 1.0
        fraction = (value - low) / (high - low)
        return 1.0 - fraction if lower_is_better else fraction

    def speed(c: Candidate) -> float:
        cpu = c.capability.resources.cpu
        return cpu.cores * (cpu.clock_hz or 1_000_000_000)

    out = []
    prices = [c.capability.price.currency_per_hour for c in candidates]
    speeds = [speed(c) for c in candidates]
    for c in candidates:
        scores = [
            (
                spread(c.capability.price.currency_per_hour, min(prices), max(prices), True),
                placement.requirement.price.preference / 100,
            ),
            (
                spread(speed(c), min(speeds), max(speeds), False),
                placement.requirement.time.preference / 100,
            ),
            (c.free_fraction(), 0.3),
            # devices: work without GPUs prefers machines without free GPUs
            (0.0 if c.capability.resources.gpus else 1.0, 1.0)
            if not placement.requirement.resources.gpus
            else (1.0, 0.0),
            (1.0, 0.0),
        ]
        weights = sum(w for _, w in scores)
        out.append((c.provider, sum(s * w for s, w in scores) / weights if weights else 0.0))
    return out


class TestRankers:
    """Scores computed with the bounds kept per pool equal the scores computed afresh."""

    @settings(max_examples=60)
    @given(
        prices=st.lists(st.integers(min_value=0, max_value=9_000_000), min_size=1, max_size=30),
        price_pref=st.integers(min_value=0, max_value=100),
        time_pref=st.integers(min_value=0, max_value=100),
    )
    def test_totals_match_the_formulas(
        self, prices: list[int], price_pref: int, time_pref: int
    ) -> None:
        candidates = [
            provider(f"p{i}", price=p, cores=1 + i % 5, clock=1_000_000_000 * (1 + i % 3))
            for i, p in enumerate(prices)
        ]
        placement = Placement(
            node="n", requirement=need(cores=0.5, price_pref=price_pref, time_pref=time_pref)
        )
        result = plan([placement], candidates, seed="s")
        got = {r.candidate.provider: r.total for r in result.decisions["n"].ranked}
        for name, total in naive_rank(candidates, placement):
            assert got[name] == pytest.approx(total)

    def test_a_ranker_asked_about_another_pool_recomputes(self) -> None:
        price = default_rankers()[0]
        cheap, dear = provider("a", price=1), provider("b", price=9)
        placement = Placement(node="n", requirement=need())
        first: tuple[Candidate, ...] = (cheap, dear)
        second: tuple[Candidate, ...] = (dear, provider("c", price=99))
        assert price.score(dear, placement, first).score == 0.0
        assert price.score(dear, placement, second).score == 1.0


def advert(name: str, sequence: int, *, issued_ns: int = 0, ttl_ns: int = 10) -> CapacityAdvert:
    return CapacityAdvert(
        provider=Handle(id=name, did=f"did:{name}", address=Address(host=name, inbox="root")),
        capability=Capability(resources=Resources(cpu=CPU(cores=sequence))),
        onboarded=Resources(cpu=CPU(cores=8)),
        sequence=sequence,
        issued_ns=issued_ns,
        ttl_ns=ttl_ns,
    )


class TestView:
    """The view's candidates follow the newest advert and drop stale ones."""

    def test_candidates_follow_updates_and_expiry(self) -> None:
        view = AdvertView()
        view.update(advert("a", 1))
        view.update(advert("b", 1, issued_ns=100))
        first = view.candidates(now_ns=5)
        assert sorted(c.provider for c in first) == ["did:a", "did:b"]
        assert view.candidates(now_ns=5)[0] is first[0]  # made once, not per read
        view.update(advert("a", 2, issued_ns=20))
        cores = {c.provider: c.capability.resources.cpu.cores for c in view.candidates(25)}
        assert cores == {"did:a": 2.0, "did:b": 1.0}
        assert [c.provider for c in view.candidates(now_ns=105)] == ["did:b"]
        view.forget("did:b")
        assert view.candidates(now_ns=105) == []

    def test_a_bid_tells_what_is_left_until_the_next_advert(self) -> None:
        view = AdvertView()
        view.update(advert("a", 6))
        a = advert("a", 6)
        bid = Bid(
            bid_id="b1",
            request_id="r1",
            deployment_id="d1",
            node="n",
            provider=a.provider,
            price=PriceInformation(),
            capability=Capability(resources=Resources(cpu=CPU(cores=4))),
            onboarded=a.onboarded,
            expires_ns=10,
        )
        view.note_bid(bid)
        (candidate,) = view.candidates(now_ns=5)
        assert candidate.capability.resources.cpu.cores == 4.0
        view.update(advert("a", 7))  # the provider's next advert wins again
        assert view.candidates(now_ns=5)[0].capability.resources.cpu.cores == 7.0
        view.note_bid(msgspec.structs.replace(bid, provider=advert("z", 1).provider))
        assert [c.provider for c in view.candidates(now_ns=5)] == ["did:a"]  # unknown: ignored


class TestViewExpiry:
    """Expiry by time to live, whatever the order of updates; replaced adverts never expire
    their successors."""

    @settings(max_examples=80)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["a", "b", "c"]),
                st.integers(min_value=0, max_value=50),
                st.integers(min_value=0, max_value=30),
                st.integers(min_value=1, max_value=20),
            ),
            max_size=30,
        ),
        st.integers(min_value=0, max_value=100),
    )
    def test_live_matches_a_pass_over_every_advert(
        self, updates: list[tuple[str, int, int, int]], read_at: int
    ) -> None:
        view = AdvertView()
        latest: dict[str, CapacityAdvert] = {}
        for name, sequence, issued, ttl in updates:
            item = advert(name, sequence, issued_ns=issued, ttl_ns=ttl)
            if view.update(item):
                latest[f"did:{name}"] = item
        expected = {did for did, a in latest.items() if not (a.issued_ns + a.ttl_ns < read_at)}
        assert {c.provider for c in view.candidates(read_at)} == expected
        assert {a.provider.did for a in view.live(read_at)} == expected
