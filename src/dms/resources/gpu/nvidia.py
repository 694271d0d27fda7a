"""NVIDIA GPUs: NVML through nvidia-ml-py, else the CSV of ``nvidia-smi --query-gpu``.

NVML is imported lazily and guarded: on a machine without the driver ``nvmlInit`` fails with
``NVMLError_LibraryNotFound`` in about a millisecond and detection moves on.
"""

from __future__ import annotations

import contextlib
from types import ModuleType
from typing import Any

from dms.resources.errors import DetectionError
from dms.resources.gpu.base import GPUReading, GPUSource, ToolRunner, run_tool, to_int
from dms.types import GPUVendor

MiB = 1024**2

NVIDIA_SMI_ARGS = (
    "nvidia-smi",
    "--query-gpu=index,uuid,name,memory.total,memory.used,pci.bus_id",
    "--format=csv,noheader,nounits",
)
"""Memory columns come in MiB (``nounits``)."""

_MISSING = {"[N/A]", "[Not Supported]", "N/A", ""}


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace").strip("\x00 ")
    return str(value).strip()


def read_nvml(nvml: Any) -> tuple[GPUReading, ...]:
    """Every device NVML sees. ``nvml`` is the ``pynvml`` module (or a fake of it)."""
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        absent = type(exc).__name__ in ("NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded")
        raise DetectionError("nvml", f"NVML unavailable: {exc}", absent=absent) from exc
    try:
        readings = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                pci = _text(nvml.nvmlDeviceGetPciInfo(handle).busId)
            except nvml.NVMLError:
                pci = ""
            readings.append(
                GPUReading(
                    vendor=GPUVendor.NVIDIA,
                    index=index,
                    model=_text(nvml.nvmlDeviceGetName(handle)),
                    uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                    pci_address=pci,
                    vram_total=int(memory.total),
                    vram_used=int(memory.used),
                )
            )
        return tuple(readings)
    except nvml.NVMLError as exc:
        raise DetectionError("nvml", f"NVML query failed: {exc}") from exc
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()


def parse_nvidia_smi(text: str) -> tuple[GPUReading, ...]:
    """Parse the output of :data:`NVIDIA_SMI_ARGS`."""
    readings = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 6:
            raise DetectionError(
                "nvidia-smi", f"line {number}: expected 6 comma-separated fields, got {line!r}"
            )
        # The name is the only field that could hold a comma: it is whatever sits between.
        index, uuid, *name, total, used, pci = fields
        if total in _MISSING:
            raise DetectionError("nvidia-smi", f"line {number}: memory.total is {total!r}")
        readings.append(
            GPUReading(
                vendor=GPUVendor.NVIDIA,
                index=to_int("nvidia-smi", "index", index),
                model=", ".join(name),
                uuid=uuid,
                pci_address="" if pci in _MISSING else pci,
                vram_total=to_int("nvidia-smi", "memory.total", total) * MiB,
                vram_used=None
                if used in _MISSING
                else to_int("nvidia-smi", "memory.used", used) * MiB,
            )
        )
    return tuple(readings)


class NvidiaSmiSource:
    name = "nvidia-smi"

    def __init__(self, run: ToolRunner = run_tool) -> None:
        self._run = run

    def read(self) -> tuple[GPUReading, ...]:
        return parse_nvidia_smi(self._run(NVIDIA_SMI_ARGS))


class NvmlSource:
    name = "nvml"

    def __init__(self, nvml: ModuleType | Any | None = None, fallback: GPUSource | None = None):
        self._nvml = nvml
        self._fallback = fallback

    def read(self) -> tuple[GPUReading, ...]:
        try:
            return read_nvml(self._module())
        except DetectionError as first:
            if self._fallback is None:
                raise
            try:
                return self._fallback.read()
            except DetectionError as second:
                raise DetectionError(
                    "nvidia", f"{first}; {second}", absent=first.absent and second.absent
                ) from second

    def _module(self) -> Any:
        if self._nvml is None:
            try:
                import pynvml
            except ImportError as exc:
                raise DetectionError("nvml", "nvidia-ml-py is not installed", absent=True) from exc
            self._nvml = pynvml
        return self._nvml
