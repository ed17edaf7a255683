"""Settings, read once from the environment (and `.env`) when the app is created.

Every variable is parsed here and nowhere else; a bad value raises `ConfigError`
naming the variable and pointing at `.env.example`. Adapters receive the parsed
`Settings`; none of them reads `os.environ` at call time.
"""

from __future__ import annotations

import difflib
import io
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import SplitResult, urlsplit

from .errors import ConfigError
from .vendor_signatures import signing_key, usable_secret

DEFAULT_DATABASE_URL = "sqlite:///instance/connector.db"
ENV_FILE = "CONNECTOR_ENV_FILE"  # read from the process environment only: it says which file to read
FILE_KEYS = "_CONNECTOR_ENV_FILE_KEYS"  # set by the connector: which variables the file set (`reread_env_file`)
FILE_READ = "_CONNECTOR_ENV_FILE_READ"  # set by the connector: the file already read, by this process or its parent
FILE_CHOOSES = "_CONNECTOR_ENV_FILE_CHOOSES"  # set by the connector: the file sets CONNECTOR_ENV_FILE, ignored
FILE_TWICE = "_CONNECTOR_ENV_FILE_TWICE"  # set by the connector: the names the file sets on more than one line (JSON)
AWAITED = "_CONNECTOR_ENV_FILE_AWAITED"  # set by the connector: the default .env a start looked for and did not find
# Set by gunicorn.conf.py's `on_starting`, in the master: gunicorn executing that file again is a reload.
GUNICORN_STARTED = False
# Set by gunicorn.conf.py on each reload, in the master: the refusal of the edited settings, or None
# once an edit is accepted. The workers it forks next inherit it in memory (as `mappings.inherited`):
# they serve the settings in use, and say in /readyz and /metrics that a restart would stop on the file.
REFUSED_EDIT: ConfigError | None = None


def refused_edit() -> ConfigError | None:
    """Why the last reload refused the edited settings (`REFUSED_EDIT`); None when nothing is refused."""
    return REFUSED_EDIT


def load_env_file(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Read the dotenv file into `os.environ` (variables already set win) and return its path.

    `CONNECTOR_ENV_FILE` names it; unset, `.env` in the working directory, if present; empty, none.
    The benchmark and the process tests set it empty, so a developer's `.env` (their credentials,
    their targets) never reaches the services they start. Called by gunicorn.conf.py (the bind
    address and workers are needed before the app) and by the app; the second read changes nothing.
    """
    from dotenv.main import DotEnv

    environ = os.environ if environ is None else environ
    named = environ.get(ENV_FILE)
    path = os.path.join(os.getcwd(), ".env") if named is None else named
    if named is not None and (flasks := _flasks_own_read()):
        from dotenv import dotenv_values

        # The name may come from the .env the flask command read (it sets what it reads), or from
        # the real environment with the same line in .env: which, this process cannot tell. Said
        # as such — not as a file missing — and refused as any mix of the two (reading .env in its
        # place, `check` approved a configuration the service would not run).
        if _chooses_another(flasks, dotenv_values(flasks, interpolate=False)) == named:
            raise ConfigError(ENV_FILE, f"is set by a line of {flasks}, which the flask command read before the app "
                              "(or by the environment and that line alike): run the command with "
                              "FLASK_SKIP_DOTENV=1, and set CONNECTOR_ENV_FILE in the real environment — a "
                              "line in the dotenv file is ignored")
    if path and environ.get(FILE_READ) == os.path.abspath(path):
        # Read by gunicorn's master, which judges each edit on a reload: a worker forked later (one
        # replaced after a crash) read the file again, and took up an edit nobody had judged — or,
        # the file gone since, failed to boot, and gunicorn stopped the whole service.
        return path
    if path and not os.path.isfile(path):
        if named is None and not os.path.islink(path):  # none, or a directory (a virtualenv named .env)
            return None
        if named is None:  # a symlink to nothing: skipped, the service started on the defaults
            raise ConfigError(path, "is a symlink to nothing (a secret not mounted yet?): fix it, or remove it to "
                              "run without a .env")
        raise ConfigError(ENV_FILE, f"names {path!r}, which is not a readable file (empty reads no file)")
    if named is not None:
        _refuse_flasks_own_read(named)
    if not path:
        return None
    lines = _refuse_unreadable_lines(path)
    environ[FILE_READ] = os.path.abspath(path)
    # As load_dotenv(override=False) does — its own reader, so that ${VAR} in the file resolves the
    # same way (the environment first) — remembering what the file set (a re-read replaces it).
    values = DotEnv(path, interpolate=True, override=False).dict()
    if _chooses_another(path, values) is not None:
        environ[FILE_CHOOSES] = "1"  # for `Settings.warnings`
    # Never set from the file: read there, it comes too late to choose the file (this one is read).
    set_now = [key for key, value in values.items() if value is not None and key not in environ and key != ENV_FILE]
    for key in set_now:
        environ[key] = values[key] or ""
    if set_now:
        environ[FILE_KEYS] = ",".join(sorted({*_file_keys(environ), *set_now}))
    # Set by the file on several lines (the environment's own value would win over all of them):
    # for `Settings.warnings`, in this process and in the workers that inherit its environment.
    # The flask command set them itself, from this very file: theirs too (`check` said nothing).
    # Only there: elsewhere an environment's value equal to the last line's still wins over it.
    flasks = _flasks_own_read()
    by_flask = bool(flasks) and os.path.samefile(flasks, path)
    twice = {key: lines[key] for key in sorted(lines) if len(lines[key]) > 1 and key != ENV_FILE
             and (key in set_now or (by_flask and values.get(key) is not None and environ.get(key) == values[key]))}
    if twice:
        environ[FILE_TWICE] = json.dumps(twice)
    return path


def _refuse_unreadable_lines(path: str) -> dict[str, list[int]]:
    """python-dotenv skips a line it cannot parse (an unclosed quote) with a warning naming
    neither the file nor the variable, and the variable stays unset: `CONNECTOR_RETENTION_DAYS="30`
    left retention off — data kept for ever — with `check` saying ok. Returns the lines each name
    is set on."""
    from dotenv.parser import parse_stream

    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(path, f"cannot be read: {err}") from None
    if text.startswith("\ufeff"):  # Notepad's: dotenv reads the first name with it, and nothing matches
        raise ConfigError(path, "starts with a byte-order mark (saved as \"UTF-8 with BOM\"): its first "
                          "variable would be read under another name; save it as plain UTF-8")
    lines: dict[str, list[int]] = {}
    for binding in parse_stream(io.StringIO(text)):
        # The parser counts the blank lines above a binding as its own: its first is not the name's.
        blank = binding.original.string[:len(binding.original.string) - len(binding.original.string.lstrip())]
        line = binding.original.line + blank.count("\n")
        if binding.key is not None:
            lines.setdefault(binding.key, []).append(line)
        if binding.error:
            raise ConfigError(path, f"line {line}{_shown_name(binding.original.string)} is not NAME=value as a "
                              ".env file writes it (an unclosed quote?); nothing of it would be set")
        if binding.key is not None and binding.value is None:
            # A name alone, or `NAME:value`: python-dotenv reads a name without a value and skips it,
            # and `CONNECTOR_RETENTION_DAYS` (its value forgotten) left retention off without a word.
            raise ConfigError(path, f"line {line}{_shown_name(binding.original.string)} has no '=': it is not "
                              "NAME=value and would set nothing (NAME= sets an empty value)")
    return lines


def _shown_name(line: str) -> str:
    """The name a refused .env line starts with, to be shown — never the rest: a line without `=`
    may be a secret's whole value. Only a name an `=` or `:` follows, or one the connector reads: a
    bare secret's start matched the pattern too."""
    name = re.match(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]{0,60})(?=\s*[=:])", line)
    if name:
        return f" ({name.group(1)}…)"
    alone = line.strip().removeprefix("export").strip()
    return f" ({alone})" if alone in _VARIABLES or alone in _READ_ELSEWHERE else ""


