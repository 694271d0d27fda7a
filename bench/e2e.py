"""End to end, on a loopback devstack of real node processes.

Figures (each against its goal):

- deploy-to-completed latency of ``examples/hello.yaml`` (a WASM task), ``--deployments``
  sequential deployments from node 1: from the deploy request to the client seeing
  ``Completed`` (p50, p99; the node's own created-to-completed times alongside);
  goals p50 <= 300 ms, p99 <= 1 s;
- node start-to-ready: one ``dms run`` on a fresh home, from spawning the process to its ready
  line (median of ``--starts``), and the devstack's nodes started together; goal <= 1.5 s;
- idle RSS of each devstack node after the deployments and a few idle seconds; goal <= 150 MB;
- ``dms --help``: median wall time of ``--runs`` runs; goal <= 0.3 s.

    .venv/bin/python bench/e2e.py [--json] [--deployments 50] [--nodes 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import psutil

from dms.log import configure

configure("warning")  # before the modules below bind their loggers

from dms.api.client import Client  # noqa: E402
from dms.devstack import Devstack  # noqa: E402
from dms.home import Home  # noqa: E402
from dms.jobs.status import DeploymentStatus  # noqa: E402
from dms.node.setup import init_home, read_api_token  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HELLO = ROOT / "examples" / "hello.yaml"
DMS = Path(sys.executable).parent / "dms"
GOALS = {
    "deploy_p50_ms": 300.0,
    "deploy_p99_ms": 1000.0,
    "start_to_ready_ms": 1500.0,
    "idle_rss_max_mb": 150.0,
    "help_ms": 300.0,
}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def help_times(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run([str(DMS), "--help"], check=True, capture_output=True)
        times.append((time.perf_counter() - began) * 1000)
    return times


def start_times(starts: int, folder: Path) -> tuple[list[float], list[float]]:
    """Spawn-to-ready-line (measured here) and the node's own process-start-to-ready."""
    outside, inside = [], []
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMS_")}
    for index in range(starts):
        home = Home(folder / f"start{index}")
        init_home(
            home,
            passphrase=None,
            settings={"api.port": 0, "network.listen": ["/ip4/127.0.0.1/tcp/0"]},
        )
        began = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "dms.cli.main", "--home", str(home.root), "run", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert process.stdout is not None
        ready: dict[str, Any] = {}
        for line in process.stdout:
            if line.startswith(b"{"):
                ready = json.loads(line)
                if ready.get("event") == "ready":
                    break
        outside.append((time.perf_counter() - began) * 1000)
        inside.append(float(ready.get("ready_s", 0.0)) * 1000)
        process.terminate()
        process.wait(timeout=30)
    return outside, inside


def deploy_latencies(client: Client, count: int) -> tuple[list[float], list[float], int]:
    """Client-observed and node-recorded deploy-to-completed times; failures counted."""
    observed, recorded, failed = [], [], 0
    for _ in range(count):
        began = time.perf_counter()
        summary = client.deploy_file(HELLO)
        current = client.wait(summary.deployment_id, timeout_s=60)
        if current.status is not DeploymentStatus.COMPLETED:
            failed += 1
            continue
        observed.append((time.perf_counter() - began) * 1000)
        recorded.append((current.updated_ns - current.created_ns) / 1e6)
    return observed, recorded, failed


async def devstack_figures(nodes: int, deployments: int, folder: Path) -> dict[str, Any]:
    began = time.perf_counter()
    async with Devstack(folder / "devstack", nodes, log_level="warning") as stack:
        up_ms = (time.perf_counter() - began) * 1000
        first = stack.nodes[0]
        token = read_api_token(stack.homes[0])

        def work() -> tuple[list[float], list[float], int]:
            if deployments <= 0:
                return [], [], 0
            with Client(first.api_url, token) as client:
                deploy_latencies(client, 1)  # warm-up: the first deployment waits for adverts
                return deploy_latencies(client, deployments)

        observed, recorded, failed = await anyio.to_thread.run_sync(work)
        await anyio.sleep(3)
        rss = [psutil.Process(node.pid).memory_info().rss / 2**20 for node in stack.nodes]
        return {
            "devstack_up_ms": round(up_ms, 1),
            "observed": observed,
            "recorded": recorded,
            "failed": failed,
            "rss": rss,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--deployments", type=int, default=50)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5, help="dms --help runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dms-bench-e2e-") as tmp:
        folder = Path(tmp)
        helps = help_times(args.runs)
        outside, inside = start_times(args.starts, folder)
        stack = anyio.run(devstack_figures, args.nodes, args.deployments, folder, backend="trio")
    observed, recorded = stack["observed"], stack["recorded"]
    figures: dict[str, Any] = {
        "deployments": args.deployments,
        "deployments_failed": stack["failed"],
        "deploy_p50_ms": round(percentile(observed, 0.50), 1) if observed else None,
        "deploy_p99_ms": round(percentile(observed, 0.99), 1) if observed else None,
        "deploy_node_p50_ms": round(percentile(recorded, 0.50), 1) if recorded else None,
        "deploy_node_p99_ms": round(percentile(recorded, 0.99), 1) if recorded else None,
        "start_to_ready_ms": round(statistics.median(outside), 1),
        "start_to_ready_in_process_ms": round(statistics.median(inside), 1),
        "devstack_up_ms": stack["devstack_up_ms"],
        "idle_rss_max_mb": round(max(stack["rss"]), 1),
        "idle_rss_mean_mb": round(statistics.mean(stack["rss"]), 1),
        "help_ms": round(statistics.median(helps), 1),
    }
    for key, goal in GOALS.items():
        value = figures.get(key)
        figures[f"{key.removesuffix('_ms').removesuffix('_mb')}_goal_ratio"] = (
            round(value / goal, 2) if isinstance(value, int | float) else None
        )
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{'figure':38} {'value':>10} {'goal':>10}")
    for key, value in figures.items():
        if key.endswith("_ratio"):
            continue
        goal = GOALS.get(key)
        shown = "-" if value is None else value
        print(f"{key:38} {shown!s:>10} {('<= ' + format(goal, 'g')) if goal else '':>10}")


if __name__ == "__main__":
    main()
