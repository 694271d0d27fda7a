"""The process executor: a command in its own session and process group, with limits.

Launch chain (each step only when needed, each ``exec``-ing the next, so the pid stays the same)::

    /bin/sh -c 'join cgroups' -> prlimit --as/--cpu/--fsize/--nofile -> bwrap ... -> the command

* cgroups (v2, else v1; see :mod:`dms.executor.cgroups`) carry memory, CPU and pids limits and
  let a fork bomb be contained (pids.max) and killed as a whole (cgroup.kill or freezer);
  the shell joins them before anything else runs, so no child escapes;
* rlimits: address space (only when no memory cgroup), CPU time, file size, open files;
* bubblewrap (see :mod:`dms.executor.sandbox`) when installed, unless turned off.

The environment holds only what the request gives. stdout and stderr are read through pipes into
capped files. The end of the command is seen through a pidfd without reaping it, so the group can
be killed while its pid still cannot be reused; then it is reaped (``wait4`` gives CPU time and
peak RSS when there is no cgroup). When the command exits, whatever it left behind in its group
or cgroup is killed too: an execution ends with its main process.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import IO, NamedTuple

import anyio

from dms.executor import proc
from dms.executor.base import (
    ExecutionInfo,
    ExecutionRequest,
    Handles,
    NetworkMode,
    ProcessProgram,
    Reason,
    ResourceUsage,
)
from dms.executor.cgroups import (
    Cgroup,
    CgroupError,
    CgroupLimits,
    CgroupMode,
    Cgroups,
    CgroupUsage,
)
from dms.executor.core import Execution, ExecutorBase, Outcome, Started
from dms.executor.errors import ExecutorUnavailable, InvalidRequest, StartFailed
from dms.executor.output import Sink
from dms.executor.sandbox import SandboxMode, bwrap_argv, find_bwrap
from dms.types.jobs import ExecutorType

ATTACH_SCRIPT = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
UNSET_PWD = "unset PWD; "
"""The shell exports PWD; the workload's environment holds only what the request gives."""
PIPE_READ = 64 * 1024
MAX_THREAD_WAITERS = 1024
"""Threads that may wait for processes where pidfds are missing (Linux < 5.3)."""
PIPE_GRACE_S = 1.0
"""How long output pipes may stay open after the command and its group were killed."""


class _Ended(NamedTuple):
    code: int
    """The exit code, or minus the signal number that killed the process."""
    usage: ResourceUsage
    oom_kills: int
    sandboxed: bool

    @property
    def signal(self) -> int | None:
        """The signal that killed the command (bubblewrap reports it as exit code 128 + N)."""
        if self.code < 0:
            return -self.code
        if self.sandboxed and self.code > 128 and self.code - 128 in _SIGNALS:
            return self.code - 128
        return None


_SIGNALS = frozenset(int(number) for number in signal.Signals)


