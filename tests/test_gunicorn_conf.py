"""gunicorn.conf.py: the settings it computes, and what its master does before any worker."""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import runpy
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

CONF = str(Path(__file__).resolve().parents[1] / "gunicorn.conf.py")


class FakeLibc:
    def __init__(self, answer: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def mallopt(self, param: ctypes.c_int, value: ctypes.c_int) -> int:
        self.calls.append((param.value, value.value))
        return self.answer


@pytest.fixture(autouse=True)
def master_mappings():
    """What a test's `on_starting` or `keep_for_workers` leaves in `connector.mappings` (the master's
    store, the inherited set, the follower thread) must not reach the next test in this process."""
    from connector import mappings, settings

    saved = mappings._MASTER, mappings._INHERITED
    yield
    mappings.stop_following()
    mappings._MASTER, mappings._INHERITED = saved
    settings.GUNICORN_STARTED = False  # a test's `on_starting` would make every later `_conf` a reload


def _conf(environ: dict[str, str] | None = None) -> dict:
    with mock.patch.dict("os.environ", environ or {}, clear=True), mock.patch("ctypes.CDLL") as cdll:
        conf = runpy.run_path(CONF)
    assert not cdll.called  # loading the settings (bench/procs.py does) changes nothing in the process
    return conf


def _limit(environ: dict[str, str], libc: FakeLibc, libc_name: str = "glibc") -> bool:
    limit = _conf()["limit_malloc_arenas"]
    with mock.patch.dict("os.environ", environ, clear=True), mock.patch("ctypes.CDLL", return_value=libc), \
            mock.patch("platform.libc_ver", return_value=(libc_name, "2.36")):
        return limit(logging.getLogger("gunicorn.error"))


def test_the_master_asks_glibc_for_two_malloc_arenas():
    libc = FakeLibc()
    assert _limit({}, libc) is True
    assert libc.calls == [(-8, 2)]  # M_ARENA_MAX


@pytest.mark.parametrize("environ", [{"MALLOC_ARENA_MAX": "8"}, {"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}])
def test_a_limit_in_the_environment_wins(environ):
    libc = FakeLibc()
    assert _limit(environ, libc) is False
    assert libc.calls == []


def test_elsewhere_than_glibc_nothing_is_asked():
    libc = FakeLibc()
    assert _limit({}, libc, libc_name="") is False
    assert libc.calls == []


def test_a_refusal_is_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="gunicorn.error"):
        assert _limit({}, FakeLibc(answer=0)) is False
    assert "M_ARENA_MAX" in caplog.text


def test_this_machines_glibc_accepts_it():
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not a glibc system")
    code = (f"import logging, runpy; conf = runpy.run_path({CONF!r}); "
            "print(conf['limit_malloc_arenas'](logging.getLogger()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "True", out.stderr


@pytest.mark.parametrize("bind", ["0.0.0.0:8000", "[::1]:8080", "unix:/run/connector.sock"])
def test_an_address_to_bind_is_taken_as_given(bind):
    assert _conf({"CONNECTOR_BIND": bind})["bind"] == bind


def test_workers_and_threads_follow_their_variables():
    conf = _conf({"CONNECTOR_WEB_WORKERS": "5", "CONNECTOR_WEB_THREADS": "7"})
    assert (conf["workers"], conf["threads"], conf["worker_class"]) == (5, 7, "gthread")


@pytest.mark.parametrize("environ", [{"CONNECTOR_WEB_WORKERS": "three"}, {"CONNECTOR_WEB_THREADS": "0"},
                                     {"CONNECTOR_BIND": "127.0.0.1:99999"}, {"CONNECTOR_BIND": "127.0.0.1"},
                                     {"CONNECTOR_BIND": "localhost:http"}, {"CONNECTOR_BIND": "unix:"}])
def test_a_wrong_worker_or_thread_count_is_one_line_naming_the_variable(environ):
    # was gunicorn's "Failed to read config file" and int()'s traceback
    with pytest.raises(SystemExit) as caught:
        _conf(environ)
    [variable] = environ
    assert str(caught.value).startswith("configuration error: ") and variable in str(caught.value)


def test_workers_share_one_metrics_directory_emptied_of_an_earlier_runs_counts(tmp_path):
    conf = _conf()
    share = conf["share_metrics"]
    (tmp_path / "counter_4194304.db").write_bytes(b"old")  # a pid no process has
    live = tmp_path / f"counter_{os.getpid()}.db"  # a connector worker still running
    live.write_bytes(b"its counts")
    (tmp_path / "gauge_livesum_4194304.db").write_bytes(b"old")
    (tmp_path / "README").write_text("an operator's note")
    # The SQLite database and its backup, in `instance/` used as the metrics directory too: taken
    # with every `*.db`, a restart started on an empty database, every pending delivery gone.
    kept = ["README", "connector-backup.db", "connector.db", "counter_12.db.bak", live.name]
    for name in kept[1:4]:
        (tmp_path / name).write_bytes(b"SQLite format 3")
    environ = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    assert share(environ) == str(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == set(kept)  # only dead processes' metrics files go
    made: dict[str, str] = {}
    directory = share(made)  # unset: a new temporary directory, for this run only
    assert made["PROMETHEUS_MULTIPROC_DIR"] == directory and Path(directory).is_dir()
    (Path(directory) / "counter_1.db").write_bytes(b"counts")
    with mock.patch.dict("os.environ", made):  # where the master keeps it: a reload runs this file again
        conf["on_exit"](mock.Mock())  # the master stops: the directory it made goes; the configured one stays
    assert not Path(directory).exists() and live.exists()


def test_a_configuration_error_at_start_is_one_logged_line_and_exit_2(tmp_path):
    # prometheus-client picks its mode when first imported: with the directory below in the
    # environment, every later test in this process would count into files deleted after this one.
    from connector import metrics  # noqa: F401

    on_starting = _conf()["on_starting"]
    server = mock.Mock()
    environ = {"CONNECTOR_SYNC_BUDGET_MS": "abc", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with mock.patch.dict("os.environ", environ, clear=True), mock.patch("ctypes.CDLL", return_value=FakeLibc()):
        with pytest.raises(SystemExit) as stopped:
            on_starting(server)
    assert stopped.value.code == 2
    [(fmt, err)] = [call.args for call in server.log.error.call_args_list]
    assert fmt == "configuration error: %s" and str(err).startswith("CONNECTOR_SYNC_BUDGET_MS: must be a whole number")


def test_the_settings_warnings_are_logged_once_by_the_master_not_again_by_each_worker(tmp_path, caplog):
    # Imported before the environment below names a metrics directory: prometheus-client picks its
    # mode when first imported, and this process's other tests count in memory.
    from connector import (
        create_app,
        metrics,  # noqa: F401
    )

    on_starting = _conf()["on_starting"]
    environ = {"CONNECTOR_DATABASE_URL": f"sqlite:///{tmp_path}/c.db", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    warned = lambda: [r for r in caplog.records if r.getMessage() == "setting to look at"]  # noqa: E731
    with mock.patch.dict("os.environ", environ, clear=True), mock.patch("ctypes.CDLL", return_value=FakeLibc()):
        with caplog.at_level(logging.WARNING, logger="connector.app"):
            on_starting(mock.Mock())  # the master: no bot keys, no admin token — said here
            said = len(warned())
            assert said >= 2
            create_app().extensions["connector"].stop()  # a worker, forked with the master's environment
            assert len(warned()) == said
    with caplog.at_level(logging.WARNING, logger="connector.app"):
        create_app({"database_url": f"sqlite:///{tmp_path}/c.db"}).extensions["connector"].stop()
    assert len(warned()) > said  # anything else (tests, another WSGI server) still says them


def test_the_master_says_nothing_is_ready_before_its_start_fails(tmp_path, caplog):
    # "connector ready" came first, then "database error" and exit 2: read in a log, it had started.
    from connector import metrics  # noqa: F401  (as above: its mode is picked when first imported)

    on_starting = _conf()["on_starting"]
    server = mock.Mock()
    environ = {"CONNECTOR_DATABASE_URL": "postgresql+psycopg://connector@127.0.0.1:1/nowhere",
               "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with mock.patch.dict("os.environ", environ, clear=True), mock.patch("ctypes.CDLL", return_value=FakeLibc()):
        with caplog.at_level(logging.INFO, logger="connector.app"), pytest.raises(SystemExit) as stopped:
            on_starting(server)
    assert stopped.value.code == 2
    assert [call.args[0] for call in server.log.error.call_args_list] == ["database error: %s"]
    assert "connector ready" not in [r.getMessage() for r in caplog.records]


def test_make_run_takes_the_address_and_workers_from_dot_env_and_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("CONNECTOR_BIND=127.0.0.1:8011\nCONNECTOR_WEB_WORKERS=2\n")
    conf = _conf()
    assert (conf["bind"], conf["workers"]) == ("127.0.0.1:8011", 2)
    assert _conf({"CONNECTOR_BIND": "127.0.0.1:8012"})["bind"] == "127.0.0.1:8012"


def test_the_benchmark_and_process_tests_start_gunicorn_without_a_developers_dot_env(tmp_path, monkeypatch):
    from bench.procs import connector_env

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("CONNECTOR_BIND=127.0.0.1:8011\nCONNECTOR_WEB_WORKERS=2\n")
    env = connector_env("sqlite:///x.db", "zendesk", {"CONNECTOR_BIND": "127.0.0.1:8013"})
    assert env["CONNECTOR_ENV_FILE"] == ""
    conf = _conf({k: v for k, v in env.items() if k.startswith("CONNECTOR_")})
    assert (conf["bind"], conf["workers"]) == ("127.0.0.1:8013", min((os.cpu_count() or 1) + 1, 4))


def test_gunicorn_started_elsewhere_still_finds_the_package(tmp_path):
    done = subprocess.run([sys.executable, "-m", "gunicorn", "-c", CONF, "--check-config", "--chdir",
                           str(Path(CONF).parent), "wsgi:app"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={"PATH": os.environ["PATH"], "CONNECTOR_ENV_FILE": ""})
    assert done.returncode == 0, done.stderr


def test_the_app_reads_the_env_file_gunicorn_read_even_after_a_chdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("CONNECTOR_BIND=127.0.0.1:8011\n")
    with mock.patch.dict("os.environ", {}, clear=True), mock.patch("ctypes.CDLL"):
        runpy.run_path(CONF)
        assert os.environ["CONNECTOR_ENV_FILE"] == str(tmp_path / ".env")  # absolute: the workers read this one
    (tmp_path / ".env").unlink()
    with mock.patch.dict("os.environ", {}, clear=True), mock.patch("ctypes.CDLL"):
        runpy.run_path(CONF)
        assert os.environ["CONNECTOR_ENV_FILE"] == ""  # none here: none for the app either


def test_a_missing_env_file_stops_gunicorn_with_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "gunicorn", "-c", CONF, "--check-config", "wsgi:app"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "CONNECTOR_ENV_FILE": "nope.env"})
    assert done.returncode == 1
    assert done.stderr.strip() == ("configuration error: CONNECTOR_ENV_FILE: names 'nope.env', which is not a "
                                   "readable file (empty reads no file) (see .env.example and README.md, "
                                   "'Configuration')")


def test_before_each_fork_the_master_keeps_the_mappings_if_they_pass_and_the_last_good_set_if_not(tmp_path):
    import shutil

    from connector import mappings

    shutil.copytree(Path(CONF).parent / "mappings", tmp_path / "m")
    mappings.keep_for_workers(mappings.MappingStore(str(tmp_path / "m"), "/", ["zendesk", "salesforce", "slack"]))
    started = mappings.inherited()
    conf = _conf()  # as a HUP re-runs it: what the master keeps lives outside this file
    conf["pre_fork"](mock.Mock(), mock.Mock())
    good = mappings.inherited()
    assert good is not None and good is not started and good.source == str(tmp_path / "m")
    routing = tmp_path / "m" / "routing.yaml"
    routing.write_text(routing.read_text().replace("\nrules:", "\nrulez:", 1))
    conf["pre_fork"](mock.Mock(), mock.Mock())
    assert mappings.inherited() is good  # the edit is refused: the workers keep the set that passed


def test_the_master_follows_the_files_so_a_new_worker_gets_the_last_good_edit_not_the_start(tmp_path):
    """After a good edit the workers took up live and then a refused one, a replaced worker serves
    the good edit: the master follows the files as the workers do, not only before each fork."""
    import shutil
    import time

    from connector import mappings

    shutil.copytree(Path(CONF).parent / "mappings", tmp_path / "m")
    routing = tmp_path / "m" / "routing.yaml"

    def settles(check, what):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 10
        while not check():
            assert time.monotonic() < deadline, what
            time.sleep(0.02)

    mappings.keep_for_workers(mappings.MappingStore(str(tmp_path / "m"), "/", ["zendesk", "salesforce", "slack"]))
    started = mappings.inherited()
    assert mappings.follow_for_workers(0.05) is mappings.follow_for_workers(0.05)  # one follower
    good = routing.read_text().replace("  - name: default", "  - name: edited\n    then: {team: billing}", 1)
    routing.write_text(good)
    settles(lambda: mappings.inherited() is not started, "the good edit kept for the workers")
    kept = mappings.inherited()
    assert kept is not None and kept.routing["rules"][-1]["name"] == "edited"
    routing.write_text(good.replace("\nrules:", "\nrulez:", 1) + "\n# refused\n")
    time.sleep(0.3)  # several looks at the files
    assert mappings.inherited() is kept  # refused: the last set that passed stays

    # A worker forked now holds a lock of its own, free, and no follower.
    pid = os.fork()
    if pid == 0:
        ok = mappings._LOADING.acquire(timeout=2) and mappings._FOLLOWER is None
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert mappings._LOADING.acquire(timeout=2)  # and the master's own was given back
    mappings._LOADING.release()


def test_a_reload_applies_the_whole_edited_env_file_and_refuses_a_bad_one_without_stopping(tmp_path):
    """SIGHUP: a changed variable kept its old value while an added one applied; and a typo made
    the new workers fail to boot, which stopped the whole service."""
    import json
    import signal
    import time
    import urllib.request

    from bench.procs import free_port

    port = free_port()
    env_file = tmp_path / "svc.env"
    # In the file, not the environment, which would win over it.
    database = f"CONNECTOR_DATABASE_URL=sqlite:///{tmp_path}/c.db\nCONNECTOR_BIND=127.0.0.1:{port}\n"
    env_file.write_text(database + "CONNECTOR_TARGETS=preview\n")
    log = tmp_path / "gunicorn.log"
    env = {"PATH": os.environ["PATH"], "CONNECTOR_ENV_FILE": str(env_file),
           "CONNECTOR_WEB_WORKERS": "1", "CONNECTOR_DELIVERY_THREADS": "1",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "m")}
    (tmp_path / "m").mkdir()

    def targets():  # type: ignore[no-untyped-def]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                return json.loads(answer.read())["checks"]["targets"]
        except OSError:
            return None

    def read(path):  # type: ignore[no-untyped-def]
        # A worker a reload replaces may close the connection it took (RemoteDisconnected, beside a
        # busy suite): asked again, as a client would; a service that stays away fails the test.
        for _ in range(50):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
                    return answer.read()
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"{path} did not answer\n{log.read_text()[-3000:]}")

    def settings_check():  # type: ignore[no-untyped-def]
        return json.loads(read("/readyz"))["checks"]["settings"]

    def settings_ok():  # type: ignore[no-untyped-def]
        return next(line for line in read("/metrics").decode().splitlines()
                    if line.startswith("connector_settings_ok "))

    def settles(check, what, timeout=30):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not check():
            assert master.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"{what}\n{log.read_text()[-3000:]}"
            time.sleep(0.1)

    with open(log, "w") as out:
        master = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", CONF, "--chdir", str(Path(CONF).parent),
                                   "wsgi:app"], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        settles(lambda: targets() == ["preview"], "started")
        env_file.write_text(database + "CONNECTOR_TARGETS=preview,slack,zendesk\nSLACK_BOT_TOKEN=xoxb-test\n"
                            "SLACK_CHANNEL=C0HANDOFF\nSLACK_API_URL=http://127.0.0.1:9/api/\n"
                            "ZENDESK_SUBDOMAIN=acme\nZENDESK_BASE_URL=http://127.0.0.1:9\nZENDESK_EMAIL=a@example.com\nZENDESK_API_TOKEN=t\n")
        master.send_signal(signal.SIGHUP)
        settles(lambda: targets() == ["preview", "slack", "zendesk"], "the edited file applied")
        # The target the edit enabled says what it lacks, as at a start (its webhook secrets).
        assert "reload: setting to look at: no ZENDESK_WEBHOOK_SECRETS" in log.read_text()
        refusals = [("CONNECTOR_SYNC_BUDGET_MS=abc\n", "CONNECTOR_SYNC_BUDGET_MS: must be a whole number"),
                    # gunicorn's own counts: read after the settings, their sys.exit stopped the master
                    ("CONNECTOR_WEB_THREADS=two\n", "CONNECTOR_WEB_THREADS: must be a whole number"),
                    ("CONNECTOR_WEB_THREADS=\n", "CONNECTOR_WEB_THREADS: must be a whole number"),  # empty too
                    # the master's address: gunicorn rebound, failed (a typo, a port in use) and stopped
                    ("CONNECTOR_BIND=127.0.0.1:99999\n", "CONNECTOR_BIND: changed"),
                    # applied without its schema, every request failed
                    (f"CONNECTOR_DATABASE_URL=sqlite:///{tmp_path}/other.db\n", "CONNECTOR_DATABASE_URL: changed")]
        for n, (line, said) in enumerate(refusals, start=1):
            env_file.write_text(database + "CONNECTOR_TARGETS=preview\n" + line)  # a later line wins
            master.send_signal(signal.SIGHUP)
            settles(lambda n=n: log.read_text().count("the edited settings are refused") == n, f"refusal {n} logged")
            assert said in log.read_text()
        time.sleep(2)  # new workers started on the settings in use, and serve
        assert master.poll() is None and targets() == ["preview", "slack", "zendesk"]
        # …and say so where an orchestrator and an alert look, not in the log alone.
        refused = settings_check()
        assert refused["ok"] is False and refused["variable"] == "CONNECTOR_DATABASE_URL", refused
        assert "refused_edit" not in refused  # named, not quoted: /readyz is open to anyone
        assert settings_ok() == "connector_settings_ok 0.0"
        env_file.write_text(database + "CONNECTOR_TARGETS=preview\n")  # fixed: the next reload takes it
        master.send_signal(signal.SIGHUP)
        settles(lambda: targets() == ["preview"] and settings_check() == {"ok": True}, "the fixed file applied")
        assert settings_ok() == "connector_settings_ok 1.0"
    finally:
        master.terminate()
        master.wait(timeout=30)


def test_a_reload_that_moves_the_mappings_directory_is_refused(tmp_path):
    """Accepted, the workers then running switched, while one replaced after a crash served the old
    directory's routing: the master's store, which it hands the workers it forks, was made at start."""
    from connector import settings

    env_file = tmp_path / "svc.env"
    database = f"CONNECTOR_DATABASE_URL=sqlite:///{tmp_path}/c.db\n"
    env_file.write_text(database)
    (tmp_path / "other").mkdir()
    with mock.patch.dict("os.environ", {"CONNECTOR_ENV_FILE": str(env_file)}, clear=True):
        runpy.run_path(CONF)  # the start
        settings.GUNICORN_STARTED = True
        try:
            env_file.write_text(database + f"CONNECTOR_MAPPINGS_DIR={tmp_path / 'other'}\n")
            refused = runpy.run_path(CONF)["_refused"]  # SIGHUP
            assert "CONNECTOR_MAPPINGS_DIR" not in os.environ  # the workers start on the directory in use
            env_file.write_text(database + "CONNECTOR_MAPPINGS_DIR=./mappings/\n")  # the same directory
            same = runpy.run_path(CONF)["_refused"]
        finally:
            settings.REFUSED_EDIT = None
    assert str(refused).startswith("CONNECTOR_MAPPINGS_DIR: changed: a reload does not move the service")
    assert same is None


@pytest.mark.parametrize(("line", "variable"), [
    ("CONNECTOR_PUBLIC_URL=https://[::1\n", "CONNECTOR_PUBLIC_URL"),
    ("CONNECTOR_TARGETS=zendesk\nZENDESK_SUBDOMAIN=acme\nZENDESK_EMAIL=a@example.com\nZENDESK_API_TOKEN=t\n"
     "ZENDESK_BASE_URL=http://a]b\n", "ZENDESK_BASE_URL")])
def test_a_reload_with_an_address_urlsplit_cannot_read_is_refused_not_the_masters_end(tmp_path, line, variable):
    """urlsplit's ValueError, where a reload catches a ConfigError: gunicorn's master died on it."""
    from connector import settings

    env_file = tmp_path / "svc.env"
    database = f"CONNECTOR_DATABASE_URL=sqlite:///{tmp_path}/c.db\n"
    env_file.write_text(database)
    with mock.patch.dict("os.environ", {"CONNECTOR_ENV_FILE": str(env_file)}, clear=True):
        runpy.run_path(CONF)  # the start
        settings.GUNICORN_STARTED = True
        try:
            env_file.write_text(database + line)
            refused = runpy.run_path(CONF)["_refused"]  # SIGHUP
            assert variable not in os.environ  # the workers start on the settings in use
            assert settings.refused_edit() is refused  # and /readyz and /metrics say it
        finally:
            settings.REFUSED_EDIT = None
    assert str(refused).startswith(f"{variable}: is not an address a client can read")


def test_a_reload_adding_a_metrics_directory_where_the_service_made_one_is_refused(tmp_path):
    """A review: started without one (the service made a temporary directory, set in the master's
    environment), a line added to .env was taken and ignored — the environment wins — while the
    reload said the settings were read again and a worker given that directory was never counted."""
    from connector import settings

    env_file = tmp_path / "svc.env"
    database = f"CONNECTOR_DATABASE_URL=sqlite:///{tmp_path}/c.db\n"
    env_file.write_text(database)
    made = str(tmp_path / "made")
    with mock.patch.dict("os.environ", {"CONNECTOR_ENV_FILE": str(env_file)}, clear=True):
        runpy.run_path(CONF)  # the start; then `share_metrics`, as on_starting runs it:
        os.environ.update({"PROMETHEUS_MULTIPROC_DIR": made, "_CONNECTOR_METRICS_DIR_MADE": made})
        settings.GUNICORN_STARTED = True
        try:
            untouched = runpy.run_path(CONF)["_refused"]  # SIGHUP, the file as it was
            env_file.write_text(database + f"PROMETHEUS_MULTIPROC_DIR={tmp_path / 'shared'}\n")
            refused = runpy.run_path(CONF)["_refused"]
            assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == made
        finally:
            settings.GUNICORN_STARTED = False
            settings.REFUSED_EDIT = None
    assert untouched is None
    assert str(refused).startswith("PROMETHEUS_MULTIPROC_DIR: changed: the metrics directory is chosen at start")


def test_a_start_that_fails_leaves_no_metrics_directory_behind():
    from connector import metrics  # noqa: F401  (its mode chosen before the environment below)

    on_starting = _conf()["on_starting"]
    with mock.patch.dict("os.environ", {"CONNECTOR_SYNC_BUDGET_MS": "abc"}, clear=True), \
            mock.patch("ctypes.CDLL", return_value=FakeLibc()):
        with pytest.raises(SystemExit):
            on_starting(mock.Mock())
        made = os.environ["_CONNECTOR_METRICS_DIR_MADE"]
    assert made and not Path(made).exists()  # gunicorn calls on_exit only after a start: one was left per try


def test_a_metrics_directory_that_is_a_file_stops_the_start_with_one_line_naming_the_variable(tmp_path):
    # A review: gunicorn's start ended in os.makedirs's FileExistsError traceback, where `check` and
    # `connector worker` named the variable.
    (taken := tmp_path / "notadir").write_text("")
    on_starting, log = _conf()["on_starting"], mock.Mock()
    with mock.patch.dict("os.environ", {"PROMETHEUS_MULTIPROC_DIR": str(taken)}, clear=True), \
            mock.patch("ctypes.CDLL", return_value=FakeLibc()):
        with pytest.raises(SystemExit) as caught:
            on_starting(mock.Mock(log=log))
    assert caught.value.code == 2
    [(text, refused)] = [call.args for call in log.error.call_args_list]
    assert text == "configuration error: %s" and str(refused).startswith("PROMETHEUS_MULTIPROC_DIR: ")
    assert "cannot be made (File exists)" in str(refused)


def test_a_master_that_exits_without_on_exit_still_removes_the_metrics_directory_it_made(tmp_path):
    """gunicorn's sock.create_sockets calls sys.exit(1) on a port in use, and on_exit is called only
    after a start: each try left a /tmp/connector-metrics-* directory. A worker's exit leaves it."""
    script = (f"import os, runpy, sys\nmade = runpy.run_path({CONF!r})['share_metrics']({{}})\n"
              "pid = os.fork()\n"
              "if pid == 0:\n    sys.exit(0)  # a worker: it inherits the master's exit handlers\n"
              "os.waitpid(pid, 0)\nprint(os.path.isdir(made), flush=True)\nsys.exit(1)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path), "CONNECTOR_ENV_FILE": ""})
    assert done.returncode == 1 and done.stdout == "True\n", done.stderr  # kept while the master ran
    assert not list(tmp_path.glob("connector-metrics-*"))


def test_the_access_log_leaves_query_strings_out():
    # `GET /v1/handoffs?conversation_id=+15551234567` wrote a customer's phone number to the access log.
    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    config = Config()
    config.set("accesslog", "-")
    config.set("access_log_format", _conf()["access_log_format"])
    request = mock.Mock(method="GET", path="/v1/handoffs", query="conversation_id=%2B15551234567",
                        uri="/v1/handoffs?conversation_id=%2B15551234567", version=(1, 1), headers=[])
    response = mock.Mock(status="200 OK", sent=12, headers=[])
    atoms = Logger(config).atoms(response, request, {"REMOTE_ADDR": "127.0.0.1", "RAW_URI": request.uri, "REQUEST_METHOD": "GET",
                                                      "QUERY_STRING": request.query, "PATH_INFO": request.path,
                                                      "SERVER_PROTOCOL": "HTTP/1.1"}, mock.Mock(
        seconds=0, microseconds=1000))
    line = config.access_log_format % atoms
    assert '"GET /v1/handoffs HTTP/1.1" 200' in line and "15551234567" not in line


def test_a_reload_enabling_a_target_says_its_mapping_files_warnings_too(tmp_path):
    """A mends review: once a target's warnings were split, a SIGHUP enabling Salesforce said its
    missing webhook tokens but no longer the shipped salesforce.yaml's missing handoff_id_field."""
    from adapters import registry
    from connector import mappings, settings

    environ = {"CONNECTOR_DATABASE_URL": f"sqlite:///{tmp_path}/c.db", "CONNECTOR_BOT_KEYS": "b:" + "k" * 32,
               "CONNECTOR_MAPPINGS_DIR": str(Path(CONF).parent / "mappings"), "CONNECTOR_TARGETS": "salesforce",
               "SALESFORCE_INSTANCE_URL": "https://acme.my.salesforce.com", "SALESFORCE_ACCESS_TOKEN": "t"}
    with mock.patch.dict("os.environ", environ, clear=True):
        loaded = settings.Settings.from_env()
        mappings._INHERITED = mappings.load_mappings(loaded.mappings_dir, str(Path(CONF).parent),
                                                     list(registry.TARGETS), keys_of=registry.mapping_keys)
        settings.GUNICORN_STARTED = True
        conf = runpy.run_path(CONF)
        server = mock.Mock()
        conf["on_reload"](server)
    said = [call.args[0] % call.args[1:] for call in server.log.warning.call_args_list]
    assert any(line.startswith("reload: setting to look at: no SALESFORCE_WEBHOOK_TOKENS") for line in said), said
    assert any(line.startswith("reload: mapping to look at: mappings/salesforce.yaml: no handoff_id_field")
               for line in said), said


def test_a_reload_enabling_a_target_whose_mapping_file_is_absent_says_so_as_a_start_does(tmp_path):
    """A second mends review: a start says slack.yaml is not there (the built-in defaults serve); a
    reload enabling Slack did not."""
    import shutil

    from adapters import registry
    from connector import mappings, settings

    mine = tmp_path / "mappings"
    shutil.copytree(Path(CONF).parent / "mappings", mine)
    (mine / "slack.yaml").unlink()
    environ = {"CONNECTOR_DATABASE_URL": f"sqlite:///{tmp_path}/c.db", "CONNECTOR_BOT_KEYS": "b:" + "k" * 32,
               "CONNECTOR_MAPPINGS_DIR": str(mine), "CONNECTOR_TARGETS": "slack", "SLACK_BOT_TOKEN": "xoxb-t",
               "SLACK_CHANNEL": "C0HANDOFF", "SLACK_SIGNING_SECRET": "s" * 32}
    with mock.patch.dict("os.environ", environ, clear=True):
        loaded = settings.Settings.from_env()
        mappings._INHERITED = mappings.load_mappings(loaded.mappings_dir, str(Path(CONF).parent),
                                                     list(registry.TARGETS), keys_of=registry.mapping_keys)
        settings.GUNICORN_STARTED = True
        server = mock.Mock()
        runpy.run_path(CONF)["on_reload"](server)
    said = [call.args[0] % call.args[1:] for call in server.log.warning.call_args_list]
    assert any(line.startswith(f"reload: mapping to look at: slack.yaml is not in {mine}") for line in said), said
