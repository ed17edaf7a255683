"""gunicorn.conf.py: what it computes and sets up before any worker starts."""

from __future__ import annotations

import ctypes
import runpy
from pathlib import Path
from unittest import mock

CONF = str(Path(__file__).resolve().parents[1] / "gunicorn.conf.py")


class FakeLibc:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, param: ctypes.c_int, value: ctypes.c_int) -> int:
        self.calls.append((param.value, value.value))
        return 1


def _load(environ: dict[str, str], libc: object) -> dict:
    with mock.patch.dict("os.environ", environ, clear=True), mock.patch("ctypes.CDLL", return_value=libc):
        return runpy.run_path(CONF)


def test_two_malloc_arenas_are_set_in_the_master_before_any_worker():
    libc = FakeLibc()
    conf = _load({}, libc)
    assert libc.calls == [(-8, 2)]  # M_ARENA_MAX
    assert conf["worker_class"] == "gthread"


def test_malloc_arena_max_in_the_environment_wins():
    libc = FakeLibc()
    _load({"MALLOC_ARENA_MAX": "8"}, libc)
    assert libc.calls == []


def test_without_glibc_nothing_is_set_and_the_settings_still_load():
    class NotGlibc:
        pass  # no mallopt: musl, macOS

    conf = _load({}, NotGlibc())
    assert conf["threads"] == 32


def test_workers_and_threads_follow_their_variables():
    conf = _load({"CONNECTOR_WEB_WORKERS": "5", "CONNECTOR_WEB_THREADS": "7"}, FakeLibc())
    assert (conf["workers"], conf["threads"]) == (5, 7)
