"""One stress worker: random reservation traffic on a database file, checking the invariant
after every step. Run in threads by the tests, or as a process:
``python -m tests.resources.stress_worker PATH SEED STEPS PREFIX``."""

from __future__ import annotations

import random
import sys
from collections import Counter
from pathlib import Path

from dms.clock import RealClock
from dms.errors import InsufficientResources
from dms.resources import ReservationClosed, ReservationError
from dms.store import Database
from dms.types import GPU, Resources
from tests.resources.helpers import GiB, SyncLedger, need

SHAPES: tuple[Resources, ...] = (
    need(cores=1, ram_gib=1),
    need(cores=0.5, ram_gib=2, disk_gib=5),
    need(cores=1, ram_gib=1, gpus=(GPU(vram=4 * GiB),)),
    need(cores=0.25, ram_gib=0.5, gpus=(GPU(vram=10 * GiB),)),
)


class InvariantBroken(AssertionError):
    pass


def run_worker(db: Database, seed: int, steps: int, prefix: str) -> Counter[str]:
    """Random holds, commits, allocations and releases; raises InvariantBroken at once."""
    rng = random.Random(seed)
    book = SyncLedger(db, clock=RealClock())  # type: ignore[arg-type]
    counts: Counter[str] = Counter()
    bids: list[str] = []
    committed: list[str] = []
    allocated: list[str] = []
    for step in range(steps):
        choice = rng.random()
        try:
            if choice < 0.35 or not (bids or committed or allocated):
                bid = f"{prefix}-b{step}"
                book.hold(bid, rng.choice(SHAPES), ttl_s=rng.choice((0.05, 60)))
                bids.append(bid)
                counts["hold"] += 1
            elif choice < 0.55 and bids:
                bid = bids.pop(rng.randrange(len(bids)))
                allocation = f"{prefix}-a{step}"
                book.commit(allocation, bid=bid, ttl_s=60)
                committed.append(allocation)
                counts["commit"] += 1
            elif choice < 0.7 and committed:
                allocation = committed.pop(rng.randrange(len(committed)))
                book.allocate(allocation)
                allocated.append(allocation)
                counts["allocate"] += 1
            elif choice < 0.9 and allocated:
                book.release(allocated.pop(rng.randrange(len(allocated))))
                counts["release"] += 1
            elif bids:
                book.release_bid(bids.pop(rng.randrange(len(bids))))
                counts["release_bid"] += 1
        except InsufficientResources:
            counts["refused"] += 1
        except ReservationClosed:
            counts["closed"] += 1
        except ReservationError:
            counts["other"] += 1
        violation = book.violation()
        if violation is not None:
            raise InvariantBroken(f"{prefix} step {step}: {violation}")
        counts["checked"] += 1
    return counts


def main(argv: list[str]) -> int:
    path, seed, steps, prefix = Path(argv[0]), int(argv[1]), int(argv[2]), argv[3]
    with Database(path) as db:
        counts = run_worker(db, seed, steps, prefix)
    print(dict(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
