"""Many concurrent callers on one SQLite file: threads, trio tasks and a second process. The
invariant (held + committed + allocated <= onboarded, per dimension and per GPU device) is
checked after every single step by every caller."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
import trio

from dms.clock import ManualClock
from dms.errors import InsufficientResources
from dms.resources import ReservationClosed, ReservationState, ResourceManager
from dms.store import Database
from tests.resources.helpers import SECOND, SyncLedger, always_free, gpu, machine, need
from tests.resources.stress_worker import SHAPES, run_worker

ROOT = Path(__file__).resolve().parents[2]
SMALL_MACHINE = machine(cores=4, ram_gib=8, disk_gib=40, gpus=(gpu(0, 16), gpu(1, 24)))


def onboard(path: Path) -> None:
    with Database(path) as db:
        SyncLedger(db).onboard(SMALL_MACHINE)


def run_threads(path: Path, threads: int, steps: int, shared: bool) -> Counter[str]:
    """``threads`` workers; with ``shared`` half of them share one Database (one connection)."""
    errors: list[BaseException] = []
    totals: Counter[str] = Counter()
    lock = threading.Lock()
    common = Database(path)
    own: list[Database] = []

    def work(index: int) -> None:
        db = common if shared and index % 2 else Database(path)
        if db is not common:
            own.append(db)
        try:
            counts = run_worker(db, seed=index, steps=steps, prefix=f"t{index}")
            with lock:
                totals.update(counts)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for db in (common, *own):
        db.close()
    if errors:
        raise errors[0]
    return totals


class TestThreads:
    """Threads with their own connections, and threads sharing one, contend for one machine."""

    def test_eight_threads_never_overbook(self, tmp_path: Path) -> None:
        path = tmp_path / "dms.sqlite3"
        onboard(path)
        counts = run_threads(path, threads=8, steps=300, shared=True)
        assert counts["checked"] == 8 * 300
        # The machine is small: contention must really have happened for this to mean much.
        assert counts["refused"] > 0 and counts["allocate"] > 0
        with Database(path) as db:
            book = SyncLedger(db)
            assert book.violation() is None
            pools = book.pools()
            assert pools.free.add(pools.used).normalized() == pools.onboarded.normalized()


class TestTrioTasks:
    """Trio tasks race through two ResourceManagers on one file."""

    async def test_racing_tasks_take_exactly_what_fits(self, tmp_path: Path) -> None:
        path = tmp_path / "dms.sqlite3"
        onboard(path)
        clock = ManualClock()
        with Database(path) as first, Database(path) as second:
            managers = [
                ResourceManager(first, clock, probe=always_free),
                ResourceManager(second, clock, probe=always_free),
            ]
            granted: list[str] = []
            refused: list[str] = []

            async def claim(index: int) -> None:
                manager = managers[index % 2]
                allocation = f"a{index}"
                try:
                    await manager.commit(allocation, resources=need(cores=1), ttl_ns=60 * SECOND)
                except InsufficientResources:
                    refused.append(allocation)
                    return
                granted.append(allocation)
                await manager.allocate(allocation)
                assert await manager.invariant_violation() is None

            async with trio.open_nursery() as nursery:
                for index in range(20):
                    nursery.start_soon(claim, index)

            assert len(granted) == 4 and len(refused) == 16  # 4 cores, 1 core each
            allocated = await managers[0].reservations(ReservationState.ALLOCATED)
            assert sorted(r.allocation_id or "" for r in allocated) == sorted(granted)

    async def test_mixed_traffic_from_many_tasks_keeps_the_invariant(self, tmp_path: Path) -> None:
        path = tmp_path / "dms.sqlite3"
        onboard(path)
        clock = ManualClock()
        with Database(path) as db:
            manager = ResourceManager(db, clock, probe=always_free)

            async def traffic(index: int) -> None:
                for step in range(15):
                    allocation = f"t{index}-{step}"
                    try:
                        await manager.hold(allocation, SHAPES[step % len(SHAPES)], SECOND)
                        await manager.commit(allocation, bid_id=allocation, ttl_ns=SECOND)
                        await manager.allocate(allocation)
                    except (InsufficientResources, ReservationClosed):
                        pass  # no room, or the clock moved past the hold or the commit
                    assert await manager.invariant_violation() is None
                    if step % 3 == 0:
                        clock.advance(SECOND // 2)
                    if step % 2 and await manager.reservation(allocation) is not None:
                        await manager.release(allocation)
                    assert await manager.invariant_violation() is None

            async with trio.open_nursery() as nursery:
                for index in range(10):
                    nursery.start_soon(traffic, index)
            assert await manager.invariant_violation() is None


@pytest.mark.slow
class TestProcesses:
    """A second process works the same file while threads here do."""

    def test_a_second_process_and_threads_never_overbook(self, tmp_path: Path) -> None:
        path = tmp_path / "dms.sqlite3"
        onboard(path)
        command = [
            sys.executable,
            "-m",
            "tests.resources.stress_worker",
            str(path),
            "99",
            "300",
            "p",
        ]
        with subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as child:
            counts = run_threads(path, threads=4, steps=150, shared=False)
            out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert "'checked': 300" in out
        assert counts["checked"] == 4 * 150
        with Database(path) as db:
            assert SyncLedger(db).violation() is None
