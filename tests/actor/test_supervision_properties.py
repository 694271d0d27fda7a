"""Property: random supervision trees under random failures never leak a task and never
restart past their intensity without escalating."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import anyio
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from dms.actor.errors import RestartIntensityExceeded
from dms.actor.supervisor import (
    ChildSpec,
    EventKind,
    Restart,
    Supervisor,
    SupervisorEvent,
    SupervisorStrategy,
)
from dms.clock import LoopClock
from tests.actor.harness import NS_PER_S, Worker

STRATEGIES = [
    SupervisorStrategy.ONE_FOR_ONE,
    SupervisorStrategy.ONE_FOR_ALL,
    SupervisorStrategy.REST_FOR_ONE,
]


@dataclass(frozen=True)
class WorkerNode:
    name: str
    restart: Restart


@dataclass(frozen=True)
class SupervisorNode:
    name: str
    strategy: SupervisorStrategy
    intensity: int
    period_s: int
    restart: Restart
    children: tuple[WorkerNode | SupervisorNode, ...]


def trees() -> st.SearchStrategy[SupervisorNode]:
    counter = iter(range(10**9))

    def worker() -> st.SearchStrategy[WorkerNode]:
        return st.builds(
            lambda restart: WorkerNode(f"w{next(counter)}", restart), st.sampled_from(Restart)
        )

    def supervisor(
        children: st.SearchStrategy[tuple[WorkerNode | SupervisorNode, ...]],
    ) -> st.SearchStrategy[SupervisorNode]:
        return st.builds(
            lambda strategy, intensity, period, restart, kids: SupervisorNode(
                f"s{next(counter)}", strategy, intensity, period, restart, kids
            ),
            st.sampled_from(STRATEGIES),
            st.integers(0, 3),
            st.integers(1, 10),
            st.sampled_from([Restart.PERMANENT, Restart.TRANSIENT]),
            children,
        )

    leaves = st.lists(worker(), min_size=1, max_size=4).map(tuple)
    level = supervisor(leaves)
    mixed = st.lists(st.one_of(worker(), level), min_size=1, max_size=4).map(tuple)
    return supervisor(
        st.lists(st.one_of(worker(), supervisor(mixed)), min_size=1, max_size=4).map(tuple)
    )


def workers_of(node: SupervisorNode) -> list[str]:
    names: list[str] = []
    for child in node.children:
        names.extend([child.name] if isinstance(child, WorkerNode) else workers_of(child))
    return names


def intensities(node: SupervisorNode) -> dict[str, tuple[int, int]]:
    found = {node.name: (node.intensity, node.period_s * NS_PER_S)}
    for child in node.children:
        if isinstance(child, SupervisorNode):
            found.update(intensities(child))
    return found


def build(node: SupervisorNode, worker: Worker, clock: LoopClock, observer: object) -> Supervisor:
    specs: list[ChildSpec] = []
    for child in node.children:
        if isinstance(child, WorkerNode):
            specs.append(worker.spec(child.name, child.restart))
        else:

            def factory(child: SupervisorNode = child) -> Supervisor:
                return build(child, worker, clock, observer)

            specs.append(ChildSpec.of(child.name, factory, restart=child.restart))
    return Supervisor(
        node.name,
        specs,
        strategy=node.strategy,
        intensity=node.intensity,
        period_ns=node.period_s * NS_PER_S,
        clock=clock,
        observer=observer,  # type: ignore[arg-type]
    )


def check_intensity(events: list[SupervisorEvent], limits: dict[str, tuple[int, int]]) -> None:
    """Replay each supervisor's restart decisions through the OTP rule."""
    windows: dict[str, deque[int]] = {}
    for event in events:
        if event.kind is EventKind.STARTED and event.child in limits:
            windows[event.child] = deque()  # a fresh incarnation of that supervisor
        decision = event.kind is EventKind.ESCALATED or (
            event.kind is EventKind.RESTARTING and event.exit is not None
        )
        if not decision:
            continue
        intensity, period = limits[event.supervisor]
        window = windows.setdefault(event.supervisor, deque())
        window.append(event.at_ns)
        while window and event.at_ns - window[0] > period:
            window.popleft()
        exceeded = len(window) > intensity
        assert exceeded == (event.kind is EventKind.ESCALATED), (event, list(window))
        if exceeded:
            windows[event.supervisor] = deque([-(10**18)] * (intensity + 1))


actions = st.lists(
    st.tuples(
        st.integers(0, 4000).map(lambda ms: ms / 1000),
        st.integers(0, 63),
        st.sampled_from(["fail", "fail", "finish"]),
    ),
    min_size=5,
    max_size=30,
)


class TestSupervisionProperties:
    """Random trees, random failures: no orphaned task, intensity never silently exceeded."""

    @settings(max_examples=100, deadline=None)
    @given(tree=trees(), script=actions)
    def test_no_orphans_and_no_unescalated_excess(
        self, tree: SupervisorNode, script: list[tuple[float, int, str]]
    ) -> None:
        worker = Worker()
        events: list[SupervisorEvent] = []
        names = workers_of(tree)
        outcome: list[str] = []

        async def main() -> None:
            clock = LoopClock()
            root = build(tree, worker, clock, events.append)

            async def drive() -> None:
                await anyio.wait_all_tasks_blocked()
                for delay, index, action in script:
                    await anyio.sleep(delay)
                    name = names[index % len(names)]
                    if name in worker.live:
                        await (worker.fail(name) if action == "fail" else worker.finish(name))
                await root.stop()

            async with anyio.create_task_group() as tg:
                tg.start_soon(drive)
                try:
                    await root.run()
                    outcome.append("stopped")
                except RestartIntensityExceeded:
                    outcome.append("escalated")
                tg.cancel_scope.cancel()
            assert worker.live == set(), f"orphaned tasks: {worker.live}"

        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
        assert outcome in (["stopped"], ["escalated"])
        check_intensity(events, intensities(tree))
        escalated_root = any(
            e.kind is EventKind.ESCALATED and e.supervisor == tree.name for e in events
        )
        assert escalated_root == (outcome == ["escalated"])
