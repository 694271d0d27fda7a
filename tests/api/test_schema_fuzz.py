"""The REST API checked against its own OpenAPI document with generated requests (Schemathesis).

A real node (in-memory network, orchestrator when this build has one) serves from a background
thread; Schemathesis sends requests built from the document, valid and not, with the bearer
token, and checks every answer: never a 5xx, status codes, content types and bodies as
documented, malformed input refused. One check is left out: "schema-valid data is accepted".
The node validates more than a schema can say (a RAM share between 10% and 90% of the machine,
an ensemble that parses), and refuses such input with 422. Bounded by ``max_examples`` per
operation and mode (a few hundred requests in all).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from tests.node.harness import running_node

MAX_EXAMPLES = 30


class ServerThread:
    """A node running its own trio loop in a thread, until ``stop``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._ready: queue.Queue[tuple[str, str] | BaseException] = queue.Queue()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        try:
            async with running_node(self.root, orchestrator=True) as node:
                self._ready.put((node.api_url, node.token))
                await self._stop.wait()
        except BaseException as exc:
            self._ready.put(exc)
            raise

    def start(self) -> tuple[str, str]:
        self._thread.start()
        found = self._ready.get(timeout=60)
        if isinstance(found, BaseException):
            raise found
        return found

    def stop(self) -> None:
        if self._token is not None and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(timeout=30)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    server = ServerThread(tmp_path_factory.mktemp("fuzz"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_server_errors_and_answers_as_documented(served: tuple[str, str], mode: str) -> None:
    url, token = served
    schema = schemathesis.openapi.from_url(f"{url}/api/v1/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    generation = GenerationMode(mode)
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=generation))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        try:
            check()
        except Unsatisfiable:
            # No negative case exists for an operation without parameters or body.
            assert generation is GenerationMode.NEGATIVE
            continue
        checked += 1
    assert checked >= (15 if generation is GenerationMode.POSITIVE else 8)
