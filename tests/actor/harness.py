"""Supervised test children that start, record what happens to them, and exit on command."""

from __future__ import annotations

from collections import Counter

import anyio

from dms.actor.supervisor import ChildContext, ChildSpec, ChildStart, Restart

NS_PER_S = 1_000_000_000


class Worker:
    """Children whose life a test drives: ``fail(id)``, ``finish(id)``; ``log`` tells the story.

    ``live`` holds the ids whose task is running right now: a test that ends with anything in
    it has leaked a task.
    """

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []
        self.live: set[str] = set()
        self.incarnations: Counter[str] = Counter()
        self._commands: dict[str, str] = {}
        self._changed: dict[str, anyio.Event] = {}

    def spec(
        self,
        id: str,
        restart: Restart = Restart.PERMANENT,
        *,
        shutdown_ns: int = NS_PER_S,
        graceful: bool = False,
        stubborn: bool = False,
    ) -> ChildSpec:
        return ChildSpec(
            id=id,
            start=self.start(id, graceful=graceful, stubborn=stubborn),
            restart=restart,
            shutdown_ns=shutdown_ns,
        )

    def start(self, id: str, *, graceful: bool = False, stubborn: bool = False) -> ChildStart:
        """A start function; ``graceful`` registers a stop callback that ``stubborn`` ignores."""

        async def run(context: ChildContext) -> None:
            self.incarnations[id] += 1
            self._commands.pop(id, None)
            self.live.add(id)
            self.log.append(("start", id))
            if graceful:
                context.on_stop(lambda: None if stubborn else self._command(id, "stop"))
            context.started()
            try:
                while (command := self._commands.pop(id, None)) is None:
                    event = self._changed[id] = anyio.Event()
                    await event.wait()
                if command == "fail":
                    raise RuntimeError(f"{id} failed")
            finally:
                self.live.discard(id)
                self.log.append(("stop", id))

        return run

    def _command(self, id: str, command: str) -> None:
        self._commands[id] = command
        event = self._changed.get(id)
        if event is not None:
            event.set()

    async def fail(self, id: str) -> None:
        self._command(id, "fail")
        await anyio.wait_all_tasks_blocked()

    async def finish(self, id: str) -> None:
        self._command(id, "finish")
        await anyio.wait_all_tasks_blocked()

    def take_log(self) -> list[tuple[str, str]]:
        log, self.log = self.log, []
        return log