def _chooses_another(path: str, values: Mapping[str, str | None]) -> str | None:
    """The file a `CONNECTOR_ENV_FILE` line of the dotenv file at `path` names, when it names another
    one (or none: empty). `CONNECTOR_ENV_FILE=/etc/handoff-connector.env` uncommented in `.env`
    (.env.example lists it first) comes too late to choose which file is read: gunicorn ignored it
    without a word, and `check` said to run with FLASK_SKIP_DOTENV=1, then ok. Warned about
    (`Settings.warnings`), not refused: it changed nothing before either, and a service that
    started with it must not stop after an upgrade."""
    named = values.get(ENV_FILE)
    if named is None or (named and os.path.isfile(named) and os.path.samefile(named, path)):
        return None  # not set there, or naming the very file: it changes nothing
    return named


def pin_env_file(read: str | None, environ: MutableMapping[str, str] | None = None) -> None:
    """gunicorn's master, after its first read: its workers read that file or, when there was
    none, none (`load_env_file`). When it looked for `.env` by default and found none, a reload
    looks again (`reread_env_file`): the file made since is what an operator then means to apply."""
    environ = os.environ if environ is None else environ
    if read is None and environ.get(ENV_FILE) is None:
        environ[AWAITED] = os.path.join(os.getcwd(), ".env")
    environ[ENV_FILE] = os.path.abspath(read) if read else ""


def _has_userinfo(url: str) -> bool:
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:
        return False  # not a URL at all: the check of what it is for says so


def _file_keys(environ: Mapping[str, str]) -> list[str]:
    return [key for key in environ.get(FILE_KEYS, "").split(",") if key]


def reread_env_file(check: Callable[[Mapping[str, str]], Any],
                    environ: MutableMapping[str, str] | None = None) -> ConfigError | None:
    """gunicorn's reload (SIGHUP) executes gunicorn.conf.py again: the file is read afresh, its
    values replacing what the last read set — a variable of the real environment still wins, one
    taken out of the file is unset. Read as at start, values already set won: a changed variable
    kept its old value while an added one applied, a mixed configuration nobody wrote.

    `check` judges the result (settings and targets, as a worker would). Refused, the environment
    is put back as it was and the refusal returned: the new workers start on the last good
    settings, where a typo made them fail to boot and gunicorn stop the whole service."""
    environ = os.environ if environ is None else environ
    before = dict(environ)
    read = environ.get(FILE_READ)
    if read and not os.path.isfile(read):
        # Moved away or unmounted: not the operator's CONNECTOR_ENV_FILE "naming" a missing file
        # (they never set it; the master pinned it for its workers). What it set stays in use.
        return ConfigError(read, "was read at start (or at the last reload) and is gone: the settings in use "
                                 "are kept; put it back, or restart the service to run without it")
    awaited = environ.get(AWAITED)
    if environ.get(ENV_FILE) == "" and awaited and os.path.isfile(awaited):
        environ[ENV_FILE] = awaited  # made since a start that found none (refused, it is "" again)
    for key in (*_file_keys(environ), FILE_KEYS, FILE_READ, FILE_TWICE, FILE_CHOOSES):
        environ.pop(key, None)
    try:
        load_env_file(environ)
        check(environ)
    except ConfigError as err:
        for key in set(environ) - set(before):
            environ.pop(key)
        environ.update(before)
        return err
    return None


def _flasks_own_read() -> str | None:
    """The `.env` the `flask` command read before the app, if it read one."""
    from dotenv import find_dotenv
    from flask.cli import get_load_dotenv

    if in_flask_command() is None or not get_load_dotenv():
        return None
    return find_dotenv(".env", usecwd=True) or None


def _refuse_flasks_own_read(named: str) -> None:
    """The `flask` command reads the nearest `.env` before the app exists, and what it set wins
    over `CONNECTOR_ENV_FILE`'s lines like the environment does: `check` would then judge another
    configuration than the service runs. Refused, saying how to run it, rather than mixed."""
    read = _flasks_own_read()
    if not read or (named and os.path.isfile(named) and os.path.samefile(read, named)):
        return  # nothing read, or the very file named
    raise ConfigError(ENV_FILE, f"is set, but the flask command has already read {read}, whose lines would win "
                                "over it: run the command with FLASK_SKIP_DOTENV=1")


