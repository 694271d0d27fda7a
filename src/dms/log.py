"""Logger set-up: structlog, readable console output by default, JSON lines on request.

Configuration is passed in once by whoever starts the process (the CLI or a test); components
take a bound logger (``log = get_logger(node=..., deployment=...)``) and add context with
``log.bind(allocation=...)``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog

LogFormat = Literal["console", "json"]
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class _Stderr:
    """Whatever ``sys.stderr`` is when a line is written: it may be replaced after set-up
    (a test's capture, say) and the one in place at set-up time closed."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure(
    level: str = "info", fmt: LogFormat = "console", stream: TextIO | None = None
) -> None:
    """Configure structlog (and the stdlib root logger, for libraries) for this process."""
    out: Any = stream if stream is not None else _Stderr()
    numeric = _LEVELS.get(level, logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries (libp2p, hypercorn) log through the stdlib: keep them quieter than us.
    logging.basicConfig(
        level=max(numeric, logging.WARNING),
        stream=out,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def get_logger(**context: Any) -> structlog.typing.FilteringBoundLogger:
    """A logger with bound context (node, deployment, allocation ids)."""
    # A lazy proxy: a logger made at import time still follows a later configure().
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(**context)
    return logger
