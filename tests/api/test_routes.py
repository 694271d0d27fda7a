"""The REST API of a running in-process node: routes, token, error bodies, OpenAPI, metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from dms.app import DMS
from tests.node.harness import running_node


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[DMS]:
    async with running_node(tmp_path) as running:
        yield running


@pytest.fixture
async def http(node: DMS) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=node.api_url) as client:
        yield client


def bearer(node: DMS) -> dict[str, str]:
    return {"Authorization": f"Bearer {node.token}"}


ONBOARD = {"cpu": 2, "ram": "4GiB", "disk": "10GiB"}


class TestReads:
    """Read routes answer without a token, with the behaviors' replies."""

    async def test_status(self, node: DMS, http: httpx.AsyncClient) -> None:
        reply = await http.get("/api/v1/status")
        assert reply.status_code == 200
        body = reply.json()
        assert (body["did"], body["peer_id"], body["api_url"]) == (
            node.did,
            node.network.peer_id,
            node.api_url,
        )

    @pytest.mark.parametrize(
        ("path", "key"),
        [
            ("/api/v1/onboarding", "onboarded"),
            ("/api/v1/resources", "machine"),
            ("/api/v1/resources/allocated", "allocations"),
            ("/api/v1/hardware", "cpu"),
            ("/api/v1/hardware/usage", "cpu_percent"),
            ("/api/v1/peers", "peers"),
            ("/api/v1/peers/self", "peer_id"),
            ("/api/v1/allocations", "allocations"),
        ],
        ids=lambda value: value if value.startswith("/") else "",
    )
    async def test_read_routes(self, http: httpx.AsyncClient, path: str, key: str) -> None:
        reply = await http.get(path)
        assert reply.status_code == 200, reply.text
        assert key in reply.json()

    async def test_openapi_lists_every_route(self, http: httpx.AsyncClient) -> None:
        document = (await http.get("/api/v1/openapi.json")).json()
        paths = set(document["paths"])
        assert {
            "/api/v1/status",
            "/api/v1/onboarding",
            "/api/v1/deployments",
            "/api/v1/deployments/{deployment_id}/logs",
            "/api/v1/peers/ping",
        } <= paths
        onboard = document["paths"]["/api/v1/onboarding"]["post"]
        assert onboard["security"] == [{"bearer": []}]
        assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"

    async def test_metrics_are_prometheus_text(self, node: DMS, http: httpx.AsyncClient) -> None:
        await http.post("/api/v1/onboarding", json=ONBOARD, headers=bearer(node))
        text = (await http.get("/metrics")).text
        assert "dms_peers 0.0" in text
        assert "dms_onboarded 1.0" in text
        assert "dms_resources_onboarded_cpu_cores 2.0" in text
        assert 'dms_actor_messages_total{inbox="root",outcome="processed"}' in text


class TestWrites:
    """Routes that change state need the bearer token."""

    @pytest.mark.parametrize(
        "token", [None, "Bearer wrong", "Basic abc"], ids=["none", "wrong", "basic"]
    )
    async def test_refused_without_the_token(
        self, http: httpx.AsyncClient, token: str | None
    ) -> None:
        headers = {"Authorization": token} if token else {}
        reply = await http.post("/api/v1/onboarding", json=ONBOARD, headers=headers)
        assert reply.status_code == 401
        assert "api-token" in reply.json()["message"]

    async def test_onboard_then_offboard(self, node: DMS, http: httpx.AsyncClient) -> None:
        reply = await http.post("/api/v1/onboarding", json=ONBOARD, headers=bearer(node))
        assert reply.status_code == 200, reply.text
        assert reply.json()["resources"]["onboarded"]["cpu"]["cores"] == 2
        reply = await http.delete("/api/v1/onboarding", headers=bearer(node))
        assert reply.status_code == 200 and reply.json()["offboarded"] is True

    async def test_connect_and_ping_an_unknown_peer_is_404(
        self, node: DMS, http: httpx.AsyncClient
    ) -> None:
        reply = await http.post(
            "/api/v1/peers/ping", json={"peer": "12D3KooWnobody"}, headers=bearer(node)
        )
        assert reply.status_code == 404
        assert reply.json()["error"] == "PeerUnreachable"


class TestErrors:
    """Bad requests get 400/422 with a body naming the field; never a 5xx."""

    @pytest.mark.parametrize(
        ("body", "status", "field"),
        [
            (b"{not json", 400, ""),
            (b'{"cpu": 2, "ram": "4GiB"}', 400, "disk"),
            (b'{"cpu": 2, "ram": "4GiB", "disk": "10GiB", "extra": 1}', 400, "extra"),
            (b'{"cpu": "lots", "ram": "4GiB", "disk": "10GiB"}', 422, "cpu"),
            (b'{"cpu": 2, "ram": "4 gigs", "disk": "10GiB"}', 422, "ram"),
            (b'{"cpu": 64, "ram": "4GiB", "disk": "10GiB"}', 422, "cpu"),
        ],
        ids=["malformed", "missing", "unknown-field", "bad-cores", "bad-unit", "too-many-cores"],
    )
    async def test_onboarding_body(
        self, node: DMS, http: httpx.AsyncClient, body: bytes, status: int, field: str
    ) -> None:
        headers = {**bearer(node), "Content-Type": "application/json"}
        reply = await http.post("/api/v1/onboarding", content=body, headers=headers)
        assert reply.status_code == status, reply.text
        error = reply.json()
        assert error["status"] == status
        assert error["message"]
        if field:
            assert (
                field in (error["field"], error["message"].split(":")[0])
                or field in error["message"]
            )

    @pytest.mark.parametrize(
        "query",
        ["limit=0", "limit=100000", "offset=-1", "status=Sleeping", "limit=abc"],
    )
    async def test_bad_list_parameters_are_400(self, http: httpx.AsyncClient, query: str) -> None:
        reply = await http.get(f"/api/v1/deployments?{query}")
        assert reply.status_code == 400, reply.text
        assert reply.json()["field"] in query

    async def test_unknown_route_is_404(self, http: httpx.AsyncClient) -> None:
        reply = await http.get("/api/v1/nothing")
        assert reply.status_code == 404
        assert reply.json()["status"] == 404
