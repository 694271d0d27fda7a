"""Executors: what dms adds per execution, against running the same thing directly, same run.

Workloads (one execution at a time, each timed from start request to result):

- wasm: ``hello.wasm`` (built from ``examples/hello/hello.c`` by ``make fixtures``) through the
  WASM executor, against a raw wasmtime instantiate-and-run of the same precompiled module
  (one shared engine; per run a store, WASI config with stdout to a file, instantiate, ``_start``).
  Goal: at most 10 ms added per execution.
- process: ``/bin/true`` through the process executor, plain (no sandbox, no cgroups), with
  cgroups, and with cgroups and the bubblewrap sandbox, against ``subprocess.run``.
- null: start + wait of a null execution (the bookkeeping alone), executions per second.

The median of ``--runs`` executions is kept for each workload; workloads interleave in rounds.

    .venv/bin/python bench/executor.py [--json] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import wasmtime

from dms.executor import ExecutionRequest, NullExecutor, NullProgram, ProcessProgram, WasmProgram
from dms.executor.base import Executor
from dms.executor.process import ProcessExecutor
from dms.executor.sandbox import SandboxMode
from dms.executor.wasm import WasmExecutor
from dms.log import configure

HELLO = Path(__file__).resolve().parents[1] / "build" / "wasm" / "hello.wasm"
ROUNDS = 5


def raw_wasm(module_path: Path, runs: int, folder: Path) -> list[float]:
    engine = wasmtime.Engine()
    module = wasmtime.Module(engine, module_path.read_bytes())
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    times = []
    for index in range(runs):
        began = time.perf_counter()
        store = wasmtime.Store(engine)
        wasi = wasmtime.WasiConfig()
        wasi.argv = ["hello.wasm", "bench"]
        wasi.stdout_file = str(folder / f"raw-{index}.out")
        store.set_wasi(wasi)
        instance = linker.instantiate(store, module)
        start = instance.exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)
        start(store)
        times.append(time.perf_counter() - began)
    return times


def raw_process(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(["/bin/true"], check=True)
        times.append(time.perf_counter() - began)
    return times


async def through(
    executor: Executor, make: Callable[[str], ExecutionRequest], runs: int, tag: str
) -> list[float]:
    times = []
    for index in range(runs):
        request = make(f"{tag}-{index}")
        began = time.perf_counter()
        await executor.start(request)
        result = await executor.wait(request.id)
        times.append(time.perf_counter() - began)
        assert result.ok, result.error
        await executor.remove(request.id)
    return times


def in_trio(function: Callable[[], Awaitable[list[float]]]) -> list[float]:
    result: list[float] = anyio.run(function, backend="trio")
    return result


def measure(runs: int, folder: Path) -> dict[str, float]:
    wasm_request: Callable[[str], ExecutionRequest] = lambda i: ExecutionRequest(  # noqa: E731
        id=i, program=WasmProgram(path=str(HELLO)), args=("bench",)
    )
    true_request: Callable[[str], ExecutionRequest] = lambda i: ExecutionRequest(  # noqa: E731
        id=i, program=ProcessProgram(argv=("/bin/true",))
    )
    null_request: Callable[[str], ExecutionRequest] = lambda i: ExecutionRequest(  # noqa: E731
        id=i, program=NullProgram()
    )

    def run_executor(
        factory: Callable[[], Executor], make: Callable[[str], ExecutionRequest], tag: str
    ) -> Callable[[], list[float]]:
        async def go() -> list[float]:
            async with factory() as executor:
                await through(executor, make, 2, f"{tag}-warm")
                return await through(executor, make, runs, tag)

        return lambda: in_trio(go)

    workloads: dict[str, Callable[[], list[float]]] = {
        "wasm_raw": lambda: raw_wasm(HELLO, runs, folder),
        "wasm_executor": run_executor(lambda: WasmExecutor(folder / "wasm"), wasm_request, "w"),
        "process_raw": lambda: raw_process(runs),
        "process_plain": run_executor(
            lambda: ProcessExecutor(folder / "plain", sandbox=SandboxMode.OFF, cgroups=False),
            true_request,
            "p",
        ),
        "process_cgroups": run_executor(
            lambda: ProcessExecutor(folder / "cgroups", sandbox=SandboxMode.OFF),
            true_request,
            "c",
        ),
        "process_sandboxed": run_executor(
            lambda: ProcessExecutor(folder / "sandboxed"), true_request, "s"
        ),
        "null": run_executor(lambda: NullExecutor(), null_request, "n"),
    }
    samples: dict[str, list[float]] = {key: [] for key in workloads}
    for _ in range(ROUNDS):
        for key, workload in workloads.items():
            samples[key] += workload()
    medians = {key: statistics.median(values) * 1000 for key, values in samples.items()}
    return {
        "wasm_raw_ms": medians["wasm_raw"],
        "wasm_executor_ms": medians["wasm_executor"],
        "wasm_added_ms": medians["wasm_executor"] - medians["wasm_raw"],
        "wasm_executor_vs_raw_ratio": medians["wasm_executor"] / medians["wasm_raw"],
        "process_raw_ms": medians["process_raw"],
        "process_plain_ms": medians["process_plain"],
        "process_cgroups_ms": medians["process_cgroups"],
        "process_sandboxed_ms": medians["process_sandboxed"],
        "process_plain_added_ms": medians["process_plain"] - medians["process_raw"],
        "process_plain_vs_raw_ratio": medians["process_plain"] / medians["process_raw"],
        "process_sandboxed_vs_raw_ratio": medians["process_sandboxed"] / medians["process_raw"],
        "null_per_s": 1000 / medians["null"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--runs", type=int, default=40, help="executions per workload and round")
    args = parser.parse_args()
    if not HELLO.is_file():
        sys.exit(f"{HELLO} is missing: run `make fixtures` first")
    configure(level="warning", stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="dms-bench-") as folder:
        figures = measure(args.runs, Path(folder))
    if args.json:
        json.dump({**figures, "runs": args.runs * ROUNDS}, sys.stdout)
        print()
        return
    print(f"executors: median of {args.runs * ROUNDS} executions, one at a time")
    print(f"{'workload':44} {'ms':>8} {'vs direct':>10}")
    rows = [
        ("wasm: raw wasmtime instantiate + run", "wasm_raw_ms", ""),
        ("wasm: WASM executor start + wait", "wasm_executor_ms", "wasm_executor_vs_raw_ratio"),
        ("process: subprocess.run /bin/true", "process_raw_ms", ""),
        ("process: executor, plain", "process_plain_ms", "process_plain_vs_raw_ratio"),
        ("process: executor, cgroups", "process_cgroups_ms", ""),
        ("process: executor, cgroups + bwrap", "process_sandboxed_ms", ""),
    ]
    for label, key, ratio in rows:
        shown = f"{figures[ratio]:.2f}x" if ratio else ""
        print(f"{label:44} {figures[key]:8.2f} {shown:>10}")
    print(f"{'null: start + wait':44} {figures['null_per_s']:8,.0f} /s")
    verdict = "met" if figures["wasm_added_ms"] <= 10 else "missed"
    print(
        f"goal: wasm executor adds <= 10 ms per execution: "
        f"{figures['wasm_added_ms']:.2f} ms added ({verdict}); "
        f"process executor adds {figures['process_plain_added_ms']:.2f} ms (plain)"
    )


if __name__ == "__main__":
    main()
