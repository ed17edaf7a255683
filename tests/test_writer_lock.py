"""SQLite's writer lock (`db.WriterLock`): one writer across threads and processes, handed on at
release, re-entrant in one thread, and never fatal when its file cannot be made."""

from __future__ import annotations

import fcntl
import logging
import multiprocessing
import os
import threading
import time

import pytest

from connector.db import Database, WriterLock


def _hold_in_child(path: str, held, release) -> None:  # runs in a forked process
    lock = WriterLock(path)
    with lock.held():
        held.set()
        release.wait(10)


def _free(lock_file: str) -> bool:
    fd = os.open(lock_file, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_another_process_holding_it_keeps_this_one_out_until_it_lets_go(tmp_path):
    path = str(tmp_path / "c.db")
    fork = multiprocessing.get_context("fork")
    held, release = fork.Event(), fork.Event()
    child = fork.Process(target=_hold_in_child, args=(path, held, release))
    child.start()
    try:
        assert held.wait(10)
        assert not _free(path + "-writer.lock")
        lock, entered = WriterLock(path), threading.Event()

        def enter() -> None:
            with lock.held():
                entered.set()

        waiter = threading.Thread(target=enter)
        waiter.start()
        time.sleep(0.2)
        assert not entered.is_set()  # waiting on the child
        release.set()
        assert entered.wait(5)  # handed over at release, not after a polling interval
        waiter.join(5)
    finally:
        release.set()
        child.join(10)
    assert child.exitcode == 0


def test_threads_of_one_process_take_turns_and_a_thread_may_nest(tmp_path):
    lock = WriterLock(str(tmp_path / "c.db"))
    inside, most = [0], [0]

    def work() -> None:
        for _ in range(50):
            with lock.held():
                with lock.held():  # nested: no deadlock, and the file stays locked until the outer exits
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                assert not _free(lock.path)
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most[0] == 1
    assert _free(lock.path)


def test_a_forked_child_does_not_share_its_parent_s_lock(tmp_path):
    """The same object, inherited across fork, must still exclude parent and child from each other
    (a shared descriptor would let both hold the flock at once)."""
    lock = WriterLock(str(tmp_path / "c.db"))
    fork = multiprocessing.get_context("fork")
    entered = fork.Event()

    def child() -> None:
        with lock.held():
            entered.set()

    with lock.held():  # the parent holds it through its own descriptor while the child starts
        process = fork.Process(target=child)
        process.start()
        assert not entered.wait(0.5)  # the child waits for the parent
    assert entered.wait(5)  # and gets it once the parent lets go
    process.join(10)
    assert process.exitcode == 0


def test_a_lock_file_that_cannot_be_made_falls_back_to_busy_timeout_with_one_warning(tmp_path, caplog):
    lock = WriterLock(str(tmp_path / "missing" / "c.db"))
    with caplog.at_level(logging.WARNING, logger="connector.db"):
        for _ in range(3):
            with lock.held():
                pass
    assert [r.getMessage() for r in caplog.records].count("no writer lock file; writers fall back to busy_timeout") == 1


@pytest.mark.parametrize("url", ["sqlite:///{tmp}/c.db", "sqlite:///file:{tmp}/c.db?uri=true"])
def test_a_sqlite_path_or_uri_filename_gets_a_lock_file_beside_it(tmp_path, url):
    # A URI filename's writers took no turns (a review).
    db = Database(url.format(tmp=tmp_path), str(tmp_path))
    with db.writing():
        pass
    assert os.path.exists(tmp_path / "c.db-writer.lock")
    db.dispose()


@pytest.mark.parametrize(("budget_ms", "waits_ms"), [(5000, 5000), (10, 5000), (12_000, 12_000), (60_000, 30_000)])
def test_the_service_waits_for_an_outside_lock_no_longer_than_a_bots_answer_may_take(make_app, budget_ms, waits_ms):
    # A `sqlite3` shell or a backup holding the database: a bot waited 30 s for its 503.
    from sqlalchemy import text

    app = make_app(sync_budget_ms=budget_ms)
    with app.extensions["connector"].db.engine.connect() as connection:
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == waits_ms


def test_a_database_made_without_saying_waits_thirty_seconds(tmp_path):
    from sqlalchemy import text

    db = Database(f"sqlite:///{tmp_path}/c.db", str(tmp_path))
    with db.engine.connect() as connection:
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 30_000
    db.dispose()


def test_threads_queued_behind_a_stuck_writer_give_up_after_the_busy_timeout_as_sqlite_would(tmp_path):
    """A writer holding the turn (here stuck on purpose; in life, waiting busy_timeout on a lock
    held from outside) kept those queued behind it waiting their turns' sum (a bot's request behind
    30 others: minutes). Each waits `wait_s` at most, then gets the error SQLite gives — which the
    service answers with 503."""
    from sqlalchemy.exc import OperationalError

    lock = WriterLock(str(tmp_path / "c.db"), wait_s=0.2)
    holding, release, failed = threading.Event(), threading.Event(), []

    def stuck() -> None:
        with lock.held():
            holding.set()
            release.wait(10)

    def queued() -> None:
        try:
            with lock.held():
                pass
        except OperationalError as err:
            failed.append((time.monotonic() - started, str(err.orig)))

    holder = threading.Thread(target=stuck)
    holder.start()
    assert holding.wait(5)
    started = time.monotonic()
    waiters = [threading.Thread(target=queued) for _ in range(3)]
    for waiter in waiters:
        waiter.start()
    for waiter in waiters:
        waiter.join(5)
    release.set()
    holder.join(5)
    assert len(failed) == 3
    assert all(0.15 < waited < 2 and "database is locked" in text for waited, text in failed)
    with lock.held():  # and the lock is whole afterwards
        assert not _free(lock.path)
    assert _free(lock.path)


def test_the_service_s_writers_queue_no_longer_than_its_busy_timeout(make_app):
    app = make_app(sync_budget_ms=12_000)
    assert app.extensions["connector"].db._writer.wait_s == 12.0
