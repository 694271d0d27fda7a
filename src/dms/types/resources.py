"""Resources: CPU, RAM, disk and GPUs, with add / subtract / compare.

The same type describes what a machine has (or has free) and what a job needs. Two readings of
a GPU follow from that:

* a **device** GPU carries an identity (``uuid``, else ``pci_address``, else vendor+index) and the
  VRAM it has free; ``add`` merges two parts of the same device back together;
* a **requirement** GPU has no identity; it is matched to a device by what it is (vendor, model,
  VRAM), never by list position.

``subtract`` takes a requirement (or concrete device parts) away from a machine; a requirement
GPU is placed on the best-fitting matching device and takes that much of its VRAM. A subtraction
that would go negative raises :class:`~dms.errors.InsufficientResources` naming the dimension.
An exact fit is a fit.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence

import msgspec

from dms.errors import IncompatibleRequirements, InsufficientResources
from dms.types.units import format_clock, human_size

CORES_EPSILON = 1e-6
"""Cores are floats; differences below a micro-core are rounding, not a shortfall."""


class GPUVendor(enum.StrEnum):
    NVIDIA = "nvidia"
    AMD = "amd"
    INTEL = "intel"
    UNKNOWN = ""


class Comparison(enum.Enum):
    """How one set of resources relates to another, dimension by dimension."""

    BETTER = "better"  # covers the other and has more somewhere
    EQUAL = "equal"
    WORSE = "worse"  # the other covers this one and has more somewhere
    MIXED = "mixed"  # each has more than the other somewhere (or they differ in kind)


class CPU(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    cores: float = 0.0
    """Cores (fractions allowed)."""
    clock_hz: int = 0
    """Clock in Hz; in a requirement, the minimum clock. 0 = unknown / any."""
    architecture: str = ""
    """e.g. ``x86_64``, ``aarch64``; in a requirement, ``""`` = any."""
    model: str = ""

    def describe(self) -> str:
        text = f"{self.cores:g} cores"
        if self.clock_hz:
            text += f" @ {format_clock(self.clock_hz)}"
        if self.architecture:
            text += f" {self.architecture}"
        return text


class GPU(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    index: int = 0
    vendor: GPUVendor = GPUVendor.UNKNOWN
    model: str = ""
    vram: int = 0
    """VRAM in bytes: the device's free VRAM, or the VRAM a requirement needs."""
    uuid: str = ""
    pci_address: str = ""

    @property
    def identity(self) -> str:
        """A stable device identity, or ``""`` for a requirement."""
        if self.uuid:
            return f"uuid:{self.uuid}"
        if self.pci_address:
            return f"pci:{self.pci_address}"
        return ""

    def is_device(self) -> bool:
        return bool(self.identity)

    def kind_matches(self, requirement: GPU) -> bool:
        """Whether this GPU is of the kind a requirement asks for (ignoring VRAM)."""
        if requirement.vendor and requirement.vendor != self.vendor:
            return False
        return not requirement.model or requirement.model.lower() in self.model.lower()

    def describe(self) -> str:
        name = " ".join(p for p in (str(self.vendor), self.model) if p) or "any GPU"
        return f"{name} {human_size(self.vram)}"

    def sort_key(self) -> tuple[int, str, str, str, int]:
        return (self.index, self.identity, str(self.vendor), self.model, self.vram)


def _sorted_gpus(gpus: Iterable[GPU]) -> tuple[GPU, ...]:
    return tuple(sorted(gpus, key=GPU.sort_key))


