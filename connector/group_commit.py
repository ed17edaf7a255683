"""Group commit: requests that want to write at the same moment share one transaction.

On SQLite one writer holds the database at a time. Under the benchmark's intake load each request
waited ~60 ms for that lock (busy_timeout sleeps in `BEGIN IMMEDIATE`) while each holder kept it
~6 ms, mostly waiting for the GIL between its ten statements: about 170 handoffs a second, however
many threads or workers. Here the first request to arrive becomes the *leader*: it writes what is
queued (its own item and those of requests that arrived meanwhile) in one call of `write`, and the
others wait for their result. A request alone writes its own item at once, on its own thread, so
the quiet path pays one uncontended lock and no hand-off.

`write(items)` returns one result per item, in order; a result that is an exception is raised in
that item's thread. If `write` itself raises, every item of that group gets the exception.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T, R]):
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: T):
        self.item = item
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None

    def outcome(self) -> R:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommit(Generic[T, R]):
    def __init__(self, write: Callable[[list[T]], Sequence[R | BaseException]], max_group: int = 64):
        if max_group < 1:
            raise ValueError("max_group must be at least 1")
        self._write = write
        self.max_group = max_group
        self._cond = threading.Condition()
        self._queue: list[_Slot[T, R]] = []
        self._leading = False

    def __call__(self, item: T) -> R:
        slot: _Slot[T, R] = _Slot(item)
        with self._cond:
            self._queue.append(slot)
        while True:
            with self._cond:
                while self._leading and not slot.done:
                    self._cond.wait()
                if slot.done:
                    return slot.outcome()
                self._leading = True
                group = self._queue[: self.max_group]
                del self._queue[: self.max_group]
            # Our own slot is in this group unless more than `max_group` were queued ahead of
            # it; then the loop leads (or waits for) the next group.
            self._lead(group)

    def _lead(self, group: list[_Slot[T, R]]) -> None:
        try:
            results = self._write([slot.item for slot in group])
            if len(results) != len(group):
                raise RuntimeError(f"group commit: {len(results)} results for {len(group)} items")
            for slot, result in zip(group, results, strict=True):
                if isinstance(result, BaseException):
                    slot.error = result
                else:
                    slot.result = result
        except BaseException as err:  # every waiter must wake up, with the failure
            for slot in group:
                slot.error = err
        finally:
            with self._cond:
                for slot in group:
                    slot.done = True
                self._leading = False
                self._cond.notify_all()
