"""The pools read from (state, expiry, resources) columns equal the pools summed from whole
reservations, whatever happened before."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dms.errors import DMSError
from dms.resources import ledger
from dms.resources.records import Pools, ReservationState
from dms.types import GPU, Resources
from tests.resources.helpers import SECOND, SyncLedger, gpu, machine, need

steps = st.lists(
    st.tuples(
        st.sampled_from(["hold", "commit", "allocate", "release", "release_bid", "wait"]),
        st.integers(min_value=0, max_value=5),
        st.sampled_from([0.25, 0.5, 1.0, 3.0]),
        st.booleans(),
    ),
    max_size=25,
)


def reference(book: SyncLedger) -> Pools:
    """The pools as summed before: every live reservation decoded whole."""

    def read(conn: object) -> Pools:
        now = book.now
        onboarded, draining = ledger.read_pool(conn)  # type: ignore[arg-type]
        counted = [
            r
            for r in ledger.live(conn)  # type: ignore[arg-type]
            if r.expires_ns is None or r.expires_ns > now
        ]

        def total(rows: list[object]) -> Resources:
            out = Resources()
            for r in rows:
                out = out.add(r.resources)  # type: ignore[attr-defined]
            return out

        base = onboarded or Resources()
        used = total(counted)  # type: ignore[arg-type]
        return Pools(
            onboarded=base,
            held=total([r for r in counted if r.state is ReservationState.HELD]),
            committed=total([r for r in counted if r.state is ReservationState.COMMITTED]),
            allocated=total([r for r in counted if r.state is ReservationState.ALLOCATED]),
            free=base.subtract(used),
            is_onboarded=onboarded is not None,
            draining=draining,
        )

    return book.db.query_sync(read)


class TestPoolsReader:
    """Same pools as the whole-row computation after any sequence of operations."""

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(steps)
    def test_pools_equal_the_whole_row_sum(
        self, book: SyncLedger, steps: list[tuple[str, int, float, bool]]
    ) -> None:
        book.db.transact_sync(lambda conn: conn.execute("DELETE FROM reservations"))
        book.onboard(machine(cores=8, gpus=(gpu(0, 40), gpu(1, 80))))
        for op, k, cores, with_gpu in steps:
            gpus = (GPU(vram=8 * 1024**3),) if with_gpu else ()
            with contextlib.suppress(DMSError):
                if op == "hold":
                    book.hold(f"b{k}", need(cores=cores, gpus=gpus), ttl_s=5)
                elif op == "commit":
                    book.commit(f"a{k}", bid=f"b{k}")
                elif op == "allocate":
                    book.allocate(f"a{k}")
                elif op == "release":
                    book.release(f"a{k}")
                elif op == "release_bid":
                    book.release_bid(f"b{k}")
                else:
                    book.clock.advance((1, 2, 5)[k % 3] * SECOND)
            assert book.pools() == reference(book)
