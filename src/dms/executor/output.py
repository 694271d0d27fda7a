"""Where a workload's stdout and stderr go: a file (or memory) that keeps at most ``cap`` bytes.

A sink is written by one writer (an async task or a worker thread) and read by any number of
readers at offsets; bytes past the cap are counted and dropped, and the result says so.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import Protocol

READ_CHUNK = 64 * 1024


class Sink(Protocol):
    @property
    def path(self) -> str:
        """The file holding the output, or ``""`` for memory."""
        ...

    @property
    def written(self) -> int:
        """Bytes the workload wrote, kept or not."""
        ...

    @property
    def kept(self) -> int: ...

    @property
    def truncated(self) -> bool: ...

    def write(self, data: bytes) -> None: ...

    def read(self, offset: int, size: int = READ_CHUNK) -> bytes: ...

    def close(self) -> None: ...


class _Capped:
    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._written = 0
        self._kept = 0
        self._lock = threading.Lock()

    @property
    def written(self) -> int:
        return self._written

    @property
    def kept(self) -> int:
        return self._kept

    @property
    def truncated(self) -> bool:
        return self._written > self._kept

    def write(self, data: bytes) -> None:
        with self._lock:
            self._written += len(data)
            room = self._cap - self._kept
            if room <= 0 or not data:
                return
            part = data[:room]
            self._store(part)
            self._kept += len(part)

    def _store(self, data: bytes) -> None:
        raise NotImplementedError


class FileSink(_Capped):
    """Output kept in a file, written unbuffered so readers see it at once."""

    def __init__(self, path: Path, cap: int) -> None:
        super().__init__(cap)
        self._path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    @classmethod
    def existing(cls, path: Path, written: int, cap: int) -> FileSink:
        """A read-only view of output an earlier process wrote."""
        sink = cls.__new__(cls)
        _Capped.__init__(sink, cap)
        sink._path = path
        sink._fd = None
        sink._kept = path.stat().st_size if path.exists() else 0
        sink._written = max(written, sink._kept)
        return sink

    @property
    def path(self) -> str:
        return str(self._path)

    def _store(self, data: bytes) -> None:
        if self._fd is None:
            return
        view = memoryview(data)
        while view:
            done = os.write(self._fd, view)
            view = view[done:]

    def read(self, offset: int, size: int = READ_CHUNK) -> bytes:
        try:
            with open(self._path, "rb") as handle:
                handle.seek(offset)
                return handle.read(min(size, max(0, self._kept - offset)) if self._fd else size)
        except FileNotFoundError:
            return b""

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class MemorySink(_Capped):
    """Output kept in memory (the null executor without a work folder)."""

    def __init__(self, cap: int) -> None:
        super().__init__(cap)
        self._buffer = io.BytesIO()

    @property
    def path(self) -> str:
        return ""

    def _store(self, data: bytes) -> None:
        self._buffer.write(data)

    def read(self, offset: int, size: int = READ_CHUNK) -> bytes:
        with self._lock:
            return self._buffer.getvalue()[offset : offset + size]

    def close(self) -> None:
        pass
