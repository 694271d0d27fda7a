"""Per-execution cgroups for the process executor: limits, accounting, kill-all, removal.

cgroup v2 is used when its memory and pids controllers can be delegated below the node's own
cgroup; otherwise the v1 controllers (memory, cpu, cpuacct, pids, freezer) that can be written;
otherwise none (the process executor then falls back to rlimits). Cgroups are created below the
node's own cgroup in each hierarchy, named by the caller (the process executor uses
``dms-<work label>-<execution id>``, unique per node and execution). Everything here is blocking
file I/O on cgroupfs: call it from a worker thread where latency matters.

The filesystem root and the ``/proc/self`` files are parameters, so the logic can be tested
against a fake tree of plain files.
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

import msgspec

from dms.errors import ExecutorError

CPU_PERIOD_US = 100_000
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "freezer")
V2_CONTROLLERS = ("memory", "cpu", "pids")
KILL_ROUNDS = 200
KILL_PAUSE_S = 0.005


class CgroupError(ExecutorError):
    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        super().__init__(f"cgroup {path}: {reason}")


class CgroupMode(enum.StrEnum):
    V2 = "v2"
    V1 = "v1"
    NONE = "none"


class CgroupLimits(msgspec.Struct, frozen=True, kw_only=True):
    memory: int = 0
    cores: float = 0.0
    pids: int = 0


class CgroupUsage(msgspec.Struct, frozen=True, kw_only=True):
    cpu_time: int = 0
    peak_memory: int = 0
    oom_kills: int = 0


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise CgroupError(path, f"cannot write {value.strip()!r}: {exc.strerror}") from exc


def _int(text: str) -> int:
    try:
        return int(text.strip() or 0)
    except ValueError:
        return 0


def _keyed(text: str, key: str) -> int:
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return _int(value)
    return 0


class Cgroup:
    """One execution's cgroup: a folder per v1 controller, or one v2 folder."""

    def __init__(self, mode: CgroupMode, paths: dict[str, Path]) -> None:
        self.mode = mode
        self.by_controller = paths

    @classmethod
    def from_paths(cls, paths: Iterable[str]) -> Cgroup:
        """Re-open a cgroup recorded in a state file (``controller=path`` or a v2 path)."""
        found: dict[str, Path] = {}
        mode = CgroupMode.V2
        for entry in paths:
            controller, sep, path = entry.partition("=")
            if sep:
                mode = CgroupMode.V1
                found[controller] = Path(path)
            else:
                found[""] = Path(entry)
        return cls(mode, found)

    @property
    def paths(self) -> tuple[str, ...]:
        """What a state file records to find this cgroup again."""
        if self.mode is CgroupMode.V2:
            return (str(self.by_controller[""]),)
        return tuple(f"{name}={path}" for name, path in self.by_controller.items())

    @property
    def controllers(self) -> frozenset[str]:
        if self.mode is CgroupMode.V1:
            return frozenset(self.by_controller)
        return frozenset(_read(self.by_controller[""] / "cgroup.controllers").split())

    @property
    def procs_files(self) -> tuple[str, ...]:
        """The files a new process writes its pid into to join this cgroup."""
        unique = dict.fromkeys(str(path / "cgroup.procs") for path in self.by_controller.values())
        return tuple(unique)

    def _path(self, controller: str) -> Path | None:
        if self.mode is CgroupMode.V2:
            return self.by_controller[""]
        return self.by_controller.get(controller)

    def apply(self, limits: CgroupLimits) -> None:
        if limits.memory:
            self._limit_memory(limits.memory)
        if limits.cores:
            self._limit_cpu(limits.cores)
        if limits.pids and (path := self._path("pids")) is not None:
            _write(path / "pids.max", str(limits.pids))

    def _limit_memory(self, memory: int) -> None:
        path = self._path("memory")
        if path is None:
            return
        if self.mode is CgroupMode.V2:
            _write(path / "memory.max", str(memory))
            if (path / "memory.swap.max").exists():
                _write(path / "memory.swap.max", "0")
            return
        _write(path / "memory.limit_in_bytes", str(memory))
        if (path / "memory.memsw.limit_in_bytes").exists():
            with contextlib.suppress(CgroupError):
                _write(path / "memory.memsw.limit_in_bytes", str(memory))

    def _limit_cpu(self, cores: float) -> None:
        path = self._path("cpu")
        if path is None:
            return
        quota = max(1000, int(cores * CPU_PERIOD_US))
        if self.mode is CgroupMode.V2:
            _write(path / "cpu.max", f"{quota} {CPU_PERIOD_US}")
            return
        _write(path / "cpu.cfs_period_us", str(CPU_PERIOD_US))
        _write(path / "cpu.cfs_quota_us", str(quota))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for path in self.by_controller.values():
            found.update(_int(line) for line in _read(path / "cgroup.procs").split())
        found.discard(0)
        return found

    def usage(self) -> CgroupUsage:
        if self.mode is CgroupMode.V2:
            path = self.by_controller[""]
            return CgroupUsage(
                cpu_time=_keyed(_read(path / "cpu.stat"), "usage_usec") * 1000,
                peak_memory=_int(_read(path / "memory.peak")),
                oom_kills=_keyed(_read(path / "memory.events"), "oom_kill"),
            )
        cpu = self._path("cpuacct")
        memory = self._path("memory")
        return CgroupUsage(
            cpu_time=_int(_read(cpu / "cpuacct.usage")) if cpu else 0,
            peak_memory=_int(_read(memory / "memory.max_usage_in_bytes")) if memory else 0,
            oom_kills=_keyed(_read(memory / "memory.oom_control"), "oom_kill") if memory else 0,
        )

    def kill(self) -> bool:
        """SIGKILL every process in the cgroup until none is left; True if there were any.

        A fork bomb cannot outrun it: v2 uses ``cgroup.kill``; v1 freezes the cgroup first.
        """
        if not self.pids():
            return False
        if self.mode is CgroupMode.V2 and (self.by_controller[""] / "cgroup.kill").exists():
            with contextlib.suppress(CgroupError):
                _write(self.by_controller[""] / "cgroup.kill", "1")
        freezer = self._path("freezer") if self.mode is CgroupMode.V1 else None
        for _ in range(KILL_ROUNDS):
            pids = self.pids()
            if not pids:
                break
            if freezer is not None:
                with contextlib.suppress(CgroupError):
                    _write(freezer / "freezer.state", "FROZEN")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if freezer is not None:
                with contextlib.suppress(CgroupError):
                    _write(freezer / "freezer.state", "THAWED")
            time.sleep(KILL_PAUSE_S)
        return True

    def remove(self) -> None:
        """Remove the cgroup folders (killing anything still inside first)."""
        self.kill()
        for path in self.by_controller.values():
            for _ in range(KILL_ROUNDS):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(KILL_PAUSE_S)