def _split_pairs(name: str, raw: str) -> tuple[tuple[str, str], ...]:
    """`bot:value,bot:value` → pairs; a bot may appear several times (rotation)."""
    pairs = []
    for n, item in enumerate(filter(None, (part.strip() for part in raw.split(","))), start=1):
        bot, sep, value = item.partition(":")
        if not sep or not bot.strip() or not value.strip():
            # By position, never by content: an entry without its `bot:` is most likely a key or
            # secret pasted alone, and this line goes to stderr and the container's logs.
            raise ConfigError(name, f"entry {n} is not a 'bot_id:value' pair (pairs are separated by commas)")
        pairs.append((bot.strip(), value.strip()))
    return tuple(pairs)


def _int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"must be a whole number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(name, f"must not be negative, got {value}")
    return value


# Workers or threads past this are a typo, not a machine: 10²⁰ delivery threads passed `check`, and
# every claim of due deliveries then failed (a LIMIT past the database's integers) — nothing was
# delivered, once more each second (an operator's review).
MAX_COUNT = 1000


def count(name: str, raw: str) -> int:
    """A whole number from 1 to `MAX_COUNT` (workers, threads), the variable named in the error."""
    value = _int(name, raw)
    if not 1 <= value <= MAX_COUNT:
        raise ConfigError(name, f"must be from 1 to {MAX_COUNT}, got {value}")
    return value


def bind_address(name: str, raw: str) -> str:
    """`host:port` (`[::1]:8000` for IPv6) or `unix:/path`: a port out of range or not a number
    stopped gunicorn with its own traceback (`OverflowError: bind(): port must be 0-65535`)."""
    value = raw.strip()
    if value.startswith("unix:"):
        if not value.removeprefix("unix:").strip():  # passed `check`, and gunicorn then failed to bind
            raise ConfigError(name, "must name the socket's path after unix: (unix:/run/connector.sock)")
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(name, f"must be host:port with a port from 1 to 65535 (or unix:/path), got {raw!r}")
    return value


def web_server_problems(environ: Mapping[str, str]) -> list[str]:
    """What `gunicorn.conf.py` would refuse at start (it reads these, not the app): `check` passed
    CONNECTOR_BIND=8080 and CONNECTOR_WEB_WORKERS=0, and the service then did not start."""
    problems = []
    for name, read in (("CONNECTOR_BIND", bind_address), ("CONNECTOR_WEB_WORKERS", count),
                       ("CONNECTOR_WEB_THREADS", count)):
        if name in environ:
            try:
                read(name, environ[name])
            except ConfigError as err:
                problems.append(str(err))
    return problems


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(name, f"must be more than 0, got {raw!r}")
    # `inf` (or 1e10) passed: a wait that long died at once (a time out of the platform's range),
    # and a base of inf was blamed on the max it was compared with.
    if not value <= MAX_ANY_SECONDS:
        raise ConfigError(name, f"must be a number of seconds up to {MAX_ANY_SECONDS:.0f}, got {raw!r}")
    return value


def _seconds(name: str, raw: str) -> int:
    """A whole number of seconds (a lease, a timeout, an age) up to `MAX_ANY_SECONDS`, as one written
    with a point is: 10¹² passed, and every handoff was a 500 (a lease's end out of range)."""
    value = _int(name, raw)
    if value > MAX_ANY_SECONDS:
        raise ConfigError(name, f"must be a number of seconds up to {MAX_ANY_SECONDS:.0f}, got {raw!r}")
    return value


def _days(name: str, raw: str) -> int:
    """A whole number of days up to `MAX_DAYS`: a million passed, and each purge failed on a cutoff
    out of range."""
    value = _int(name, raw)
    if value > MAX_DAYS:
        raise ConfigError(name, f"must be a number of days up to {MAX_DAYS} ({MAX_ANY_SECONDS:.0f} seconds), "
                                f"got {raw!r}")
    return value


def _interval(name: str, raw: str) -> float:
    """How long a loop sleeps between looks: at most a day (`inf` passed, and the loop died at its
    first wait while the process ran on, delivering nothing)."""
    value = _float(name, raw)
    if value > MAX_SECONDS:
        raise ConfigError(name, f"must be at most {MAX_SECONDS} (a day), got {raw!r}")
    return value


