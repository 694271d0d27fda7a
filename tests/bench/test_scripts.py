"""The benchmark scripts that drive the deployment protocol still run it to the end.

Benchmarks are not tests: nothing here looks at a timing. These runs are tiny and only check
that each script finishes and reports what it measured (a protocol change once left a
benchmark waiting forever for a message that had changed shape).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

pytestmark = pytest.mark.slow


def run(script: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--json", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures: dict[str, Any] = json.loads(done.stdout)
    return figures


class TestScripts:
    """Each protocol benchmark completes a tiny run and reports its figures."""

    def test_provider_completes_tasks_and_leaves_the_pools_whole(self) -> None:
        figures = run("provider.py", "--runs", "3", "--parallel", "2")
        assert figures["pools_whole"] is True
        assert figures["task_p50_ms"] > 0 and figures["parallel_tasks_per_s"] > 0

    def test_placement_places_everything_and_over_allocates_nothing(self, tmp_path: Path) -> None:
        figures = run(
            "placement.py",
            "--providers", "30",
            "--allocations", "60",
            "--idle-s", "0.1",
            "--profile-allocations", "10",
            "--no-memory-run",
            "--work-dir", str(tmp_path),
        )  # fmt: skip
        assert figures["allocations_placed"] == 60
        assert figures["ensembles_not_placed"] == 0
        assert figures["over_allocated_providers"] == 0
        assert figures["running_on_providers"] == figures["running_in_orchestrators"] == 60
        assert figures["frames_per_allocation"] > 0

    def test_network_measures_every_workload_against_the_raw_stream(self) -> None:
        figures = run("network.py", "--count", "128", "--repeat", "1", "--broadcasts", "5")
        for workload in ("raw_stream", "raw_tuned", "frames", "invoke"):
            assert figures[f"{workload}_sequential_per_s"] > 0
            assert figures[f"{workload}_64_per_s"] > 0
        assert figures["invoke_sequential_vs_raw_ratio"] > 0
        assert figures["invoke_sequential_vs_raw_tuned_ratio"] > 0
        assert figures["broadcast_delivered_ratio"] > 0
        assert figures["dial_dms_ms"] > 0
