"""Logs and result files of real WASM workloads come back whole, in chunks; paths that leave
the results folder are refused. Real time, real threads (the SQLite store and wasmtime)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dms.actor import Handle, RemoteError
from dms.executor import NullExecutor
from dms.executor.wasm import WasmExecutor
from dms.jobs.protocol import (
    ALLOCATION_LOGS,
    ALLOCATION_RESULT_CHUNK,
    ALLOCATION_RESULTS,
    MAX_CHUNK,
    InputFile,
    LogsChunk,
    LogsRequest,
    LogStreamName,
    ResultChunk,
    ResultChunkRequest,
    ResultFile,
    ResultsList,
)
from dms.jobs.status import AllocationStatus
from tests.jobs.provider.harness import Cluster, cluster, wasm_manifest

WASM_BUILD = Path(__file__).resolve().parents[3] / "build" / "wasm"


def module(name: str) -> bytes:
    path = WASM_BUILD / f"{name}.wasm"
    if not path.is_file():
        pytest.fail(f"WASM fixture {path} is missing: run `make fixtures` first")
    return path.read_bytes()


@pytest.fixture
async def c(tmp_path: Path) -> AsyncIterator[Cluster]:
    executors = [WasmExecutor(tmp_path / "exec" / "wasm"), NullExecutor()]
    async with cluster(tmp_path, executors=executors, inline_db=False) as made:
        yield made


async def fetch_logs(c: Cluster, handle: Handle, stream: LogStreamName) -> tuple[bytes, int]:
    data, offset, chunks = b"", 0, 0
    while True:
        chunk = await c.orchestrator.invoke(
            handle, ALLOCATION_LOGS, LogsRequest(stream=stream, offset=offset), LogsChunk
        )
        assert chunk.offset == offset and len(chunk.data) <= MAX_CHUNK
        data += chunk.data
        offset = chunk.next_offset
        chunks += 1
        if chunk.eof:
            return data, chunks


async def fetch_result(c: Cluster, handle: Handle, path: str, limit: int) -> tuple[bytes, int]:
    data, offset, chunks = b"", 0, 0
    while True:
        chunk = await c.orchestrator.invoke(
            handle,
            ALLOCATION_RESULT_CHUNK,
            ResultChunkRequest(path=path, offset=offset, limit=limit),
            ResultChunk,
        )
        data += chunk.data
        offset = chunk.next_offset
        chunks += 1
        if chunk.eof:
            return data, chunks


class TestLogs:
    """Output larger than a chunk comes back whole."""

    async def test_megabytes_of_stdout_come_back_whole_in_chunks(self, c: Cluster) -> None:
        size = 2 * MAX_CHUNK + 12345
        manifest = wasm_manifest(module("echo"), [str(size)])
        (handle,) = (await c.run(manifest)).values()
        (done,) = await c.ended(manifest.allocation_id)
        assert done.status is AllocationStatus.COMPLETED and done.exit_code == 0
        assert done.stdout_tail == "x" * 4096
        assert done.stderr_tail == f"echo: {size} bytes\n"
        stdout, chunks = await fetch_logs(c, handle, LogStreamName.STDOUT)
        assert stdout == b"x" * size and chunks == 3
        stderr, _ = await fetch_logs(c, handle, LogStreamName.STDERR)
        assert stderr == f"echo: {size} bytes\n".encode()
        assert await c.free_is_onboarded()


class TestResults:
    """The results folder is listed and served in chunks, and nothing outside it."""

    async def test_input_files_go_in_and_result_files_come_back_whole(self, c: Cluster) -> None:
        text = b"hello results " * 500
        manifest = wasm_manifest(
            module("upcase"),
            ["/input/notes/in.txt", "/output/out.txt"],
            inputs=(InputFile(target="notes/in.txt", data=text),),
        )
        (handle,) = (await c.run(manifest)).values()
        (done,) = await c.ended(manifest.allocation_id)
        assert done.status is AllocationStatus.COMPLETED, done.stderr_tail
        listing = await c.orchestrator.invoke(
            handle, ALLOCATION_RESULTS, ResultChunkRequest(path=""), ResultsList
        )
        assert listing.files == (ResultFile("out.txt", len(text)),)
        data, chunks = await fetch_result(c, handle, "out.txt", limit=1000)
        assert data == text.upper() and chunks == 7

    async def test_only_files_matching_outputs_are_listed_and_served(self, c: Cluster) -> None:
        manifest = wasm_manifest(
            module("upcase"),
            ["/input/in.txt", "/output/out.dat"],
            inputs=(InputFile(target="in.txt", data=b"abc"),),
            extra='outputs: ["*.txt"]',
        )
        (handle,) = (await c.run(manifest)).values()
        await c.ended(manifest.allocation_id)
        results = c.work_dir / manifest.allocation_id / "results"
        (results / "keep.txt").write_bytes(b"kept")
        listing = await c.orchestrator.invoke(
            handle, ALLOCATION_RESULTS, ResultChunkRequest(path=""), ResultsList
        )
        assert listing.files == (ResultFile("keep.txt", 4),)
        with pytest.raises(RemoteError, match="path"):
            await fetch_result(c, handle, "out.dat", limit=10)

    @pytest.mark.parametrize(
        "path",
        ["../input/in.txt", "/etc/passwd", "", "a/../../x", "./", "link/secret", "outside"],
    )
    async def test_paths_that_leave_the_results_folder_are_refused(
        self, c: Cluster, tmp_path: Path, path: str
    ) -> None:
        manifest = wasm_manifest(
            module("upcase"),
            ["/input/in.txt", "/output/out.txt"],
            inputs=(InputFile(target="in.txt", data=b"abc"),),
        )
        (handle,) = (await c.run(manifest)).values()
        await c.ended(manifest.allocation_id)
        secret = tmp_path / "secret"
        secret.write_bytes(b"do not serve")
        results = c.work_dir / manifest.allocation_id / "results"
        (results / "link").symlink_to(tmp_path)
        (results / "outside").symlink_to(secret)
        with pytest.raises(RemoteError, match="path"):
            await c.orchestrator.invoke(
                handle, ALLOCATION_RESULT_CHUNK, ResultChunkRequest(path=path), ResultChunk
            )
        listing = await c.orchestrator.invoke(
            handle, ALLOCATION_RESULTS, ResultChunkRequest(path=""), ResultsList
        )
        assert listing.files == (ResultFile("out.txt", 3),)

    async def test_an_input_target_outside_the_input_folder_is_refused(self, c: Cluster) -> None:
        manifest = wasm_manifest(
            module("upcase"), inputs=(InputFile(target="../escape", data=b"x"),)
        )
        with pytest.raises(RemoteError, match=r"inputs\[0\]\.target"):
            await c.deploy(manifest)
        assert not c.work_dir.exists() or not list(c.work_dir.rglob("escape"))
        assert c.service.allocations() == []
