"""A Python client of a node's REST API (httpx); the ``dms`` command uses it for every command
that talks to a running node.

::

    with Client.for_home(Home.resolve()) as client:
        print(client.status().peer_id)
        summary = client.deploy_file("examples/hello.yaml")
        info = client.deployment(summary.deployment_id)

Replies are the same msgspec Structs the node's behaviors return. Errors raise
:class:`dms.api.errors.APIError`: :class:`~dms.api.errors.APIInputError` when the node refused
the request itself (400, 404, 422), :class:`~dms.api.errors.NodeUnreachable` when nobody
answers.

Where the node is: ``api_url`` if given, else ``DMS_API_URL``, else the running node's
``<home>/node.json``, else ``http://<api.host>:<api.port>`` from the home's config. The token:
``DMS_API_TOKEN``, else ``<home>/api-token``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
import msgspec

from dms import config as cfg
from dms.api.errors import APIError, APIInputError, ErrorBody, NodeUnreachable
from dms.errors import NOTHING, InputError, SpecError
from dms.home import Home
from dms.jobs import Ensemble, load_ensemble
from dms.jobs.protocol import LogsChunk, LogStreamName
from dms.jobs.status import DeploymentStatus
from dms.node.messages import (
    AllocationList,
    ConnectReply,
    NodeStatus,
    PeerList,
    PeerSelf,
    PingReply,
)
from dms.node.setup import read_api_token, read_runtime
from dms.onboarding.behaviors import AllocatedReply
from dms.onboarding.records import OffboardResult, OnboardStatus, ResourcesView
from dms.orchestrator.messages import (
    DEFAULT_DEPLOY_TIMEOUT_NS,
    DeploymentInfo,
    DeploymentPage,
    DeploymentSummary,
    Explanation,
    NewDeployment,
    PruneResult,
)
from dms.orchestrator.service import ResultsReply
from dms.resources.hardware import HardwareSpec, HardwareUsage

T = TypeVar("T")
PREFIX = "/api/v1"
DEFAULT_TIMEOUT_S = 60.0
MAX_FILE_BYTES = 64 * 1024 * 1024
_INPUT_STATUSES = frozenset({400, 404, 422})


def api_url_for(home: Home, env: Mapping[str, str] | None = None) -> str:
    """Where the node of ``home`` serves its API (see the module docstring)."""
    env = os.environ if env is None else env
    if env.get("DMS_API_URL"):
        return env["DMS_API_URL"].rstrip("/")
    running = read_runtime(home)
    if running is not None and running.api_url:
        return running.api_url.rstrip("/")
    config = cfg.load(home.config_file, env)
    host = config.api.host
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{config.api.port}"


def token_for(home: Home, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get("DMS_API_TOKEN", "") or read_api_token(home)


def files_for(ensemble: Ensemble, base: Path) -> dict[str, bytes]:
    """The files an ensemble names (wasm modules, inputs), by the path written in it."""
    wanted: dict[str, str] = {}
    for name, allocation in ensemble.allocations.items():
        if allocation.execution.module:
            wanted[allocation.execution.module] = f"allocations.{name}.execution.module"
        for index, item in enumerate(allocation.inputs):
            wanted[item.source] = f"allocations.{name}.inputs[{index}].source"
    files: dict[str, bytes] = {}
    for written, field in wanted.items():
        path = Path(written) if Path(written).is_absolute() else base / written
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise SpecError(field, written, f"a file of at most {MAX_FILE_BYTES // 2**20} MiB")
            files[written] = path.read_bytes()
        except OSError as exc:
            raise SpecError(
                field,
                written,
                "a readable file, relative to the ensemble file",
                detail=f"cannot be read ({path}: {exc.strerror})",
            ) from None
    return files


class Client:
    """One node's REST API. Use as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        base_url: str,
        token: str = "",
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport
        )

    @classmethod
    def for_home(
        cls, home: Home, api_url: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> Client:
        return cls(api_url or api_url_for(home), token_for(home), timeout_s=timeout_s)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- transport -------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        reply: type[T],
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> T:
        content = None if body is None else msgspec.json.encode(body)
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            response = self._http.request(
                method, path, content=content, params=params, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise APIError(0, "Timeout", f"{self.base_url}: no answer in time ({exc})") from exc
        except httpx.HTTPError as exc:
            raise NodeUnreachable(
                0,
                "NodeUnreachable",
                f"no dms node answers at {self.base_url} ({exc}); start one with `dms run`, "
                "or point at it with --api URL",
            ) from exc
        if response.status_code >= 400:
            raise _error(response)
        if reply is bytes:
            return response.content  # type: ignore[return-value]
        try:
            return msgspec.json.decode(response.content, type=reply)
        except msgspec.DecodeError as exc:
            raise APIError(
                response.status_code,
                "BadResponse",
                f"{method} {path}: the node's answer is not a {reply.__name__}: {exc}",
            ) from exc

    # -- node ------------------------------------------------------------------------------

    def status(self) -> NodeStatus:
        return self._request("GET", f"{PREFIX}/status", NodeStatus)

    def onboarding(self) -> OnboardStatus:
        return self._request("GET", f"{PREFIX}/onboarding", OnboardStatus)

    def onboard(
        self,
        *,
        cpu: str | float,
        ram: str | int,
        disk: str | int,
        gpus: Sequence[str] = (),
        price: str = "",
        location: str = "",
    ) -> OnboardStatus:
        body = {
            "cpu": cpu,
            "ram": ram,
            "disk": disk,
            "gpus": list(gpus),
            "price": price,
            "location": location,
        }
        return self._request("POST", f"{PREFIX}/onboarding", OnboardStatus, body=body)

    def offboard(self, *, force: bool = False) -> OffboardResult:
        params = {"force": "true" if force else "false"}
        return self._request("DELETE", f"{PREFIX}/onboarding", OffboardResult, params=params)

    def resources(self) -> ResourcesView:
        return self._request("GET", f"{PREFIX}/resources", ResourcesView)

    def allocated(self) -> AllocatedReply:
        return self._request("GET", f"{PREFIX}/resources/allocated", AllocatedReply)

    def hardware(self) -> HardwareSpec:
        return self._request("GET", f"{PREFIX}/hardware", HardwareSpec)

    def hardware_usage(self) -> HardwareUsage:
        return self._request("GET", f"{PREFIX}/hardware/usage", HardwareUsage)

    def allocations(self) -> AllocationList:
        return self._request("GET", f"{PREFIX}/allocations", AllocationList)

    def metrics(self) -> str:
        return self._request("GET", "/metrics", bytes).decode()

    # -- peers -----------------------------------------------------------------------------

    def peers(self) -> PeerList:
        return self._request("GET", f"{PREFIX}/peers", PeerList)

    def peer_self(self) -> PeerSelf:
        return self._request("GET", f"{PREFIX}/peers/self", PeerSelf)

    def ping(self, peer: str) -> PingReply:
        return self._request("POST", f"{PREFIX}/peers/ping", PingReply, body={"peer": peer})

    def connect(self, address: str) -> ConnectReply:
        body = {"address": address}
        return self._request("POST", f"{PREFIX}/peers/connect", ConnectReply, body=body)

    # -- deployments -----------------------------------------------------------------------

    def deploy(self, request: NewDeployment) -> DeploymentSummary:
        return self._request("POST", f"{PREFIX}/deployments", DeploymentSummary, body=request)

    def deploy_file(
        self, path: str | Path, *, timeout_ns: int = DEFAULT_DEPLOY_TIMEOUT_NS
    ) -> DeploymentSummary:
        """Validate an ensemble file here, ship it with the files it names, deploy it."""
        file = Path(path)
        ensemble = load_ensemble(file)
        try:
            text = file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(str(file), NOTHING, "a readable UTF-8 file", detail=str(exc)) from exc
        request = NewDeployment(
            ensemble=text,
            files=files_for(ensemble, file.parent),
            timeout_ns=timeout_ns,
            source=str(file),
        )
        return self.deploy(request)

    def deployments(
        self,
        *,
        status: Sequence[DeploymentStatus] = (),
        offset: int = 0,
        limit: int = 50,
        created_after_ns: int = 0,
        created_before_ns: int = 0,
        metadata: Mapping[str, str] | None = None,
    ) -> DeploymentPage:
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if status:
            params["status"] = [s.value for s in status]
        if metadata:
            params["metadata"] = [f"{key}={value}" for key, value in metadata.items()]
        if created_after_ns:
            params["created_after_ns"] = created_after_ns
        if created_before_ns:
            params["created_before_ns"] = created_before_ns
        return self._request("GET", f"{PREFIX}/deployments", DeploymentPage, params=params)

    def deployment(self, deployment_id: str) -> DeploymentInfo:
        return self._request("GET", f"{PREFIX}/deployments/{_id(deployment_id)}", DeploymentInfo)

    def deployment_status(
        self, deployment_id: str, *, since: DeploymentStatus | None = None, wait_s: float = 0.0
    ) -> DeploymentSummary:
        """The summary; with ``since``, waits up to ``wait_s`` until the status is another."""
        params: dict[str, Any] = {}
        if since is not None:
            params = {"since": since.value, "wait_s": wait_s}
        path = f"{PREFIX}/deployments/{_id(deployment_id)}/status"
        return self._request("GET", path, DeploymentSummary, params=params)

    def wait(self, deployment_id: str, *, timeout_s: float = 600.0) -> DeploymentSummary:
        """Until the deployment is Completed or Failed (or the timeout passes)."""
        import time

        deadline = time.monotonic() + timeout_s
        summary = self.deployment_status(deployment_id)
        while not summary.status.final:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            summary = self.deployment_status(
                deployment_id, since=summary.status, wait_s=min(left, 25.0)
            )
        return summary

    def results(
        self,
        deployment_id: str,
        *,
        allocation: str = "",
        path: str = "",
        offset: int = 0,
        limit: int = 1024 * 1024,
    ) -> ResultsReply:
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if allocation:
            params["allocation"] = allocation
        if path:
            params["path"] = path
        url = f"{PREFIX}/deployments/{_id(deployment_id)}/results"
        return self._request("GET", url, ResultsReply, params=params)

    def logs(
        self,
        deployment_id: str,
        *,
        allocation: str = "",
        stream: LogStreamName = LogStreamName.STDOUT,
        offset: int = 0,
        limit: int = 1024 * 1024,
    ) -> LogsChunk:
        params: dict[str, Any] = {"stream": stream.value, "offset": offset, "limit": limit}
        if allocation:
            params["allocation"] = allocation
        path = f"{PREFIX}/deployments/{_id(deployment_id)}/logs"
        return self._request("GET", path, LogsChunk, params=params)

    def explain(self, deployment_id: str) -> Explanation:
        path = f"{PREFIX}/deployments/{_id(deployment_id)}/explain"
        return self._request("GET", path, Explanation)

    def cancel(
        self, deployment_id: str, reason: str = "cancelled by the user"
    ) -> DeploymentSummary:
        path = f"{PREFIX}/deployments/{_id(deployment_id)}/cancel"
        return self._request("POST", path, DeploymentSummary, body={"reason": reason})

    def prune(self, *, before_ns: int = 0) -> PruneResult:
        body = {"before_ns": before_ns}
        return self._request("POST", f"{PREFIX}/deployments/prune", PruneResult, body=body)


def _id(deployment_id: str) -> str:
    if not deployment_id or "/" in deployment_id or len(deployment_id) > 128:
        raise InputError("deployment id", deployment_id, "a deployment id (dms deployments list)")
    return deployment_id


def _error(response: httpx.Response) -> APIError:
    status = response.status_code
    try:
        body = msgspec.json.decode(response.content, type=ErrorBody)
        error, message, field = body.error, body.message, body.field
    except msgspec.DecodeError:
        error, message, field = "HTTPError", response.text[:500] or response.reason_phrase, ""
    if status == 401:
        message += " (the token is read from <home>/api-token or DMS_API_TOKEN)"
    kind = APIInputError if status in _INPUT_STATUSES else APIError
    return kind(status, error, message, field)
