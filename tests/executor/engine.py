"""A Docker-compatible API for the docker executor's tests: Docker if one answers, else podman.

podman runs as ``podman system service`` with its own storage in a temporary folder (vfs driver,
runc runtime, cgroupfs), so the tests touch nothing of the machine's containers. The test image
is imported through the API from a rootfs tarball holding the static busybox of the Debian
package busybox-static.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import docker
import docker.errors

IMAGE = "localhost/dms-busybox:latest"
BUSYBOX = Path("/bin/busybox")
PODMAN_ULIMITS = {"nofile": (1024, 1024), "nproc": (1000, 1000)}
"""podman's default ulimits exceed the hard limits of a root shell here."""
START_TIMEOUT_S = 30.0


class Engine(NamedTuple):
    base_url: str
    image: str
    ulimits: dict[str, tuple[int, int]]
    name: str


class EngineUnavailable(Exception):
    pass


def busybox_rootfs() -> bytes:
    """A tarball of a root filesystem: /bin/busybox and a symlink per applet."""
    if not BUSYBOX.is_file():
        raise EngineUnavailable(f"{BUSYBOX} is missing (Debian package busybox-static)")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in ("bin", "tmp", "input", "output", "proc", "sys", "dev", "etc"):
            entry = tarfile.TarInfo(folder)
            entry.type, entry.mode = tarfile.DIRTYPE, 0o1777 if folder == "tmp" else 0o755
            tar.addfile(entry)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in applets:
            if applet == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buffer.getvalue()


def import_image(base_url: str) -> None:
    client = docker.DockerClient(base_url=base_url)
    try:
        repository, tag = IMAGE.rsplit(":", 1)
        client.api.import_image_from_data(busybox_rootfs(), repository=repository, tag=tag)
        client.images.get(IMAGE)
    finally:
        client.close()


def reachable(base_url: str | None) -> bool:
    try:
        client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
        client.ping()
        client.close()
    except (docker.errors.DockerException, OSError):
        return False
    return True


class Podman:
    """``podman system service`` on a private socket and storage; stop() removes everything."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dms-podman-"))
        self.socket = self.root / "podman.sock"
        self.log = self.root / "service.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        podman = shutil.which("podman")
        if podman is None:
            raise EngineUnavailable("podman is not installed (scripts/system-deps.sh)")
        argv = [
            podman,
            "--root", str(self.root / "storage"),
            "--runroot", str(self.root / "run"),
            "--tmpdir", str(self.root / "tmp"),
            "--storage-driver", "vfs",
            "--runtime", "runc",
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "file",
            "system", "service", "--time=0", self.base_url,
        ]  # fmt: skip
        with self.log.open("wb") as log:
            # In its own folder: conmon leaves an ``oom`` marker in its working directory when a
            # container is killed for memory, which would otherwise land in the checkout.
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.root
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (self.socket.exists() and reachable(self.base_url)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise EngineUnavailable(f"podman system service did not start: {self.tail()}")
            time.sleep(0.05)

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-800:].strip()
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def docker_engine() -> Engine | None:
    """A real Docker engine if one answers at DOCKER_HOST or the default socket."""
    if (os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists()) and reachable(None):
        base_url = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        import_image(base_url)
        return Engine(base_url, IMAGE, {}, "docker")
    return None
