"""The Python client: typed replies, errors by kind, where the node is, files of an ensemble."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import trio

from dms.api.client import Client, api_url_for, files_for, token_for
from dms.api.errors import APIError, APIInputError, NodeUnreachable
from dms.errors import InputError, SpecError
from dms.home import Home
from dms.jobs import parse_ensemble
from dms.node.setup import RuntimeInfo, init_home, write_runtime
from tests.node.harness import running_node

ENSEMBLE = """
version: V1
allocations:
  hello:
    type: task
    executor: wasm
    resources: {cpu: 0.5, ram: 64MiB, disk: 16MiB}
    execution: {module: mod/hello.wasm}
    inputs: [{source: data.txt}]
"""


class TestAgainstANode:
    """Calls to a running node return its typed replies and its refusals."""

    async def test_status_onboard_and_refusals(self, tmp_path: Path) -> None:
        async with running_node(tmp_path) as node:

            def calls() -> None:
                with Client(node.api_url, node.token) as client:
                    assert client.status().did == node.did
                    status = client.onboard(cpu="1.5", ram="4GiB", disk="8GiB")
                    assert status.resources.onboarded.cpu.cores == 1.5
                    with pytest.raises(APIInputError) as refused:
                        client.onboard(cpu=1, ram="1 gig", disk="8GiB")
                    assert (refused.value.status, refused.value.field) == (422, "ram")
                    assert isinstance(refused.value, InputError)
                    with pytest.raises(APIError) as missing:
                        client.deployment("no-such-deployment")
                    # 501 when this build has no orchestrator
                    assert missing.value.status in (404, 501)
                with Client(node.api_url, "wrong") as client:
                    with pytest.raises(APIError) as unauthorised:
                        client.offboard()
                    assert unauthorised.value.status == 401
                    assert not isinstance(unauthorised.value, InputError)
                    assert "api-token" in str(unauthorised.value)

            await trio.to_thread.run_sync(calls)


def test_nobody_listening_is_node_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Client(f"http://127.0.0.1:{port}") as client, pytest.raises(NodeUnreachable) as error:
        client.status()
    assert "dms run" in str(error.value)


class TestWhereTheNodeIs:
    """DMS_API_URL, then the running node's file, then the config."""

    def test_config_then_runtime_file_then_environment(self, tmp_path: Path) -> None:
        home = Home(tmp_path / "h")
        init_home(home, passphrase=None, settings={"api.port": 9123, "api.host": "0.0.0.0"})
        assert api_url_for(home, env={}) == "http://127.0.0.1:9123"
        write_runtime(
            home,
            RuntimeInfo(
                pid=os.getpid(),
                did="d",
                peer_id="p",
                addresses=(),
                api_url="http://127.0.0.1:4444",
                version="0",
                started_ns=0,
            ),
        )
        assert api_url_for(home, env={}) == "http://127.0.0.1:4444"
        assert api_url_for(home, env={"DMS_API_URL": "http://x:1/"}) == "http://x:1"

    def test_token_from_environment_or_home(self, tmp_path: Path) -> None:
        home = Home(tmp_path / "h")
        init_home(home, passphrase=None)
        assert token_for(home, env={}) == home.api_token_file.read_text().strip()
        assert token_for(home, env={"DMS_API_TOKEN": "t"}) == "t"


class TestFiles:
    """The files an ensemble names travel with it, by the path written in the file."""

    def test_module_and_inputs_are_read(self, tmp_path: Path) -> None:
        (tmp_path / "mod").mkdir()
        (tmp_path / "mod" / "hello.wasm").write_bytes(b"\0asm")
        (tmp_path / "data.txt").write_text("input")
        files = files_for(parse_ensemble(ENSEMBLE), tmp_path)
        assert files == {"mod/hello.wasm": b"\0asm", "data.txt": b"input"}

    def test_a_missing_file_names_the_field(self, tmp_path: Path) -> None:
        with pytest.raises(
            SpecError, match=r"allocations.hello.execution.module: \"mod/hello.wasm\""
        ):
            files_for(parse_ensemble(ENSEMBLE), tmp_path)
