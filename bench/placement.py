"""Placement at scale: N providers and an orchestrator in one process, the full signed protocol.

A :class:`dms.sim.Simulation` of real nodes on the in-memory fabric (signed envelopes, trust
contexts, each provider's ResourceManager on SQLite, bids that hold, two-phase commit, the
null executor) places ``--allocations`` allocations, submitted as ensembles of mixed sizes
(1 to 16 allocations; some need a GPU, some a place; each its own price/time preference),
at most ``--concurrency`` ensembles in flight. Figures:

- allocations placed per second (wall clock, first submission to the last deployment
  Running; every node shares this one core) against the goal (2,000/s) and Nomad's C2M
  (~1,500/s);
- placement latency p50 / p99 (submission to Running, per ensemble);
- frames over the fabric and Ed25519 signature checks per allocation placed;
- CPU per allocation by role (orchestrator / providers), and what one orchestrator core
  alone would place per second if the providers ran elsewhere;
- the top of a CPU profile (a separate, shorter profiled phase, so the profiler does not
  slow the measured one);
- a final audit: each provider's pools (held + committed + allocated <= onboarded) and its
  ledger's strict check, and the allocations the orchestrators believe run;
- memory per provider (RSS growth while the network starts, divided by N), at N and, in a
  fresh process, at ``--memory-providers`` (default 10,000) providers.

    .venv/bin/python bench/placement.py [--json] [--providers 1000] [--allocations 10000]
        [--concurrency 64] [--memory-providers 10000] [--virtual] [--quick]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import psutil

from dms.actor import envelope as envelope_module
from dms.jobs.status import DeploymentStatus
from dms.log import configure
from dms.security import tokens as tokens_module
from dms.sim import (
    OrchestratorSettings,
    Simulation,
    SimulationConfig,
    TrustMode,
    WorkItem,
    ensembles,
    run,
)
from dms.sim.cpu import role_clock

GOAL_PER_S = 2000.0
NOMAD_C2M_PER_S = 1500.0
MEMORY_GOAL_MB = 4096.0
RUNNING = DeploymentStatus.RUNNING


def progress(message: str) -> None:
    """What the bench is doing, on stderr (a run at scale takes minutes)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


class SignatureCounter:
    """Counts Ed25519 verifications: envelopes and capability-token chains (bench only)."""

    def __init__(self) -> None:
        self.count = 0
        self._originals: list[tuple[Any, Callable[..., bool]]] = []

    def install(self) -> None:
        for module in (envelope_module, tokens_module):
            original = module.verify_signature
            self._originals.append((module, original))

            def counting(*args: Any, _original: Callable[..., bool] = original) -> bool:
                self.count += 1
                return _original(*args)

            module.verify_signature = counting  # type: ignore[attr-defined]

    def uninstall(self) -> None:
        for module, original in self._originals:
            module.verify_signature = original  # type: ignore[attr-defined]
        self._originals.clear()


def tune_gc(mode: str) -> None:
    """``tuned``: what is built at start-up lives as long as the network, so it leaves the
    collector's passes (``gc.freeze``), and young objects are collected less often. With
    hundreds of thousands of live objects (every node's actors, tasks and records) the
    default thresholds spend about half the CPU in full collections."""
    if mode == "tuned":
        gc.freeze()
        gc.set_threshold(100_000, 50, 1000)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def place(
    sim: Simulation, items: list[WorkItem], concurrency: int
) -> tuple[dict[str, tuple[WorkItem, DeploymentStatus]], float]:
    """Submit every item, ``concurrency`` at a time: by deployment id, the item and the
    status it reached (Running, or where it ended); and the wall seconds it all took."""
    reached: dict[str, tuple[WorkItem, DeploymentStatus]] = {}
    limiter = anyio.Semaphore(concurrency)

    async def one(item: WorkItem) -> None:
        async with limiter:
            deployment_id = await sim.submit(item)
            reached[deployment_id] = (item, await sim.wait(deployment_id, RUNNING))

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for item in items:
            tg.start_soon(one, item)
    return reached, time.perf_counter() - started


