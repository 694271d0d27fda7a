"""Simulated machines and demand: seeded, exact in their totals, valid ensemble files."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dms.jobs import parse_ensemble
from dms.onboarding.validate import validate
from dms.resources import idle_usage
from dms.sim import InvalidSimulation, WorkloadSpec, ensembles, provider_profiles
from dms.types import JobType, Location


class TestProfiles:
    """A population is the same for the same seed, and every machine onboards what it says."""

    def test_same_seed_same_population(self) -> None:
        assert provider_profiles(50, seed=3) == provider_profiles(50, seed=3)
        assert provider_profiles(50, seed=3) != provider_profiles(50, seed=4)

    def test_every_profile_onboards_within_its_machine(self) -> None:
        for profile in provider_profiles(60, seed=1, gpu_share=0.5):
            spec = profile.hardware()
            resources = validate(profile.onboard_request(), spec, idle_usage(spec))
            assert resources.cpu.cores == profile.cores
            assert len(resources.gpus) == len(profile.gpus)

    def test_gpu_share_and_places(self) -> None:
        profiles = provider_profiles(700, seed=2, gpu_share=0.1)
        with_gpus = sum(1 for p in profiles if p.gpus)
        assert 40 <= with_gpus <= 110
        assert {p.location.continent for p in profiles} == {"EU", "NA", "AS"}

    @pytest.mark.parametrize(
        ("count", "share", "field"),
        [(-1, 0.1, "providers"), (3, 1.5, "gpu_share")],
        ids=["negative-count", "share-above-one"],
    )
    def test_bad_settings_are_refused_naming_them(
        self, count: int, share: float, field: str
    ) -> None:
        with pytest.raises(InvalidSimulation, match=field):
            provider_profiles(count, gpu_share=share)


class TestEnsembles:
    """The demand adds up exactly, parses, and carries what its summary says."""

    @settings(max_examples=25, deadline=None)
    @given(total=st.integers(min_value=0, max_value=300), seed=st.integers(0, 1000))
    def test_allocations_add_up_exactly(self, total: int, seed: int) -> None:
        items = list(ensembles(total, seed=seed))
        assert sum(i.allocations for i in items) == total

    def test_items_parse_and_match_their_summary(self) -> None:
        spec = WorkloadSpec(gpu_fraction=0.3, located_fraction=0.5)
        for item in ensembles(400, seed=7, spec=spec):
            ens = parse_ensemble(item.text, item.name)
            assert len(ens.allocations) == item.allocations
            assert len(ens.nodes) == item.nodes
            gpus = sum(1 for a in ens.allocations.values() if a.resources.gpus)
            assert gpus == item.gpus
            located = any(n.location.accept or n.location.reject for n in ens.nodes.values())
            assert located == item.located
            assert {a.type for a in ens.allocations.values()} == {JobType.SERVICE}
            assert ens.price.preference + ens.time.preference == 100
            for node in ens.nodes.values():
                for place in (*node.location.accept, *node.location.reject):
                    Location.parse(place)

    def test_same_seed_same_demand(self) -> None:
        assert list(ensembles(100, seed=5)) == list(ensembles(100, seed=5))

    def test_tasks_run_for_the_duration_asked(self) -> None:
        spec = WorkloadSpec(job_type=JobType.TASK, task_duration="3s")
        item = next(ensembles(1, spec=spec))
        ens = parse_ensemble(item.text)
        (alloc,) = ens.allocations.values()
        assert alloc.type is JobType.TASK
        assert alloc.execution.args == ("duration=3s",)

    @pytest.mark.parametrize(
        ("spec", "field"),
        [
            (WorkloadSpec(gpu_fraction=-0.1), "gpu_fraction"),
            (WorkloadSpec(sizes=()), "sizes"),
            (WorkloadSpec(sizes=(0,)), "sizes"),
            (WorkloadSpec(job_type=JobType.BATCH), "job_type"),
        ],
        ids=["negative-fraction", "no-sizes", "zero-size", "batch"],
    )
    def test_bad_specs_are_refused_naming_the_field(self, spec: WorkloadSpec, field: str) -> None:
        with pytest.raises(InvalidSimulation, match=field):
            list(ensembles(10, spec=spec))
