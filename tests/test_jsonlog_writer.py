"""The JSON log's handler writes on a thread of its own: a slow or stuck stream holds up no thread
that logs until its buffer is full (then they wait, and nothing is lost), lines keep their order,
flush() waits for them, and a forked child writes its own."""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os
import threading
import time

from connector.jsonlog import BackgroundStreamHandler


class StuckStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def write(self, text: str) -> int:
        self.entered.set()
        assert self.release.wait(10)
        return super().write(text)


def logger_with(handler: logging.Handler, name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_a_stuck_stream_does_not_hold_up_the_threads_that_log():
    stream = StuckStream()
    handler = BackgroundStreamHandler(stream)
    log = logger_with(handler, "test.jsonlog.stuck")
    log.info("first")
    assert stream.entered.wait(5)  # the writer is inside write(), holding nothing the callers need
    started = time.monotonic()
    done = []
    threads = [threading.Thread(target=lambda n=n: (log.info("line %d", n), done.append(n))) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert sorted(done) == list(range(8))
    assert time.monotonic() - started < 2
    stream.release.set()
    handler.flush()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "first" and sorted(lines[1:]) == sorted(f"line {n}" for n in range(8))


def test_past_its_buffer_a_log_call_waits_for_room_and_no_line_is_lost():
    stream = StuckStream()
    handler = BackgroundStreamHandler(stream, max_waiting=3)
    log = logger_with(handler, "test.jsonlog.full")
    log.info("first")
    assert stream.entered.wait(5)  # the writer holds "first", stuck in write()
    for n in range(3):
        log.info("queued %d", n)  # the buffer's three places
    late = threading.Thread(target=log.info, args=("late",))
    late.start()
    late.join(0.3)
    assert late.is_alive()  # waiting for room: memory stays bounded
    stream.release.set()
    late.join(5)
    assert not late.is_alive()
    handler.flush()
    assert stream.getvalue().splitlines() == ["first", "queued 0", "queued 1", "queued 2", "late"]


def test_flush_gives_up_on_a_stream_stuck_with_a_full_buffer():
    stream = StuckStream()
    handler = BackgroundStreamHandler(stream, max_waiting=1)
    log = logger_with(handler, "test.jsonlog.giveup")
    log.info("first")
    assert stream.entered.wait(5)
    log.info("fills the buffer")
    started = time.monotonic()
    handler._drain()  # what a fork waits on: bounded, not forever
    assert 4 < time.monotonic() - started < 8
    stream.release.set()
    handler.flush()


def test_lines_keep_their_order_and_flush_waits_for_them():
    stream = io.StringIO()
    handler = BackgroundStreamHandler(stream)
    log = logger_with(handler, "test.jsonlog.order")
    for n in range(500):
        log.info("n=%d", n)
    handler.flush()
    assert stream.getvalue().splitlines() == [f"n={n}" for n in range(500)]


def test_a_filter_still_drops_records_and_a_format_error_is_reported_not_raised(capsys):
    stream = io.StringIO()
    handler = BackgroundStreamHandler(stream)
    handler.addFilter(lambda record: "secret" not in record.msg)
    log = logger_with(handler, "test.jsonlog.filter")
    log.info("secret thing")
    log.info("bad %d", "not a number")  # a formatting error, met by the writer
    log.info("kept")
    handler.flush()
    assert stream.getvalue().splitlines() == ["kept"]
    assert "Logging error" in capsys.readouterr().err


def _log_in_child(path: str, handler: BackgroundStreamHandler) -> None:
    log = logger_with(handler, "test.jsonlog.fork")
    log.info("from the child")
    handler.flush()


def test_a_forked_child_starts_its_own_writer(tmp_path):
    path = tmp_path / "log.jsonl"
    with open(path, "a", encoding="utf-8") as stream:
        handler = BackgroundStreamHandler(stream)
        log = logger_with(handler, "test.jsonlog.fork")
        log.info("from the parent")
        handler.flush()  # the parent's writer thread is running; a fork does not copy it
        child = multiprocessing.get_context("fork").Process(target=_log_in_child, args=(str(path), handler))
        child.start()
        child.join(10)
        assert child.exitcode == 0
        log.info("parent again")
        handler.flush()
    assert path.read_text(encoding="utf-8").splitlines() == ["from the parent", "from the child", "parent again"]


def test_the_connector_s_handler_writes_json_lines(monkeypatch):
    from connector import jsonlog

    root = logging.getLogger()
    jsonlog.configure("INFO")
    [handler] = [h for h in root.handlers if getattr(h, "_connector", False)]
    assert isinstance(handler, BackgroundStreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        with jsonlog.log_context(handoff_id="hnd_1"):
            logging.getLogger("connector.test").info("hello", extra={"count": 2})
        handler.flush()
    finally:
        handler.setStream(previous)
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert (line["message"], line["handoff_id"], line["count"], line["level"]) == ("hello", "hnd_1", 2, "INFO")


def test_a_fork_waits_for_the_writer_to_finish_what_it_is_writing(tmp_path):
    """A fork while the writer is inside write() would hand the child a stream locked for good."""
    stream = StuckStream()
    handler = BackgroundStreamHandler(stream)
    log = logger_with(handler, "test.jsonlog.forkwait")
    log.info("being written")
    assert stream.entered.wait(5)
    threading.Timer(0.3, stream.release.set).start()
    started = time.monotonic()
    child = multiprocessing.get_context("fork").Process(target=lambda: None)
    child.start()  # runs the before-fork hook: flush, i.e. wait for the line
    waited = time.monotonic() - started
    child.join(10)
    assert waited >= 0.25 and child.exitcode == 0
    assert stream.getvalue().splitlines() == ["being written"]


def test_a_line_is_written_without_a_flush_and_a_log_call_wakes_no_one():
    """The writer writes on its own tick: nobody waits in the queue for a put to wake (a futex wake
    per line was the log calls' largest cost), yet every line reaches the stream soon."""
    from connector.jsonlog import WRITE_EVERY_S

    stream = io.StringIO()
    handler = BackgroundStreamHandler(stream)
    log = logger_with(handler, "test.jsonlog.tick")
    log.info("first")
    deadline = time.monotonic() + 5
    while "first" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stream.getvalue().splitlines() == ["first"]
    time.sleep(WRITE_EVERY_S / 2)
    assert not handler._lines.not_empty._waiters  # a put notifies no sleeping writer
    started = time.monotonic()
    log.info("second")
    while "second" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert time.monotonic() - started < WRITE_EVERY_S + 0.5


def test_flush_wakes_the_writer_instead_of_waiting_for_its_tick(monkeypatch):
    from connector import jsonlog

    monkeypatch.setattr(jsonlog, "WRITE_EVERY_S", 30.0)  # a tick that would never come in this test
    stream = io.StringIO()
    handler = BackgroundStreamHandler(stream)
    log = logger_with(handler, "test.jsonlog.flushwake")
    log.info("now")
    started = time.monotonic()
    handler.flush()
    assert stream.getvalue().splitlines() == ["now"]
    assert time.monotonic() - started < 2


def test_lines_are_formatted_by_the_writer_not_the_thread_that_logs():
    """Formatting (a JSON encoding per line) stays off the request threads; what the line says
    was settled at the call (the context's fields are added by the caller's filter)."""
    formatted_in: list[str] = []

    class Recording(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            formatted_in.append(threading.current_thread().name)
            return super().format(record)

    stream = io.StringIO()
    handler = BackgroundStreamHandler(stream)
    handler.setFormatter(Recording("%(message)s"))
    log = logger_with(handler, "test.jsonlog.formatting")
    log.info("one %s", "line")
    handler.flush()
    assert (stream.getvalue(), formatted_in) == ("one line\n", ["log-writer"])


def test_after_configure_gunicorn_s_own_log_format_still_works():
    """configure() turns off what no line shows; gunicorn's error log, in the same process, shows
    the process id: its lines must still format (they were lost when the id was switched off)."""
    from connector import jsonlog

    jsonlog.configure("INFO")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] [%(levelname)s] %(message)s"))
    log = logger_with(handler, "test.gunicorn.error")
    log.info("Booting worker")
    assert f"[{os.getpid()}] [INFO] Booting worker" in stream.getvalue()


def test_log_times_are_utc_and_say_so(monkeypatch):
    """Local time with no offset could not be set beside the CLI's listings (UTC) or a vendor's."""
    import json as json_
    import re
    import time as time_

    from connector import jsonlog

    jsonlog.configure("INFO")
    [handler] = [h for h in logging.getLogger().handlers if getattr(h, "_connector", False)]
    record = logging.LogRecord("connector.test", logging.INFO, __file__, 1, "hello", None, None)
    record.created, record.msecs = 1796394807.982, 982.0  # 2026-12-04T14:33:27.982Z
    monkeypatch.setenv("TZ", "America/New_York")
    time_.tzset()
    try:
        line = json_.loads(handler.format(record))
    finally:
        monkeypatch.delenv("TZ")
        time_.tzset()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["asctime"])
    assert line["asctime"] == time_.strftime("%Y-%m-%dT%H:%M:%S", time_.gmtime(record.created)) + ".982Z"
