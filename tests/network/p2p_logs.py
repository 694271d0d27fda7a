"""Logs for the p2p tests: to whatever ``sys.stderr`` is when each line is written.

``dms.log.configure()`` binds a stream once; under pytest, ``sys.stderr`` is a capture object
that pytest closes after the test that configured it, and any later log line then raises
``ValueError: I/O operation on closed file`` inside the code that logged (a network writer, a
validator...). The p2p tests point the logs at this forwarding stream first.
"""

from __future__ import annotations

import io
import sys

from dms.log import configure


class CurrentStderr(io.TextIOBase):
    """Writes to the ``sys.stderr`` of the moment (pytest swaps it for each test)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return False


def log_to_current_stderr() -> None:
    configure("info", "console", stream=CurrentStderr())
