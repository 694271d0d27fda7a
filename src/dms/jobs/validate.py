"""Cross-checks of an ensemble: relations between its parts that the types cannot express.

Each check is a small function returning the problems it found (a SpecError with the path, the
bad value and what is accepted); :func:`check` runs them all so a user sees every problem at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from dms.errors import IncompatibleRequirements, InputError, SpecError
from dms.jobs.spec import AllocationSpec, Ensemble
from dms.types import ExecutorType, JobType, Location
from dms.types.units import format_size

# What no provider type could ever offer to a single node.
MAX_CORES = 1024.0
MAX_RAM = 64 * 1024**4
MAX_DISK = 1024**5
MAX_GPUS = 16
MAX_VRAM = 1024**4

Problems = Iterator[SpecError]


def _alloc(name: str, field: str) -> str:
    return f"allocations.{name}.{field}"


def check_references(ens: Ensemble) -> Problems:
    """Node members, ports and dependencies name allocations that exist; each is placed once."""
    placed: dict[str, str] = {}
    for node_name, node in ens.nodes.items():
        members = set(node.allocations)
        for i, name in enumerate(node.allocations):
            path = f"nodes.{node_name}.allocations[{i}]"
            if name not in ens.allocations:
                yield SpecError(
                    path,
                    name,
                    f"one of the allocations ({', '.join(ens.allocations)})",
                    detail="is not an allocation of this ensemble; known: "
                    + ", ".join(ens.allocations),
                )
            elif name in placed:
                yield SpecError(
                    path,
                    name,
                    "an allocation in exactly one node",
                    detail=f"is already in node {placed[name]}",
                )
            else:
                placed[name] = node_name
        for i, port in enumerate(node.ports):
            if port.allocation not in members:
                yield SpecError(
                    f"nodes.{node_name}.ports[{i}].allocation",
                    port.allocation,
                    f"an allocation of node {node_name} ({', '.join(node.allocations)})",
                )
    for name in ens.allocations:
        if name not in placed:
            yield SpecError(
                f"allocations.{name}",
                name,
                "an allocation that some node runs",
                detail="is in no node; add it to a node's allocations",
            )
    for name, alloc in ens.allocations.items():
        for i, dep in enumerate(alloc.depends_on):
            if dep not in ens.allocations:
                yield SpecError(
                    _alloc(name, f"depends_on[{i}]"),
                    dep,
                    "an allocation name",
                    detail="is not an allocation of this ensemble",
                )
            elif dep == name:
                yield SpecError(
                    _alloc(name, f"depends_on[{i}]"),
                    dep,
                    "another allocation",
                    detail="is the allocation itself",
                )


def check_cycles(ens: Ensemble) -> Problems:
    """depends_on forms no cycle."""
    state: dict[str, int] = {}  # 1 = visiting, 2 = done
    reported: set[frozenset[str]] = set()

    def visit(name: str, trail: list[str]) -> Iterator[SpecError]:
        state[name] = 1
        for dep in ens.allocations[name].depends_on:
            if dep not in ens.allocations or dep == name:
                continue
            if state.get(dep) == 1:
                cycle = [*trail[trail.index(dep) :], dep]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    yield SpecError(
                        _alloc(name, "depends_on"),
                        dep,
                        "dependencies without cycles",
                        detail="closes a cycle: " + " -> ".join(cycle),
                    )
            elif dep not in state:
                yield from visit(dep, [*trail, dep])
        state[name] = 2

    for name in ens.allocations:
        if name not in state:
            yield from visit(name, [name])


def check_ports(ens: Ensemble) -> Problems:
    """No node publishes a public port twice; no allocation maps a private port twice."""
    for node_name, node in ens.nodes.items():
        public: dict[int, int] = {}
        private: dict[tuple[str, int, str], int] = {}
        for i, port in enumerate(node.ports):
            path = f"nodes.{node_name}.ports[{i}]"
            if port.public:
                if port.public in public:
                    yield SpecError(
                        f"{path}.public",
                        port.public,
                        "a port not used twice",
                        detail=f"is already published by ports[{public[port.public]}]",
                    )
                public.setdefault(port.public, i)
            key = (port.allocation, port.private, port.protocol)
            if key in private:
                yield SpecError(
                    f"{path}.private",
                    port.private,
                    "a port not used twice",
                    detail=f"is already mapped by ports[{private[key]}]",
                )
            private.setdefault(key, i)


def check_edges(ens: Ensemble) -> Problems:
    seen: dict[frozenset[str], int] = {}
    for i, edge in enumerate(ens.edges):
        for end, field in ((edge.source, "from"), (edge.target, "to")):
            if end not in ens.nodes:
                yield SpecError(f"edges[{i}].{field}", end, f"a node name ({', '.join(ens.nodes)})")
        if edge.source == edge.target:
            yield SpecError(
                f"edges[{i}].to",
                edge.target,
                "a different node",
                detail="connects a node to itself",
            )
        key = frozenset((edge.source, edge.target))
        if key in seen:
            yield SpecError(
                f"edges[{i}]",
                f"{edge.source}-{edge.target}",
                "one edge per pair",
                detail=f"repeats edges[{seen[key]}]",
            )
        seen.setdefault(key, i)


def check_locations(ens: Ensemble) -> Problems:
    for node_name, node in ens.nodes.items():
        parsed: dict[str, list[Location]] = {"accept": [], "reject": []}
        for kind in ("accept", "reject"):
            for i, text in enumerate(getattr(node.location, kind)):
                try:
                    parsed[kind].append(Location.parse(text))
                except InputError as exc:
                    yield SpecError(f"nodes.{node_name}.location.{kind}[{i}]", text, exc.accepted)
        for i, place in enumerate(parsed["accept"]):
            if any(place.within(r) for r in parsed["reject"]):
                yield SpecError(
                    f"nodes.{node_name}.location.accept[{i}]",
                    place.describe(),
                    "a place that is not also rejected",
                    detail="is rejected by location.reject as well",
                )
        if node.peer and node.peer in ens.exclude_peers:
            yield SpecError(
                f"nodes.{node_name}.peer",
                node.peer,
                "a peer not in exclude_peers",
                detail="is pinned and excluded at the same time",
            )


def _executor_fields(name: str, alloc: AllocationSpec) -> Problems:
    ex = alloc.execution
    needs = {
        ExecutorType.WASM: ("module", ex.module),
        ExecutorType.PROCESS: ("command", ex.command),
        ExecutorType.DOCKER: ("image", ex.image),
    }
    only = {
        "module": ExecutorType.WASM,
        "command": ExecutorType.PROCESS,
        "image": ExecutorType.DOCKER,
        "entrypoint": ExecutorType.DOCKER,
    }
    if alloc.executor in needs:
        field, value = needs[alloc.executor]
        if not value:
            yield SpecError(
                _alloc(name, f"execution.{field}"),
                value,
                f"set for the {alloc.executor} executor",
                detail=f"is required by the {alloc.executor} executor",
            )
    for field, owner in only.items():
        if getattr(ex, field) and alloc.executor is not owner:
            yield SpecError(
                _alloc(name, f"execution.{field}"),
                getattr(ex, field),
                f"only with the {owner} executor",
                detail=f"applies only to the {owner} executor, not {alloc.executor}",
            )
    if ex.network != "none" and alloc.executor is not ExecutorType.DOCKER:
        yield SpecError(
            _alloc(name, "execution.network"),
            ex.network,
            "none",
            detail="can only be set for the docker executor",
        )
    if alloc.resources.gpus and alloc.executor is ExecutorType.WASM:
        yield SpecError(
            _alloc(name, "resources.gpus"),
            len(alloc.resources.gpus),
            "no GPUs for the wasm executor",
            detail="GPU(s) requested; the wasm executor cannot use GPUs",
        )


def _job_type_fields(name: str, alloc: AllocationSpec) -> Problems:
    if alloc.replicas != 1 and alloc.type is not JobType.BATCH:
        yield SpecError(
            _alloc(name, "replicas"),
            alloc.replicas,
            "1 unless type is batch",
            detail=f"needs type batch (type is {alloc.type})",
        )
    if alloc.type is JobType.RECURRING and alloc.schedule is None:
        yield SpecError(
            _alloc(name, "schedule"),
            None,
            "a schedule (e.g. {every: 5m})",
            detail="is required for type recurring",
        )
    if alloc.schedule is not None and alloc.type is not JobType.RECURRING:
        yield SpecError(
            _alloc(name, "schedule"),
            "schedule",
            "only for type recurring",
            detail=f"needs type recurring (type is {alloc.type})",
        )
    if alloc.schedule is not None and alloc.schedule.every <= 0:
        yield SpecError(_alloc(name, "schedule.every"), "0s", "a positive duration")
    if alloc.healthcheck is not None:
        hc = alloc.healthcheck
        if alloc.type is not JobType.SERVICE:
            yield SpecError(
                _alloc(name, "healthcheck"),
                "healthcheck",
                "only for type service",
                detail=f"applies only to services (type is {alloc.type})",
            )
        required = {
            "command": ("command", hc.command),
            "http": ("url", hc.url),
            "tcp": ("port", hc.port),
        }
        field, value = required[hc.type]
        if not value:
            yield SpecError(
                _alloc(name, f"healthcheck.{field}"),
                value,
                f"set for a {hc.type} health check",
                detail=f"is required by a {hc.type} health check",
            )


def check_allocations(ens: Ensemble) -> Problems:
    for name, alloc in ens.allocations.items():
        yield from _executor_fields(name, alloc)
        yield from _job_type_fields(name, alloc)
        if alloc.resources.ram <= 0:
            yield SpecError(_alloc(name, "resources.ram"), "0B", "more than 0 bytes")
        for i, gpu in enumerate(alloc.resources.gpus):
            if gpu.vram > MAX_VRAM:
                yield SpecError(
                    _alloc(name, f"resources.gpus[{i}].vram"),
                    format_size(gpu.vram),
                    f"at most {format_size(MAX_VRAM)} (no GPU has more)",
                )


def check_offerable(ens: Ensemble) -> Problems:
    """Each node's combined needs stay within what a single provider could ever offer."""
    for node_name, node in ens.nodes.items():
        names = [n for n in node.allocations if n in ens.allocations]
        if not names or len(names) != len(node.allocations):
            continue  # unknown names are reported by check_references
        cores = sum(float(ens.allocations[n].resources.cpu) for n in names)
        ram = sum(int(ens.allocations[n].resources.ram) for n in names)
        disk = sum(int(ens.allocations[n].resources.disk) for n in names)
        gpus = sum(len(ens.allocations[n].resources.gpus) for n in names)
        where = f"nodes.{node_name}"
        if cores > MAX_CORES:
            yield SpecError(
                where,
                f"{cores:g} cores",
                f"at most {MAX_CORES:g} cores per node",
                detail=f"needs {cores:g} cores; no provider offers more than {MAX_CORES:g}",
            )
        if ram > MAX_RAM:
            yield SpecError(
                where,
                format_size(ram),
                f"at most {format_size(MAX_RAM)} RAM per node",
                detail=f"needs {format_size(ram)} RAM; no provider offers more than "
                f"{format_size(MAX_RAM)}",
            )
        if disk > MAX_DISK:
            yield SpecError(
                where,
                format_size(disk),
                f"at most {format_size(MAX_DISK)} disk",
                detail=f"needs {format_size(disk)} disk; no provider offers more than "
                f"{format_size(MAX_DISK)}",
            )
        if gpus > MAX_GPUS:
            yield SpecError(
                where,
                gpus,
                f"at most {MAX_GPUS} GPUs per node",
                detail=f"needs {gpus} GPUs; no provider offers more than {MAX_GPUS}",
            )
        try:
            ens.requirement(node_name)
        except IncompatibleRequirements as exc:
            yield SpecError(
                where,
                node_name,
                "allocations whose needs can be combined",
                detail=f"cannot be placed on one provider: {exc}",
            )


def check_price(ens: Ensemble) -> Problems:
    p = ens.price
    if (p.max_per_hour or p.budget) and not p.currency:
        yield SpecError(
            "price.currency",
            "",
            "a currency (e.g. NTX) when a price is set",
            detail="is required when max_per_hour or budget is set",
        )


CHECKS: tuple[Callable[[Ensemble], Problems], ...] = (
    check_references,
    check_cycles,
    check_ports,
    check_edges,
    check_locations,
    check_allocations,
    check_offerable,
    check_price,
)


def check(ens: Ensemble) -> list[SpecError]:
    """Every problem of the ensemble, in a stable order."""
    return [problem for run in CHECKS for problem in run(ens)]
