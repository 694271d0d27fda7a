"""Adverts and bids: what a provider offers, when it bids, and how long a bid holds."""

from __future__ import annotations

import itertools
from pathlib import Path

import anyio
import msgspec
import pytest
import trio
import trio.testing

from dms.actor import RemoteError
from dms.jobs.protocol import BID_REQUEST, BID_REQUEST_TOPIC
from dms.types import (
    CPU,
    GPU,
    Capability,
    Connectivity,
    ExecutorType,
    GPUVendor,
    JobType,
    Location,
    Resources,
)
from tests.jobs.provider.harness import (
    ONBOARD_GPUS,
    PORTS,
    SECOND,
    GiB,
    cluster,
    need,
    price,
)


class TestAdverts:
    """An onboarded provider advertises its free capacity on a schedule."""

    async def test_adverts_come_every_interval_with_a_ttl_of_three_intervals(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path, advert_interval_s=2.0) as c:
            start = trio.current_time()
            await c.recorder.until(lambda: len(c.recorder.adverts) >= 3)
            adverts = c.recorder.adverts
            assert trio.current_time() - start >= 4.0
            assert [a.ttl_ns for a in adverts] == [6 * SECOND] * len(adverts)
            assert all(b.sequence > a.sequence for a, b in itertools.pairwise(adverts))
            first = adverts[0]
            assert first.provider == c.root
            assert first.capability.resources.cpu.cores == 4
            assert first.capability.price.currency_per_hour == 500_000
            assert first.location == Location(continent="EU", country="DE", city="Berlin")
            assert first.capability.executors == (ExecutorType.NULL,)
            assert first.version == "test"

    async def test_the_advert_shows_what_a_bid_holds_as_taken(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            await c.bid(need(cores=3))
            await c.service.advertise_now()
            await c.recorder.until(
                lambda: any(a.capability.resources.cpu.cores == 1 for a in c.recorder.adverts)
            )

    async def test_nothing_is_advertised_while_not_onboarded(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path, onboard=None, advert_interval_s=1.0) as c:
            await anyio.sleep(10)
            assert c.recorder.adverts == []
            assert c.service.adverts == 0

    async def test_nothing_is_advertised_after_offboarding(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path, advert_interval_s=1.0) as c:
            await c.recorder.until(lambda: c.recorder.adverts)
            await c.onboarding.offboard()
            await anyio.sleep(1)
            seen = len(c.recorder.adverts)
            await anyio.sleep(10)
            assert len(c.recorder.adverts) == seen


class TestBids:
    """A bid holds the resources it offers until it expires."""

    async def test_a_bid_holds_its_resources_then_the_hold_expires(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            start = c.provider.clock.now_ns()
            bid = await c.bid(need(cores=3, ram_gib=4), hold_ns=20 * SECOND)
            assert bid.expires_ns == start + 20 * SECOND
            assert bid.provider == c.root
            assert bid.price.currency_per_hour == 500_000
            assert bid.capability.resources.cpu.cores == 1
            pools = await c.manager.pools()
            assert pools.held.cpu.cores == 3 and pools.free.cpu.cores == 1
            second = await c.request(c.bid_request(need(cores=2)))
            assert second.bid is None and second.declined.startswith("resources:")
            await anyio.sleep(21)
            assert await c.free_is_onboarded()
            assert (await c.request(c.bid_request(need(cores=2)))).bid is not None

    async def test_a_repeated_request_gets_the_same_answer_and_holds_nothing_more(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            request = c.bid_request(need(cores=2))
            first = await c.request(request)
            again = await c.request(request)
            assert first == again and first.bid is not None
            assert (await c.manager.pools()).held.cpu.cores == 2

    async def test_a_request_id_reused_for_another_request_is_refused(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            request = c.bid_request(need(cores=1))
            await c.request(request)
            with pytest.raises(RemoteError, match="request_id"):
                await c.request(msgspec.structs.replace(request, node="other"))

    async def test_a_hold_time_of_zero_is_refused_naming_the_field(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            with pytest.raises(RemoteError, match="hold_ns"):
                await c.request(c.bid_request(need(), hold_ns=0))

    async def test_a_bid_never_holds_longer_than_five_minutes(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            start = c.provider.clock.now_ns()
            bid = await c.bid(need(), hold_ns=3600 * SECOND)
            assert bid.expires_ns == start + 300 * SECOND

    async def test_a_broadcast_request_is_answered_by_sending_the_bid(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            request = c.bid_request(need(cores=2))
            await c.orchestrator.publish(BID_REQUEST_TOPIC, BID_REQUEST, request)
            await c.recorder.until(lambda: c.recorder.bids)
            (bid,) = c.recorder.bids
            assert bid.request_id == request.request_id and bid.provider == c.root
            await c.orchestrator.publish(BID_REQUEST_TOPIC, BID_REQUEST, request)
            await anyio.sleep(1)
            assert len(c.recorder.bids) == 1
            assert (await c.manager.pools()).held.cpu.cores == 2

    async def test_a_broadcast_request_that_does_not_fit_gets_no_answer(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            request = c.bid_request(need(cores=64))
            await c.orchestrator.publish(BID_REQUEST_TOPIC, BID_REQUEST, request)
            await anyio.sleep(2)
            assert c.recorder.bids == []
            assert await c.free_is_onboarded()

    async def test_gpus_are_bid_when_onboarded(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path, onboard=ONBOARD_GPUS) as c:
            wanted = Capability(
                executors=(ExecutorType.NULL,),
                resources=Resources(
                    cpu=CPU(cores=1),
                    ram=GiB,
                    gpus=(GPU(vendor=GPUVendor.NVIDIA, model="H100", vram=40 * GiB),),
                ),
            )
            await c.bid(wanted)
            pools = await c.manager.pools()
            assert [(g.uuid, g.vram) for g in pools.held.gpus] == [("GPU-bbb", 40 * GiB)]


DECLINES = [
    pytest.param(need(cores=64), "resources:", id="too-many-cores"),
    pytest.param(need(ram_gib=64), "resources:", id="too-much-ram"),
    pytest.param(
        msgspec.structs.replace(need(), executors=(ExecutorType.DOCKER,)),
        "executors:",
        id="executor-not-here",
    ),
    pytest.param(need(price=price(100_000)), "price:", id="below-the-price-floor"),
    pytest.param(need(price=price(900_000, "USD")), "price:", id="other-currency"),
    pytest.param(need(locality=("US",)), "locality:", id="locality-elsewhere"),
    pytest.param(
        need(connectivity=Connectivity(ports=(PORTS.end + 1,))),
        "connectivity:",
        id="port-outside-range",
    ),
    pytest.param(need(connectivity=Connectivity(vpn=True)), "connectivity:", id="vpn"),
    pytest.param(
        Capability(
            executors=(ExecutorType.NULL,),
            resources=Resources(cpu=CPU(cores=1), gpus=(GPU(vram=GiB),)),
        ),
        "resources:",
        id="no-gpu-onboarded",
    ),
]


class TestDeclines:
    """A request that does not fit is declined, naming the dimension that fails."""

    @pytest.mark.parametrize(("wanted", "dimension"), DECLINES)
    async def test_declines_name_the_failing_dimension(
        self,
        tmp_path: Path,
        autojump_clock: trio.testing.MockClock,
        wanted: Capability,
        dimension: str,
    ) -> None:
        async with cluster(tmp_path) as c:
            reply = await c.request(c.bid_request(wanted))
            assert reply.bid is None
            assert reply.declined.startswith(dimension), reply.declined
            assert await c.free_is_onboarded()

    @pytest.mark.parametrize(
        ("accept", "reject", "fits"),
        [
            pytest.param((Location(continent="EU"),), (), True, id="accepted-continent"),
            pytest.param((Location(continent="US"),), (), False, id="not-accepted"),
            pytest.param((), (Location(continent="EU", country="DE"),), False, id="rejected"),
            pytest.param((), (Location(country="FR"),), True, id="rejected-elsewhere"),
        ],
    )
    async def test_location_accept_and_reject_lists_are_applied(
        self,
        tmp_path: Path,
        autojump_clock: trio.testing.MockClock,
        accept: tuple[Location, ...],
        reject: tuple[Location, ...],
        fits: bool,
    ) -> None:
        async with cluster(tmp_path) as c:
            reply = await c.request(c.bid_request(need(), accept=accept, reject=reject))
            assert (reply.bid is not None) is fits
            if not fits:
                assert reply.declined.startswith("location:")

    async def test_several_failing_dimensions_are_all_named(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            wanted = need(cores=64, price=price(1))
            reply = await c.request(c.bid_request(wanted, accept=(Location(continent="AS"),)))
            assert "resources:" in reply.declined
            assert "price:" in reply.declined
            assert "location:" in reply.declined

    async def test_job_types_not_offered_are_declined(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path, job_types=(JobType.TASK,)) as c:
            wanted = msgspec.structs.replace(need(), job_types=(JobType.SERVICE,))
            reply = await c.request(c.bid_request(wanted))
            assert reply.declined.startswith("job_types:")

    async def test_a_node_that_is_not_onboarded_declines(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path, onboard=None) as c:
            reply = await c.request(c.bid_request(need()))
            assert reply.declined.startswith("onboarding:")

    async def test_a_draining_node_declines(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path) as c:
            await c.manager.db.transact(
                lambda conn: conn.execute("UPDATE onboarded_pool SET draining = 1")
            )
            reply = await c.request(c.bid_request(need()))
            assert reply.declined.startswith("onboarding:")