class ProcessExecutor(ExecutorBase):
    kind = ExecutorType.PROCESS

    def __init__(
        self,
        work_dir: Path | str,
        *,
        sandbox: SandboxMode = SandboxMode.AUTO,
        cgroups: Cgroups | bool = True,
        read_only_paths: tuple[str, ...] = (),
    ) -> None:
        """``cgroups``: True to detect, False for none, or a :class:`Cgroups` to use.

        ``read_only_paths``: more host paths the sandbox shows read-only (interpreters, tools).
        """
        super().__init__(work_dir)
        self.sandbox_mode = sandbox
        self.read_only_paths = read_only_paths
        self._cgroups_option = cgroups
        self.cgroups = Cgroups.none("not detected yet")
        self.bwrap = ""
        self.sandbox_reason = ""
        self._prlimit = shutil.which("prlimit") or ""
        self._pidfd = hasattr(os, "pidfd_open")
        self._waiters: anyio.CapacityLimiter | None = None

    async def _open(self, stack: contextlib.AsyncExitStack) -> None:
        self._waiters = anyio.CapacityLimiter(MAX_THREAD_WAITERS)
        option = self._cgroups_option
        if isinstance(option, Cgroups):
            self.cgroups = option
        elif option:
            self.cgroups = await anyio.to_thread.run_sync(Cgroups.detect)
        else:
            self.cgroups = Cgroups.none("turned off")
        if self.sandbox_mode is not SandboxMode.OFF:
            self.bwrap, self.sandbox_reason = await anyio.to_thread.run_sync(find_bwrap)
            if not self.bwrap and self.sandbox_mode is SandboxMode.BWRAP:
                raise ExecutorUnavailable(self.kind.value, self.sandbox_reason)
        else:
            self.sandbox_reason = "turned off"
        self._log.info(
            "process executor ready",
            cgroups=self.cgroups.mode.value,
            cgroup_controllers=sorted(self.cgroups.controllers),
            cgroups_reason=self.cgroups.reason or None,
            sandbox=bool(self.bwrap),
            sandbox_reason=self.sandbox_reason or None,
        )

    def _check(self, request: ExecutionRequest) -> None:
        if request.working_dir and not Path(request.working_dir).is_dir():
            raise InvalidRequest("working_dir", request.working_dir, "an existing folder")

    # --- running ---------------------------------------------------------------------------

    async def _run(self, execution: Execution, started: Started) -> Outcome:
        request = execution.request
        assert request is not None and isinstance(request.program, ProcessProgram)
        assert execution.folder is not None
        env = request.env_dict()
        if request.gpus and "CUDA_VISIBLE_DEVICES" not in env:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(request.gpus)
        argv = [*request.program.argv, *request.args]
        executable = _resolve(argv[0], env.get("PATH"))
        if executable is None:
            raise StartFailed(request.id, f"command not found: {argv[0]!r}")
        work = execution.folder / "work"
        work.mkdir(exist_ok=True)
        cwd = request.working_dir or str(work)
        warnings: list[str] = []

        cgroup = await self._cgroup(execution, warnings)
        prefix: list[str] = []
        if cgroup is not None:
            script = ATTACH_SCRIPT if "PWD" in env else UNSET_PWD + ATTACH_SCRIPT
            prefix += ["/bin/sh", "-c", script, "dms-attach", *cgroup.procs_files, "--"]
        prefix += self._rlimits(request, cgroup, warnings)
        sandboxed = bool(self.bwrap)
        if sandboxed:
            prefix += bwrap_argv(
                self.bwrap,
                work=work,
                cwd=cwd,
                input_dir=request.input_dir,
                output_dir=request.output_dir,
                share_net=request.network is not NetworkMode.NONE,
                read_only=self.read_only_paths,
                gpus=bool(request.gpus),
                keep_pwd="PWD" in env,
            )
        elif request.network is NetworkMode.NONE:
            warnings.append(
                f"network none is not enforced without a sandbox ({self.sandbox_reason})"
            )

        try:
            child, stdout_fd, stderr_fd = self._spawn(
                [*prefix, executable, *argv[1:]], env, cwd, execution.folder, request.stdin
            )
        except OSError as exc:
            if cgroup is not None:
                await anyio.to_thread.run_sync(cgroup.remove)
            raise StartFailed(request.id, f"cannot run {argv[0]!r}: {exc.strerror}") from exc
        pid = child.pid
        found = proc.stat(pid)
        started(
            handles=Handles(
                pid=pid,
                pid_start=found.start if found else 0,
                pgid=pid,
                cgroups=cgroup.paths if cgroup else (),
                node_pid=os.getpid(),
            ),
            sandboxed=sandboxed,
            warnings=tuple(warnings),
        )
        try:
            end, stopped = await self._until_done(
                execution,
                lambda: self._wait(child, stdout_fd, stderr_fd, execution, cgroup),
                lambda reason: self._stop(child, cgroup),
            )
        finally:
            if cgroup is not None:
                await anyio.to_thread.run_sync(cgroup.remove)
        return _outcome(request, end, stopped)

    async def _cgroup(self, execution: Execution, warnings: list[str]) -> Cgroup | None:
        request = execution.request
        assert request is not None
        limits = request.limits
        available = self.cgroups.controllers
        wanted = {"memory": limits.memory, "cpu": limits.cores, "pids": limits.pids}
        for name, value in wanted.items():
            if value and name not in available and not (name == "memory" and self._prlimit):
                warnings.append(f"limits.{name} is not enforced: no {name} cgroup here")
        if self.cgroups.mode is CgroupMode.NONE:
            return None
        name = f"dms-{self.work_label}-{execution.id}"
        try:
            cgroup = await anyio.to_thread.run_sync(
                self.cgroups.create,
                name,
                CgroupLimits(memory=limits.memory, cores=limits.cores, pids=limits.pids),
            )
        except CgroupError as exc:
            warnings.append(f"no cgroup for this execution: {exc}")
            return None
        # Recorded before anything runs in it, so a node that dies now leaves it findable.
        execution.handles = Handles(cgroups=cgroup.paths, node_pid=os.getpid())
        self._save(execution)
        return cgroup

    def _rlimits(
        self, request: ExecutionRequest, cgroup: Cgroup | None, warnings: list[str]
    ) -> list[str]:
        limits = request.limits
        values: list[str] = []
        controllers = cgroup.controllers if cgroup else frozenset()
        if limits.memory and "memory" not in controllers:
            values.append(f"--as={limits.memory}:{limits.memory}")
            warnings.append("limits.memory is enforced as an address-space limit (no cgroup)")
        if limits.cpu_time:
            soft = max(1, math.ceil(limits.cpu_time / 1e9))
            values.append(f"--cpu={soft}:{soft + 1}")
        if limits.file_size:
            values.append(f"--fsize={limits.file_size}:{limits.file_size}")
        if limits.open_files:
            values.append(f"--nofile={limits.open_files}:{limits.open_files}")
        if not values:
            return []
        if not self._prlimit:
            warnings.append("rlimits are not enforced: prlimit (util-linux) is not installed")
            return []
        return [self._prlimit, *values, "--"]

    @staticmethod
    def _spawn(
        argv: list[str], env: dict[str, str], cwd: str, folder: Path, stdin: bytes
    ) -> tuple[subprocess.Popen[bytes], int, int]:
        stdin_file: IO[bytes] | int = subprocess.DEVNULL
        if stdin:
            path = folder / "stdin"
            path.write_bytes(stdin)
            stdin_file = path.open("rb")
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        try:
            child = subprocess.Popen(
                argv,
                stdin=stdin_file,
                stdout=out_write,
                stderr=err_write,
                env=env,
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
            )
        except BaseException:
            os.close(out_read)
            os.close(err_read)
            raise
        finally:
            os.close(out_write)
            os.close(err_write)
            if not isinstance(stdin_file, int):
                stdin_file.close()
        os.set_blocking(out_read, False)
        os.set_blocking(err_read, False)
        return child, out_read, err_read

    async def _wait(
        self,
        child: subprocess.Popen[bytes],
        stdout_fd: int,
        stderr_fd: int,
        execution: Execution,
        cgroup: Cgroup | None,
    ) -> _Ended:
        counted = CgroupUsage()
        try:
            async with anyio.create_task_group() as pumps:
                pumps.start_soon(_pump, stdout_fd, execution.stdout)
                pumps.start_soon(_pump, stderr_fd, execution.stderr)
                await self._exited(child.pid)
                # The main process is a zombie: its pid (the group id) cannot be reused yet.
                proc.kill_group(child.pid)
                if cgroup is not None:
                    counted = await anyio.to_thread.run_sync(cgroup.usage)
                    await anyio.to_thread.run_sync(cgroup.kill)
                # A zombie already: this reaps it at once.
                _, status, rusage = os.wait4(child.pid, 0)  # noqa: ASYNC222
                child.returncode = os.waitstatus_to_exitcode(status)
                pumps.cancel_scope.deadline = anyio.current_time() + PIPE_GRACE_S
        finally:
            os.close(stdout_fd)
            os.close(stderr_fd)
        # Without a memory cgroup the peak is unknown: ru_maxrss starts from the node's own RSS
        # (the child shares the node's memory until exec), so it would mislead.
        usage = ResourceUsage(
            cpu_time=counted.cpu_time or int((rusage.ru_utime + rusage.ru_stime) * 1e9),
            peak_memory=counted.peak_memory,
        )
        return _Ended(
            os.waitstatus_to_exitcode(status), usage, counted.oom_kills, execution.sandboxed
        )

    async def _exited(self, pid: int) -> None:
        """Return once ``pid`` has exited, leaving it unreaped (a zombie)."""
        if self._pidfd:
            descriptor = os.pidfd_open(pid)
            try:
                await anyio.wait_readable(descriptor)
            finally:
                os.close(descriptor)
            return
        await anyio.to_thread.run_sync(
            lambda: os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT), limiter=self._waiters
        )

    async def _stop(self, child: subprocess.Popen[bytes], cgroup: Cgroup | None) -> None:
        if child.returncode is not None:
            return  # reaped: its pid may belong to someone else by now
        proc.kill_group(child.pid)
        if cgroup is not None:
            await anyio.to_thread.run_sync(cgroup.kill)

    # --- after a crash ---------------------------------------------------------------------

    async def _reap(self, info: ExecutionInfo) -> bool:
        handles = info.handles
        alive = False
        if handles.pgid:
            alive = await anyio.to_thread.run_sync(
                proc.kill_orphan_group, handles.pgid, handles.pid_start
            )
        if handles.cgroups:
            cgroup = Cgroup.from_paths(handles.cgroups)
            alive = await anyio.to_thread.run_sync(cgroup.kill) or alive
            await anyio.to_thread.run_sync(cgroup.remove)
        return alive


