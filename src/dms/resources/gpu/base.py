"""What a GPU source returns, and how vendor tools are run."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from typing import Protocol

import msgspec

from dms.resources.errors import DetectionError
from dms.types import GPUVendor


class GPUReading(msgspec.Struct, frozen=True, kw_only=True):
    """One device as a vendor tool reports it. Sizes in bytes."""

    vendor: GPUVendor
    index: int
    """The vendor tool's own index."""
    model: str = ""
    uuid: str = ""
    pci_address: str = ""
    vram_total: int = 0
    vram_used: int | None = None
    """None when the tool does not say."""

    @property
    def vram_free(self) -> int | None:
        return None if self.vram_used is None else max(0, self.vram_total - self.vram_used)


class GPUSource(Protocol):
    name: str

    def read(self) -> tuple[GPUReading, ...]:
        """The devices now, or DetectionError with the reason."""
        ...


ToolRunner = Callable[[Sequence[str]], str]
"""Runs a command and returns its stdout, or raises DetectionError."""

TOOL_TIMEOUT_S = 10.0


def run_tool(argv: Sequence[str]) -> str:
    """Run a vendor tool: a missing tool, a timeout or a failure becomes a DetectionError."""
    tool = argv[0]
    path = shutil.which(tool)
    if path is None:
        raise DetectionError(tool, f"{tool} not found on PATH", absent=True)
    try:
        done = subprocess.run(
            [path, *argv[1:]],
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise DetectionError(tool, f"no answer within {TOOL_TIMEOUT_S:g} s") from exc
    except OSError as exc:
        raise DetectionError(tool, f"cannot run: {exc.strerror or exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise DetectionError(
            tool, f"exit status {done.returncode}: {detail[-1] if detail else 'no output'}"
        )
    return done.stdout


def to_int(source: str, field: str, value: object) -> int:
    """A tool's number (often a string) as an int, or a DetectionError naming the field."""
    if isinstance(value, bool):
        raise DetectionError(source, f"{field}: {value!r} is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text, 0) if text.lower().startswith("0x") else int(float(text))
        except ValueError:
            pass
    if isinstance(value, float):
        return int(value)
    raise DetectionError(source, f"{field}: {value!r} is not a number")
