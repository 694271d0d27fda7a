"""Hardware detection: CPU, RAM, the disk holding the work dir, GPUs, and their usage now.

Every source fails softly: a source that cannot be read adds a :class:`DetectionProblem`
(logged: at info when the library or tool is simply absent, at warning when it is present but
broken) and detection carries on with what it has. psutil reports a clock of 0 in some VMs;
the clock then comes from ``/proc/cpuinfo``.

GPUs get one index across vendors, in source order (NVIDIA, AMD, Intel), each vendor's devices
in that tool's order. That index is what ``onboard --gpu INDEX:VRAM`` names. A device whose tool
gives neither a UUID nor a PCI address gets ``<vendor>-<index>`` as its UUID, so that resource
accounting can still tell devices apart.
"""

from __future__ import annotations

import os
import platform
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import anyio.to_thread
import msgspec
import psutil
import structlog

from dms.log import get_logger
from dms.resources.errors import DetectionError
from dms.resources.gpu import GPUReading, GPUSource, default_sources
from dms.types import CPU, GPU, Resources


def _logger() -> structlog.typing.FilteringBoundLogger:
    # Looked up per use: a module-level bound logger would freeze the logging set-up at import.
    return get_logger(component="hardware")


class DetectionProblem(msgspec.Struct, frozen=True):
    source: str
    reason: str
    absent: bool = False
    """The library or tool is not installed: normal on a machine without that device."""


class CPUInfo(msgspec.Struct, frozen=True, kw_only=True):
    cores: int
    """Physical cores."""
    threads: int
    """Logical CPUs: what workloads can be scheduled on, and the most that can be onboarded."""
    clock_hz: int = 0
    model: str = ""
    architecture: str = ""


class HardwareSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What the machine has. GPU ``vram`` is each device's total."""

    cpu: CPUInfo
    ram: int
    disk: int
    """Total size of the file system holding the work dir."""
    disk_path: str = ""
    gpus: tuple[GPU, ...] = ()
    problems: tuple[DetectionProblem, ...] = ()

    def resources(self) -> Resources:
        """The whole machine as Resources."""
        return Resources(
            cpu=CPU(
                cores=float(self.cpu.threads),
                clock_hz=self.cpu.clock_hz,
                architecture=self.cpu.architecture,
                model=self.cpu.model,
            ),
            ram=self.ram,
            disk=self.disk,
            gpus=self.gpus,
        )

    def gpu(self, index: int) -> GPU | None:
        return next((g for g in self.gpus if g.index == index), None)


class GPUUsage(msgspec.Struct, frozen=True, kw_only=True):
    index: int
    vram_total: int
    vram_used: int | None = None
    """None when the tool does not say."""

    @property
    def vram_free(self) -> int:
        return (
            self.vram_total if self.vram_used is None else max(0, self.vram_total - self.vram_used)
        )


class HardwareUsage(msgspec.Struct, frozen=True, kw_only=True):
    """What is in use on the machine now (by anyone)."""

    cpu_percent: float
    """Over all logical CPUs, 0-100."""
    ram_used: int
    ram_available: int
    disk_used: int
    disk_free: int
    gpus: tuple[GPUUsage, ...] = ()
    problems: tuple[DetectionProblem, ...] = ()

    def free(self, spec: HardwareSpec) -> Resources:
        """What is free on the machine now. GPUs keep their identity; VRAM is what is free."""
        busy = spec.cpu.threads * self.cpu_percent / 100
        usage = {g.index: g for g in self.gpus}
        return Resources(
            cpu=msgspec.structs.replace(
                spec.resources().cpu, cores=round(max(0.0, spec.cpu.threads - busy), 3)
            ),
            ram=self.ram_available,
            disk=self.disk_free,
            gpus=tuple(
                msgspec.structs.replace(
                    g, vram=usage[g.index].vram_free if g.index in usage else g.vram
                )
                for g in spec.gpus
            ),
        )


# -- CPU ----------------------------------------------------------------------------------------