class Cgroups:
    """Finds which cgroup hierarchy this process may use and creates cgroups in it."""

    def __init__(self, mode: CgroupMode, bases: dict[str, Path], reason: str = "") -> None:
        self.mode = mode
        self.bases = bases
        self.reason = reason

    @property
    def controllers(self) -> frozenset[str]:
        if self.mode is CgroupMode.V2:
            text = _read(self.bases[""] / "cgroup.subtree_control")
            found = frozenset(name.lstrip("+") for name in text.split())
            return found & frozenset(V2_CONTROLLERS)
        return frozenset(self.bases)

    @classmethod
    def none(cls, reason: str) -> Cgroups:
        return cls(CgroupMode.NONE, {}, reason)

    @classmethod
    def detect(
        cls,
        *,
        proc_cgroup: Path = Path("/proc/self/cgroup"),
        mounts: Path = Path("/proc/self/mounts"),
    ) -> Cgroups:
        own = _own_paths(_read(proc_cgroup))
        mounted = _mounts(_read(mounts))
        reasons: list[str] = []
        v2 = _try_v2(own, mounted, reasons)
        if v2 is not None:
            return v2
        v1 = _try_v1(own, mounted, reasons)
        if v1 is not None:
            return v1
        return cls.none("; ".join(reasons) or "no cgroup hierarchy is mounted")

    def create(self, name: str, limits: CgroupLimits) -> Cgroup:
        """Create ``name`` below the node's cgroup(s) and apply ``limits``."""
        if self.mode is CgroupMode.NONE:
            raise CgroupError(name, f"no usable cgroups ({self.reason})")
        paths = {controller: base / name for controller, base in self.bases.items()}
        cgroup = Cgroup(self.mode, paths)
        try:
            for path in dict.fromkeys(paths.values()):
                path.mkdir()
            cgroup.apply(limits)
        except (OSError, CgroupError) as exc:
            cgroup.remove()
            if isinstance(exc, CgroupError):
                raise
            raise CgroupError(name, f"cannot create: {exc.strerror}") from exc
        return cgroup


