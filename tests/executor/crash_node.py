"""A stand-in node for the crash tests: starts executions, says "ready", then waits to be killed.

python crash_node.py start WORK_DIR SANDBOX CGROUPS WASM_MODULE
python crash_node.py cleanup WORK_DIR     (prints the cleanup reports as JSON)
"""

from __future__ import annotations

import sys
from pathlib import Path

import msgspec
import trio

from dms.executor import ExecutionRequest, ProcessProgram, WasmProgram
from dms.executor.process import ProcessExecutor
from dms.executor.sandbox import SandboxMode
from dms.executor.wasm import WasmExecutor
from dms.log import configure

LEFTOVER = "sleep 300 & sleep 300 & echo $$ started; wait"


async def start(work: Path, sandbox: str, cgroups: str, module: str) -> None:
    async with (
        ProcessExecutor(
            work / "process", sandbox=SandboxMode(sandbox), cgroups=cgroups == "on"
        ) as processes,
        WasmExecutor(work / "wasm") as modules,
    ):
        for index in range(3):
            program = ProcessProgram(argv=("/bin/sh", "-c", LEFTOVER))
            await processes.start(ExecutionRequest(id=f"p{index}", program=program))
        await modules.start(ExecutionRequest(id="w0", program=WasmProgram(path=module)))
        # Each shell prints "started" once both of its sleeps are forked: only then is every
        # process the test counts there.
        for index in range(3):
            seen = b""
            async for chunk in processes.logs(f"p{index}", follow=True):
                seen += chunk.data
                if b"started" in seen:
                    break
        print("ready", flush=True)
        await trio.sleep_forever()


async def cleanup(work: Path) -> None:
    async with ProcessExecutor(work / "process") as processes, WasmExecutor(work / "wasm") as wasm:
        reports = {"process": await processes.cleanup(), "wasm": await wasm.cleanup()}
    sys.stdout.buffer.write(msgspec.json.encode(reports) + b"\n")


if __name__ == "__main__":
    configure(level="warning", stream=sys.stderr)
    if sys.argv[1] == "start":
        trio.run(start, Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        trio.run(cleanup, Path(sys.argv[2]))
