"""GroupCommit: who writes, what each caller gets back, and that nobody is left waiting."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from connector.group_commit import GroupCommit


class Recorder:
    """A `write` that records its groups; the first call can be held open until released."""

    def __init__(self, hold_first: bool = False):
        self.groups: list[list[int]] = []
        self.callers: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.groups.append(list(items))
        self.callers.append(threading.current_thread().name)
        self.entered.set()
        assert self.release.wait(10)
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


def queued(commit: GroupCommit, n: int) -> None:
    """Wait until `n` callers are queued behind the write in progress."""
    deadline = time.monotonic() + 5
    while len(commit._queue) < n:
        assert time.monotonic() < deadline, f"{len(commit._queue)} of {n} queued"
        time.sleep(0.005)


def test_a_caller_alone_writes_its_own_item_on_its_own_thread():
    write = Recorder()
    commit = GroupCommit(write)
    assert commit(4) == 40
    assert write.groups == [[4]]
    assert write.callers == [threading.current_thread().name]  # no hand-off to another thread


def test_callers_arriving_while_a_group_is_written_share_the_next_write():
    write = Recorder(hold_first=True)
    commit = GroupCommit(write)
    with ThreadPoolExecutor(9) as pool:
        first = pool.submit(commit, 1)
        assert write.entered.wait(5)
        rest = [pool.submit(commit, n) for n in range(2, 10)]
        queued(commit, 8)  # all eight wait behind the open write
        write.release.set()
        assert first.result(5) == 10
        assert [f.result(5) for f in rest] == [n * 10 for n in range(2, 10)]
    assert write.groups[0] == [1]
    assert sorted(write.groups[1]) == list(range(2, 10))  # one write for the eight that waited
    assert len(write.groups) == 2


def test_an_item_s_own_error_reaches_only_its_caller():
    write = Recorder(hold_first=True)
    commit = GroupCommit(write)
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(commit, 1)
        assert write.entered.wait(5)
        bad, good = pool.submit(commit, -1), pool.submit(commit, 2)
        queued(commit, 2)
        write.release.set()
        assert first.result(5) == 10
        assert good.result(5) == 20
        with pytest.raises(ValueError, match="bad -1"):
            bad.result(5)


def test_a_failed_write_fails_every_caller_of_its_group_and_the_next_group_still_runs():
    calls = []

    def write(items):
        calls.append(list(items))
        if len(calls) == 1:
            raise ConnectionError("database gone")
        return items

    commit = GroupCommit(write)
    with pytest.raises(ConnectionError):
        commit("a")
    assert commit("b") == "b"  # the leadership was given back


def test_groups_are_capped_and_every_queued_caller_is_answered():
    write = Recorder(hold_first=True)
    commit = GroupCommit(write, max_group=3)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(commit, 0)
        assert write.entered.wait(5)
        rest = [pool.submit(commit, n) for n in range(1, 8)]
        queued(commit, 7)
        write.release.set()
        assert [f.result(5) for f in [first, *rest]] == [n * 10 for n in range(8)]
    assert max(len(g) for g in write.groups) <= 3
    assert sorted(n for g in write.groups for n in g) == list(range(8))


def test_a_write_returning_the_wrong_number_of_results_is_an_error_not_a_hang():
    commit = GroupCommit(lambda items: [])
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        commit("x")


def test_max_group_must_be_positive():
    with pytest.raises(ValueError, match="max_group"):
        GroupCommit(lambda items: items, max_group=0)