_FIELD = re.compile(r"^([^:]+?)\s*:\s*(.*)$")


def parse_cpuinfo(text: str) -> tuple[str, int]:
    """(model, clock in Hz) from ``/proc/cpuinfo``; the clock is the highest ``cpu MHz`` seen.

    x86 names the model in ``model name``; ARM kernels may give ``Model`` or ``Hardware`` and
    no clock at all (then 0).
    """
    model = ""
    mhz = 0.0
    for line in text.splitlines():
        match = _FIELD.match(line)
        if match is None:
            continue
        key, value = match.group(1).strip().lower(), match.group(2).strip()
        if key in ("model name", "model", "hardware", "cpu model") and not model:
            if key == "model" and value.isdigit():  # x86's numeric model id, not a name
                continue
            model = value
        elif key in ("cpu mhz", "clock"):
            number = re.match(r"[\d.]+", value)
            if number:
                mhz = max(mhz, float(number.group(0)))
    return model, round(mhz * 1_000_000)


def detect_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[CPUInfo, list[DetectionProblem]]:
    problems: list[DetectionProblem] = []
    threads = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    cores = psutil.cpu_count(logical=False) or threads
    text = ""
    try:
        text = cpuinfo.read_text()
    except OSError as exc:
        problems.append(DetectionProblem("cpuinfo", f"cannot read {cpuinfo}: {exc.strerror}"))
    model, info_hz = parse_cpuinfo(text)
    clock = 0
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError, AttributeError) as exc:
        freq = None
        problems.append(DetectionProblem("cpu_freq", f"psutil cannot read the clock: {exc}"))
    if freq is not None and freq.max > 0:
        clock = round(freq.max * 1_000_000)
    elif info_hz:
        clock = info_hz
    elif freq is not None and freq.current > 0:
        clock = round(freq.current * 1_000_000)
    else:
        problems.append(DetectionProblem("cpu_freq", "no clock from psutil or /proc/cpuinfo"))
    return (
        CPUInfo(
            cores=cores,
            threads=threads,
            clock_hz=clock,
            model=model or platform.processor(),
            architecture=platform.machine(),
        ),
        problems,
    )


# -- disk ---------------------------------------------------------------------------------------


def existing_parent(path: Path) -> Path:
    """The path, or its nearest parent that exists (the work dir may not be created yet)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


# -- GPUs ---------------------------------------------------------------------------------------


def read_gpus(
    sources: Sequence[GPUSource],
) -> tuple[list[tuple[GPU, GPUReading]], list[DetectionProblem]]:
    """Every source's devices, numbered across vendors, with the problems met."""
    found: list[tuple[GPU, GPUReading]] = []
    problems: list[DetectionProblem] = []
    for source in sources:
        try:
            readings = source.read()
        except DetectionError as exc:
            problems.append(DetectionProblem(exc.source, exc.reason, exc.absent))
            continue
        except Exception as exc:  # a broken tool must not stop detection
            problems.append(DetectionProblem(source.name, f"unexpected {exc!r}"))
            continue
        for reading in readings:
            index = len(found)
            uuid = reading.uuid or ("" if reading.pci_address else f"{reading.vendor}-{index}")
            gpu = GPU(
                index=index,
                vendor=reading.vendor,
                model=reading.model,
                vram=reading.vram_total,
                uuid=uuid,
                pci_address=reading.pci_address,
            )
            found.append((gpu, reading))
    return found, problems


def _log(problems: Sequence[DetectionProblem]) -> None:
    for p in problems:
        if p.absent:
            _logger().info("hardware source absent", source=p.source, reason=p.reason)
        else:
            _logger().warning("hardware source failed", source=p.source, reason=p.reason)


# -- the probe --------------------------------------------------------------------------------


class HardwareProbe(Protocol):
    """What the machine has and uses. :class:`SystemHardware` reads it; :class:`StaticHardware`
    is the fake."""

    async def spec(self) -> HardwareSpec: ...

    async def usage(self) -> HardwareUsage: ...


