"""Fixtures for the executor tests: WASM fixtures built by `make fixtures`, work folders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import docker.errors
import pytest

from .engine import (
    IMAGE,
    PODMAN_ULIMITS,
    Engine,
    EngineUnavailable,
    Podman,
    docker_engine,
    import_image,
)

REPO = Path(__file__).resolve().parents[2]
WASM_BUILD = REPO / "build" / "wasm"


def wasm_fixture(name: str) -> Path:
    """The path of a built WASM fixture; fails (not skips) when it has not been built."""
    path = WASM_BUILD / f"{name}.wasm"
    if not path.is_file():
        pytest.fail(f"WASM fixture {path} is missing: run `make fixtures` first")
    return path


@pytest.fixture
def wasm() -> Callable[[str], Path]:
    return wasm_fixture


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    return tmp_path / "work"


async def read_bytes(path: str | Path) -> bytes:
    return await anyio.Path(path).read_bytes()


async def read_text(path: str | Path) -> str:
    return await anyio.Path(path).read_text()


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """A Docker-compatible API with the test image; skips only when neither engine works."""
    reasons: list[str] = []
    try:
        found = docker_engine()
    except (EngineUnavailable, docker.errors.DockerException) as exc:
        found = None
        reasons.append(f"docker: {exc}")
    if found is not None:
        yield found
        return
    podman = Podman()
    try:
        podman.start()
        import_image(podman.base_url)
    except (EngineUnavailable, docker.errors.DockerException, OSError) as exc:
        podman.stop()
        reasons.append(f"podman: {exc}")
        pytest.skip("no Docker-compatible engine works here: " + "; ".join(reasons))
    try:
        yield Engine(podman.base_url, IMAGE, PODMAN_ULIMITS, "podman")
    finally:
        podman.stop()
