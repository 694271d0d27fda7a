"""Three real nodes on 127.0.0.1: onboard, deploy hello WASM, logs, cancel, restart, restore.

One scenario on one devstack (starting one costs seconds), driven through the `dms` command as a
user would and through the Python client.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from dms.api.client import Client
from dms.devstack import Devstack
from dms.jobs.status import DeploymentStatus
from dms.node.setup import read_api_token
from tests.e2e.conftest import dms

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "examples" / "hello.yaml"
UPCASE = ROOT / "examples" / "upcase.yaml"
SERVICE = """
version: V1
metadata: {name: idle-service}
allocations:
  idle:
    type: service
    executor: "null"
    resources: {cpu: 0.25, ram: 32MiB, disk: 8MiB}
    execution: {args: [duration=1h]}
"""


def provider_available() -> bool:
    try:
        from dms.jobs.provider import ProviderService  # noqa: F401
    except ImportError:
        return False
    return True


def last_json(text: str) -> dict[str, object]:
    return json.loads(text.strip().splitlines()[-1])


@pytest.mark.skipif(not provider_available(), reason="this build has no provider")
async def test_three_nodes_deploy_cancel_restart_restore(tmp_path: Path) -> None:
    service_file = tmp_path / "service.yaml"
    service_file.write_text(SERVICE)
    async with Devstack(tmp_path / "stack", 3) as stack:
        home = Path(stack.nodes[0].home)
        dids = {node.did for node in stack.nodes}

        def first_part() -> tuple[str, str, str]:
            for node in stack.nodes:
                status = last_json(dms("status", "--json", home=Path(node.home)).stdout)
                assert status["onboarded"] is True
                assert int(status["peers"]) >= 1  # type: ignore[call-overload]
            done = dms("deploy", str(HELLO), "--wait", "--json", home=home)
            assert done.returncode == 0, done.stderr
            hello = last_json(done.stdout)
            summary = hello["summary"]
            assert isinstance(summary, dict) and summary["status"] == "Completed"
            hello_id = str(summary["deployment_id"])
            allocation = hello["allocations"][0]  # type: ignore[index]
            assert allocation["provider"] in dids  # type: ignore[index]
            logs = dms("deployments", "logs", hello_id, home=home)
            assert logs.returncode == 0 and "Hello, dms!" in logs.stdout
            explained = last_json(
                dms("deployments", "explain", hello_id, "--json", home=home).stdout
            )
            node = explained["nodes"][0]  # type: ignore[index]
            # Every provider has room to spare: only the first choice was asked for a bid.
            assert [c["provider"] for c in node["candidates"]] == node["chosen"]  # type: ignore[index]
            assert set(node["chosen"]) == {allocation["provider"]}  # type: ignore[index]

            done = dms("deploy", str(UPCASE), "--wait", "--json", home=home)
            assert done.returncode == 0, done.stderr
            upcase_id = str(last_json(done.stdout)["summary"]["deployment_id"])  # type: ignore[index]
            listing = last_json(
                dms("deployments", "results", upcase_id, "--json", home=home).stdout
            )
            assert [f["path"] for f in listing["files"]] == ["upper.txt"]  # type: ignore[index, union-attr]
            fetched = dms("deployments", "results", upcase_id, "upper.txt", home=home)
            assert fetched.stdout == "DMS MOVES WORK TO WHERE THE MACHINES ARE.\n"

            with Client(stack.nodes[0].api_url, read_api_token(stack.homes[0])) as client:
                cancelled_id = client.deploy_file(service_file).deployment_id
                kept_id = client.deploy_file(service_file).deployment_id
                for ident in (cancelled_id, kept_id):
                    summary_now = client.deployment_status(ident)
                    while summary_now.status is not DeploymentStatus.RUNNING:
                        assert not summary_now.status.final, summary_now
                        summary_now = client.deployment_status(
                            ident, since=summary_now.status, wait_s=10
                        )
            cancel = dms("deployments", "cancel", cancelled_id, home=home)
            assert cancel.returncode == 0, cancel.stderr
            with Client(stack.nodes[0].api_url, read_api_token(stack.homes[0])) as client:
                assert client.wait(cancelled_id, timeout_s=30).status.final
            return hello_id, cancelled_id, kept_id

        hello_id, cancelled_id, kept_id = await trio.to_thread.run_sync(first_part)
        restarted = await stack.restart(0)

        def after_restart() -> None:
            with Client(restarted.api_url, read_api_token(stack.homes[0])) as client:
                listed = {d.deployment_id: d.status for d in client.deployments().items}
                assert listed[hello_id] is DeploymentStatus.COMPLETED
                assert listed[cancelled_id].final
                assert kept_id in listed and not listed[kept_id].final
                client.cancel(kept_id)
                assert client.wait(kept_id, timeout_s=60).status.final

        await trio.to_thread.run_sync(after_restart)
