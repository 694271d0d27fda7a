"""Run every benchmark in bench/ with ``--json`` and print one summary table.

Each script runs in its own process (one after another: they measure this machine's CPU).
The table lists every figure whose key carries a unit (``_per_s``, ``_ms``, ``_mb``, ``_s``)
or is a same-run comparison (``_ratio``); a script that fails is listed with its last line
of stderr, and the exit status is then 1.

    .venv/bin/python bench/run_all.py [--quick] [--only placement actor ...] [--json]

``--quick`` passes each script the smaller settings listed in ``QUICK`` (a few seconds each,
for a smoke run; the figures are then noisier).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
UNITS = ("_per_s", "_ms", "_mb", "_s", "_ratio")
QUICK: dict[str, list[str]] = {
    "actor": ["--messages", "20000", "--repeat", "1"],
    "network": ["--count", "500", "--repeat", "1", "--broadcasts", "20"],
    "executor": ["--runs", "10"],
    "provider": ["--runs", "20", "--parallel", "10"],
    "placement": ["--quick"],
    "e2e": ["--deployments", "10", "--starts", "1", "--runs", "2"],
}


def scripts(only: list[str]) -> list[Path]:
    found = sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name)
    if only:
        unknown = sorted(set(only) - {p.stem for p in found})
        if unknown:
            names = ", ".join(p.stem for p in found)
            raise SystemExit(f"--only: {', '.join(unknown)} not in bench/; accepted: {names}")
        found = [p for p in found if p.stem in only]
    return found


def run(script: Path, quick: bool, timeout_s: float) -> tuple[dict[str, Any] | None, str, float]:
    """The script's JSON object (None on failure), why it failed, and how long it took."""
    command = [
        sys.executable,
        str(script),
        "--json",
        *(QUICK.get(script.stem, []) if quick else []),
    ]
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return None, f"took more than {timeout_s:.0f} s", time.perf_counter() - started
    elapsed = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"exit {done.returncode}: {tail}", elapsed
    try:
        figures = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        return None, f"last line is not JSON ({exc})", elapsed
    if not isinstance(figures, dict):
        return None, "the JSON is not an object", elapsed
    return figures, "", elapsed


def rows_of(figures: dict[str, Any]) -> list[tuple[str, float]]:
    return [
        (key, float(value))
        for key, value in figures.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and key.endswith(UNITS)
    ]


def shown(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:,.2f}"
    return f"{value:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller settings (see QUICK)")
    parser.add_argument("--only", nargs="*", default=[], help="script names without .py")
    parser.add_argument("--timeout-s", type=float, default=1800.0, help="per script")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    results: dict[str, Any] = {}
    failed = False
    for script in scripts(args.only):
        print(f"running {script.name} ...", file=sys.stderr, flush=True)
        figures, error, elapsed = run(script, args.quick, args.timeout_s)
        if figures is None:
            failed = True
            results[script.stem] = {"error": error, "elapsed_s": elapsed}
        else:
            results[script.stem] = {**figures, "elapsed_s": elapsed}

    if args.json:
        json.dump(results, sys.stdout)
        print()
    else:
        width = max([len(k) for r in results.values() for k, _ in rows_of(r)] + [len("figure")])
        print(f"{'bench':10} {'figure':{width}} {'value':>14}")
        for name, figures in results.items():
            if "error" in figures:
                print(f"{name:10} {'FAILED':{width}} {figures['error']}")
                continue
            for key, value in rows_of(figures):
                print(f"{name:10} {key:{width}} {shown(value):>14}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
