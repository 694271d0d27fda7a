"""From an allocation manifest to the executor's ``ExecutionRequest`` for one run.

What each executor gets from ``execution``:

=========  ==================================================================================
wasm       the module's bytes (``manifest.module``; the spec's path is the orchestrator's),
           ``args`` as the module's arguments
process    ``command`` then ``args``
docker     ``image``, ``args`` as the command, ``entrypoint``; ``network`` as asked
null       a scripted workload described by ``args`` (see :func:`null_program`)
=========  ==================================================================================

Every run gets the spec's ``env`` (nothing from the node) plus ``DMS_ALLOCATION_ID``,
``DMS_ALLOCATION_NAME``, ``DMS_REPLICA``, ``DMS_RUN`` and ``DMS_PORT_<private>=<public>`` for
each bound port, unless the spec sets them, ``stdin``,
limits from the resources (memory = ram, cores) and ``execution.timeout``, the read-only input
folder, the writable results folder and the GPU devices the ResourceManager assigned. A
process allocation with ports bound runs in the node's network (see :func:`network_of`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from dms.errors import DMSError
from dms.executor import (
    DockerProgram,
    ExecutionRequest,
    Limits,
    NetworkMode,
    NullProgram,
    ProcessProgram,
    Program,
    WasmProgram,
)
from dms.jobs.protocol import AllocationManifest
from dms.jobs.provider.errors import InvalidManifest
from dms.types import ExecutorType
from dms.types.units import parse_duration

ALLOCATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
ALLOCATION_ID_ACCEPTED = "1-96 letters, digits, '_', '.', '-', starting with a letter or digit"
NULL_KEYS = ("duration", "exit", "stdout", "stderr", "start_error")
NULL_ACCEPTED = (
    "KEY=VALUE with KEY one of duration (e.g. 5s, or 1s,1h: one per run, the last repeats), "
    "exit (e.g. 1,1,0), stdout, stderr, start_error"
)


def execution_id(allocation_id: str, run: int) -> str:
    """The executor's id of one run of an allocation (ids cannot be reused in an executor)."""
    return f"{allocation_id}.{run}"


def _per_run(values: Sequence[str], run: int) -> str:
    return values[min(run, len(values) - 1)]


def null_program(args: Sequence[str], run: int = 0, field: str = "execution.args") -> NullProgram:
    """A scripted workload for the null executor, from ``KEY=VALUE`` arguments.

    ``duration`` and ``exit`` take comma-separated lists: run ``n`` uses item ``n`` and the
    last item repeats, so ``exit=1,1,0`` fails twice, then succeeds.
    """
    values: dict[str, str] = {}
    for i, item in enumerate(args):
        key, sep, value = item.partition("=")
        if not sep or key not in NULL_KEYS:
            raise InvalidManifest(f"{field}[{i}]", item, NULL_ACCEPTED)
        values[key] = value
    try:
        duration = parse_duration(
            _per_run(values.get("duration", "0").split(","), run), f"{field}.duration"
        )
        code_text = _per_run(values.get("exit", "0").split(","), run).strip()
        if not code_text.isdigit():
            raise InvalidManifest(f"{field}.exit", code_text, "an exit code from 0 to 255")
        return NullProgram(
            duration=duration,
            exit_code=int(code_text),
            stdout=values.get("stdout", "").encode(),
            stderr=values.get("stderr", "").encode(),
            start_error=values.get("start_error", ""),
        )
    except InvalidManifest:
        raise
    except DMSError as exc:
        raise InvalidManifest(field, list(args), NULL_ACCEPTED, detail=str(exc)) from exc


def program_of(manifest: AllocationManifest, run: int) -> tuple[Program, tuple[str, ...]]:
    """The executor program and the request's ``args`` for one run."""
    spec = manifest.spec
    ex = spec.execution
    kind = spec.executor
    if kind is ExecutorType.WASM:
        if not manifest.module:
            raise InvalidManifest(
                "module", f"{len(manifest.module)} bytes", "the WASM module's bytes"
            )
        return WasmProgram(module=manifest.module), tuple(ex.args)
    if kind is ExecutorType.PROCESS:
        if not ex.command:
            raise InvalidManifest("spec.execution.command", [], "a command to run")
        return ProcessProgram(argv=tuple(ex.command)), tuple(ex.args)
    if kind is ExecutorType.DOCKER:
        return (
            DockerProgram(image=ex.image, cmd=tuple(ex.args), entrypoint=ex.entrypoint or None),
            (),
        )
    return null_program(ex.args, run, "spec.execution.args"), ()


def network_of(manifest: AllocationManifest) -> NetworkMode:
    """The spec's network; a process with ports bound shares the node's network, else nothing
    could reach the ports the orchestrator published for it."""
    spec = manifest.spec
    if spec.executor is ExecutorType.PROCESS and manifest.ports:
        return NetworkMode.HOST
    return NetworkMode(spec.execution.network)


def build_request(
    manifest: AllocationManifest,
    *,
    run: int,
    input_dir: Path,
    output_dir: Path,
    gpus: tuple[str, ...] = (),
) -> ExecutionRequest:
    """The request for run ``run`` of ``manifest``. Raises InvalidManifest naming the field."""
    spec = manifest.spec
    ex = spec.execution
    env = dict(spec.env)
    for name, value in (
        ("DMS_ALLOCATION_ID", manifest.allocation_id),
        ("DMS_ALLOCATION_NAME", manifest.name),
        ("DMS_REPLICA", str(manifest.replica)),
        ("DMS_RUN", str(run)),
    ):
        env.setdefault(name, value)
    for binding in manifest.ports:
        if binding.public:
            env.setdefault(f"DMS_PORT_{binding.private}", str(binding.public))
    try:
        program, args = program_of(manifest, run)
        return ExecutionRequest(
            id=execution_id(manifest.allocation_id, run),
            program=program,
            args=args,
            env=tuple(sorted(env.items())),
            stdin=ex.stdin.encode(),
            working_dir=ex.working_dir,
            input_dir=str(input_dir),
            output_dir=str(output_dir),
            limits=Limits(
                cores=float(spec.resources.cpu),
                memory=int(spec.resources.ram),
                timeout=int(ex.timeout),
            ),
            network=network_of(manifest),
            gpus=gpus,
        )
    except InvalidManifest:
        raise
    except DMSError as exc:
        field = getattr(exc, "field", "") or "spec"
        value = getattr(exc, "value", manifest.name)
        raise InvalidManifest(
            field, value, "something this provider's executor accepts", detail=str(exc)
        ) from exc
