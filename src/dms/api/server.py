"""Serve the REST API from the node's own trio loop (hypercorn's trio worker).

``async with APIServer(app, host, port) as server:`` listens (port 0 picks a free one) and
``server.url`` says where; leaving the block stops accepting, lets requests in flight finish for
up to ``grace_s``, then cancels what is left.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any, Self

import anyio
from anyio.abc import TaskGroup, TaskStatus

from dms.errors import DMSError

DEFAULT_GRACE_S = 2.0


class APIListenFailed(DMSError):
    def __init__(self, address: str, reason: str) -> None:
        super().__init__(
            f"api.host/api.port: cannot listen on {address}: {reason}; "
            "choose another port (dms config set api.port N) or stop what uses it"
        )


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class APIServer:
    def __init__(self, app: Any, host: str, port: int, *, grace_s: float = DEFAULT_GRACE_S) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.grace_s = grace_s
        self.url = ""
        self._stop = anyio.Event()
        self._done = anyio.Event()
        self._task_group: TaskGroup | None = None

    async def __aenter__(self) -> Self:
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            binds: list[str] = await task_group.start(self._serve)
        except BaseException as exc:
            error: BaseException = exc
            task_group.cancel_scope.cancel()
            try:
                await task_group.__aexit__(type(exc), exc, exc.__traceback__)
            except BaseException as combined:
                error = combined
            self._task_group = None
            refused = _find(error, OSError)
            if refused is not None:
                address = bind_address(self.host, self.port)
                raise APIListenFailed(address, refused.strerror or str(refused)) from None
            if error is exc:
                raise
            raise error from None
        self.url = binds[0] if binds else ""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task_group, self._task_group = self._task_group, None
        if task_group is None:
            return
        self._stop.set()
        with anyio.move_on_after(self.grace_s, shield=True):
            await self._done.wait()
        task_group.cancel_scope.cancel()
        await task_group.__aexit__(exc_type, exc, tb)

    async def _serve(self, *, task_status: TaskStatus[list[str]]) -> None:
        from hypercorn.config import Config
        from hypercorn.trio import serve

        config = Config()
        config.bind = [bind_address(self.host, self.port)]
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")
        config.graceful_timeout = self.grace_s
        config.keep_alive_timeout = 30
        try:
            await serve(
                self.app,
                config,
                shutdown_trigger=self._stop.wait,
                task_status=task_status,
            )
        finally:
            self._done.set()


def _find(error: BaseException, kind: type[OSError]) -> OSError | None:
    """``error`` itself or the first of its kind inside (nested) exception groups."""
    if isinstance(error, kind):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _find(inner, kind)
            if found is not None:
                return found
    return None