def _own_paths(text: str) -> dict[str, str]:
    """Controller -> this process's path in it (``""`` -> the v2 path)."""
    own: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            own[""] = path
        for controller in controllers.split(","):
            if controller:
                own[controller] = path
    return own


def _mounts(text: str) -> dict[str, Path]:
    """Controller -> v1 mount point, and ``""`` -> the v2 mount point."""
    found: dict[str, Path] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        where, kind, options = Path(fields[1]), fields[2], fields[3].split(",")
        if kind == "cgroup2":
            found[""] = where
        elif kind == "cgroup":
            for option in options:
                if option in V1_CONTROLLERS:
                    found.setdefault(option, where)
    return found


def _probe(base: Path) -> str:
    """Empty if a child cgroup can be created and removed below ``base``, else why not."""
    probe = base / f"dms-probe-{os.getpid()}"
    try:
        probe.mkdir()
    except FileExistsError:
        pass
    except OSError as exc:
        return f"cannot create cgroups in {base}: {exc.strerror}"
    with contextlib.suppress(OSError):
        probe.rmdir()
    return ""


def _try_v2(own: dict[str, str], mounted: dict[str, Path], reasons: list[str]) -> Cgroups | None:
    if "" not in mounted or "" not in own:
        reasons.append("v2: not mounted")
        return None
    base = mounted[""] / own[""].lstrip("/")
    available = set(_read(base / "cgroup.controllers").split())
    missing = [name for name in ("memory", "pids") if name not in available]
    if missing:
        reasons.append(f"v2: controllers {', '.join(missing)} not available in {base}")
        return None
    wanted = [name for name in V2_CONTROLLERS if name in available]
    enabled = {name.lstrip("+") for name in _read(base / "cgroup.subtree_control").split()}
    if not set(wanted) <= enabled:
        try:
            _write(base / "cgroup.subtree_control", " ".join(f"+{name}" for name in wanted))
        except CgroupError as exc:
            reasons.append(f"v2: {exc}")
            return None
    why = _probe(base)
    if why:
        reasons.append(f"v2: {why}")
        return None
    return Cgroups(CgroupMode.V2, {"": base})


def _try_v1(own: dict[str, str], mounted: dict[str, Path], reasons: list[str]) -> Cgroups | None:
    bases: dict[str, Path] = {}
    for controller in V1_CONTROLLERS:
        if controller not in mounted or controller not in own:
            continue
        base = mounted[controller] / own[controller].lstrip("/")
        why = _probe(base)
        if why:
            reasons.append(f"v1 {controller}: {why}")
            continue
        bases[controller] = base
    if not ({"memory", "pids"} & set(bases)):
        reasons.append("v1: neither the memory nor the pids controller can be written")
        return None
    return Cgroups(CgroupMode.V1, bases)