def top_of_profile(profile: cProfile.Profile, count: int) -> list[dict[str, Any]]:
    stats = pstats.Stats(profile, stream=io.StringIO())
    rows = []
    for (path, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = path.split("site-packages/")[-1].split("src/")[-1]
        rows.append(
            {
                "function": f"{where}:{line}({name})" if line else name,
                "calls": calls,
                "tottime_s": round(tottime, 3),
                "cumtime_s": round(cumtime, 3),
            }
        )
    rows.sort(key=lambda r: -r["tottime_s"])
    return rows[:count]


def config_from(args: argparse.Namespace, providers: int) -> SimulationConfig:
    return SimulationConfig(
        providers=providers,
        orchestrators=args.orchestrators,
        seed=args.seed,
        latency_ms=args.latency_ms,
        loss=args.loss,
        trust=TrustMode(args.trust),
        advert_interval_s=args.advert_interval_s,
        heartbeat_interval_s=args.heartbeat_interval_s,
        deployment_timeout_s=600.0,
        orchestrator=OrchestratorSettings(
            spare_candidates=args.spare,
            candidate_limit=args.candidate_limit,
            hold_s=60.0,
            # A provider is lost after three missed heartbeats, not one late one.
            heartbeat_timeout_s=3 * args.heartbeat_interval_s,
        ),
    )


async def placement_run(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    items = list(ensembles(args.allocations, seed=args.seed))
    profiled = list(ensembles(args.profile_allocations, seed=args.seed + 1))
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        before = rss_mb()
        started = time.perf_counter()
        progress(f"starting {args.providers} providers")
        async with Simulation(config_from(args, args.providers), Path(tmp)) as sim:
            figures["startup_s"] = time.perf_counter() - started
            progress(f"started in {figures['startup_s']:.1f} s; idle for {args.idle_s:g} s")
            figures["memory_per_provider_mb"] = (rss_mb() - before) / max(1, args.providers)
            tune_gc(args.gc)
            # What the network costs doing nothing but advertising, for comparison.
            idle_cpu = time.process_time()
            with role_clock() as idle:
                await anyio.sleep(args.idle_s)
            idle_cpu = time.process_time() - idle_cpu
            counter = SignatureCounter()
            counter.install()
            traffic_before = sim.traffic()
            cpu_before = time.process_time()
            progress(f"placing {args.allocations} allocations in {len(items)} ensembles")
            with role_clock() as roles:
                reached, wall_s = await place(sim, items, args.concurrency)
            progress(f"placed in {wall_s:.1f} s; auditing")
            cpu_s = time.process_time() - cpu_before
            traffic = sim.traffic()
            checks = counter.count
            counter.uninstall()

            placed_ids = [d for d, (_, status) in reached.items() if status is RUNNING]
            placed = sum(reached[d][0].allocations for d in placed_ids)
            latencies = [
                1000 * latency
                for d in placed_ids
                if (latency := sim.latency_s(d, RUNNING)) is not None
            ]
            audit = await sim.audit()
            attempts = [
                (await sim.explain(d)).attempts for d in placed_ids[: min(500, len(placed_ids))]
            ]

            progress(f"profiling {args.profile_allocations} more allocations")
            profile = cProfile.Profile()
            profile.enable()
            await place(sim, profiled, args.concurrency)
            profile.disable()
            if args.profile_out:
                profile.dump_stats(args.profile_out)
            figures["profile_top"] = top_of_profile(profile, args.profile_top)
            figures["profile_allocations"] = args.profile_allocations
            progress("stopping the network")

        orchestrator_s = roles.seconds.get("orchestrator", 0.0)
        provider_s = roles.seconds.get("provider", 0.0)
        idle_share = wall_s / args.idle_s if args.idle_s > 0 else 0.0
        idle_provider_s = idle.seconds.get("provider", 0.0) * idle_share
        idle_orchestrator_s = idle.seconds.get("orchestrator", 0.0) * idle_share
        figures.update(
            providers=args.providers,
            orchestrators=args.orchestrators,
            allocations=args.allocations,
            ensembles=len(items),
            allocations_placed=placed,
            ensembles_not_placed=len(items) - len(placed_ids),
            placement_wall_s=wall_s,
            placement_cpu_s=cpu_s,
            allocations_placed_per_s=placed / wall_s,
            placement_latency_p50_ms=percentile(latencies, 0.50),
            placement_latency_p99_ms=percentile(latencies, 0.99),
            frames_per_allocation=(traffic.sent - traffic_before.sent) / max(1, placed),
            signature_checks_per_allocation=checks / max(1, placed),
            orchestrator_cpu_ms_per_allocation=1000 * orchestrator_s / max(1, placed),
            provider_cpu_ms_per_allocation=1000 * provider_s / max(1, placed),
            orchestrator_only_allocations_per_s=placed / orchestrator_s if orchestrator_s else 0,
            idle_cpu_share=idle_cpu / args.idle_s if args.idle_s > 0 else 0.0,
            provider_cpu_ms_per_allocation_without_adverts=1000
            * max(0.0, provider_s - idle_provider_s)
            / max(1, placed),
            orchestrator_cpu_ms_per_allocation_without_adverts=1000
            * max(0.0, orchestrator_s - idle_orchestrator_s)
            / max(1, placed),
            placement_attempts_mean=statistics.mean(attempts) if attempts else 0.0,
            over_allocated_providers=len(audit.over_allocated),
            over_allocation=audit.describe() if not audit.ok else "",
            running_on_providers=audit.running_on_providers,
            running_in_orchestrators=audit.running_in_orchestrators,
            used_cores=audit.used_cores,
            onboarded_cores=audit.onboarded_cores,
            goal_ratio=(placed / wall_s) / GOAL_PER_S,
            nomad_c2m_ratio=(placed / wall_s) / NOMAD_C2M_PER_S,
        )
    return figures


async def memory_run(args: argparse.Namespace) -> dict[str, Any]:
    """Start ``--providers`` providers, place a small batch, report RSS growth per provider."""
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        gc.collect()
        before = rss_mb()
        started = time.perf_counter()
        async with Simulation(config_from(args, args.providers), Path(tmp)) as sim:
            startup_s = time.perf_counter() - started
            gc.collect()
            after_start = rss_mb()
            tune_gc(args.gc)
            items = list(ensembles(args.allocations, seed=args.seed))
            reached, wall_s = await place(sim, items, args.concurrency)
            after_place = rss_mb()
            audit = await sim.audit()
    placed = [d for d, (_, status) in reached.items() if status is RUNNING]
    return {
        "providers": args.providers,
        "startup_s": startup_s,
        "rss_before_mb": before,
        "rss_started_mb": after_start,
        "rss_after_placing_mb": after_place,
        "memory_per_provider_mb": (after_start - before) / max(1, args.providers),
        "total_mb": after_place,
        "allocations": args.allocations,
        "ensembles_placed": len(placed),
        "ensembles": len(reached),
        "placement_wall_s": wall_s,
        "over_allocated_providers": len(audit.over_allocated),
        "memory_goal_ratio": after_place / MEMORY_GOAL_MB,
    }


def memory_in_subprocess(args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--memory-only",
        "--json",
        "--providers",
        str(args.memory_providers),
        "--allocations",
        str(args.memory_allocations),
        "--advert-interval-s",
        str(args.memory_advert_interval_s),
        "--seed",
        str(args.seed),
        "--trust",
        args.trust,
        "--gc",
        args.gc,
    ]
    if args.work_dir:
        command += ["--work-dir", args.work_dir]
    if args.virtual:
        command.append("--virtual")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def print_table(figures: dict[str, Any], memory: dict[str, Any] | None) -> None:
    p = figures
    print(
        f"placement: {p['providers']:,} providers, {p['orchestrators']} orchestrator(s), "
        f"{p['allocations']:,} allocations in {p['ensembles']:,} ensembles (one process, one core)"
    )
    rows = [
        (
            "allocations placed per second",
            f"{p['allocations_placed_per_s']:,.0f}",
            f"{p['goal_ratio']:.2f}x the 2,000/s goal; {p['nomad_c2m_ratio']:.2f}x Nomad C2M",
        ),
        (
            "placement latency p50 / p99",
            f"{p['placement_latency_p50_ms']:,.0f} / {p['placement_latency_p99_ms']:,.0f} ms",
            "submission to Running",
        ),
        ("frames per allocation", f"{p['frames_per_allocation']:.1f}", "over the fabric"),
        (
            "signature checks per allocation",
            f"{p['signature_checks_per_allocation']:.1f}",
            "Ed25519 verifications",
        ),
        (
            "CPU per allocation: orchestrator",
            f"{p['orchestrator_cpu_ms_per_allocation']:.2f} ms",
            f"alone: {p['orchestrator_only_allocations_per_s']:,.0f} allocations/s per core",
        ),
        (
            "CPU per allocation: providers",
            f"{p['provider_cpu_ms_per_allocation']:.2f} ms",
            f"{p['provider_cpu_ms_per_allocation_without_adverts']:.2f} ms without their adverts",
        ),
        (
            "idle network",
            f"{100 * p['idle_cpu_share']:.0f}% of the core",
            "adverts and housekeeping of every node, nothing placed",
        ),
        ("placement attempts per ensemble", f"{p['placement_attempts_mean']:.2f}", "mean"),
        ("not placed", f"{p['ensembles_not_placed']}", "ensembles"),
        (
            "over-allocated providers",
            f"{p['over_allocated_providers']}",
            f"{p['used_cores']:,.0f} of {p['onboarded_cores']:,.0f} cores in use",
        ),
        (
            "network start-up",
            f"{p['startup_s']:.1f} s",
            f"{p['memory_per_provider_mb']:.3f} MB per provider",
        ),
    ]
    if memory is not None:
        if "error" in memory:
            rows.append(("memory run", "failed", memory["error"]))
        else:
            rows.append(
                (
                    f"memory at {memory['providers']:,} providers",
                    f"{memory['memory_per_provider_mb']:.3f} MB per provider",
                    f"{memory['total_mb']:,.0f} MB in all (goal 4,096 MB); "
                    f"started in {memory['startup_s']:.0f} s",
                )
            )
    width = max(len(r[0]) for r in rows)
    for label, value, note in rows:
        print(f"  {label:{width}}  {value:>22}  {note}")
    print(f"top of the CPU profile ({p['profile_allocations']:,} more allocations, by own time):")
    for row in p["profile_top"]:
        print(f"  {row['tottime_s']:8.3f} s {row['calls']:>9,}  {row['function']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--providers", type=int, default=1000)
    parser.add_argument("--allocations", type=int, default=10_000)
    parser.add_argument("--orchestrators", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64, help="ensembles in flight")
    parser.add_argument("--latency-ms", type=float, default=1.0, help="one-way, every link")
    parser.add_argument("--loss", type=float, default=0.0)
    parser.add_argument("--trust", choices=[m.value for m in TrustMode], default="roots")
    parser.add_argument("--spare", type=int, default=1, help="bid requests beyond replicas")
    parser.add_argument("--candidate-limit", type=int, default=8)
    parser.add_argument("--advert-interval-s", type=float, default=5.0)
    parser.add_argument("--heartbeat-interval-s", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--idle-s", type=float, default=5.0, help="idle network measured before placing"
    )
    parser.add_argument("--profile-allocations", type=int, default=1000)
    parser.add_argument("--profile-top", type=int, default=15)
    parser.add_argument("--profile-out", help="also write the whole profile here (pstats)")
    parser.add_argument("--memory-providers", type=int, default=10_000)
    parser.add_argument("--memory-allocations", type=int, default=1000)
    parser.add_argument("--memory-advert-interval-s", type=float, default=30.0)
    parser.add_argument("--no-memory-run", action="store_true")
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--virtual", action="store_true", help="trio's virtual clock")
    parser.add_argument(
        "--gc",
        choices=["tuned", "default"],
        default="tuned",
        help="garbage collector: frozen start-up heap and higher thresholds, or Python's",
    )
    parser.add_argument(
        "--work-dir",
        default="/dev/shm" if os.path.isdir("/dev/shm") else None,
        help="where the providers' work folders go (default: /dev/shm, a tmpfs)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="100 providers, 1,000 allocations, 1,000-provider memory run",
    )
    args = parser.parse_args()
    if args.quick:
        args.providers, args.allocations = 100, 1000
        args.memory_providers, args.memory_allocations = 1000, 200
        args.profile_allocations = 200
    configure("warning")

    if args.memory_only:
        memory = run(lambda: memory_run(args), virtual=args.virtual)
        json.dump(memory, sys.stdout)
        print()
        return

    figures = run(lambda: placement_run(args), virtual=args.virtual)
    memory = None if args.no_memory_run else memory_in_subprocess(args)
    if memory is not None:
        figures["memory_run"] = memory
        if "memory_per_provider_mb" in memory:
            figures["memory_per_provider_at_scale_mb"] = memory["memory_per_provider_mb"]
            figures["memory_at_scale_mb"] = memory["total_mb"]
    if args.json:
        json.dump(figures, sys.stdout)
        print()
        return
    print_table(figures, memory)


if __name__ == "__main__":
    main()
