"""The REST API: Litestar routes over the node's behaviors (see :mod:`dms.api.backend`).

Resources live under ``/api/v1``; the OpenAPI document is ``/api/v1/openapi.json`` (also
``/schema/openapi.json``);
Prometheus metrics are ``/metrics``. Routes that change state (POST, DELETE) need
``Authorization: Bearer <token>`` with the token from the node home (``<home>/api-token``);
reads need nothing more than reaching the address (127.0.0.1 by default). Errors share one
body (:class:`dms.api.errors.ErrorBody`) and a status per kind of error.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Annotated, Any

import anyio
from litestar import Litestar, MediaType, Request, Response, Router, delete, get, post
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import FromQuery, JSONBody, PathParameter, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from dms import __version__
from dms.actor import Empty
from dms.api.backend import NodeBackend
from dms.api.errors import ErrorBody, body_for
from dms.api.forms import MAX_NS, CancelForm, OnboardForm, PruneForm
from dms.api.metrics import render_metrics
from dms.errors import InputError
from dms.jobs.protocol import LogsChunk, LogStreamName
from dms.jobs.status import DeploymentStatus
from dms.log import get_logger
from dms.node import behaviors as names
from dms.node.messages import (
    AllocationList,
    ConnectReply,
    ConnectRequest,
    NodeStatus,
    PeerList,
    PeerSelf,
    PingReply,
    PingRequest,
)
from dms.onboarding.behaviors import AllocatedReply, OffboardRequest
from dms.onboarding.records import OffboardResult, OnboardRequest, OnboardStatus, ResourcesView
from dms.orchestrator.messages import (
    DeploymentInfo,
    DeploymentLogsRequest,
    DeploymentPage,
    DeploymentRef,
    DeploymentResultRequest,
    DeploymentSummary,
    Explanation,
    ListDeployments,
    NewDeployment,
    PruneRequest,
    PruneResult,
    ShutdownRequest,
)
from dms.orchestrator.service import ResultsReply
from dms.resources.hardware import HardwareSpec, HardwareUsage

PREFIX = "/api/v1"
BEARER = "bearer"
MAX_PAGE = 1000
MAX_CHUNK = 4 * 1024 * 1024
MAX_WAIT_S = 30.0
ERROR_CODES = (400, 401, 403, 404, 409, 422)

DeploymentID = Annotated[
    str, PathParameter(min_length=1, max_length=128, description="Deployment id")
]
Offset = Annotated[int, QueryParameter(ge=0, le=MAX_NS, description="Items to skip")]


def _token_guard(token: str) -> Any:
    expected = f"Bearer {token}".encode()

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        given = connection.headers.get("authorization", "").encode()
        if not token or not secrets.compare_digest(given, expected):
            raise NotAuthorizedException(
                "Authorization: a bearer token is required for this route; "
                "accepted: 'Bearer <token>' with the token from <home>/api-token"
            )

    return guard


def _error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    if isinstance(exc, ValidationException):
        extra = exc.extra if isinstance(exc.extra, list) else []
        first = extra[0] if extra and isinstance(extra[0], dict) else {}
        field = str(first.get("key", "")) if first else ""
        detail = str(first.get("message", "")) if first else ""
        message = f"{field}: {detail}" if field and detail else (detail or str(exc.detail))
        body = ErrorBody(status=400, error="BadRequest", message=message, field=field)
    elif isinstance(exc, HTTPException):
        body = ErrorBody(status=exc.status_code, error=type(exc).__name__, message=str(exc.detail))
    else:
        body = body_for(exc)
        if body.status >= 500:
            get_logger(component="api").error(
                "request failed", path=request.url.path, error=repr(exc), status=body.status
            )
    return Response(body, status_code=body.status, media_type=MediaType.JSON)


def build_app(backend: NodeBackend, *, token: str) -> Litestar:
    """The Litestar application for one node. ``token``: the bearer token of mutating routes."""
    errors = {code: _response_spec(code) for code in ERROR_CODES}
    changes: dict[str, Any] = {
        "guards": [_token_guard(token)],
        "security": [{BEARER: []}],
        "responses": errors,
    }
    """What every route that changes something adds: the bearer token is required."""
    call = backend.call

    # -- node -----------------------------------------------------------------------------

    @get(
        "/status",
        responses=errors,
        tags=["node"],
        summary="This node: identity, addresses, onboarding, peers",
    )
    async def status() -> NodeStatus:
        return await call(names.NODE_STATUS, Empty(), NodeStatus)

    # -- onboarding and resources ---------------------------------------------------------

    @get(
        "/onboarding",
        responses=errors,
        tags=["onboarding"],
        summary="Whether and what this node offers",
    )
    async def onboarding() -> OnboardStatus:
        return await call(names.ONBOARDING_STATUS, Empty(), OnboardStatus)

    @post(
        "/onboarding",
        tags=["onboarding"],
        summary="Offer a share of this machine (again: change it)",
        status_code=HTTP_200_OK,
        **changes,
    )
    async def onboard(data: JSONBody[OnboardForm]) -> OnboardStatus:
        request = OnboardRequest.parse(
            cpu=data.cpu,
            ram=data.ram,
            disk=data.disk,
            gpus=data.gpus,
            price=data.price,
            location=data.location,
        )
        return await call(names.ONBOARD, request, OnboardStatus)

    @delete(
        "/onboarding",
        tags=["onboarding"],
        summary="Stop offering resources (force: stop running allocations first)",
        status_code=HTTP_200_OK,
        **changes,
    )
    async def offboard(force: FromQuery[bool] = False) -> OffboardResult:
        return await call(names.OFFBOARD, OffboardRequest(force=force), OffboardResult)

    @get(
        "/resources",
        responses=errors,
        tags=["resources"],
        summary="Machine, onboarded, committed, free",
    )
    async def resources() -> ResourcesView:
        state = await call(names.ONBOARDING_STATUS, Empty(), OnboardStatus)
        return state.resources

    @get(
        "/resources/allocated",
        responses=errors,
        tags=["resources"],
        summary="Allocations holding resources",
    )
    async def allocated() -> AllocatedReply:
        return await call(names.RESOURCES_ALLOCATED, Empty(), AllocatedReply)

    @get("/hardware", responses=errors, tags=["resources"], summary="What the machine has")
    async def hardware() -> HardwareSpec:
        return await call(names.HARDWARE_SPEC, Empty(), HardwareSpec)

    @get(
        "/hardware/usage", responses=errors, tags=["resources"], summary="What the machine uses now"
    )
    async def hardware_usage() -> HardwareUsage:
        return await call(names.HARDWARE_USAGE, Empty(), HardwareUsage)

    # -- peers ----------------------------------------------------------------------------

    @get("/peers", responses=errors, tags=["peers"], summary="Peers connected now")
    async def peers() -> PeerList:
        return await call(names.PEERS_LIST, Empty(), PeerList)

    @get(
        "/peers/self",
        responses=errors,
        tags=["peers"],
        summary="This node's peer id, DID and addresses",
    )
    async def peers_self() -> PeerSelf:
        return await call(names.PEERS_SELF, Empty(), PeerSelf)

    @post(
        "/peers/ping",
        tags=["peers"],
        summary="Round trip to a peer",
        status_code=200,
        **changes,
    )
    async def ping(data: JSONBody[PingRequest]) -> PingReply:
        return await backend.node.ping(data)

    @post(
        "/peers/connect",
        tags=["peers"],
        summary="Dial a peer",
        status_code=200,
        **changes,
    )
    async def connect(data: JSONBody[ConnectRequest]) -> ConnectReply:
        return await backend.node.connect(data)

    # -- deployments ----------------------------------------------------------------------

    @post(
        "/deployments",
        tags=["deployments"],
        summary="Deploy an ensemble",
        status_code=HTTP_201_CREATED,
        **changes,
    )
    async def deploy(data: JSONBody[NewDeployment]) -> DeploymentSummary:
        if not 0 < data.timeout_ns <= MAX_NS:
            raise InputError("timeout_ns", data.timeout_ns, f"a duration in ns from 1 to {MAX_NS}")
        return await call(names.DEPLOYMENT_NEW, data, DeploymentSummary)

    @get(
        "/deployments",
        responses=errors,
        tags=["deployments"],
        summary="Deployments, newest first, with filters",
    )
    async def deployments(
        status: FromQuery[list[DeploymentStatus] | None] = None,
        metadata: Annotated[
            list[str] | None,
            QueryParameter(description="key=value (repeat): every pair must match"),
        ] = None,
        created_after_ns: Annotated[int, QueryParameter(ge=0, le=MAX_NS)] = 0,
        created_before_ns: Annotated[int, QueryParameter(ge=0, le=MAX_NS)] = 0,
        offset: Offset = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 50,
    ) -> DeploymentPage:
        request = ListDeployments(
            status=tuple(status or ()),
            metadata=_pairs(metadata or (), "metadata"),
            created_after_ns=created_after_ns,
            created_before_ns=created_before_ns,
            offset=offset,
            limit=limit,
        )
        return await call(names.DEPLOYMENT_LIST, request, DeploymentPage)

    @post(
        "/deployments/prune",
        tags=["deployments"],
        summary="Forget finished deployments",
        status_code=HTTP_200_OK,
        **changes,
    )
    async def prune(data: JSONBody[PruneForm]) -> PruneResult:
        request = PruneRequest(before_ns=data.before_ns)
        return await call(names.DEPLOYMENT_PRUNE, request, PruneResult)

    @get(
        "/deployments/{deployment_id:str}",
        responses=errors,
        tags=["deployments"],
        summary="One deployment",
    )
    async def deployment(deployment_id: DeploymentID) -> DeploymentInfo:
        ref = DeploymentRef(deployment_id=deployment_id)
        return await call(names.DEPLOYMENT_INFO, ref, DeploymentInfo)

    @get(
        "/deployments/{deployment_id:str}/status",
        responses=errors,
        tags=["deployments"],
        summary="A deployment's summary; with since and wait_s, once it is no longer `since`",
    )
    async def deployment_status(
        deployment_id: DeploymentID,
        since: FromQuery[DeploymentStatus | None] = None,
        wait_s: Annotated[float, QueryParameter(ge=0, le=MAX_WAIT_S)] = 0.0,
    ) -> DeploymentSummary:
        ref = DeploymentRef(deployment_id=deployment_id)
        summary = await call(names.DEPLOYMENT_STATUS, ref, DeploymentSummary)
        if since is None or wait_s <= 0 or backend.waiter is None:
            return summary
        with anyio.move_on_after(wait_s):
            while summary.status is since:
                await backend.waiter(deployment_id, wait_s)
                summary = await call(names.DEPLOYMENT_STATUS, ref, DeploymentSummary)
        return summary

    @get(
        "/deployments/{deployment_id:str}/results",
        responses=errors,
        tags=["deployments"],
        summary="An allocation's result files (no path), or a chunk of one file",
    )
    async def results(
        deployment_id: DeploymentID,
        allocation: Annotated[str, QueryParameter(max_length=256)] = "",
        path: Annotated[str, QueryParameter(max_length=4096)] = "",
        offset: Offset = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_CHUNK)] = 1024 * 1024,
    ) -> ResultsReply:
        request = DeploymentResultRequest(
            deployment_id=deployment_id,
            allocation=allocation,
            path=path,
            offset=offset,
            limit=limit,
        )
        return await call(names.DEPLOYMENT_RESULTS, request, ResultsReply)

    @get(
        "/deployments/{deployment_id:str}/logs",
        responses=errors,
        tags=["deployments"],
        summary="A chunk of an allocation's stdout or stderr",
    )
    async def logs(
        deployment_id: DeploymentID,
        allocation: Annotated[str, QueryParameter(max_length=256)] = "",
        stream: FromQuery[LogStreamName] = LogStreamName.STDOUT,
        offset: Offset = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_CHUNK)] = 1024 * 1024,
    ) -> LogsChunk:
        request = DeploymentLogsRequest(
            deployment_id=deployment_id,
            allocation=allocation,
            stream=stream,
            offset=offset,
            limit=limit,
        )
        return await call(names.DEPLOYMENT_LOGS, request, LogsChunk)

    @get(
        "/deployments/{deployment_id:str}/explain",
        responses=errors,
        tags=["deployments"],
        summary="Why a deployment is placed where it is, or why it waits",
    )
    async def explain(deployment_id: DeploymentID) -> Explanation:
        ref = DeploymentRef(deployment_id=deployment_id)
        return await call(names.DEPLOYMENT_EXPLAIN, ref, Explanation)

    @post(
        "/deployments/{deployment_id:str}/cancel",
        tags=["deployments"],
        summary="Shut a deployment down",
        status_code=HTTP_200_OK,
        **changes,
    )
    async def cancel(deployment_id: DeploymentID, data: JSONBody[CancelForm]) -> DeploymentSummary:
        request = ShutdownRequest(deployment_id=deployment_id, reason=data.reason)
        return await call(names.DEPLOYMENT_SHUTDOWN, request, DeploymentSummary)

    # -- allocations ----------------------------------------------------------------------

    @get(
        "/allocations",
        responses=errors,
        tags=["allocations"],
        summary="Allocations this node runs (provider)",
    )
    async def allocations() -> AllocationList:
        return await call(names.ALLOCATIONS_LIST, Empty(), AllocationList)

    # -- documents ------------------------------------------------------------------------

    @get("/openapi.json", include_in_schema=False, sync_to_thread=False)
    def openapi(request: Request[Any, Any, Any]) -> dict[str, Any]:
        schema: dict[str, Any] = request.app.openapi_schema.to_schema()
        return schema

    @get("/metrics", include_in_schema=False, media_type="text/plain; version=0.0.4")
    async def metrics() -> bytes:
        return await render_metrics(backend)

    api = Router(
        PREFIX,
        route_handlers=[
            status,
            onboarding,
            onboard,
            offboard,
            resources,
            allocated,
            hardware,
            hardware_usage,
            peers,
            peers_self,
            ping,
            connect,
            deploy,
            deployments,
            prune,
            deployment,
            deployment_status,
            results,
            logs,
            explain,
            cancel,
            allocations,
            openapi,
        ],
    )
    return Litestar(
        route_handlers=[api, metrics],
        exception_handlers={Exception: _error_response},
        openapi_config=OpenAPIConfig(
            title="dms node API",
            version=__version__,
            path="/schema",
            render_plugins=[JsonRenderPlugin()],
            components=Components(
                security_schemes={
                    BEARER: SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="The token in <home>/api-token",
                    )
                }
            ),
        ),
        debug=False,
    )


def _pairs(items: Sequence[str], field: str) -> dict[str, str]:
    """``["team=infra", "env=dev"]`` -> ``{"team": "infra", "env": "dev"}``."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(field, item, "key=value (e.g. team=infra)")
        pairs[key] = value
    return pairs


def _response_spec(code: int) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorBody, description=f"error ({code})")
