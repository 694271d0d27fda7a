"""The ensemble specification, ``version: V1``: what a user writes to deploy.

One normalised form. Quantities are text in the file (``512MiB``, ``30s``) and numbers in
memory (bytes, ns, cores, micro-units) through the types of :mod:`dms.types.quantity`.
Structure and types are checked by msgspec while decoding; relations between parts
(names, cycles, ports, what providers can offer) by :mod:`dms.jobs.validate`.

A minimal file::

    version: V1
    allocations:
      hello:
        executor: wasm
        resources: {cpu: 0.5, ram: 64MiB}
        execution: {module: hello.wasm}

When ``nodes`` is left out, every allocation gets a node of its own, named after it.
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

import msgspec

from dms.types import (
    CPU,
    GPU,
    Capability,
    Connectivity,
    ExecutorType,
    GPUVendor,
    JobType,
    PriceInformation,
    Resources,
    TimeInformation,
    TimeUnit,
)
from dms.types.quantity import Amount, Bandwidth, Cores, Duration, Size

Name = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[a-z0-9]([a-z0-9_-]{0,62})$",
        description="lower-case letters, digits, '-' and '_', starting with a letter or digit",
    ),
]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Percent = Annotated[int, msgspec.Meta(ge=0, le=100)]


class _Spec(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    pass


class GPUSpec(_Spec, frozen=True, kw_only=True):
    vendor: GPUVendor = GPUVendor.UNKNOWN
    model: str = ""
    """A substring of the model name, case-insensitive (``A100``)."""
    vram: Size = Size(0)


class ResourcesSpec(_Spec, frozen=True, kw_only=True):
    cpu: Cores
    ram: Size
    disk: Size = Size(0)
    gpus: tuple[GPUSpec, ...] = ()

    def to_resources(self) -> Resources:
        return Resources(
            cpu=CPU(cores=float(self.cpu)),
            ram=int(self.ram),
            disk=int(self.disk),
            gpus=tuple(GPU(vendor=g.vendor, model=g.model, vram=int(g.vram)) for g in self.gpus),
        )


class Execution(_Spec, frozen=True, kw_only=True):
    """What to run. Which fields apply depends on the executor."""

    module: str = ""
    """wasm: path of the .wasm module, relative to the ensemble file."""
    command: tuple[str, ...] = ()
    """process: the program and its arguments."""
    image: str = ""
    """docker: the image."""
    entrypoint: tuple[str, ...] = ()
    """docker: overrides the image's entrypoint."""
    args: tuple[str, ...] = ()
    """wasm: the module's arguments; docker: the command; process: appended to ``command``."""
    working_dir: str = ""
    stdin: str = ""
    timeout: Duration = Duration(0)
    """Wall-clock limit of one run; 0 = none (the ensemble's time.max still applies)."""
    network: Literal["none", "bridge"] = "none"
    """docker: the container's network."""


class InputSpec(_Spec, frozen=True, kw_only=True):
    source: str
    """A local file, relative to the ensemble file, shipped with the allocation."""
    target: str = ""
    """Path inside the allocation's read-only input folder (default: the source's name)."""


class HealthCheck(_Spec, frozen=True, kw_only=True):
    type: Literal["command", "http", "tcp"] = "command"
    command: tuple[str, ...] = ()
    url: str = ""
    port: Port = 0
    interval: Duration = Duration(10 * 10**9)
    timeout: Duration = Duration(2 * 10**9)
    retries: Annotated[int, msgspec.Meta(ge=1, le=100)] = 3
    start_period: Duration = Duration(0)


class RecoveryPolicy(enum.StrEnum):
    NONE = "none"
    """Leave it failed."""
    RESTART = "restart"
    """Restart in place, on the same provider."""
    REDEPLOY = "redeploy"
    """Place it again, on any suitable provider."""


class FailureRecovery(_Spec, frozen=True, kw_only=True):
    policy: RecoveryPolicy | None = None
    """Default: restart for services, none for tasks."""
    max_restarts: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 3
    backoff: Duration = Duration(10**9)


class Schedule(_Spec, frozen=True, kw_only=True):
    every: Duration
    times: Annotated[int, msgspec.Meta(ge=0)] = 0
    """How many runs in all; 0 = until the deployment is shut down."""


