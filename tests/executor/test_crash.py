"""A node that dies (SIGKILL) leaves nothing running once the next node process cleans up."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import psutil
import pytest

from dms.executor import CleanupReport, ExecutionInfo, ExecutionStatus, Reason
from dms.executor.cgroups import Cgroup

from .conftest import wasm_fixture

NODE = Path(__file__).with_name("crash_node.py")


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def running(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sandbox", "cgroups"),
    [("off", "off"), ("off", "on"), ("auto", "on")],
    ids=["process-groups-only", "cgroups", "sandbox-and-cgroups"],
)
def test_cleanup_after_a_killed_node_leaves_nothing_running(
    work_dir: Path, sandbox: str, cgroups: str
) -> None:
    module = str(wasm_fixture("loop"))
    node = subprocess.Popen(
        [sys.executable, str(NODE), "start", str(work_dir), sandbox, cgroups, module],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert node.stdout is not None
        assert node.stdout.readline() == "ready\n"
        workloads = descendants(node.pid)
        assert len(workloads) >= 9  # three shells, each with two sleeps (plus sandboxes)
    finally:
        node.send_signal(signal.SIGKILL)
        node.wait()

    if sandbox == "off":
        # Nothing else kills them: they outlive the node until cleanup.
        assert len(running(workloads)) >= 9
    done = subprocess.run(
        [sys.executable, str(NODE), "cleanup", str(work_dir)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    reports = msgspec.json.decode(done.stdout, type=dict[str, CleanupReport])

    assert running(workloads) == []
    assert sorted(reports["process"].lost) == ["p0", "p1", "p2"]
    if sandbox == "off":
        assert sorted(reports["process"].killed) == ["p0", "p1", "p2"]
    assert reports["wasm"].lost == ("w0",)
    assert reports["wasm"].killed == ()
    for execution in ("p0", "p1", "p2"):
        state = work_dir / "process" / execution / "state.json"
        info = msgspec.json.decode(state.read_bytes(), type=ExecutionInfo)
        assert info.status is ExecutionStatus.LOST
        assert info.result is not None and info.result.reason is Reason.LOST
        folders = Cgroup.from_paths(info.handles.cgroups).by_controller.values()
        assert not any(folder.exists() for folder in folders)