MAX_SECONDS = 86_400
MAX_ANY_SECONDS = 1e8  # about three years: any wait or date the connector computes stays in range
MAX_DAYS = int(MAX_ANY_SECONDS // 86_400)  # 1157: the same bound in days


def writable_directory(name: str, directory: str) -> str:
    """`directory` (the value of the variable `name`), made if missing; refused, naming the variable,
    when it cannot be made or this process cannot write in it. For gunicorn.conf.py too, which may
    not import the metrics module before it chooses the metrics directory."""
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as err:
        raise ConfigError(name, f"{directory!r} cannot be made ({err.strerror})") from None
    if not (os.path.isdir(directory) and os.access(directory, os.W_OK | os.X_OK)):
        raise ConfigError(name, f"{directory!r} is not a directory this process can write")
    return directory


def http_address(name: str, raw: str, example: str, schemes: tuple[str, ...] = ("http", "https")) -> SplitResult:
    """`raw` split, when it is an http(s) address a client can call and add paths to: `ConfigError`
    naming `name` otherwise. The one judge of the addresses the connector is given —
    CONNECTOR_PUBLIC_URL here, each vendor's override in its adapter — with their own rules on top:
    a `[` without its `]` was urlsplit's ValueError, a traceback at start and in `check`, and at a
    reload one that stopped gunicorn; a vendor's with a port past 65535, a space, a ?query or a
    #fragment passed, and every delivery then failed as transient for a day."""
    # The value is shown unless it may hold a credential (user:password@, a token in a query).
    shown = f", got {raw!r}" if not any(mark in raw for mark in "@?#") else ""
    try:
        parts = urlsplit(raw)
    except ValueError:  # `https://[::1`, `http://a]b`, `http://[host]`
        raise ConfigError(name, f"is not an address a client can read: [ and ] go around an IPv6 host alone "
                          f"(https://[::1]:8000){shown}") from None
    if parts.scheme.lower() not in schemes or not parts.hostname:
        raise ConfigError(name, f"must be an {'http(s)' if len(schemes) > 1 else schemes[0]}:// address "
                          f"({example}){shown}")
    if re.search(r"\s", raw):
        raise ConfigError(name, f"must not hold a space (or a tab, a line break){shown}")
    try:
        port = parts.port
    except ValueError:  # no number, or past 65535: no client can parse the address
        port = 0
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(name, f"has a port that is not a number from 1 to 65535{shown}")
    if "?" in raw or "#" in raw:  # a review: every link came out `https://x.example/c?x=1/v1/handoffs/…`
        raise ConfigError(name, f"must be an address without a ?query or #fragment (paths are added to it){shown}")
    return parts


def _public_url(name: str, raw: str) -> str:
    """The address bots and people reach the service at, without a trailing slash: stored links
    are built on it (`handoff.example.com/v1/…` without a scheme, `…//v1/…` with the slash)."""
    value = raw.strip().rstrip("/")
    if not value:
        return value
    parts = http_address(name, value, "https://handoff.example.com")
    # `HTTPS://…` passed as it was, and the admin cookie's Secure flag (which asks "https://") was off.
    return parts._replace(scheme=parts.scheme.lower()).geturl()


BOOL_WORDS = "1 or 0 (true/false, yes/no and on/off work too)"


def truth(raw: str) -> bool | None:
    """A yes or no as a setting or a query parameter says it, in any case; None for anything else."""
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    return None


def _bool(name: str, raw: str) -> bool:
    said = truth(raw)
    if said is None:
        raise ConfigError(name, f"must be {BOOL_WORDS}, got {raw!r}")
    return said


def _list(name: str, raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _none_named(name: str, raw: str) -> tuple[str, ...]:
    """An empty `CONNECTOR_TARGETS=`: a deploy template's unset `${TARGETS}` started the service
    delivering to no agent (the built-in preview alone), bots told `delivered` (an operator review)."""
    raise ConfigError(name, f"names no target ({raw!r}): name them (preview, zendesk, salesforce, slack), "
                            "or leave the variable out for the built-in preview alone")


def _str(name: str, raw: str) -> str:
    return raw.strip()


def salesforce_domain(raw: str, name: str = "SALESFORCE_DOMAIN") -> str:
    """What simple-salesforce puts between `https://` and `.salesforce.com` to log in: `login`,
    `test`, or a My Domain (`acme.my`, `acme--sandbox.sandbox.my`). `https://test.salesforce.com`
    passed `check`, and each case then tried `https://https://test.salesforce.com.salesforce.com`
    for a day ("could not reach Salesforce") before it was given up. Judged when password login is
    what the enabled `salesforce` target uses (`SalesforceAdapter.setting_problems`): a value left
    over where nothing reads it stopped nothing before, and must not stop an upgrade."""
    value = raw.strip()
    if not value or (re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?", value)
                     and not value.lower().endswith(".salesforce.com")):
        return value
    # The login address pasted whole: say what to write instead, where it can be told.
    host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", value, flags=re.IGNORECASE).split("/")[0].rstrip(".").lower()
    meant = host.removesuffix(".salesforce.com") if host.endswith(".salesforce.com") else \
        host.removesuffix(".lightning.force.com") + ".my" if host.endswith(".lightning.force.com") else ""
    instead = f"write {meant!r} for {value[:60]!r}" if re.fullmatch(r"[a-z0-9][a-z0-9.-]*", meant) else \
        f"got {value[:60]!r}"
    raise ConfigError(name, f"must be what comes before .salesforce.com in the login address, without https:// "
                      f"or a path: login, test (sandboxes) or your My Domain (acme.my, acme--sandbox.sandbox.my) — "
                      f"{instead}")


# Zero would not switch these off, it would break them: a 0 s timeout is refused by requests on
# every call, a 0 s lease is taken over while it runs, a limit of 0 refuses every request. The
# packet's own fields nest 6 deep (`transcript.0.attachments.0.size`): a depth limit under that
# refused the contract's own example, unwarned (a review).
_AT_LEAST = {
    "delivery_threads": 1, "callback_threads": 1, "max_attempts": 1, "callback_max_attempts": 1, "vendor_timeout_s": 1,
    "callback_timeout_s": 1, "lease_s": 1, "max_body_bytes": 1, "max_transcript_entries": 1,
    "max_entry_chars": 1, "max_json_depth": 6, "max_delivery_age_s": 1,
}
# Deeper JSON than this is more than the brief's rendering and the vendors' payloads can walk (a
# metadata object 300 deep failed every delivery attempt with a RecursionError until it went dead,
# after a 202: a review); the parser's own limit then answered "deeper than 100000 levels".
MAX_JSON_DEPTH = 100
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


# A body limit below this refuses a handoff carrying a real conversation (a few dozen messages,
# the customer, the bot's context) with 413: warned about. Not refused: a test or a demo may mean it.
MIN_USEFUL_BODY_BYTES = 16 * 1024
# Read by /webhooks/<vendor> whether the target is enabled or not: events still come for tickets
# made while it was (`_unused_vendor_settings` leaves them out).
_READ_WITHOUT_TARGET = frozenset({"ZENDESK_WEBHOOK_SECRETS", "SLACK_SIGNING_SECRET", "SALESFORCE_WEBHOOK_TOKENS",
                                  "SALESFORCE_ORG_ID"})
# What the `preview` target renders each vendor's payload with (a channel, the ticket's address):
# not ignored while it is enabled, whichever vendors are.
_READ_BY_PREVIEW = frozenset({"SLACK_CHANNEL", "ZENDESK_SUBDOMAIN", "SALESFORCE_INSTANCE_URL"})
RETENTION_MIN_DAYS = 7  # the observed wait may read seven days of assignments (`retention`)
RETENTION_WHY = "the observed wait reads up to seven days of assignments"
MIN_TOKEN_CHARS = 24  # bearer keys and tokens shorter than this are warned about (SECURITY.md)
_SALESFORCE_ORG_ID = re.compile(r"00D[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?", re.ASCII)
MIN_SECRET_BYTES = 16  # bot signing secrets (decoded) shorter than this are warned about
# Credentials printed in the README and .env.example: whoever read them can use them. `change-me…`
# values are placeholders (refused); these are working examples (warned about: fine on one's own
# machine, as the quickstart is, never where anyone else can reach the service).
PLACEHOLDER = "change-me"
PUBLISHED_KEYS = {"dev-key-0123456789abcdefghij": "the README's quickstart key"}
PUBLISHED_SECRETS = {"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw": "the Standard Webhooks example secret in .env.example"}

# variable name → (Settings attribute, parser). The single table of what the service reads.
_VARIABLES: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "CONNECTOR_DATABASE_URL": ("database_url", _str),
    "CONNECTOR_MAPPINGS_DIR": ("mappings_dir", _str),
    "CONNECTOR_TARGETS": ("targets", lambda name, raw: _list(name, raw) or _none_named(name, raw)),
    "CONNECTOR_BOT_KEYS": ("bot_keys", _split_pairs),
    "CONNECTOR_BOT_SECRETS": ("bot_secrets", _split_pairs),
    "CONNECTOR_ADMIN_TOKEN": ("admin_token", _str),
    "CONNECTOR_METRICS_TOKEN": ("metrics_token", _str),
    "CONNECTOR_ALLOW_UNAUTHENTICATED": ("allow_unauthenticated", _bool),
    "CONNECTOR_SYNC_BUDGET_MS": ("sync_budget_ms", _int),
    "CONNECTOR_MAX_BODY_BYTES": ("max_body_bytes", _int),
    "CONNECTOR_MAX_TRANSCRIPT_ENTRIES": ("max_transcript_entries", _int),
    "CONNECTOR_MAX_ENTRY_CHARS": ("max_entry_chars", _int),
    "CONNECTOR_MAX_JSON_DEPTH": ("max_json_depth", _int),
    "CONNECTOR_DELIVERY_THREADS": ("delivery_threads", count),
    "CONNECTOR_MAX_ATTEMPTS": ("max_attempts", _int),
    "CONNECTOR_MAX_DELIVERY_AGE_S": ("max_delivery_age_s", _seconds),
    "CONNECTOR_LEASE_S": ("lease_s", _seconds),
    "CONNECTOR_RETRY_BASE_S": ("retry_base_s", _float),
    "CONNECTOR_RETRY_MAX_S": ("retry_max_s", _float),
    "CONNECTOR_POLL_INTERVAL_S": ("poll_interval_s", _interval),
    "CONNECTOR_VENDOR_TIMEOUT_S": ("vendor_timeout_s", _seconds),
    "CONNECTOR_LOG_LEVEL": ("log_level", _str),
    "CONNECTOR_PUBLIC_URL": ("public_url", _public_url),
    "CONNECTOR_CALLBACK_THREADS": ("callback_threads", count),
    "CONNECTOR_CALLBACK_MAX_ATTEMPTS": ("callback_max_attempts", _int),
    "CONNECTOR_CALLBACK_TIMEOUT_S": ("callback_timeout_s", _seconds),
    "CONNECTOR_CALLBACK_ALLOW_PRIVATE": ("callback_allow_private", _bool),
    "CONNECTOR_RETENTION_DAYS": ("retention_days", _days),
    "ZENDESK_SUBDOMAIN": ("zendesk_subdomain", _str),
    "ZENDESK_EMAIL": ("zendesk_email", _str),
    "ZENDESK_API_TOKEN": ("zendesk_api_token", _str),
    "ZENDESK_OAUTH_TOKEN": ("zendesk_oauth_token", _str),
    "ZENDESK_BASE_URL": ("zendesk_base_url", _str),
    "ZENDESK_WEBHOOK_SECRETS": ("zendesk_webhook_secrets", _list),
    "SALESFORCE_INSTANCE_URL": ("salesforce_instance_url", _str),
    "SALESFORCE_ACCESS_TOKEN": ("salesforce_access_token", _str),
    "SALESFORCE_USERNAME": ("salesforce_username", _str),
    "SALESFORCE_PASSWORD": ("salesforce_password", _str),
    "SALESFORCE_SECURITY_TOKEN": ("salesforce_security_token", _str),
    "SALESFORCE_DOMAIN": ("salesforce_domain", _str),
    "SALESFORCE_CLIENT_ID": ("salesforce_client_id", _str),
    "SALESFORCE_CLIENT_SECRET": ("salesforce_client_secret", _str),
    "SALESFORCE_WEBHOOK_TOKENS": ("salesforce_webhook_tokens", _list),
    "SALESFORCE_ORG_ID": ("salesforce_org_id", _str),
    "SLACK_BOT_TOKEN": ("slack_bot_token", _str),
    "SLACK_SIGNING_SECRET": ("slack_signing_secret", _str),
    "SLACK_CHANNEL": ("slack_channel", _str),
    "SLACK_API_URL": ("slack_api_url", _str),
}


# Read elsewhere (gunicorn.conf.py, the env file's own name, the tests' PostgreSQL): not unknown.
_READ_ELSEWHERE = frozenset({ENV_FILE, "CONNECTOR_BIND", "CONNECTOR_WEB_WORKERS", "CONNECTOR_WEB_THREADS",
                             "CONNECTOR_TEST_POSTGRES_URL"})
_OURS = ("CONNECTOR_", "ZENDESK_", "SALESFORCE_", "SLACK_")


def unread(environ: Mapping[str, str]) -> tuple[str, ...]:
    """Variables named like ours that nothing reads: `CONNECTOR_RETENTION_DAY=30` kept every handoff
    for ever and `CONNECTOR_METRICS_TOKN` left /metrics open, with `check` saying ok. A misspelt
    prefix too, when the whole name is close to one of ours (`CONECTOR_RETENTION_DAYS`, `ZENDSK_SUBDOMAIN`):
    another tool's `CONNECT_TIMEOUT` is not."""
    return tuple(sorted(name for name in environ
                        if (_normal(name).startswith(_OURS) and name not in _VARIABLES and name not in _READ_ELSEWHERE)
                        or _misspelt_ours(_normal(name))))


def _normal(name: str) -> str:
    """A name as it would be spelt right: `CONNECTOR-RETENTION-DAYS=30` and `connector.metrics_token`
    in a .env were looked at as they stood, matched no prefix, and retention stayed off, /metrics
    open, without a word."""
    return re.sub(r"[-.\s]+", "_", name.strip()).upper()


def exposed_mode(path: str) -> int:
    """The mode of a file other users of the machine may read (group or others have a bit, and
    they can enter its directory: one others cannot enter, 0700, protects it), else 0 — also when
    it is not there. The SQLite file and the dotenv file are judged alike."""
    try:
        mode = os.stat(path).st_mode & 0o777 if path else 0
        entered = os.stat(os.path.dirname(os.path.realpath(path))).st_mode & 0o011 if mode & 0o077 else 0
    except OSError:  # gone since it was read: nothing to say of it
        return 0
    return mode if mode & 0o077 and entered else 0


def _misspelt_ours(name: str) -> bool:
    head, sep, _ = name.partition("_")
    if not sep or name[:1] not in "CZS" or name.startswith(_OURS):  # most of an environment stops here
        return False
    return bool(difflib.get_close_matches(head + "_", _OURS, n=1, cutoff=0.8)) and \
        bool(difflib.get_close_matches(name, [*_VARIABLES, *_READ_ELSEWHERE], n=1, cutoff=0.85))


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    mappings_dir: str = "mappings"
    targets: tuple[str, ...] = ("preview",)
    bot_keys: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    bot_secrets: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    admin_token: str = field(default="", repr=False)
    metrics_token: str = field(default="", repr=False)
    allow_unauthenticated: bool = False
    sync_budget_ms: int = 5000
    max_body_bytes: int = 1024 * 1024
    max_transcript_entries: int = 2000
    max_entry_chars: int = 20000
    max_json_depth: int = 32
    delivery_threads: int = 16
    max_attempts: int = 12
    max_delivery_age_s: int = 24 * 3600
    lease_s: int = 60
    retry_base_s: float = 2.0
    retry_max_s: float = 600.0
    poll_interval_s: float = 1.0
    vendor_timeout_s: int = 15
    log_level: str = "INFO"
    public_url: str = ""
    callback_threads: int = 4
    # A status callback's attempts: enough for CONNECTOR_MAX_DELIVERY_AGE_S (a day) to end them with the
    # default backoff (~150 by then). Counted as a vendor delivery's (12), a bot's endpoint down for 37
    # minutes (a deploy gone wrong) lost every state owed meanwhile for good (a review).
    callback_max_attempts: int = 160
    callback_timeout_s: int = 10
    callback_allow_private: bool = False
    retention_days: int = 0  # 0: keep every handoff (`retention`)
    zendesk_subdomain: str = ""
    zendesk_email: str = ""
    zendesk_api_token: str = field(default="", repr=False)
    zendesk_oauth_token: str = field(default="", repr=False)
    zendesk_base_url: str = ""
    zendesk_webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    salesforce_instance_url: str = ""
    salesforce_access_token: str = field(default="", repr=False)
    salesforce_username: str = ""
    salesforce_password: str = field(default="", repr=False)
    salesforce_security_token: str = field(default="", repr=False)
    salesforce_domain: str = ""
    salesforce_client_id: str = ""
    salesforce_client_secret: str = field(default="", repr=False)
    # Outbound Messages are not signed: the token in the endpoint URL the admin configures says it
    # is their org's (several at once for a rotation), and OrganizationId, when this is set, too.
    salesforce_webhook_tokens: tuple[str, ...] = field(default=(), repr=False)
    salesforce_org_id: str = ""
    slack_bot_token: str = field(default="", repr=False)
    slack_signing_secret: str = field(default="", repr=False)
    slack_channel: str = ""
    slack_api_url: str = ""
    # Variables named like ours that nothing reads (`unread`): warned about, with the name meant.
    unread: tuple[str, ...] = field(default=(), compare=False)
    # The dotenv file this process's settings came from (`load_env_file`), for its permissions.
    env_file: str = field(default="", compare=False)
    # Names that file sets on more than one line, with the lines (`load_env_file`): warned about.
    set_twice: tuple[tuple[str, tuple[int, ...]], ...] = field(default=(), compare=False)
    # That file sets CONNECTOR_ENV_FILE, which it cannot (`_chooses_another`): warned about.
    env_file_chooses: bool = field(default=False, compare=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        environ = os.environ if environ is None else environ
        values, refused = {}, []
        for name, (attr, parse) in _VARIABLES.items():
            if name in environ:
                try:
                    values[attr] = parse(name, environ[name])
                except ConfigError as err:  # every value to fix, named at once
                    refused.append(err)
        if refused:
            raise ConfigError.joined(refused)
        twice = tuple((key, tuple(lines)) for key, lines in json.loads(environ.get(FILE_TWICE) or "{}").items())
        return cls(**values, unread=unread(environ), env_file=environ.get(FILE_READ, ""), set_twice=twice,
                   env_file_chooses=bool(environ.get(FILE_CHOOSES))).checked()

    def override(self, overrides: Mapping[str, Any]) -> "Settings":
        """Settings with some attributes replaced (tests use this through `test_config`)."""
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError("test_config", f"unknown settings {sorted(unknown)}")
        return replace(self, **overrides).checked()

    def checked(self) -> "Settings":
        if self.sync_budget_ms > 60_000:
            raise ConfigError("CONNECTOR_SYNC_BUDGET_MS", "must be at most 60000 (bots time out long before)")
        if self.max_json_depth > MAX_JSON_DEPTH:
            raise ConfigError("CONNECTOR_MAX_JSON_DEPTH", f"must be at most {MAX_JSON_DEPTH} (deeper JSON is more than "
                              f"a handoff's brief and payloads can walk), got {self.max_json_depth}")
        for attr, least in _AT_LEAST.items():
            if getattr(self, attr) < least:
                raise ConfigError(self.variable_for(attr), f"must be at least {least}, got {getattr(self, attr)}")
        for attr in ("delivery_threads", "callback_threads"):  # as read (`count`), and as a test's override
            if getattr(self, attr) > MAX_COUNT:
                raise ConfigError(self.variable_for(attr), f"must be from 1 to {MAX_COUNT}, got {getattr(self, attr)}")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError("CONNECTOR_LOG_LEVEL", f"must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if self.retry_max_s < self.retry_base_s:
            raise ConfigError("CONNECTOR_RETRY_MAX_S", f"must be at least CONNECTOR_RETRY_BASE_S "
                              f"({self.retry_base_s:g}), got {self.retry_max_s:g}")
        self._each_credential_its_own()
        for attr in ("public_url", "zendesk_base_url", "salesforce_instance_url", "slack_api_url"):
            if _has_userinfo(getattr(self, attr)):
                # Never used to sign in (each vendor's credentials have their variables), and these
                # addresses are written into delivery errors, which bots and the admin page read.
                raise ConfigError(self.variable_for(attr), "must not carry a user or password (user:password@…): "
                                  "credentials have variables of their own")
        credentials = [("CONNECTOR_BOT_KEYS", key) for _, key in self.bot_keys] + \
            [("CONNECTOR_BOT_SECRETS", secret) for _, secret in self.bot_secrets] + \
            [("CONNECTOR_ADMIN_TOKEN", self.admin_token), ("CONNECTOR_METRICS_TOKEN", self.metrics_token)] + \
            [("SALESFORCE_WEBHOOK_TOKENS", token) for token in self.salesforce_webhook_tokens]
        for variable, value in credentials:
            if PLACEHOLDER in value.lower():
                # Uncommented from .env.example as it stands: a credential everyone who read it knows.
                raise ConfigError(variable, f"holds the {PLACEHOLDER}… placeholder of .env.example: set a long random "
                                  "value of your own (python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
        if self.salesforce_org_id and not _SALESFORCE_ORG_ID.fullmatch(self.salesforce_org_id):
            raise ConfigError("SALESFORCE_ORG_ID", "must be the organization's id as Setup › Company Information shows "
                              f"it (00D…, 15 or 18 letters and digits), got {self.salesforce_org_id!r}")
        for bot_id, secret in self.bot_secrets:
            if not usable_secret(secret):
                # Served, it refused every signed request of that bot as "no_secret_configured".
                raise ConfigError("CONNECTOR_BOT_SECRETS", f"the secret for {bot_id!r} is not a signing secret: "
                                  "the base64 key the bot signs with (standard alphabet, padding optional), "
                                  "whsec_ in front or not")
        if self.retention_days < 0 or 0 < self.retention_days < RETENTION_MIN_DAYS:
            raise ConfigError("CONNECTOR_RETENTION_DAYS", f"must be 0 (keep everything) or at least "
                              f"{RETENTION_MIN_DAYS}: {RETENTION_WHY}")
        return self

    def _each_credential_its_own(self) -> None:
        """A key or secret says who is calling: shared by two bots, one of them would act as the
        other (signed requests: the first bot whose secret matched); shared by a bot and the admin
        or the metrics, one credential would open both. Compared across every kind, not kind by
        kind (a review: one bot's signing secret sent as another's bearer key was that bot, and a
        bot's secret as the admin token opened the admin API), vendors' secrets too: whoever reads
        one in Zendesk's or Slack's console must not hold a credential of ours with it."""
        held: dict[str | bytes, tuple[str, str, str]] = {}
        for variable, holder, what, forms in self._credentials():
            for form in forms:
                other = held.setdefault(form, (variable, holder, what))
                if other[1] != holder:
                    raise ConfigError(variable, f"{what} has the same value as {other[2]} ({other[0]}): "
                                      "each must be its own, or one would act as the other")

    def _credentials(self) -> Iterator[tuple[str, str, str, tuple[str | bytes, ...]]]:
        """Each credential as (variable, who holds it, what it is, the forms it could be turned
        into and presented as): its text without `whsec_` and base64 padding (the library signs
        with `whsec_<b64>`, `<b64>` and either unpadded alike), its text as bytes, and the key it
        decodes to — a secret's holder who decodes it holds that text (a review of the mend: a
        secret `whsec_` + base64(P) beside an admin token P). A bot's key and its own secret have
        one holder: the same bot."""
        def forms(value: str) -> tuple[str | bytes, ...]:
            return value.removeprefix("whsec_").rstrip("="), value.encode()

        for bot_id, key in self.bot_keys:
            yield "CONNECTOR_BOT_KEYS", f"bot {bot_id}", f"the key of {bot_id!r}", forms(key)
        for bot_id, secret in self.bot_secrets:
            # Only a bot's secret is a key: other values decoded as base64 meet by chance (`s1`, `s2`).
            yield ("CONNECTOR_BOT_SECRETS", f"bot {bot_id}", f"the signing secret of {bot_id!r}",
                   (*forms(secret), signing_key(secret)))
        for variable, what, value in (("CONNECTOR_ADMIN_TOKEN", "the admin token", self.admin_token),
                                      ("CONNECTOR_METRICS_TOKEN", "the metrics token", self.metrics_token),
                                      ("SLACK_SIGNING_SECRET", "Slack's signing secret", self.slack_signing_secret)):
            if value:
                yield variable, variable, what, forms(value)
        for secret in self.zendesk_webhook_secrets:  # a rotation lists two of Zendesk's, one holder
            if secret:
                yield "ZENDESK_WEBHOOK_SECRETS", "zendesk", "a Zendesk webhook secret", forms(secret)
        for token in self.salesforce_webhook_tokens:  # it sits in a URL Salesforce's admins can read
            if token:
                yield "SALESFORCE_WEBHOOK_TOKENS", "salesforce", "a Salesforce webhook token", forms(token)

    def warnings(self) -> list[str]:
        """What is risky or useless in these settings without being wrong: `connector check` prints
        it, and the service logs it at start-up."""
        said = []
        for name in self.unread:  # as written: the environment's names are case-sensitive here
            close = difflib.get_close_matches(_normal(name), [*_VARIABLES, *_READ_ELSEWHERE], n=1, cutoff=0.8)
            meant = f" (did you mean {close[0]}?)" if close else ""
            said.append(f"{name} is not a variable the connector reads{meant}; it changes nothing")
        if self.env_file_chooses:
            said.append(f"CONNECTOR_ENV_FILE is set in {self.env_file or 'the .env file'}, where it cannot choose the "
                        "file to read (that one is being read): the line is ignored; set it in the real "
                        "environment (export, systemd's Environment=), or remove it")
        for name, lines in self.set_twice:
            # The last line wins, silently: an uncommented line of .env.example and one appended
            # with `>>` below it (as the quickstart does) — and an edit of the upper one changed nothing.
            said.append(f"{name} is set on lines {', '.join(map(str, lines[:-1]))} and {lines[-1]} of {self.env_file}: "
                        f"line {lines[-1]}'s value is used; remove the other{'s' if len(lines) > 2 else ''}")
        if self.allow_unauthenticated:
            said.append("CONNECTOR_ALLOW_UNAUTHENTICATED=1 accepts requests from anyone — development only")
        if not self.bot_keys and not self.bot_secrets and not self.allow_unauthenticated:
            said.append("no CONNECTOR_BOT_KEYS or CONNECTOR_BOT_SECRETS: every bot request will be refused")
        if not self.admin_token:
            said.append("no CONNECTOR_ADMIN_TOKEN: the admin HTTP surface (the admin page, /v1/preview, "
                        "/v1/deliveries and their retries) is off; the flask commands work without it")
        elif not self.public_url.startswith("https://"):
            parts = urlsplit(self.public_url)  # scheme and host only: a URL may carry user:password@
            shown = f"{parts.scheme}://{parts.hostname or ''}…" if self.public_url else "unset"
            said.append(f"CONNECTOR_PUBLIC_URL ({shown}) is not an https:// address: the admin page's session "
                        "cookie is marked Secure only on requests that reach this process over https — behind a "
                        "TLS proxy, set it to the address people use")
        for variable, token in (("CONNECTOR_ADMIN_TOKEN", self.admin_token),
                                ("CONNECTOR_METRICS_TOKEN", self.metrics_token),
                                *(("SALESFORCE_WEBHOOK_TOKENS", each) for each in self.salesforce_webhook_tokens)):
            if token and len(token) < MIN_TOKEN_CHARS:
                said.append(f"{variable}: a token is shorter than {MIN_TOKEN_CHARS} characters"
                            if variable == "SALESFORCE_WEBHOOK_TOKENS" else
                            f"{variable} is shorter than {MIN_TOKEN_CHARS} characters")
        for bot_id, secret in self.bot_secrets:
            if len(signing_key(secret)) < MIN_SECRET_BYTES:
                said.append(f"CONNECTOR_BOT_SECRETS: the secret for {bot_id!r} is shorter than {MIN_SECRET_BYTES} "
                            "bytes (Standard Webhooks secrets are 24 to 64)")
        published = [(f"CONNECTOR_BOT_KEYS: the key for {bot_id!r}", PUBLISHED_KEYS.get(key))
                     for bot_id, key in self.bot_keys]
        published += [(f"CONNECTOR_BOT_SECRETS: the secret for {bot_id!r}",
                       PUBLISHED_SECRETS.get(secret.removeprefix("whsec_").rstrip("=")))
                      for bot_id, secret in self.bot_secrets]
        published += [(variable, PUBLISHED_KEYS.get(token)) for variable, token in (
            ("CONNECTOR_ADMIN_TOKEN", self.admin_token), ("CONNECTOR_METRICS_TOKEN", self.metrics_token))]
        said += [f"{what} is {where}: anyone who read it can use it — fine on your own machine, never where "
                 "others can reach the service" for what, where in published if where]
        signing = {bot_id for bot_id, _ in self.bot_secrets}
        for bot_id, key in self.bot_keys:
            if len(key) < MIN_TOKEN_CHARS:
                said.append(f"CONNECTOR_BOT_KEYS: the key for {bot_id!r} is shorter than {MIN_TOKEN_CHARS} characters")
            if bot_id not in signing:
                said.append(f"no CONNECTOR_BOT_SECRETS entry for {bot_id!r}: its status callbacks cannot be signed "
                            "and are not sent")
        if mode := exposed_mode(self.env_file):  # SECURITY.md: chmod 600 it — it holds the credentials
            said.append(f"{self.env_file} can be read by other users of this machine (mode {mode:04o}), and it "
                        f"holds credentials: chmod 600 '{self.env_file}'")
        if self.callback_allow_private:
            said.append("CONNECTOR_CALLBACK_ALLOW_PRIVATE=1 lets bots' callback URLs reach this network — "
                        "development only")
        said += self._unused_vendor_settings()
        if self.max_body_bytes < MIN_USEFUL_BODY_BYTES:
            said.append(f"CONNECTOR_MAX_BODY_BYTES is {self.max_body_bytes}, under {MIN_USEFUL_BODY_BYTES} "
                        "(16 KiB): a handoff whose transcript holds a few dozen messages is refused with 413")
        if self.max_attempts > 1 and self.max_delivery_age_s < self.retry_base_s:
            # The first retry waits at least the base (`backoff_seconds`): when it fails, the
            # delivery (or status callback) is already older than the limit, and is given up.
            said.append(f"CONNECTOR_MAX_DELIVERY_AGE_S ({self.max_delivery_age_s} s) is shorter than the first "
                        f"retry's wait (CONNECTOR_RETRY_BASE_S, {self.retry_base_s:g} s or more): a delivery or "
                        "status callback is given up (dead) when its first retry fails, whatever "
                        "CONNECTOR_MAX_ATTEMPTS says")
        return said

    def _unused_vendor_settings(self) -> list[str]:
        """A vendor's credentials set while its target is not in CONNECTOR_TARGETS: nothing reads
        them, and the operator who set them most likely meant the target to be enabled."""
        unused: dict[str, list[str]] = {}
        read_anyway = _READ_WITHOUT_TARGET | (_READ_BY_PREVIEW if "preview" in self.targets else frozenset())
        for name, (attr, _) in _VARIABLES.items():
            prefix = name.partition("_")[0] + "_"
            if prefix in _OURS[1:] and name not in read_anyway and getattr(self, attr):
                target = prefix.rstrip("_").lower()
                if target not in self.targets:
                    unused.setdefault(target, []).append(name)
        return [f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} set but {target} is not in "
                f"CONNECTOR_TARGETS ({', '.join(self.targets)}): {'it is' if len(names) == 1 else 'they are'} "
                f"ignored; add {target} to CONNECTOR_TARGETS, or remove {'it' if len(names) == 1 else 'them'}"
                for target, names in unused.items()]

    @staticmethod
    def variable_for(attr: str) -> str:
        """The environment variable behind a settings attribute (for error messages)."""
        for name, (known, _) in _VARIABLES.items():
            if known == attr:
                return name
        return attr

    @staticmethod
    def variables() -> tuple[str, ...]:
        return tuple(_VARIABLES)


def in_flask_command() -> str | None:
    """Whether the app is being made for a `flask` command: None if not (gunicorn, tests, another
    server); else the command's name when it is running already (`run` loads the app itself), or
    "" while flask is still looking for the command (it loads the app to find `connector`)."""
    import click
    from flask.cli import FlaskGroup

    context = click.get_current_context(silent=True)
    if context is None or not isinstance(context.find_root().command, FlaskGroup):
        return None
    return "" if context.parent is None else (context.command.name or "")
