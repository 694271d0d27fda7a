"""The small parts on their own: rate limiter, mailbox, deadlines, clocks, the Authorizer seam."""

from __future__ import annotations

import anyio
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from dms.actor import (
    ActorStopped,
    AllowList,
    Mailbox,
    Rate,
    RateLimited,
    RateLimiter,
    RateLimitPolicy,
    RemoteError,
    RestartIntensityExceeded,
)
from dms.actor.deadline import Deadlines
from dms.clock import Clock, LoopClock, ManualClock, RealClock
from dms.network.memory import Fabric
from dms.security import KeyPair, TrustContext, Unauthorized
from tests.actor.actors import Echo, Ping, Pong, system

NS_PER_S = 1_000_000_000


class TestRateLimiter:
    """Token buckets per (sender, class): bursts, refill, independence."""

    def test_a_burst_passes_then_the_rate_applies(self) -> None:
        limiter = RateLimiter(RateLimitPolicy(default=Rate(per_s=2.0, burst=3)))
        for _ in range(3):
            limiter.check("a", "default", 0)
        with pytest.raises(RateLimited, match="at most 2 messages/s with bursts of 3"):
            limiter.check("a", "default", 0)
        limiter.check("a", "default", NS_PER_S // 2)  # half a second refills one token
        with pytest.raises(RateLimited):
            limiter.check("a", "default", NS_PER_S // 2)

    def test_senders_and_classes_have_separate_budgets(self) -> None:
        policy = RateLimitPolicy(default=Rate(1.0, 1), classes={"bulk": Rate(1.0, 2)})
        limiter = RateLimiter(policy)
        limiter.check("a", "default", 0)
        limiter.check("b", "default", 0)
        limiter.check("a", "bulk", 0)
        limiter.check("a", "bulk", 0)
        with pytest.raises(RateLimited, match="'bulk'"):
            limiter.check("a", "bulk", 0)

    def test_a_clock_stepping_back_refills_nothing(self) -> None:
        limiter = RateLimiter(RateLimitPolicy(default=Rate(1.0, 1)))
        limiter.check("a", "default", 10 * NS_PER_S)
        with pytest.raises(RateLimited):
            limiter.check("a", "default", 0)

    def test_the_number_of_buckets_is_bounded(self) -> None:
        limiter = RateLimiter(RateLimitPolicy(max_buckets=100))
        for i in range(1000):
            limiter.check(f"sender-{i}", "default", 0)
        assert len(limiter) <= 100

    @pytest.mark.parametrize(
        ("per_s", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)], ids=["zero", "negative", "no-burst"]
    )
    def test_a_rate_that_could_never_pass_is_refused(self, per_s: float, burst: int) -> None:
        with pytest.raises(ValueError, match="accepted: per_s > 0, burst >= 1"):
            Rate(per_s, burst)

    @given(
        per_s=st.integers(1, 1000),
        burst=st.integers(1, 50),
        gaps=st.lists(st.integers(0, NS_PER_S // 10), min_size=1, max_size=300),
    )
    def test_never_more_than_burst_plus_rate_times_elapsed(
        self, per_s: int, burst: int, gaps: list[int]
    ) -> None:
        limiter = RateLimiter(RateLimitPolicy(default=Rate(float(per_s), burst)))
        now = 0
        accepted = 0
        for gap in gaps:
            now += gap
            try:
                limiter.check("a", "default", now)
                accepted += 1
            except RateLimited:
                pass
        assert accepted <= burst + per_s * now / NS_PER_S + 1e-6


class TestMailbox:
    """Bounded, batch-drained, and closing hands back what was queued."""

    async def test_push_refuses_when_full_and_put_waits_for_room(self) -> None:
        mailbox: Mailbox[int] = Mailbox("m", capacity=2)
        assert mailbox.push(1) and mailbox.push(2) and not mailbox.push(3)
        async with anyio.create_task_group() as tg:
            tg.start_soon(mailbox.put, 3)
            await anyio.wait_all_tasks_blocked()
            assert list(mailbox.items) == [1, 2]
            mailbox.items.popleft()
            mailbox.drained()
        assert list(mailbox.items) == [2, 3]
        assert mailbox.max_depth == 2

    async def test_closing_returns_the_queue_and_refuses_waiting_senders(self) -> None:
        mailbox: Mailbox[int] = Mailbox("m", capacity=1)
        mailbox.push(1)
        with pytest.RaisesGroup(ActorStopped):
            async with anyio.create_task_group() as tg:
                tg.start_soon(mailbox.put, 2)
                await anyio.wait_all_tasks_blocked()
                assert mailbox.close() == [1]
        assert not mailbox.push(3)


class TestDeadlines:
    """One timer fails each slot at its own deadline, whatever the mix of timeouts."""

    async def test_slots_fail_at_their_deadlines_and_discarded_ones_never(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        deadlines = Deadlines()
        failed: list[tuple[str, float]] = []

        class Slot:
            def __init__(self, name: str) -> None:
                self.name = name

            def fail(self, error: BaseException) -> None:
                failed.append((self.name, trio.current_time()))

        async with anyio.create_task_group() as tg:
            tg.start_soon(deadlines.run)
            long, short, kept = Slot("long"), Slot("short"), Slot("kept")
            deadlines.add(long, 5.0, lambda: TimeoutError())
            deadlines.add(short, 2.0, lambda: TimeoutError())
            deadlines.add(kept, 1.0, lambda: TimeoutError())
            deadlines.discard(kept, 1.0)
            await anyio.sleep(10)
            tg.cancel_scope.cancel()
        assert failed == [("short", 2.0), ("long", 5.0)]
        assert len(deadlines) == 0


class TestClocks:
    """Three clocks behind one protocol."""

    def test_every_clock_satisfies_the_protocol(self) -> None:
        assert all(isinstance(c, Clock) for c in (RealClock(), LoopClock(), ManualClock()))

    async def test_a_loop_clock_moves_with_virtual_time(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        clock = LoopClock(epoch_ns=0)
        before = clock.now_ns()
        await clock.sleep(3)
        assert clock.now_ns() - before == 3 * NS_PER_S
        assert clock.monotonic_ns() == clock.now_ns()

    async def test_a_manual_clock_moves_only_when_told(self) -> None:
        clock = ManualClock(now_ns=100)
        await clock.sleep(1)
        assert (clock.now_ns(), clock.monotonic_ns()) == (100 + NS_PER_S, NS_PER_S)
        with pytest.raises(ValueError, match="only moves forward"):
            clock.advance(-1)


class TestAuthorizerSeam:
    """The trust context is the default; any Authorizer plugs in."""

    async def test_the_default_authorizer_is_a_trust_context_for_the_nodes_key(self) -> None:
        fabric = Fabric()
        async with system(fabric, "a") as a, system(fabric, "b") as b:
            assert isinstance(b.authorizer, TrustContext)
            echo = await b.spawn(Echo, "echo")
            with pytest.raises(RemoteError) as caught:
                await a.invoke(echo, "/test/echo", Ping(1), Pong)
            assert caught.value.error_type == "Unauthorized"
            assert await b.invoke(echo, "/test/echo", Ping(1), Pong) == Pong(1)

    async def test_an_allow_list_decides_instead_of_the_trust_context(self) -> None:
        key = KeyPair.generate()
        allow = AllowList()
        async with system(Fabric(), "a", keypair=key, trust=allow) as node:
            echo = await node.spawn(Echo, "echo")
            with pytest.raises(Unauthorized, match="not on the allow list"):
                await node.invoke(echo, "/test/echo", Ping(1), Pong)
            allow.allow(key.did, "/test/echo")
            assert await node.invoke(echo, "/test/echo", Ping(2), Pong) == Pong(2)
            assert allow.calls[-1] == (key.did, "invoke", "/test/echo")


class TestEscalationToTheSystem:
    """When the root supervisor gives up, the actor system's block fails with the reason."""

    async def test_a_root_escalation_ends_the_system_with_the_reason(self) -> None:
        with pytest.RaisesGroup(
            pytest.RaisesExc(RestartIntensityExceeded, match="supervisor 'root'"),
            flatten_subgroups=True,
        ):
            async with system(Fabric(), "a") as node:
                echo = await node.spawn(Echo, "echo")
                await node.send(echo, "/test/crash", Ping(1))
                await anyio.wait_all_tasks_blocked()
                await node.send(echo, "/test/crash", Ping(2))
                await anyio.sleep_forever()
