"""Helpers for the end-to-end tests: real `dms` processes on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DMS = [sys.executable, "-m", "dms.cli.main"]


def dms(
    *args: str, home: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run one `dms` command as its own process (the node's environment, no DMS_* leaking)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMS_")}
    prefix = ["--home", str(home)] if home is not None else []
    return subprocess.run(
        [*DMS, *prefix, *args], capture_output=True, text=True, env=env, timeout=timeout
    )
