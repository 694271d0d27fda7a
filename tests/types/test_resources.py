"""Resources arithmetic: add/subtract are inverse, nothing goes negative, GPUs match by kind."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dms.errors import IncompatibleRequirements, InsufficientResources
from dms.types import CPU, GPU, Comparison, GPUVendor, Resources
from tests.types.strategies import GiB, device_gpus, machines, requirements, resources


def nonnegative(r: Resources) -> bool:
    return r.cpu.cores >= 0 and r.ram >= 0 and r.disk >= 0 and all(g.vram >= 0 for g in r.gpus)


class TestProperties:
    """Algebraic laws that resource accounting relies on."""

    @given(machines, requirements)
    def test_add_then_subtract_is_identity(self, a: Resources, b: Resources) -> None:
        assert a.add(b).subtract(b).normalized() == a.normalized()

    @given(requirements, requirements)
    def test_add_is_commutative(self, a: Resources, b: Resources) -> None:
        assert a.add(b).normalized() == b.add(a).normalized()

    @given(machines, requirements)
    def test_subtract_never_goes_negative(self, a: Resources, b: Resources) -> None:
        try:
            left = a.subtract(b)
        except InsufficientResources as exc:
            assert exc.dimension in {"cpu", "ram", "disk", "gpu"}
            return
        assert nonnegative(left)

    @given(machines, requirements)
    def test_compare_and_covers_agree_with_subtract(self, a: Resources, b: Resources) -> None:
        try:
            a.subtract(b)
            fits = True
        except InsufficientResources:
            fits = False
        assert a.covers(b) is fits
        verdict = a.compare(b)
        if verdict in (Comparison.BETTER, Comparison.EQUAL):
            assert fits
        if verdict is Comparison.WORSE:
            assert not fits
        if fits and not b.covers(a):
            assert verdict is Comparison.BETTER

    @given(machines, requirements)
    def test_released_parts_restore_the_machine(self, machine: Resources, need: Resources) -> None:
        assume(machine.covers(need))
        taken = Resources(
            cpu=need.cpu, ram=need.ram, disk=need.disk, gpus=machine.assign_gpus(need.gpus)
        )
        left = machine.subtract(taken)
        assert left.add(taken).normalized() == machine.normalized()

    @given(machines)
    def test_exact_fit_is_a_fit(self, machine: Resources) -> None:
        assert machine.subtract(machine).is_zero()
        assert machine.compare(machine) is Comparison.EQUAL


class TestCompare:
    """compare() says better / equal / worse / mixed."""

    def test_orders(self) -> None:
        small = Resources(cpu=CPU(cores=1), ram=GiB)
        big = Resources(cpu=CPU(cores=2), ram=2 * GiB)
        odd = Resources(cpu=CPU(cores=4), ram=GiB // 2)
        assert big.compare(small) is Comparison.BETTER
        assert small.compare(big) is Comparison.WORSE
        assert big.compare(odd) is Comparison.MIXED
        assert small.compare(Resources(cpu=CPU(cores=1), ram=GiB)) is Comparison.EQUAL


class TestInsufficient:
    """A subtraction that would go negative names dimension, need and availability."""

    @pytest.mark.parametrize(
        ("need", "dimension", "fragment"),
        [
            (Resources(cpu=CPU(cores=3)), "cpu", "needed 3 cores, available 2 cores"),
            (Resources(ram=5 * GiB), "ram", "needed 5GiB, available 4GiB"),
            (Resources(disk=11 * GiB), "disk", "needed 11GiB, available 10GiB"),
            (Resources(gpus=(GPU(vendor=GPUVendor.AMD),)), "gpu", "no matching GPU"),
            (Resources(gpus=(GPU(vram=25 * GiB),)), "gpu", "needed any GPU 25GiB"),
        ],
        ids=["cpu", "ram", "disk", "gpu-vendor", "gpu-vram"],
    )
    def test_names_the_dimension(self, need: Resources, dimension: str, fragment: str) -> None:
        machine = Resources(
            cpu=CPU(cores=2),
            ram=4 * GiB,
            disk=10 * GiB,
            gpus=(GPU(vendor=GPUVendor.NVIDIA, model="RTX 4090", vram=24 * GiB, uuid="u0"),),
        )
        with pytest.raises(InsufficientResources) as info:
            machine.subtract(need)
        assert info.value.dimension == dimension
        assert fragment in str(info.value)

    def test_architectures_do_not_combine(self) -> None:
        with pytest.raises(IncompatibleRequirements, match="cpu.architecture"):
            Resources(cpu=CPU(architecture="x86_64")).add(
                Resources(cpu=CPU(architecture="aarch64"))
            )


class TestGPUMatching:
    """GPUs are matched by what they are, not by list position."""

    machine = Resources(
        gpus=(
            GPU(index=0, vendor=GPUVendor.NVIDIA, model="A100", vram=80 * GiB, uuid="big"),
            GPU(index=1, vendor=GPUVendor.NVIDIA, model="RTX 4090", vram=24 * GiB, uuid="small"),
        )
    )

    def test_requirement_order_does_not_decide_feasibility(self) -> None:
        # A greedy first-fit would put the 20GiB job on the A100 and have nowhere for 70GiB.
        for order in ((20, 70), (70, 20)):
            need = tuple(GPU(vendor=GPUVendor.NVIDIA, vram=v * GiB) for v in order)
            assigned = self.machine.assign_gpus(need)
            assert {g.uuid for g in assigned} == {"big", "small"}

    def test_best_fit_leaves_the_big_device_free(self) -> None:
        left = self.machine.subtract(Resources(gpus=(GPU(vram=8 * GiB),)))
        assert {g.uuid: g.vram for g in left.gpus} == {"big": 80 * GiB, "small": 16 * GiB}

    def test_model_filter(self) -> None:
        (gpu,) = self.machine.assign_gpus((GPU(model="a100", vram=GiB),))
        assert gpu.uuid == "big"

    def test_one_job_cannot_use_one_device_twice(self) -> None:
        with pytest.raises(InsufficientResources, match="3 GPU"):
            self.machine.subtract(Resources(gpus=(GPU(vram=GiB),) * 3))

    @given(resources(device_gpus()), st.permutations(range(3)))
    def test_matching_is_independent_of_device_order(self, r: Resources, perm: list[int]) -> None:
        need = (GPU(vram=GiB), GPU(vram=2 * GiB), GPU(vram=3 * GiB))
        shuffled = Resources(gpus=tuple(reversed(r.gpus)))
        assert r.covers(Resources(gpus=tuple(need[i] for i in perm))) == shuffled.covers(
            Resources(gpus=need)
        )
