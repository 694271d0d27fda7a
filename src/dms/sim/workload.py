"""Simulated demand: ensembles of mixed sizes, some needing GPUs, some bound to places, each
with its own price/time preference, as ensemble files (``version: V1``) for the null executor.

:func:`ensembles` is seeded and deterministic. Each :class:`WorkItem` carries its file and what
the benchmark reports about it (allocations, nodes, GPUs, location constraint).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import msgspec

from dms.sim.errors import InvalidSimulation
from dms.types import JobType

SIZES: tuple[int, ...] = (1, 1, 2, 2, 4, 8, 16)
"""Allocations per ensemble, drawn uniformly from this tuple."""
CPU_CHOICES: tuple[float, ...] = (0.25, 0.5, 0.5, 1.0, 2.0)
RAM_CHOICES: tuple[str, ...] = ("256MiB", "512MiB", "1GiB", "2GiB")
AREAS: tuple[tuple[str, str], ...] = (
    ("accept", "EU"),
    ("accept", "NA"),
    ("accept", "EU/DE"),
    ("reject", "AS"),
)
"""Location constraints an ensemble node may carry (kind, place)."""


class WorkItem(msgspec.Struct, frozen=True, kw_only=True):
    """One ensemble to deploy."""

    name: str
    text: str
    """The ensemble file (YAML)."""
    allocations: int
    nodes: int
    gpus: int
    """Allocations that need a GPU."""
    located: bool
    """Whether a node carries a location constraint."""


class WorkloadSpec(msgspec.Struct, frozen=True, kw_only=True):
    """How the demand is mixed."""

    job_type: JobType = JobType.SERVICE
    """``service`` (runs until shut down) or ``task`` (runs ``task_duration``)."""
    task_duration: str = "1s"
    gpu_fraction: float = 0.02
    """Share of ensembles with one allocation that needs a GPU."""
    located_fraction: float = 0.3
    """Share of ensemble nodes with a location constraint."""
    grouped_fraction: float = 0.5
    """Share of ensembles whose allocations share nodes (several allocations per node)."""
    sizes: tuple[int, ...] = SIZES

    def check(self) -> None:
        for name in ("gpu_fraction", "located_fraction", "grouped_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidSimulation(name, value, "a fraction from 0 to 1")
        if not self.sizes or any(s < 1 or s > 64 for s in self.sizes):
            raise InvalidSimulation("sizes", list(self.sizes), "allocation counts from 1 to 64")
        if self.job_type not in (JobType.SERVICE, JobType.TASK):
            raise InvalidSimulation("job_type", self.job_type.value, "service or task")


def _allocation(name: str, rng: random.Random, spec: WorkloadSpec, gpu: bool) -> str:
    cpu = rng.choice(CPU_CHOICES)
    ram = rng.choice(RAM_CHOICES)
    gpus = ", gpus: [{vendor: nvidia, vram: 8GiB}]" if gpu else ""
    duration = "24h" if spec.job_type is JobType.SERVICE else spec.task_duration
    return (
        f"  {name}: {{type: {spec.job_type.value}, executor: 'null', "
        f"resources: {{cpu: {cpu}, ram: {ram}{gpus}}}, "
        f"execution: {{args: ['duration={duration}']}}}}\n"
    )


def ensemble(index: int, rng: random.Random, spec: WorkloadSpec) -> WorkItem:
    """One ensemble drawn from ``rng``."""
    size = rng.choice(spec.sizes)
    names = [f"a{i}" for i in range(size)]
    gpu_at = rng.randrange(size) if rng.random() < spec.gpu_fraction else -1
    per_node = 1
    if size > 1 and rng.random() < spec.grouped_fraction:
        per_node = rng.choice([d for d in (2, 4, 8) if d <= size] or [1])
    groups = [names[i : i + per_node] for i in range(0, size, per_node)]
    price = rng.randrange(0, 101, 10)
    lines = [
        "version: V1\n",
        f"metadata: {{name: e{index}, source: sim}}\n",
        "allocations:\n",
        *(_allocation(n, rng, spec, i == gpu_at) for i, n in enumerate(names)),
        "nodes:\n",
    ]
    located = False
    for k, group in enumerate(groups):
        where = ""
        if rng.random() < spec.located_fraction:
            kind, place = rng.choice(AREAS)
            where = f", location: {{{kind}: [{place}]}}"
            located = True
        lines.append(f"  n{k}: {{allocations: [{', '.join(group)}]{where}}}\n")
    lines.append(f"price: {{currency: NTX, preference: {price}}}\n")
    lines.append(f"time: {{preference: {100 - price}}}\n")
    return WorkItem(
        name=f"e{index}",
        text="".join(lines),
        allocations=size,
        nodes=len(groups),
        gpus=1 if gpu_at >= 0 else 0,
        located=located,
    )


def ensembles(
    allocations: int, *, seed: int = 0, spec: WorkloadSpec | None = None
) -> Iterator[WorkItem]:
    """Ensembles until they hold ``allocations`` allocations in all (the last one is cut to
    fit, so the total is exact)."""
    spec = spec or WorkloadSpec()
    spec.check()
    if allocations < 0:
        raise InvalidSimulation("allocations", allocations, "a count of 0 or more")
    rng = random.Random(seed)
    left = allocations
    index = 0
    while left > 0:
        sizes = tuple(s for s in spec.sizes if s <= left) or (left,)
        item = ensemble(index, rng, msgspec.structs.replace(spec, sizes=sizes))
        left -= item.allocations
        index += 1
        yield item
