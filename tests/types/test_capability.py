"""Capability: add combines two jobs, subtract locks resources, satisfies explains itself."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dms.errors import IncompatibleRequirements, InsufficientResources
from dms.types import (
    CPU,
    DIMENSIONS,
    GPU,
    Capability,
    Connectivity,
    ExecutorType,
    GPUVendor,
    JobType,
    Location,
    PriceInformation,
    Resources,
    TimeInformation,
    TimeUnit,
)
from tests.types.strategies import GiB, machines, requirements

MACHINE = Capability(
    executors=(ExecutorType.WASM, ExecutorType.PROCESS),
    job_types=(JobType.TASK, JobType.SERVICE),
    resources=Resources(
        cpu=CPU(cores=4, architecture="x86_64"),
        ram=8 * GiB,
        disk=100 * GiB,
        gpus=(GPU(index=0, vendor=GPUVendor.NVIDIA, model="RTX 4090", vram=24 * GiB, uuid="u0"),),
    ),
    libraries=("cuda-12",),
    locality=Location(continent="EU", country="DE", city="Berlin").tags(),
    storage=("ssd",),
    connectivity=Connectivity(ports=(8080, 8081), vpn=True),
    price=PriceInformation(currency="NTX", currency_per_hour=2_000_000),
    time=TimeInformation(units=TimeUnit.DAYS, max_time=7),
    kyc=("email",),
)


def job(**kw: object) -> Capability:
    return Capability(**kw)  # type: ignore[arg-type]


class TestSatisfies:
    """satisfies() returns a verdict for every dimension and a reason for each failure."""

    def test_exact_fit_is_a_fit(self) -> None:
        verdict = MACHINE.satisfies(MACHINE)
        assert verdict.ok, verdict.explain()
        assert [c.dimension for c in verdict.checks] == list(DIMENSIONS)

    @pytest.mark.parametrize(
        ("requirement", "dimension", "reason"),
        [
            (job(executors=(ExecutorType.DOCKER,)), "executors", "requires docker"),
            (job(job_types=(JobType.BATCH,)), "job_types", "requires batch"),
            (job(resources=Resources(ram=9 * GiB)), "resources", "not enough ram"),
            (job(resources=Resources(gpus=(GPU(vendor=GPUVendor.AMD),))), "resources", "gpu"),
            (job(libraries=("rocm",)), "libraries", "requires rocm"),
            (job(locality=("NA", "AS")), "locality", "accepts NA, AS"),
            (job(storage=("nvme",)), "storage", "requires nvme"),
            (job(connectivity=Connectivity(ports=(443,))), "connectivity", "ports [443]"),
            (job(price=PriceInformation(currency="USD")), "price", "priced in NTX"),
            (job(price=PriceInformation(currency_per_hour=1_000_000)), "price", "at most 1/h"),
            (
                job(
                    price=PriceInformation(total_per_job=3_000_000),
                    time=TimeInformation(units=TimeUnit.HOURS, max_time=2),
                ),
                "price",
                "budget 3",
            ),
            (job(time=TimeInformation(units=TimeUnit.WEEKS, max_time=2)), "time", "requires 14d"),
            (job(kyc=("passport",)), "kyc", "requires passport"),
        ],
        ids=lambda v: v if isinstance(v, str) else "",
    )
    def test_each_dimension_refuses_with_reason(
        self, requirement: Capability, dimension: str, reason: str
    ) -> None:
        verdict = MACHINE.satisfies(requirement)
        assert not verdict.ok
        assert [c.dimension for c in verdict.failures] == [dimension]
        assert reason in verdict.check(dimension).reason

    def test_locality_prefix_matches(self) -> None:
        assert MACHINE.satisfies(job(locality=("EU/DE",))).ok

    @given(machines, requirements)
    def test_resource_check_agrees_with_subtract(self, m: object, r: object) -> None:
        machine, need = Capability(resources=m), Capability(resources=r)  # type: ignore[arg-type]
        ok = machine.satisfies(need).check("resources").ok
        try:
            machine.subtract(need)
            assert ok
        except InsufficientResources:
            assert not ok


class TestAdd:
    """add() combines the requirements of two jobs that will share one machine."""

    def test_combines_each_dimension(self) -> None:
        a = job(
            executors=(ExecutorType.WASM,),
            resources=Resources(cpu=CPU(cores=1), ram=GiB),
            locality=("EU", "NA"),
            connectivity=Connectivity(ports=(80,)),
            price=PriceInformation(currency="NTX", currency_per_hour=1, total_per_job=10),
            time=TimeInformation(units=TimeUnit.HOURS, max_time=1),
            kyc=("email",),
        )
        b = job(
            executors=(ExecutorType.PROCESS,),
            resources=Resources(cpu=CPU(cores=2), ram=GiB),
            locality=("EU",),
            connectivity=Connectivity(ports=(81,), vpn=True),
            price=PriceInformation(currency_per_hour=2, total_per_job=5),
            time=TimeInformation(units=TimeUnit.MINUTES, max_time=90),
            kyc=("email",),
        )
        c = a.add(b)
        assert c.executors == (ExecutorType.WASM, ExecutorType.PROCESS)
        assert c.resources.cpu.cores == 3 and c.resources.ram == 2 * GiB
        assert c.locality == ("EU",)
        assert c.connectivity == Connectivity(ports=(80, 81), vpn=True)
        assert (c.price.currency, c.price.currency_per_hour, c.price.total_per_job) == (
            "NTX",
            3,
            15,
        )
        assert c.time.max_time_ns == 90 * 60 * 10**9
        assert c.kyc == ("email",)

    @pytest.mark.parametrize(
        ("a", "b", "dimension"),
        [
            (job(locality=("EU",)), job(locality=("NA",)), "locality"),
            (
                job(connectivity=Connectivity(ports=(80,))),
                job(connectivity=Connectivity(ports=(80,))),
                "connectivity.ports",
            ),
            (
                job(price=PriceInformation(currency="NTX")),
                job(price=PriceInformation(currency="USD")),
                "price.currency",
            ),
        ],
        ids=["locality", "ports", "currency"],
    )
    def test_conflicts_are_errors(self, a: Capability, b: Capability, dimension: str) -> None:
        with pytest.raises(IncompatibleRequirements, match=dimension):
            a.add(b)

    @given(requirements, requirements)
    def test_two_jobs_fit_only_if_their_sum_fits(self, a: object, b: object) -> None:
        machine = Capability(resources=Resources(cpu=CPU(cores=8), ram=16 * GiB, disk=16 * GiB))
        ja, jb = Capability(resources=a), Capability(resources=b)  # type: ignore[arg-type]
        together = machine.satisfies(ja.add(jb)).ok
        try:
            machine.subtract(ja).subtract(jb)
            one_after_other = True
        except InsufficientResources:
            one_after_other = False
        assert together is one_after_other


class TestSubtract:
    """subtract() locks a job's resources and ports on a machine."""

    def test_takes_resources_and_ports(self) -> None:
        need = job(
            resources=Resources(
                cpu=CPU(cores=1), ram=2 * GiB, gpus=(GPU(vendor=GPUVendor.NVIDIA, vram=8 * GiB),)
            ),
            connectivity=Connectivity(ports=(8080,)),
        )
        left = MACHINE.subtract(need)
        assert left.resources.cpu.cores == 3
        assert left.resources.ram == 6 * GiB
        assert left.resources.gpus[0].vram == 16 * GiB
        assert left.connectivity.ports == (8081,)
        assert left.executors == MACHINE.executors

    @given(st.integers(min_value=0, max_value=10))
    def test_exhaustion_is_refused_with_dimension(self, extra: int) -> None:
        with pytest.raises(InsufficientResources) as info:
            MACHINE.subtract(job(resources=Resources(disk=(101 + extra) * GiB)))
        assert info.value.dimension == "disk"
