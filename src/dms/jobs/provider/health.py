"""Health checks of services: a small ``HealthProbe`` protocol, the real probes, a fake.

* ``command``: the check's command runs as a workload of the allocation's own executor when
  that is the process or the null executor (for null, the command is a scripted program's
  ``KEY=VALUE`` arguments), otherwise as a process on this node; exit code 0 is healthy;
* ``http``: a GET to this machine only (``127.0.0.1``, ``localhost`` or ``::1``); a status
  below 400 is healthy. ``url`` is a full URL or a path used with ``port``;
* ``tcp``: a connection to ``127.0.0.1:port`` is accepted.

A check's ``port`` names the allocation's private port; when the allocation has a public port
bound to it, that one is probed. Each probe gives up after the check's ``timeout``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Protocol
from urllib.parse import urlsplit

import anyio
import httpx
import msgspec

from dms.errors import DMSError
from dms.executor import ExecutionRequest, ExecutorRegistry, Limits, ProcessProgram, Program
from dms.jobs.provider.errors import InvalidManifest
from dms.jobs.provider.launch import null_program
from dms.jobs.spec import HealthCheck
from dms.types import ExecutorType
from dms.types.units import seconds

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


class HealthResult(msgspec.Struct, frozen=True):
    healthy: bool
    detail: str = ""


class HealthProbe(Protocol):
    async def check(self) -> HealthResult:
        """One check, bounded by the probe's own timeout."""
        ...


class ScriptedProbe:
    """A fake probe answering from a script (the last answer repeats); counts its checks."""

    def __init__(self, answers: Iterable[bool]) -> None:
        self.answers = tuple(answers) or (True,)
        self.checks = 0

    async def check(self) -> HealthResult:
        answer = self.answers[min(self.checks, len(self.answers) - 1)]
        self.checks += 1
        await anyio.lowlevel.checkpoint()
        return HealthResult(answer, "" if answer else f"scripted failure {self.checks}")


class TcpProbe:
    def __init__(self, port: int, timeout_s: float, host: str = "127.0.0.1") -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s

    async def check(self) -> HealthResult:
        where = f"tcp {self.host}:{self.port}"
        with anyio.move_on_after(self.timeout_s):
            try:
                stream = await anyio.connect_tcp(self.host, self.port)
            except OSError as exc:
                return HealthResult(False, f"{where}: {exc.strerror or exc}")
            await stream.aclose()
            return HealthResult(True)
        return HealthResult(False, f"{where}: no answer within {self.timeout_s:g}s")


class HttpProbe:
    def __init__(self, url: str, timeout_s: float) -> None:
        self.url, self.timeout_s = url, timeout_s

    async def check(self) -> HealthResult:
        with anyio.move_on_after(self.timeout_s):
            try:
                async with httpx.AsyncClient(timeout=self.timeout_s, trust_env=False) as client:
                    response = await client.get(self.url)
            except httpx.HTTPError as exc:
                return HealthResult(False, f"GET {self.url}: {exc or type(exc).__name__}")
            if response.status_code < 400:
                return HealthResult(True)
            return HealthResult(False, f"GET {self.url}: status {response.status_code}")
        return HealthResult(False, f"GET {self.url}: no answer within {self.timeout_s:g}s")


class CommandProbe:
    """Runs the check's command through an executor; exit code 0 is healthy."""

    def __init__(
        self, executors: ExecutorRegistry, program: Program, prefix: str, timeout_ns: int
    ) -> None:
        self.executors = executors
        self.program = program
        self.prefix = prefix
        self.timeout_ns = timeout_ns
        self._count = itertools.count()

    async def check(self) -> HealthResult:
        request = ExecutionRequest(
            id=f"{self.prefix}.hc{next(self._count)}",
            program=self.program,
            env=(("PATH", DEFAULT_PATH),),
            limits=Limits(timeout=self.timeout_ns),
        )
        try:
            executor = self.executors.get(request.executor)
            await executor.start(request)
            try:
                result = await executor.wait(request.id)
            finally:
                with anyio.CancelScope(shield=True):
                    await executor.cancel(request.id)
                    await executor.remove(request.id)
        except DMSError as exc:
            return HealthResult(False, f"health command: {exc}")
        if result.ok:
            return HealthResult(True)
        return HealthResult(False, f"health command: {result.error or result.status.value}")


def local_url(check: HealthCheck, port: int) -> str:
    """The URL an http check asks for; only this machine may be probed."""
    url = check.url
    if url.startswith("/"):
        if not port:
            raise InvalidManifest("healthcheck.port", 0, "a port for a path-only url")
        url = f"http://127.0.0.1:{port}{url}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOCAL_HOSTS:
        raise InvalidManifest(
            "healthcheck.url", check.url, "an http(s) URL on 127.0.0.1, localhost or ::1, or a path"
        )
    return url


def probe_for(
    check: HealthCheck,
    *,
    executor: ExecutorType,
    executors: ExecutorRegistry,
    ports: Mapping[int, int],
    prefix: str,
) -> HealthProbe:
    """The probe for a check; ``ports`` maps the allocation's private ports to public ones."""
    port = ports.get(check.port, check.port) if check.port else 0
    timeout_s = seconds(int(check.timeout)) or 1.0
    if check.type == "tcp":
        return TcpProbe(port, timeout_s)
    if check.type == "http":
        return HttpProbe(local_url(check, port), timeout_s)
    program: Program
    if executor is ExecutorType.NULL:
        program = null_program(check.command, 0, "healthcheck.command")
    else:
        program = ProcessProgram(argv=tuple(check.command))
    return CommandProbe(executors, program, prefix, int(check.timeout))