async def _pump(descriptor: int, sink: Sink) -> None:
    while True:
        try:
            data = os.read(descriptor, PIPE_READ)
        except BlockingIOError:
            await anyio.wait_readable(descriptor)
            continue
        if not data:
            return
        sink.write(data)
        await anyio.lowlevel.checkpoint()


def _resolve(command: str, path: str | None) -> str | None:
    if "/" in command:
        return command if os.access(command, os.X_OK) and Path(command).is_file() else None
    return shutil.which(command, path=path if path is not None else os.defpath)


def _outcome(request: ExecutionRequest, end: _Ended, stopped: Reason | None) -> Outcome:
    limits = request.limits
    sig = end.signal
    usage = end.usage
    if stopped is not None:
        return Outcome.stopped(stopped, limits.timeout, usage=usage, signal=sig)
    if end.oom_kills:
        return Outcome.failed(
            Reason.MEMORY_LIMIT,
            f"killed at the memory limit of {limits.memory} bytes",
            exit_code=None if sig else end.code,
            signal=sig,
            killed=True,
            usage=usage,
        )
    if sig == signal.SIGXCPU or (
        sig == signal.SIGKILL and limits.cpu_time and usage.cpu_time >= limits.cpu_time
    ):
        return Outcome.failed(
            Reason.CPU_LIMIT,
            f"killed at the CPU time limit of {limits.cpu_time / 1e9:g}s",
            signal=sig,
            killed=True,
            usage=usage,
        )
    if sig == signal.SIGXFSZ:
        return Outcome.failed(
            Reason.FILE_SIZE_LIMIT,
            f"killed at the file size limit of {limits.file_size} bytes",
            signal=sig,
            killed=True,
            usage=usage,
        )
    if sig is not None:
        return Outcome.failed(
            Reason.SIGNAL, f"killed by signal {signal.Signals(sig).name}", signal=sig, usage=usage
        )
    return Outcome.exited(end.code, usage)
