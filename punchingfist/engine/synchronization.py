"""Semaphores shared by the runs of one process, with Argo's queueing rule.

Each key has a size and a queue of the runs that want it, in the order they asked
(`Semaphores.enqueue`). A run starts when it is first in the queue of every key it wants and
each of those keys has a free slot; it then holds one slot of each until `release`. Like
Argo's ConfigMap semaphores, the first run waiting for a key holds up the runs behind it on
that key even when they want no other key that is full (docs/synchronization.md, "Multiple
locks"), so runs start strictly in order. A ticket enqueued `ahead` (a run about a critical
alert, OperatorConfig concurrency `criticalBypass`) takes its place before every ticket that is
not, so waiting runs never hold it up on a key it shares with them (the executor's own).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from punchingfist.errors import PunchingFistError


class UnknownSemaphore(PunchingFistError):
    """A run wants a key that has no size (Argo fails such a run, too)."""


@dataclass(frozen=True)
class Ticket:
    """One run's place in the queues of its keys."""

    number: int
    name: str
    keys: tuple[str, ...]
    ahead: bool = False


class Semaphores:
    """Sized keys and their queues; thread-safe."""

    def __init__(
        self, sizes: Mapping[str, int], on_waiting: Callable[[int], None] | None = None
    ) -> None:
        self._sizes = dict(sizes)
        self._held: dict[str, int] = dict.fromkeys(self._sizes, 0)
        self._queue: list[Ticket] = []
        self._numbers = itertools.count()
        self._changed = threading.Condition()
        self._on_waiting = on_waiting

    @property
    def waiting(self) -> int:
        """Runs queued and not started."""
        with self._changed:
            return len(self._queue)

    def status(self, key: str) -> str:
        """`held/size` of one key, as Argo's "Lock status" says it."""
        with self._changed:
            return f"{self._held.get(key, 0)}/{self._sizes.get(key, 0)}"

    def enqueue(self, name: str, keys: Iterable[str], *, ahead: bool = False) -> Ticket:
        """Take a place in the queue of each key (now: this fixes the run's turn); `ahead`:
        after the tickets enqueued ahead, before all others."""
        wanted = tuple(dict.fromkeys(keys))
        unknown = [key for key in wanted if key not in self._sizes]
        if unknown:
            raise UnknownSemaphore(
                f"run {name}: semaphore key {unknown[0]!r} has no size (known: "
                + ", ".join(sorted(self._sizes))
                + ")"
            )
        with self._changed:
            ticket = Ticket(next(self._numbers), name, wanted, ahead)
            place = sum(1 for t in self._queue if t.ahead) if ahead else len(self._queue)
            self._queue.insert(place, ticket)
            self._report()
            return ticket

    def acquire(self, ticket: Ticket, timeout: float | None = None) -> bool:
        """Wait for the ticket's turn and a slot of each of its keys; False on timeout."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._may_start(ticket), timeout):
                return False
            self._queue.remove(ticket)
            for key in ticket.keys:
                self._held[key] += 1
            self._report()
            self._changed.notify_all()
            return True

    def cancel(self, ticket: Ticket) -> None:
        """Leave the queues without having started."""
        with self._changed:
            if ticket in self._queue:
                self._queue.remove(ticket)
                self._report()
                self._changed.notify_all()

    def release(self, ticket: Ticket) -> None:
        """Give back the slots of a ticket that started."""
        with self._changed:
            for key in ticket.keys:
                self._held[key] -= 1
            self._changed.notify_all()

    def _may_start(self, ticket: Ticket) -> bool:
        for key in ticket.keys:
            first = next(t for t in self._queue if key in t.keys)
            if first is not ticket or self._held[key] >= self._sizes[key]:
                return False
        return True

    def _report(self) -> None:
        if self._on_waiting is not None:
            self._on_waiting(len(self._queue))
