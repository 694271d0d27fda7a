"""Fixtures for the executor tests: WASM fixtures built by `make fixtures`, work folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

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