class Resources(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A quantity of compute resources. ``ram`` and ``disk`` are bytes."""

    cpu: CPU = CPU()
    ram: int = 0
    disk: int = 0
    gpus: tuple[GPU, ...] = ()

    # -- arithmetic -------------------------------------------------------------------------

    def add(self, other: Resources) -> Resources:
        """The sum of two amounts: combine two jobs' needs, or return a part to a machine.

        Cores, RAM and disk add up. GPU parts of the same device merge their VRAM; GPUs with no
        identity (requirements) are kept side by side, since two jobs need two GPUs.
        """
        return Resources(
            cpu=_add_cpu(self.cpu, other.cpu),
            ram=self.ram + other.ram,
            disk=self.disk + other.disk,
            gpus=_add_gpus(self.gpus, other.gpus),
        )

    def subtract(self, other: Resources) -> Resources:
        """What is left after taking ``other`` away. Raises InsufficientResources if short."""
        cpu = _subtract_cpu(self.cpu, other.cpu)
        if other.ram > self.ram:
            raise InsufficientResources("ram", human_size(other.ram), human_size(self.ram))
        if other.disk > self.disk:
            raise InsufficientResources("disk", human_size(other.disk), human_size(self.disk))
        gpus = _subtract_gpus(self.gpus, other.gpus)
        return Resources(cpu=cpu, ram=self.ram - other.ram, disk=self.disk - other.disk, gpus=gpus)

    def covers(self, other: Resources) -> bool:
        """Whether ``other`` fits in this amount (an exact fit fits)."""
        try:
            self.subtract(other)
        except InsufficientResources:
            return False
        return True

    def shortfall(self, other: Resources) -> InsufficientResources | None:
        """Why ``other`` does not fit, or None when it does."""
        try:
            self.subtract(other)
        except InsufficientResources as exc:
            return exc
        return None

    def compare(self, other: Resources) -> Comparison:
        """BETTER / EQUAL / WORSE / MIXED, consistent with :meth:`covers` both ways."""
        if self.normalized() == other.normalized():
            return Comparison.EQUAL
        mine, theirs = self.covers(other), other.covers(self)
        if mine and not theirs:
            return Comparison.BETTER
        if theirs and not mine:
            return Comparison.WORSE
        return Comparison.MIXED

    def assign_gpus(self, required: Sequence[GPU]) -> tuple[GPU, ...]:
        """The concrete device parts (identity kept, VRAM as required) that satisfy ``required``.

        Used to record exactly which device a job got, so that releasing it later returns the
        VRAM to that device.
        """
        pairs = _match_gpus(self.gpus, required)
        return tuple(
            msgspec.structs.replace(self.gpus[device], vram=required[req].vram)
            for req, device in sorted(pairs.items())
        )

    # -- helpers ----------------------------------------------------------------------------

    def normalized(self) -> Resources:
        """Canonical form: GPUs sorted, empty device parts dropped, cores rounded."""
        gpus = _sorted_gpus(g for g in self.gpus if g.vram > 0 or not g.is_device())
        cpu = msgspec.structs.replace(self.cpu, cores=round(self.cpu.cores, 6))
        return Resources(cpu=cpu, ram=self.ram, disk=self.disk, gpus=gpus)

    @property
    def vram(self) -> int:
        return sum(g.vram for g in self.gpus)

    def is_zero(self) -> bool:
        return (
            self.cpu.cores <= CORES_EPSILON and self.ram == 0 and self.disk == 0 and not self.gpus
        )

    def describe(self) -> str:
        parts = [
            self.cpu.describe(),
            f"{human_size(self.ram)} RAM",
            f"{human_size(self.disk)} disk",
        ]
        parts.extend(g.describe() for g in self.gpus)
        return ", ".join(parts)


# -- CPU --------------------------------------------------------------------------------------


def _add_cpu(a: CPU, b: CPU) -> CPU:
    if a.architecture and b.architecture and a.architecture != b.architecture:
        raise IncompatibleRequirements("cpu.architecture", a.architecture, b.architecture)
    return CPU(
        cores=round(a.cores + b.cores, 6),
        clock_hz=max(a.clock_hz, b.clock_hz),
        architecture=a.architecture or b.architecture,
        model=a.model or b.model,
    )


def _subtract_cpu(have: CPU, need: CPU) -> CPU:
    if need.cores > have.cores + CORES_EPSILON:
        raise InsufficientResources("cpu", f"{need.cores:g} cores", f"{have.cores:g} cores")
    if need.clock_hz and have.clock_hz and need.clock_hz > have.clock_hz:
        raise InsufficientResources(
            "cpu.clock", format_clock(need.clock_hz), format_clock(have.clock_hz)
        )
    if need.architecture and have.architecture and need.architecture != have.architecture:
        raise InsufficientResources(
            "cpu.architecture",
            need.architecture,
            have.architecture,
            detail="different architecture",
        )
    return msgspec.structs.replace(have, cores=max(0.0, round(have.cores - need.cores, 6)))


# -- GPUs -------------------------------------------------------------------------------------


def _add_gpus(a: Sequence[GPU], b: Sequence[GPU]) -> tuple[GPU, ...]:
    merged: dict[str, GPU] = {}
    loose: list[GPU] = []
    for gpu in (*a, *b):
        key = gpu.identity
        if not key:
            loose.append(gpu)
        elif key in merged:
            merged[key] = msgspec.structs.replace(merged[key], vram=merged[key].vram + gpu.vram)
        else:
            merged[key] = gpu
    return _sorted_gpus((*merged.values(), *loose))


def _match_gpus(devices: Sequence[GPU], required: Sequence[GPU]) -> dict[int, int]:
    """Assign each required GPU to a distinct device (requirement index -> device index).

    A requirement with an identity takes exactly that device; others take any device of the
    right kind with enough VRAM. Maximum bipartite matching (augmenting paths) so that list
    order never decides feasibility; among devices, the smallest sufficient VRAM is tried first.
    Raises InsufficientResources when no complete assignment exists.
    """

    def options(want: GPU) -> list[int]:
        fitting = [
            i
            for i, dev in enumerate(devices)
            if dev.vram >= want.vram
            and (dev.identity == want.identity if want.identity else dev.kind_matches(want))
        ]
        # An identical GPU first (so (a + b) - b == a), then the tightest fit.
        return sorted(fitting, key=lambda i: (devices[i] != want, devices[i].vram, i))

    candidates = [options(want) for want in required]

    owner: dict[int, int] = {}

    def place(req: int, seen: set[int]) -> bool:
        for dev in candidates[req]:
            if dev in seen:
                continue
            seen.add(dev)
            if dev not in owner or place(owner[dev], seen):
                owner[dev] = req
                return True
        return False

    # Most constrained requirements first; the augmenting paths fix any greedy mistake.
    for req in sorted(range(len(required)), key=lambda r: (len(candidates[r]), -required[r].vram)):
        if not place(req, set()):
            need = required[req]
            fitting = [d.describe() for d in devices if d.kind_matches(need)]
            raise InsufficientResources(
                "gpu",
                need.describe(),
                ", ".join(fitting) if fitting else "no matching GPU",
                detail=f"{len(required)} GPU(s) required, {len(devices)} available",
            )
    return {req: dev for dev, req in owner.items()}


def _subtract_gpus(have: Sequence[GPU], need: Sequence[GPU]) -> tuple[GPU, ...]:
    if not need:
        return tuple(have)
    pairs = _match_gpus(have, need)
    left = list(have)
    for req, dev in pairs.items():
        left[dev] = msgspec.structs.replace(left[dev], vram=left[dev].vram - need[req].vram)
    # A device part used up entirely is gone; an anonymous GPU is only ever taken whole.
    return _sorted_gpus(
        g for i, g in enumerate(left) if (g.vram > 0 and g.is_device()) or i not in pairs.values()
    )
