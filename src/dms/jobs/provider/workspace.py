"""An allocation's folders on the provider: ``<work_dir>/<id>/input`` and ``results``.

The input folder holds the manifest's input files (mapped read-only into the workload); the
results folder is the workload's writable output folder and outlives the allocation. Result
files are served in chunks; a path that is absolute, climbs out (``..``), passes through a
symbolic link or names anything but a regular file inside the results folder is refused.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from dms.jobs.protocol import MAX_CHUNK, InputFile, ResultFile
from dms.jobs.provider.errors import BadRequest, InvalidManifest, RefusedPath

MAX_LISTED = 10_000
"""Most files one results listing names (the reply must fit in one message)."""
TAIL_BYTES = 4096


def _relative(path: str, field: str, refuse: type[InvalidManifest] | type[RefusedPath]) -> str:
    """A clean relative POSIX path, or the refusal naming ``field``."""
    accepted = "a relative path inside the folder (no '..', not absolute)"
    if not path or "\x00" in path or "\\" in path:
        raise refuse(field, path, accepted)
    pure = PurePosixPath(path)
    if (
        pure.is_absolute()
        or any(part in ("..", "") for part in pure.parts)
        or pure == PurePosixPath(".")
    ):
        raise refuse(field, path, accepted)
    parts = [p for p in pure.parts if p != "."]
    if not parts:
        raise refuse(field, path, accepted)
    return "/".join(parts)


class Workspace:
    """The folders of one allocation."""

    def __init__(self, root: Path, outputs: Sequence[str] = ()) -> None:
        self.root = root
        self.input = root / "input"
        self.results = root / "results"
        self.outputs = tuple(outputs)
        """Glob patterns naming the result files (empty: every file)."""

    # -- preparing -----------------------------------------------------------------------------

    @staticmethod
    def check_inputs(inputs: Sequence[InputFile], field: str = "inputs") -> None:
        """Refuse input targets that would land outside the input folder (before any write)."""
        seen: set[str] = set()
        for i, item in enumerate(inputs):
            target = _relative(item.target, f"{field}[{i}].target", InvalidManifest)
            if target in seen:
                raise InvalidManifest(f"{field}[{i}].target", item.target, "a target named once")
            seen.add(target)

    def prepare(self, inputs: Sequence[InputFile]) -> None:
        """Create the folders and write the input files (small: they came in one message)."""
        self.check_inputs(inputs)
        self.input.mkdir(parents=True, exist_ok=True)
        self.results.mkdir(parents=True, exist_ok=True)
        for item in inputs:
            target = self.input / _relative(item.target, "target", InvalidManifest)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(item.data)

    # -- results -------------------------------------------------------------------------------

    def _wanted(self, relative: str) -> bool:
        return not self.outputs or any(fnmatch.fnmatch(relative, p) for p in self.outputs)

    def list_results(self, prefix: str = "") -> tuple[ResultFile, ...]:
        """Regular files in the results folder (matching ``outputs``), by path."""
        found: list[ResultFile] = []
        if not self.results.is_dir():
            return ()
        for folder, dirs, files in os.walk(self.results, followlinks=False):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder) / name
                try:
                    info = path.lstat()
                except OSError:
                    continue
                if not stat.S_ISREG(info.st_mode):
                    continue
                relative = path.relative_to(self.results).as_posix()
                if relative.startswith(prefix) and self._wanted(relative):
                    found.append(ResultFile(relative, info.st_size))
                    if len(found) >= MAX_LISTED:
                        return tuple(found)
        return tuple(found)

    def result_path(self, path: str) -> Path:
        """The file ``path`` names in the results folder, or RefusedPath."""
        relative = _relative(path, "path", RefusedPath)
        if not self._wanted(relative):
            raise RefusedPath("path", path, f"a result file matching {', '.join(self.outputs)}")
        current = self.results
        for part in relative.split("/"):
            current = current / part
            try:
                info = current.lstat()
            except OSError:
                raise RefusedPath("path", path, "a file in the results folder") from None
            if stat.S_ISLNK(info.st_mode):
                raise RefusedPath(
                    "path", path, "a file in the results folder", detail="passes through a link"
                )
        if not stat.S_ISREG(current.lstat().st_mode):
            raise RefusedPath("path", path, "a regular file in the results folder")
        return current


def read_chunk(path: Path, offset: int, limit: int) -> tuple[bytes, int]:
    """Up to ``limit`` bytes of ``path`` from ``offset`` and the file's size now."""
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        handle.seek(offset)
        return handle.read(max(0, min(limit, MAX_CHUNK))), size


def read_tail(path: str, size: int = TAIL_BYTES) -> bytes:
    """The last ``size`` bytes of a file ("" when it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            end = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, end - size))
            return handle.read(size)
    except OSError:
        return b""


def check_window(offset: int, limit: int) -> int:
    """Validate a chunk request's window; returns the limit clamped to MAX_CHUNK."""
    if offset < 0:
        raise BadRequest("offset", offset, "an offset of 0 or more")
    if limit <= 0:
        raise BadRequest("limit", limit, f"a limit from 1 to {MAX_CHUNK} bytes")
    return min(limit, MAX_CHUNK)
