"""`dms init` and `dms run` as real processes: ready, reachable, stopped cleanly by signals."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from dms.home import Home
from dms.node.setup import runtime_path
from tests.e2e.conftest import DMS, dms

pytestmark = pytest.mark.slow


def start(home: Path) -> tuple[subprocess.Popen[str], dict[str, object]]:
    process = subprocess.Popen(
        [*DMS, "--home", str(home), "run", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("{"):
            ready = json.loads(line)
            if ready.get("event") == "ready":
                return process, ready
    raise AssertionError(f"dms run exited with {process.wait()} before it was ready")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_init_run_status_and_a_clean_stop(tmp_path: Path, stop: signal.Signals) -> None:
    home = tmp_path / "node"
    made = dms(
        "init",
        "--no-passphrase",
        "--api-port",
        "0",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--json",
        home=home,
    )
    assert made.returncode == 0, made.stderr
    did = json.loads(made.stdout.strip().splitlines()[-1])["node_did"]
    process, ready = start(home)
    try:
        assert ready["did"] == did
        assert runtime_path(Home(home)).exists()
        status = dms("status", "--json", home=home)
        assert status.returncode == 0, status.stderr
        shown = json.loads(status.stdout)
        assert (shown["did"], shown["api_url"]) == (did, ready["api_url"])
        again = dms("run", home=home)
        assert again.returncode == 1 and "already runs" in again.stderr
    finally:
        process.send_signal(stop)
        code = process.wait(timeout=30)
    assert code == 0
    assert not runtime_path(Home(home)).exists()
    after = dms("status", home=home)
    assert after.returncode == 1 and "dms run" in after.stderr


def test_run_without_init_says_what_to_do(tmp_path: Path) -> None:
    result = dms("run", home=tmp_path / "nothing")
    assert result.returncode == 1
    assert "init" in result.stderr


def test_a_taken_api_port_is_named(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        home = tmp_path / "node"
        dms(
            "init",
            "--no-passphrase",
            "--api-port",
            str(port),
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            home=home,
        )
        result = dms("run", home=home)
    assert result.returncode == 1
    assert "api" in result.stderr and str(port) in result.stderr
