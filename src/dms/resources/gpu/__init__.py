"""GPU detection: one source per vendor tool, each a parser over the tool's recorded output.

* NVIDIA: NVML through ``nvidia-ml-py`` (:class:`NvmlSource`), else ``nvidia-smi``'s CSV;
* AMD: ``rocm-smi --showproductname --showmeminfo vram --showbus --showuniqueid --json``;
* Intel: ``xpu-smi discovery --json``, then ``xpu-smi discovery -d N --json`` per device.

A source raises :class:`~dms.resources.errors.DetectionError` with the reason when its library
or tool is missing or its output cannot be read; detection logs that and carries on.
"""

from dms.resources.gpu.amd import RocmSmiSource, parse_rocm_smi
from dms.resources.gpu.base import GPUReading, GPUSource, ToolRunner, run_tool
from dms.resources.gpu.intel import XpuSmiSource, parse_xpu_device, parse_xpu_discovery
from dms.resources.gpu.nvidia import NvidiaSmiSource, NvmlSource, parse_nvidia_smi, read_nvml

__all__ = [
    "GPUReading",
    "GPUSource",
    "NvidiaSmiSource",
    "NvmlSource",
    "RocmSmiSource",
    "ToolRunner",
    "XpuSmiSource",
    "default_sources",
    "parse_nvidia_smi",
    "parse_rocm_smi",
    "parse_xpu_device",
    "parse_xpu_discovery",
    "read_nvml",
    "run_tool",
]


def default_sources() -> tuple[GPUSource, ...]:
    """NVIDIA (NVML, falling back to nvidia-smi), AMD, Intel: in that order of indices."""
    return (NvmlSource(fallback=NvidiaSmiSource()), RocmSmiSource(), XpuSmiSource())
