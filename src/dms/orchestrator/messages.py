"""The node-level deployment behaviors a user reaches (through the REST API or the CLI).

Names follow the reference where it has them (``/dms/node/deployment/...``). Requests and
replies are typed; the REST API and the CLI use these same types.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from dms.actor.handle import Handle
from dms.jobs.protocol import LogStreamName
from dms.jobs.status import AllocationStatus, DeploymentStatus

DEPLOYMENT_NEW = "/dms/node/deployment/new"
DEPLOYMENT_LIST = "/dms/node/deployment/list"
DEPLOYMENT_STATUS = "/dms/node/deployment/status"
DEPLOYMENT_INFO = "/dms/node/deployment/info"
DEPLOYMENT_LOGS = "/dms/node/deployment/logs"
DEPLOYMENT_RESULTS = "/dms/node/deployment/results"
DEPLOYMENT_SHUTDOWN = "/dms/node/deployment/shutdown"
DEPLOYMENT_PRUNE = "/dms/node/deployment/prune"
DEPLOYMENT_EXPLAIN = "/dms/node/deployment/explain"

DEFAULT_DEPLOY_TIMEOUT_NS = 5 * 60 * 10**9
MAX_NS = 2**62
"""Times and durations in ns stay below this (SQLite integers are 64-bit)."""


class NewDeployment(msgspec.Struct, frozen=True, kw_only=True):
    ensemble: str
    """The ensemble file's text (YAML, version: V1)."""
    files: dict[str, bytes] = msgspec.field(default_factory=dict)
    """Files the ensemble names (wasm modules, inputs), by the path written in the ensemble."""
    timeout_ns: Annotated[int, msgspec.Meta(ge=1, le=MAX_NS)] = DEFAULT_DEPLOY_TIMEOUT_NS
    """Placement deadline: Failed if not Running (or Completed) by then."""
    source: str = ""
    """Where the ensemble came from (a file name), for messages."""


class DeploymentRef(msgspec.Struct, frozen=True, kw_only=True):
    deployment_id: str


class StatusChange(msgspec.Struct, frozen=True, kw_only=True):
    status: DeploymentStatus
    time_ns: int
    reason: str = ""


class DeploymentSummary(msgspec.Struct, frozen=True, kw_only=True):
    deployment_id: str
    name: str = ""
    status: DeploymentStatus
    created_ns: int
    updated_ns: int
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    allocations: int = 0
    reason: str = ""
    """Why it failed, or what it is waiting for."""


class AllocationInfo(msgspec.Struct, frozen=True, kw_only=True):
    allocation_id: str
    name: str
    node: str
    replica: int = 0
    provider: str = ""
    """The provider's DID."""
    handle: Handle | None = None
    status: AllocationStatus
    exit_code: int | None = None
    restarts: int = 0
    detail: str = ""
    stdout_tail: str = ""
    stderr_tail: str = ""


class DeploymentInfo(msgspec.Struct, frozen=True, kw_only=True):
    summary: DeploymentSummary
    allocations: tuple[AllocationInfo, ...]
    history: tuple[StatusChange, ...]
    ensemble: str
    """The ensemble in normalised form (YAML)."""


class ListDeployments(msgspec.Struct, frozen=True, kw_only=True):
    status: tuple[DeploymentStatus, ...] = ()
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    """Every key/value given must match."""
    created_after_ns: Annotated[int, msgspec.Meta(ge=0, le=MAX_NS)] = 0
    created_before_ns: Annotated[int, msgspec.Meta(ge=0, le=MAX_NS)] = 0
    offset: Annotated[int, msgspec.Meta(ge=0, le=MAX_NS)] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 50


class DeploymentPage(msgspec.Struct, frozen=True, kw_only=True):
    items: tuple[DeploymentSummary, ...]
    total: int
    next_offset: int | None = None


class DeploymentLogsRequest(msgspec.Struct, frozen=True, kw_only=True):
    deployment_id: str
    allocation: str = ""
    """An allocation name or id; may be omitted when the deployment has one allocation."""
    stream: LogStreamName = LogStreamName.STDOUT
    offset: int = 0
    limit: int = 1024 * 1024


class DeploymentResultRequest(msgspec.Struct, frozen=True, kw_only=True):
    deployment_id: str
    allocation: str = ""
    path: str = ""
    """Empty: list the result files. Otherwise: a chunk of this file."""
    offset: int = 0
    limit: int = 1024 * 1024


class ShutdownRequest(msgspec.Struct, frozen=True, kw_only=True):
    deployment_id: str
    reason: str = "cancelled by the user"


class PruneRequest(msgspec.Struct, frozen=True, kw_only=True):
    before_ns: Annotated[int, msgspec.Meta(ge=0, le=MAX_NS)] = 0
    """Only deployments that finished before this time (0 = any time)."""


class PruneResult(msgspec.Struct, frozen=True, kw_only=True):
    removed: tuple[str, ...]


class ScoreView(msgspec.Struct, frozen=True):
    ranker: str
    score: float
    weight: float
    detail: str


class CandidateView(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    filtered_by: str = ""
    reason: str = ""
    total: float | None = None
    scores: tuple[ScoreView, ...] = ()
    chosen: bool = False


class NodeExplanation(msgspec.Struct, frozen=True, kw_only=True):
    node: str
    chosen: tuple[str, ...]
    candidates: tuple[CandidateView, ...]
    considered: int = 0
    """Providers looked at; fewer than ``known`` when the orchestrator's candidate limit
    stopped the search once it had found enough feasible ones."""
    known: int = 0
    """Providers in the orchestrator's view when it planned."""


class Explanation(msgspec.Struct, frozen=True, kw_only=True):
    deployment_id: str
    status: DeploymentStatus
    pending: str = ""
    """For a deployment not placed (yet): what is missing."""
    nodes: tuple[NodeExplanation, ...] = ()
    attempts: int = 0