class AllocationSpec(_Spec, frozen=True, kw_only=True):
    type: JobType = JobType.TASK
    executor: ExecutorType = ExecutorType.WASM
    resources: ResourcesSpec
    execution: Execution
    env: dict[str, str] = msgspec.field(default_factory=dict)
    inputs: tuple[InputSpec, ...] = ()
    outputs: tuple[str, ...] = ()
    """Files (glob patterns) in the output folder collected as results."""
    healthcheck: HealthCheck | None = None
    depends_on: tuple[Name, ...] = ()
    failure_recovery: FailureRecovery = FailureRecovery()
    replicas: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1
    """batch: how many copies run."""
    schedule: Schedule | None = None
    """recurring: when it runs again."""
    dns_name: str = ""

    @property
    def recovery_policy(self) -> RecoveryPolicy:
        if self.failure_recovery.policy is not None:
            return self.failure_recovery.policy
        return RecoveryPolicy.RESTART if self.type is JobType.SERVICE else RecoveryPolicy.NONE


class PortSpec(_Spec, frozen=True, kw_only=True):
    private: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    public: Port = 0
    """0 = any free port on the provider."""
    allocation: Name
    protocol: Literal["tcp", "udp"] = "tcp"


class LocationConstraint(_Spec, frozen=True, kw_only=True):
    accept: tuple[str, ...] = ()
    """Places accepted, ``continent[/country[/city]]``; empty = anywhere."""
    reject: tuple[str, ...] = ()


class NodeSpec(_Spec, frozen=True, kw_only=True):
    allocations: tuple[Name, ...]
    ports: tuple[PortSpec, ...] = ()
    location: LocationConstraint = LocationConstraint()
    peer: str = ""
    """Pin the node to this provider (peer id or DID)."""
    redundancy: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1
    """How many providers run a copy of this node (never two on one provider)."""


class EdgeSpec(_Spec, frozen=True, kw_only=True):
    source: Name = msgspec.field(name="from")
    target: Name = msgspec.field(name="to")
    rtt: Duration = Duration(0)
    """Most round-trip time allowed between the two nodes' providers; 0 = any."""
    bandwidth: Bandwidth = Bandwidth(0)
    """Least bandwidth needed between them; 0 = any."""


class SupervisorStrategyName(enum.StrEnum):
    ONE_FOR_ONE = "OneForOne"
    ALL_FOR_ONE = "AllForOne"
    REST_FOR_ONE = "RestForOne"


class SupervisorSpec(_Spec, frozen=True, kw_only=True):
    strategy: SupervisorStrategyName = SupervisorStrategyName.ONE_FOR_ONE
    intensity: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 3
    """Restarts allowed within ``period`` before escalating."""
    period: Duration = Duration(60 * 10**9)


class PriceSpec(_Spec, frozen=True, kw_only=True):
    currency: str = ""
    max_per_hour: Amount = Amount(0)
    """The most paid per hour per provider; 0 = any."""
    budget: Amount = Amount(0)
    """The most paid for the whole deployment; 0 = no budget."""
    preference: Percent = 50
    """How much cheaper beats faster, 0-100."""

    def to_information(self) -> PriceInformation:
        return PriceInformation(
            currency=self.currency,
            currency_per_hour=int(self.max_per_hour),
            total_per_job=int(self.budget),
            preference=self.preference,
        )


class TimeSpec(_Spec, frozen=True, kw_only=True):
    max: Duration = Duration(0)
    """The longest the deployment may run; 0 = not stated."""
    preference: Percent = 50
    """How much faster beats cheaper, 0-100."""

    def to_information(self) -> TimeInformation:
        seconds = -(-int(self.max) // 10**9)
        return TimeInformation(units=TimeUnit.SECONDS, max_time=seconds, preference=self.preference)


class Ensemble(_Spec, frozen=True, kw_only=True):
    version: Literal["V1"]
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    allocations: dict[Name, AllocationSpec]
    nodes: dict[Name, NodeSpec] = msgspec.field(default_factory=dict)
    edges: tuple[EdgeSpec, ...] = ()
    supervisor: SupervisorSpec = SupervisorSpec()
    price: PriceSpec = PriceSpec()
    time: TimeSpec = TimeSpec()
    exclude_peers: tuple[str, ...] = ()

    def node_of(self, allocation: str) -> str:
        for name, node in self.nodes.items():
            if allocation in node.allocations:
                return name
        raise KeyError(allocation)

    def requirement(self, node: str) -> Capability:
        """What one provider must offer to host ``node``: its allocations' needs combined."""
        spec = self.nodes[node]
        total = Capability(price=self.price.to_information(), time=self.time.to_information())
        for name in spec.allocations:
            alloc = self.allocations[name]
            total = total.add(
                Capability(
                    executors=(alloc.executor,),
                    job_types=(alloc.type,),
                    resources=alloc.resources.to_resources(),
                )
            )
        ports = tuple(p.public for p in spec.ports if p.public)
        if ports:
            total = total.add(Capability(connectivity=Connectivity(ports=ports)))
        return total
