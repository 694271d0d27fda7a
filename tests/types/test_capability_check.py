"""Capability.check: one dimension of satisfies, the same answer for less work."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dms.types import DIMENSIONS, Capability, ExecutorType, JobType, Location, PriceInformation
from tests.types.strategies import machines, requirements

executors = st.lists(st.sampled_from(list(ExecutorType)), max_size=3, unique=True).map(tuple)
job_types = st.lists(st.sampled_from(list(JobType)), max_size=3, unique=True).map(tuple)
places = st.sampled_from(["", "EU", "EU/DE", "NA/US"]).map(
    lambda text: Location.parse(text).tags() if text else ()
)
prices = st.builds(
    PriceInformation,
    currency=st.sampled_from(["", "NTX", "USD"]),
    currency_per_hour=st.integers(min_value=0, max_value=5_000_000),
)


def capabilities(resources: st.SearchStrategy) -> st.SearchStrategy[Capability]:  # type: ignore[type-arg]
    return st.builds(
        Capability,
        executors=executors,
        job_types=job_types,
        resources=resources,
        locality=places,
        price=prices,
    )


class TestOneDimension:
    """check(dimension) agrees with satisfies() on that dimension, for every dimension."""

    @given(machine=capabilities(machines), requirement=capabilities(requirements))
    def test_check_matches_satisfies_dimension_by_dimension(
        self, machine: Capability, requirement: Capability
    ) -> None:
        verdict = machine.satisfies(requirement)
        for dimension in DIMENSIONS:
            assert machine.check(dimension, requirement) == verdict.check(dimension)

    def test_an_unknown_dimension_is_a_key_error(self) -> None:
        with pytest.raises(KeyError):
            Capability().check("colour", Capability())
