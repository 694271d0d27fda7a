"""Supervision against Erlang/OTP semantics, child by child, on virtual time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
import trio
import trio.testing

from dms.actor.errors import ChildStartFailed, RestartIntensityExceeded, SupervisorError
from dms.actor.supervisor import (
    ChildContext,
    ChildSpec,
    ChildState,
    ChildTemplate,
    EventKind,
    ExitKind,
    Restart,
    Supervisor,
    SupervisorEvent,
    SupervisorState,
    SupervisorStrategy,
)
from dms.clock import LoopClock
from tests.actor.harness import NS_PER_S, Worker

ONE_FOR_ONE = SupervisorStrategy.ONE_FOR_ONE
ONE_FOR_ALL = SupervisorStrategy.ONE_FOR_ALL
REST_FOR_ONE = SupervisorStrategy.REST_FOR_ONE
SIMPLE = SupervisorStrategy.SIMPLE_ONE_FOR_ONE


@asynccontextmanager
async def running(supervisor: Supervisor) -> AsyncIterator[Supervisor]:
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        yield supervisor
        await supervisor.stop()


def abc(worker: Worker, strategy: SupervisorStrategy, **kw: object) -> Supervisor:
    return Supervisor(
        "sup",
        [worker.spec("a"), worker.spec("b"), worker.spec("c")],
        strategy=strategy,
        intensity=10,
        clock=LoopClock(),
        **kw,  # type: ignore[arg-type]
    )


class TestStrategies:
    """Which children stop and restart, and in which order, when one fails."""

    async def test_children_start_in_order_and_stop_in_reverse_order(self) -> None:
        worker = Worker()
        async with running(abc(worker, ONE_FOR_ONE)):
            assert worker.take_log() == [("start", "a"), ("start", "b"), ("start", "c")]
        assert worker.take_log() == [("stop", "c"), ("stop", "b"), ("stop", "a")]
        assert worker.live == set()

    async def test_one_for_one_restarts_only_the_failed_child(self) -> None:
        worker = Worker()
        async with running(abc(worker, ONE_FOR_ONE)):
            worker.take_log()
            await worker.fail("b")
            assert worker.take_log() == [("stop", "b"), ("start", "b")]
            assert worker.incarnations == {"a": 1, "b": 2, "c": 1}

    async def test_one_for_all_stops_the_others_in_reverse_order_then_restarts_all(self) -> None:
        worker = Worker()
        async with running(abc(worker, ONE_FOR_ALL)):
            worker.take_log()
            await worker.fail("b")
            assert worker.take_log() == [
                ("stop", "b"),
                ("stop", "c"),
                ("stop", "a"),
                ("start", "a"),
                ("start", "b"),
                ("start", "c"),
            ]
            assert worker.incarnations == {"a": 2, "b": 2, "c": 2}

    async def test_rest_for_one_restarts_the_failed_child_and_those_started_after_it(
        self,
    ) -> None:
        worker = Worker()
        async with running(abc(worker, REST_FOR_ONE)):
            worker.take_log()
            await worker.fail("b")
            assert worker.take_log() == [
                ("stop", "b"),
                ("stop", "c"),
                ("start", "b"),
                ("start", "c"),
            ]
            assert worker.incarnations == {"a": 1, "b": 2, "c": 2}

    async def test_rest_for_one_on_the_last_child_restarts_only_it(self) -> None:
        worker = Worker()
        async with running(abc(worker, REST_FOR_ONE)):
            worker.take_log()
            await worker.fail("c")
            assert worker.take_log() == [("stop", "c"), ("start", "c")]

    async def test_simple_one_for_one_runs_dynamic_children_of_one_template(self) -> None:
        worker = Worker()
        template = ChildTemplate(id="job", factory=lambda name: worker.start(name))
        supervisor = Supervisor("pool", strategy=SIMPLE, template=template, intensity=10)
        async with running(supervisor):
            ids = [await supervisor.start_instance(name) for name in ("x", "y", "z")]
            assert ids == ["job-1", "job-2", "job-3"]
            worker.take_log()
            await worker.fail("y")
            assert worker.take_log() == [("stop", "y"), ("start", "y")]
            with pytest.raises(SupervisorError, match="use start_instance"):
                await supervisor.start_child(worker.spec("w"))
        assert worker.take_log() == [("stop", "z"), ("stop", "y"), ("stop", "x")]

    async def test_a_temporary_sibling_stopped_by_one_for_all_is_not_restarted(self) -> None:
        worker = Worker()
        supervisor = Supervisor(
            "sup",
            [worker.spec("a"), worker.spec("t", Restart.TEMPORARY), worker.spec("c")],
            strategy=ONE_FOR_ALL,
            intensity=10,
        )
        async with running(supervisor):
            await worker.fail("a")
            assert [cid for cid, _ in supervisor.which_children()] == ["a", "c"]
            assert worker.incarnations == {"a": 2, "t": 1, "c": 2}


class TestRestartTypes:
    """Permanent always comes back, transient only after a failure, temporary never."""

    @pytest.mark.parametrize(
        ("restart", "how", "restarted", "kept"),
        [
            (Restart.PERMANENT, "fail", True, True),
            (Restart.PERMANENT, "finish", True, True),
            (Restart.TRANSIENT, "fail", True, True),
            (Restart.TRANSIENT, "finish", False, True),
            (Restart.TEMPORARY, "fail", False, False),
            (Restart.TEMPORARY, "finish", False, False),
        ],
        ids=[
            "permanent-failure",
            "permanent-normal",
            "transient-failure",
            "transient-normal",
            "temporary-failure",
            "temporary-normal",
        ],
    )
    async def test_restart_type_decides(
        self, restart: Restart, how: str, restarted: bool, kept: bool
    ) -> None:
        worker = Worker()
        supervisor = Supervisor("sup", [worker.spec("a", restart), worker.spec("b")], intensity=10)
        async with running(supervisor):
            await (worker.fail("a") if how == "fail" else worker.finish("a"))
            assert worker.incarnations["a"] == (2 if restarted else 1)
            assert worker.incarnations["b"] == 1
            assert ("a" in dict(supervisor.which_children())) is kept

    async def test_a_transient_child_that_ended_normally_is_restarted_by_one_for_all(
        self,
    ) -> None:
        worker = Worker()
        supervisor = Supervisor(
            "sup",
            [worker.spec("a", Restart.TRANSIENT), worker.spec("b")],
            strategy=ONE_FOR_ALL,
            intensity=10,
        )
        async with running(supervisor):
            await worker.finish("a")
            assert dict(supervisor.which_children())["a"] is ChildState.STOPPED
            await worker.fail("b")
            assert dict(supervisor.which_children()) == {
                "a": ChildState.RUNNING,
                "b": ChildState.RUNNING,
            }


class TestIntensity:
    """More than `intensity` restarts within `period` stops the children and escalates."""

    async def test_the_default_allows_one_restart_in_five_seconds(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        worker = Worker()
        supervisor = Supervisor("sup", [worker.spec("a"), worker.spec("b")], clock=LoopClock())
        assert (supervisor.intensity, supervisor.period_ns) == (1, 5 * NS_PER_S)

        async def fail_twice() -> None:
            await anyio.wait_all_tasks_blocked()
            await worker.fail("a")
            assert worker.incarnations["a"] == 2
            await anyio.sleep(4.9)
            await worker.fail("a")

        async with anyio.create_task_group() as tg:
            tg.start_soon(fail_twice)
            with pytest.raises(RestartIntensityExceeded, match="2 restarts within 5 s"):
                await supervisor.run()
        assert worker.live == set()
        # "a" stopped by failing; the supervisor then stopped "b" before giving up.
        assert worker.log[-2:] == [("stop", "a"), ("stop", "b")]
        stats = supervisor.statistics()
        assert (stats.state, stats.restarts, stats.escalations) == ("stopped", 1, 1)

    async def test_restarts_spread_wider_than_the_period_are_allowed(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        worker = Worker()
        supervisor = Supervisor("sup", [worker.spec("a")], clock=LoopClock())
        async with running(supervisor):
            for _ in range(5):
                await worker.fail("a")
                await anyio.sleep(5.1)
            assert worker.incarnations["a"] == 6
            assert supervisor.statistics().restarts == 5

    async def test_an_escalation_is_a_failure_the_parent_restarts(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        worker = Worker()
        clock = LoopClock()
        events: list[SupervisorEvent] = []

        def inner() -> Supervisor:
            return Supervisor("inner", [worker.spec("a")], clock=clock, observer=events.append)

        outer = Supervisor(
            "outer",
            [ChildSpec.of("inner", inner), worker.spec("z")],
            clock=clock,
            observer=events.append,
        )
        async with running(outer):
            await worker.fail("a")
            await worker.fail("a")
            assert worker.incarnations == {"a": 3, "z": 1}
            stats = outer.statistics()
            assert stats.failures == {"RestartIntensityExceeded": 1}
            inner_stats = stats.children[0].supervisor
            assert inner_stats is not None and inner_stats.restarts == 0
        escalations = [e for e in events if e.kind is EventKind.ESCALATED]
        assert [(e.supervisor, e.child) for e in escalations] == [("inner", "a")]

    async def test_intensity_zero_escalates_on_the_first_failure(self) -> None:
        worker = Worker()
        supervisor = Supervisor("sup", [worker.spec("a")], intensity=0)

        async def fail() -> None:
            await anyio.wait_all_tasks_blocked()
            await worker.fail("a")

        async with anyio.create_task_group() as tg:
            tg.start_soon(fail)
            with pytest.raises(RestartIntensityExceeded):
                await supervisor.run()


class TestShutdown:
    """Reverse order; graceful children get their shutdown time, then are killed."""

    async def test_a_child_that_ignores_its_stop_request_is_killed_after_its_timeout(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        worker = Worker()
        events: list[SupervisorEvent] = []
        supervisor = Supervisor(
            "sup",
            [
                worker.spec("polite", graceful=True, shutdown_ns=3 * NS_PER_S),
                worker.spec("stubborn", graceful=True, stubborn=True, shutdown_ns=2 * NS_PER_S),
            ],
            observer=events.append,
        )
        async with running(supervisor):
            start = trio.current_time()
        assert trio.current_time() - start == pytest.approx(2.0)
        exits = [(e.child, e.exit) for e in events if e.kind is EventKind.EXITED]
        assert exits == [("stubborn", ExitKind.KILLED), ("polite", ExitKind.SHUTDOWN)]

    async def test_a_plain_task_is_cancelled_at_once(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        supervisor = Supervisor("sup", [ChildSpec.task("sleeper", anyio.sleep_forever)])
        async with running(supervisor):
            start = trio.current_time()
        assert trio.current_time() == start
        assert supervisor.state is SupervisorState.STOPPED

    async def test_terminate_child_stops_and_forgets_it(self) -> None:
        worker = Worker()
        supervisor = Supervisor("sup", [worker.spec("a"), worker.spec("b")])
        async with running(supervisor):
            await supervisor.terminate_child("a")
            assert supervisor.which_children() == [("b", ChildState.RUNNING)]
            assert worker.live == {"b"}


class TestStarting:
    """Start failures stop what was started; dynamic children join the start order."""

    async def test_a_child_failing_to_start_stops_the_earlier_ones_and_fails_the_start(
        self,
    ) -> None:
        worker = Worker()

        async def broken(context: ChildContext) -> None:
            raise OSError("port in use")

        supervisor = Supervisor("sup", [worker.spec("a"), ChildSpec("b", broken), worker.spec("c")])
        with pytest.raises(ChildStartFailed, match="child 'b' failed to start: OSError"):
            await supervisor.run()
        assert worker.log == [("start", "a"), ("stop", "a")]

    async def test_a_dynamic_child_is_stopped_first(self) -> None:
        worker = Worker()
        supervisor = Supervisor("sup", [worker.spec("a")])
        async with running(supervisor):
            await supervisor.start_child(worker.spec("late"))
            with pytest.raises(SupervisorError, match="already has a child 'late'"):
                await supervisor.start_child(worker.spec("late"))
            worker.take_log()
        assert worker.take_log() == [("stop", "late"), ("stop", "a")]

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"strategy": SIMPLE}, "takes a template"),
            ({"intensity": -1}, "intensity >= 0"),
            ({"period_ns": 0}, "period_ns > 0"),
        ],
        ids=["simple-without-template", "negative-intensity", "empty-period"],
    )
    def test_bad_settings_are_refused(self, kwargs: dict[str, object], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            Supervisor("sup", **kwargs)  # type: ignore[arg-type]


class TestStatistics:
    """Starts, restarts, failures by reason, last failure and uptime, per child and in total."""

    async def test_statistics_count_what_happened(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        worker = Worker()
        supervisor = Supervisor("sup", [worker.spec("a"), worker.spec("b")], clock=LoopClock())
        async with running(supervisor):
            await anyio.sleep(10)
            await worker.fail("a")
            await anyio.sleep(3)
            stats = supervisor.statistics()
        a, b = stats.children
        assert (a.starts, a.restarts, a.failures) == (2, 1, {"RuntimeError": 1})
        assert a.last_failure is not None and a.last_failure.message == "a failed"
        assert a.uptime_ns == 3 * NS_PER_S
        assert (b.starts, b.restarts, b.uptime_ns) == (1, 0, 13 * NS_PER_S)
        assert (stats.restarts, stats.failures, stats.uptime_ns) == (
            1,
            {"RuntimeError": 1},
            13 * NS_PER_S,
        )
