"""The bubblewrap sandbox around process executions.

Inside, the workload sees the system folders read-only (``/usr``, ``/bin``, ``/lib*``, ``/sbin``,
``/etc`` and any extra read-only paths the executor is given), fresh ``/dev``, ``/proc`` and
``/tmp``, its own work folder, the request's input folder read-only and output folder writable
(each at its own path), a requested working folder read-only, and nothing else of the host: not the node's home, keys or other
executions. It gets new user, pid, ipc, uts, cgroup and (unless the request asks for a network)
network namespaces, and dies with the node (``--die-with-parent``).
"""

from __future__ import annotations

import enum
import glob
import shutil
import subprocess
from pathlib import Path

SYSTEM_PATHS = ("/usr", "/bin", "/lib", "/lib32", "/lib64", "/libx32", "/sbin", "/etc")
PROBE_TIMEOUT_S = 10.0
ENV = "/usr/bin/env"


class SandboxMode(enum.StrEnum):
    AUTO = "auto"
    """Use bubblewrap when it is installed and works here."""
    BWRAP = "bwrap"
    """Always use bubblewrap (the executor refuses to start without it)."""
    OFF = "off"


def find_bwrap() -> tuple[str, str]:
    """``(path, "")`` if bubblewrap works here, else ``("", why not)``."""
    path = shutil.which("bwrap")
    if path is None:
        return "", "bwrap is not installed (Debian package bubblewrap)"
    probe = [path, "--die-with-parent", "--unshare-all", *_binds(SYSTEM_PATHS), "true"]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "", f"bwrap does not run: {exc}"
    if done.returncode != 0:
        return "", f"bwrap does not work here: {done.stderr.decode(errors='replace').strip()}"
    return path, ""


def _binds(paths: tuple[str, ...]) -> list[str]:
    args: list[str] = []
    for path in paths:
        args += ["--ro-bind-try", path, path]
    return args


def bwrap_argv(
    bwrap: str,
    *,
    work: Path,
    cwd: str,
    input_dir: str,
    output_dir: str,
    share_net: bool,
    read_only: tuple[str, ...],
    gpus: bool,
    keep_pwd: bool = False,
) -> list[str]:
    """The bubblewrap command line that precedes the workload's own argv.

    bubblewrap always sets ``PWD``; unless the request set it (``keep_pwd``), ``env -u PWD``
    removes it again inside the sandbox.
    """
    argv = [bwrap, "--die-with-parent", "--unshare-all"]
    if share_net:
        argv.append("--share-net")
    argv += _binds(SYSTEM_PATHS)
    argv += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    argv += _binds(read_only)
    if gpus:
        for device in sorted(glob.glob("/dev/nvidia*")):
            argv += ["--dev-bind-try", device, device]
    argv += ["--bind", str(work), str(work)]
    if input_dir:
        argv += ["--ro-bind", input_dir, input_dir]
    if output_dir:
        argv += ["--bind", output_dir, output_dir]
    if cwd not in (str(work), input_dir, output_dir):
        argv += ["--ro-bind-try", cwd, cwd]
    argv += ["--chdir", cwd, "--"]
    if not keep_pwd and Path(ENV).exists():
        argv += [ENV, "-u", "PWD", "--"]
    return argv
