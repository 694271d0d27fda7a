"""A bounded mailbox drained in batches by one consumer.

Putting never switches tasks while there is room (appending to a deque and, if the consumer
sleeps, setting one event); the consumer drains everything queued in one go. Senders wait for
room when it is full (backpressure). Closing hands back what was still queued so the owner
can fail it, and wakes every waiter.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import anyio

from dms.actor.errors import ActorStopped

T = TypeVar("T")


class Mailbox(Generic[T]):
    __slots__ = ("_nonempty", "_space", "capacity", "closed", "inbox", "items", "max_depth")

    def __init__(self, inbox: str, capacity: int = 1024) -> None:
        if capacity < 1:
            raise ValueError(f"mailbox capacity: {capacity}; accepted: at least 1")
        self.inbox = inbox
        self.capacity = capacity
        self.items: deque[T] = deque()
        self.closed = False
        self.max_depth = 0
        self._nonempty: anyio.Event | None = None
        self._space: anyio.Event | None = None

    def __len__(self) -> int:
        return len(self.items)

    def push(self, item: T) -> bool:
        """Queue ``item`` if there is room (False otherwise, or once closed)."""
        items = self.items
        if len(items) >= self.capacity or self.closed:
            return False
        items.append(item)
        if len(items) > self.max_depth:
            self.max_depth = len(items)
        if self._nonempty is not None:
            self._nonempty.set()
            self._nonempty = None
        return True

    async def put(self, item: T) -> None:
        """Queue ``item``, waiting while the mailbox is full; ActorStopped once closed."""
        items = self.items
        while len(items) >= self.capacity:
            if self.closed:
                raise ActorStopped(self.inbox)
            if self._space is None:
                self._space = anyio.Event()
            await self._space.wait()
        if self.closed:
            raise ActorStopped(self.inbox)
        items.append(item)
        if len(items) > self.max_depth:
            self.max_depth = len(items)
        if self._nonempty is not None:
            self._nonempty.set()
            self._nonempty = None

    async def wait(self) -> None:
        """Until something is queued (or ``wake`` is called)."""
        if self.items or self.closed:
            return
        event = self._nonempty = anyio.Event()
        await event.wait()

    def wake(self) -> None:
        """Wake the consumer even though nothing was queued (to stop it, for instance)."""
        if self._nonempty is not None:
            self._nonempty.set()
            self._nonempty = None

    def drained(self) -> None:
        """The consumer took items: let waiting senders in."""
        if self._space is not None:
            self._space.set()
            self._space = None

    def close(self) -> list[T]:
        """Refuse further items; return those still queued."""
        self.closed = True
        left = list(self.items)
        self.items.clear()
        self.wake()
        self.drained()
        return left