class SystemHardware:
    """This machine, through psutil, /proc and the GPU vendors' libraries and tools."""

    def __init__(
        self,
        work_dir: Path,
        gpu_sources: Sequence[GPUSource] | None = None,
        *,
        cpuinfo: Path = Path("/proc/cpuinfo"),
        cpu_sample_s: float = 0.2,
        spec_ttl_s: float = 60.0,
    ) -> None:
        self.work_dir = work_dir
        self.gpu_sources = tuple(default_sources() if gpu_sources is None else gpu_sources)
        self.cpuinfo = cpuinfo
        self.cpu_sample_s = cpu_sample_s
        self.spec_ttl_s = spec_ttl_s
        self._spec: tuple[float, HardwareSpec] | None = None

    def spec_sync(self, *, fresh: bool = False) -> HardwareSpec:
        """The machine's spec, re-read at most every ``spec_ttl_s`` (GPU tools can be slow)."""
        now = time.monotonic()
        if not fresh and self._spec is not None and now - self._spec[0] < self.spec_ttl_s:
            return self._spec[1]
        spec = self._detect()
        self._spec = (now, spec)
        return spec

    def _detect(self) -> HardwareSpec:
        cpu, problems = detect_cpu(self.cpuinfo)
        ram = psutil.virtual_memory().total
        disk_path = existing_parent(self.work_dir)
        disk = psutil.disk_usage(str(disk_path)).total
        gpus, gpu_problems = read_gpus(self.gpu_sources)
        problems.extend(gpu_problems)
        _log(problems)
        return HardwareSpec(
            cpu=cpu,
            ram=ram,
            disk=disk,
            disk_path=str(disk_path),
            gpus=tuple(g for g, _ in gpus),
            problems=tuple(problems),
        )

    def usage_sync(self) -> HardwareUsage:
        cpu_percent = psutil.cpu_percent(interval=self.cpu_sample_s)
        memory = psutil.virtual_memory()
        disk = psutil.disk_usage(str(existing_parent(self.work_dir)))
        gpus, problems = read_gpus(self.gpu_sources)
        _log(problems)
        return HardwareUsage(
            cpu_percent=float(cpu_percent),
            ram_used=memory.total - memory.available,
            ram_available=memory.available,
            disk_used=disk.used,
            disk_free=disk.free,
            gpus=tuple(
                GPUUsage(index=g.index, vram_total=r.vram_total, vram_used=r.vram_used)
                for g, r in gpus
            ),
            problems=tuple(problems),
        )

    async def spec(self) -> HardwareSpec:
        return await anyio.to_thread.run_sync(self.spec_sync)

    async def usage(self) -> HardwareUsage:
        return await anyio.to_thread.run_sync(self.usage_sync)


class StaticHardware:
    """A machine described by hand (tests, simulations). ``set`` changes it."""

    def __init__(self, spec: HardwareSpec, usage: HardwareUsage | None = None) -> None:
        self._spec = spec
        self._usage = usage or idle_usage(spec)

    def set(self, spec: HardwareSpec | None = None, usage: HardwareUsage | None = None) -> None:
        if spec is not None:
            self._spec = spec
        if usage is not None:
            self._usage = usage

    async def spec(self) -> HardwareSpec:
        return self._spec

    async def usage(self) -> HardwareUsage:
        return self._usage


def idle_usage(spec: HardwareSpec, *, disk_free: int | None = None) -> HardwareUsage:
    """A machine with nothing running: everything free (disk: ``disk_free`` or all of it)."""
    free_disk = spec.disk if disk_free is None else disk_free
    return HardwareUsage(
        cpu_percent=0.0,
        ram_used=0,
        ram_available=spec.ram,
        disk_used=spec.disk - free_disk,
        disk_free=free_disk,
        gpus=tuple(GPUUsage(index=g.index, vram_total=g.vram, vram_used=0) for g in spec.gpus),
    )
