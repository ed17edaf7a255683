"""Admin-editable files in `mappings/`: one per target, plus routing and customer messages.

YAML through PyYAML's SafeLoader only. Every file carries `version: 1`. Each file is validated when
loaded — routing.yaml and messages.yaml by their marshmallow schemas, vendor files for their common
part (templates compile, paths are well-formed; the rest belongs to the adapter) — and an error names
the file, the LINE and the key (`mappings/routing.yaml:14 rules[2].when.segment`), read from the
node marks of the composed YAML tree. `MappingStore` re-reads edited files without a restart and
keeps the last good set when an edit is bad.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import yaml
from marshmallow import Schema, ValidationError

from .customer_message import MessagesSchema
from .errors import ConfigError, MappingProblem
from .mapping_values import check_document, table_problem
from .redaction import KINDS
from .routing_schema import compile_routing, flatten
from .template_trial import refuse_on_samples
from .text_rules import did_you_mean

log = logging.getLogger(__name__)
SUPPORTED_VERSIONS = {1}
Lines = dict[tuple[Any, ...], int]


@dataclass(frozen=True)
class Mappings:
    targets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    routing: Mapping[str, Any] = field(default_factory=dict)
    messages: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    loaded: bool = True  # False: no files read (`none_loaded`)
    # The files not there (`slack.yaml`, `routing.yaml`): the built-in defaults serve in their place.
    absent: frozenset[str] = frozenset()
    # Each vendor file as errors name it, and its keys' lines: to place a vendor's own refusal.
    files: Mapping[str, tuple[str, Lines]] = field(default_factory=dict, compare=False, repr=False)

    def located(self, problem: MappingProblem) -> ConfigError:
        """`problem` named by its file as read and its key's line."""
        name, lines = self.files.get(problem.file, (problem.source.split(": ")[0], {}))
        return ConfigError(locate(name, lines, problem.key_path), problem.message)


def read_yaml(path: Path, name: str | None = None) -> tuple[Any, Lines]:
    """The document and, for every key path, the line it starts on (1-based)."""
    name = name or str(path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except OSError as err:
        raise ConfigError(name, f"cannot be read: {err}") from None
    except UnicodeDecodeError as err:
        # "position 5610" sent an admin counting characters; its line, and what to do (a review).
        line = raw[:err.start].count(b"\n") + 1
        raise ConfigError(f"{name}:{line}", f"is not UTF-8 (byte 0x{raw[err.start]:02x}): save the file as UTF-8 — an "
                                            "editor's Latin-1 or Windows-1252 writes é and ü so") from None
    data, lines = _parsed(text, name)
    return copy.deepcopy(data), dict(lines)  # the cached parse stays as it was read


@lru_cache(maxsize=64)
def _parsed(text: str, name: str) -> tuple[Any, Lines]:
    """`text` parsed by PyYAML's own (pure-Python) parser, once per text and name: every app, every
    `check` and every reload read the same files again, and parsing them was half of `create_app`.
    (Not libyaml's parser, though it is ~10x faster: it accepts and refuses other texts — a flow
    mapping's `key:[a, b]`, a tab after a colon — so a file's validity would depend on the install.)"""
    node = None
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        raise ConfigError(f"{name}:{mark.line + 1}" if mark else name, f"is not valid YAML: {err.problem}") from None
    except yaml.YAMLError as err:
        raise ConfigError(name, f"cannot be read: {err}") from None
    except (ValueError, OverflowError) as err:
        # A value YAML recognises but cannot build: a holiday written 2026-24-12 (day and month
        # swapped) is a date to YAML, and its ValueError stopped start-up and every command.
        line = _unbuildable_line(node)
        raise ConfigError(f"{name}:{line}" if line else name, f"holds a value that is no real one: {err}") from None
    lines: Lines = {}
    if node is not None:
        _walk(node, (), lines, name)
    return data, lines


def _unbuildable_line(node: yaml.Node | None) -> int | None:
    """The line of the first scalar YAML cannot build (a date that does not exist)."""
    builder = yaml.constructor.SafeConstructor()
    stack = [node] if node is not None else []
    while stack:
        item = stack.pop(0)
        if isinstance(item, yaml.ScalarNode):
            try:
                builder.construct_object(item, deep=True)
            except (ValueError, OverflowError, yaml.YAMLError):
                return item.start_mark.line + 1
        elif isinstance(item, yaml.MappingNode):
            stack.extend(part for pair in item.value for part in pair)
        elif isinstance(item, yaml.SequenceNode):
            stack.extend(item.value)
    return None


def _walk(node: yaml.Node, path: tuple[Any, ...], lines: Lines, name: str) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:  # PyYAML keeps the last silently; an admin would not notice the first is ignored
                raise ConfigError(f"{name}:{key_node.start_mark.line + 1} {_dotted((*path, key))}", "duplicate key")
            seen.add(key)
            _walk(value_node, (*path, key), lines, name)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines, name)


def _dotted(path: tuple[Any, ...]) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else f".{step}" if text else str(step)
    return text


def _parse(key_path: str) -> tuple[Any, ...]:
    return tuple(int(s[1:-1]) if s.startswith("[") else s for s in re.findall(r"\[\d+\]|[^.\[\]]+", key_path))


def locate(name: str, lines: Lines, key_path: str) -> str:
    """`file:line key` for a key path; the line of the deepest part of the path the file has."""
    path = _parse(key_path)
    # YAML keys may be ints or dates while error paths are strings: compare as text.
    by_text = {tuple(str(s) for s in k): v for k, v in lines.items()}
    for depth in range(len(path), -1, -1):
        line = by_text.get(tuple(str(s) for s in path[:depth]))
        if line is not None:
            return f"{name}:{line} {key_path}".rstrip()
    return f"{name} {key_path}".rstrip()


def _check_version(data: Any, name: str, lines: Lines) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(name, "must be a mapping with a 'version:' key at the top")
    if data.get("version") not in SUPPORTED_VERSIONS:
        raise ConfigError(locate(name, lines, "version"),
                          f"must be one of {sorted(SUPPORTED_VERSIONS)}, got {data.get('version')!r}")
    return data


KeysOf = Callable[[str], Collection[str] | None]  # a target's name → the keys its file may hold; None: no file
VendorCheck = Callable[[str, Mapping[str, Any]], object]  # a target's own checks of its file (raise MappingProblem)


def load_file(path: Path, name: str | None = None, known: Collection[str] | None = None) -> dict[str, Any]:
    """A mapping file's data after the common checks (YAML, version, `known` top-level keys when
    given, templates, paths)."""
    return _load_file(path, name or str(path), known)[0]


def _load_file(path: Path, name: str, known: Collection[str] | None) -> tuple[dict[str, Any], Lines]:
    data, lines = read_yaml(path, name)
    data = _check_version(data, name, lines)
    unknown = [key for key in data if known is not None and key not in known]
    if unknown and known is not None:
        hint = did_you_mean(unknown[0], sorted(known))
        raise ConfigError(locate(name, lines, str(unknown[0])),
                          f"unknown key; {hint}this file's keys are {', '.join(sorted(known))}")
    if (commented := _commented_out(path, data, lines)) is not None:
        raise ConfigError(locate(name, lines, commented), "empty: a '#' after a space starts a YAML comment, so "
                                                          f"`{commented}: #…` holds nothing; quote the text (a "
                                                          "channel: give its id, C…), or leave the line out")
    if isinstance(known, Mapping):
        for key, expected in known.items():
            if expected is not None and data.get(key) is not None and not _holds(data[key], expected):
                raise ConfigError(locate(name, lines, key), _wanted(expected, data[key]))
    redact = data.get("redact", [])
    if not isinstance(redact, list) or not all(kind in KINDS for kind in redact):
        raise ConfigError(locate(name, lines, "redact"), f"must be a list of PII kinds from {', '.join(KINDS)}")
    tables = data.get("lookups") if isinstance(data.get("lookups"), Mapping) else None
    for table_name, table in (tables or {}).items():
        if isinstance(table, Mapping) and (wrong := table_problem(table)):
            raise ConfigError(locate(name, lines, f"lookups.{table_name}.{wrong[0]}"), wrong[1])
    try:
        refuse_on_samples(check_document({k: v for k, v in data.items() if k != "version"}, "", tables))
    except ConfigError as err:
        raise ConfigError(locate(name, lines, err.source), err.message) from None
    return data, lines


def _commented_out(path: Path, data: Mapping[str, Any], lines: Lines) -> str | None:
    """The first key whose value YAML read as a comment (`channel: #handoffs` is `channel:`: every
    alert went to SLACK_CHANNEL unsaid); a key left empty on purpose (`mention_on_urgent:`) is not."""
    text = path.read_text(encoding="utf-8").splitlines()
    return next((key for key, value in data.items() if value is None and (line := lines.get((key,)))
                 and _COMMENT_AS_VALUE.search(text[line - 1])), None)


_COMMENT_AS_VALUE = re.compile(r":\s+#")


def _holds(value: Any, expected: type | tuple[type, ...]) -> bool:
    if expected is bool or value is True or value is False:  # YAML's true/false only; a bool is no number
        return expected is bool and type(value) is bool
    return isinstance(value, expected)


def _wanted(expected: type | tuple[type, ...], value: Any) -> str:
    got = f"got {value!r}, which is text" if isinstance(value, str) else f"got {value!r}"
    if expected is bool:
        return f"must be true or false, unquoted ({got})"
    words = {list: "a list", dict: "a mapping (key: value lines)", str: "text", (int, float): "a number",
             (str, dict): "text or a value (path:, template:, lookup:…)"}
    return f"must be {words.get(expected, getattr(expected, '__name__', str(expected)))} ({got})"


def _schema_load(schema: Schema | Callable[[dict[str, Any]], Any], path: Path, name: str) -> Any:
    data, lines = read_yaml(path, name)
    data = _check_version(data, name, lines)
    try:
        return schema.load(data) if isinstance(schema, Schema) else schema(data)
    except ValidationError as err:
        # Every problem at once, each where it is: an admin fixing one per restart met the next only then.
        problems = [(locate(name, lines, key), _rule_named(data, key) + message)
                    for key, message in flatten(err.messages)]
        (where, message), rest = problems[0], problems[1:]
        also = "".join(f"\n  also {place}: {text}" for place, text in rest[:_MAX_SHOWN])
        if len(rest) > _MAX_SHOWN:
            also += f"\n  and {len(rest) - _MAX_SHOWN} more"
        raise ConfigError(where, f"{message}{also}") from None
    except ConfigError as err:  # a template the sandbox check refused, deeper down
        raise ConfigError(locate(name, lines, err.source), err.message) from None


_MAX_SHOWN = 20  # problems listed after the first one of a file


def _rule_named(data: Any, key_path: str) -> str:
    """`in rule 'vip-billing': ` for a key inside a named rule: `rules[6]` alone sends the admin counting."""
    path = _parse(key_path)
    if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int) and isinstance(data.get("rules"), list):
        rules = data["rules"]
        rule = rules[path[1]] if path[1] < len(rules) else None
        if isinstance(rule, Mapping) and isinstance(rule.get("name"), str) and rule["name"]:
            return f"in rule {rule['name']!r}: "
    return ""


def _strangers(base: Path, known: list[str], shown: Callable[[str], str]) -> list[ConfigError]:
    """A YAML file the connector does not read, refused: `routing.yml` or `Zendesk.yaml` was skipped
    without a word, and the built-in defaults served in its place (every handoff to `default`)."""
    refused = []
    for path in sorted(base.iterdir()):
        if _looked_at(path.name) and path.name not in known:
            hint = did_you_mean(path.name.lower().replace(".yml", ".yaml"), known, cutoff=0.7)
            refused.append(ConfigError(shown(path.name),
                                       f"is not a file the connector reads; {hint}it reads {', '.join(known)}"))
    return refused


def _looked_at(name: str) -> bool:
    """A name in the mappings directory the load reads or refuses (`_strangers`), and a change of
    which reloads (`MappingStore._scan`): a YAML name, not a hidden one — an editor's lock while a
    buffer is unsaved (Emacs' `.#routing.yaml`, a dangling link) or macOS's `._routing.yaml` refused
    the whole set, /readyz failing while `check` passed."""
    return Path(name).suffix.lower() in (".yaml", ".yml") and not name.startswith(".")


def load_mappings(directory: str, root: str, target_names: list[str], keys_of: KeysOf | None = None,
                  vendor_check: VendorCheck | None = None) -> Mappings:
    """Every mapping file, validated; raises ConfigError naming the first bad file, line and key,
    and every other problem found in any file after it (`also …`).
    `keys_of` gives each target's known keys (`adapters.registry.mapping_keys`); without it, vendor
    files are not checked for unknown keys (tests of the common checks). `vendor_check(target,
    data)`: the vendor's own checks of its file (its adapter built from it), whose MappingProblem is
    listed with the rest — run after the set loaded, a second bad file was named only once the
    first was mended (a review)."""
    base = Path(directory)
    if not base.is_absolute():
        base = Path(root) / base
    if not base.is_dir():
        raise ConfigError("CONNECTOR_MAPPINGS_DIR", f"{base} is not a directory")

    def shown(filename: str) -> str:
        return os.path.join(directory, filename) if not Path(directory).is_absolute() else str(base / filename)

    with_files = [name for name in target_names if keys_of is None or keys_of(name) is not None]
    # Every file is read, and each one's problems reported together: an admin fixing one file per
    # `check` met the next file's only then (a misnamed file's included).
    refused: list[ConfigError] = []
    if keys_of is not None:  # every target named (the service, `check`): a YAML file none reads is a mistake
        refused += _strangers(base, [*(f"{name}.yaml" for name in with_files), "routing.yaml", "messages.yaml"], shown)

    def loaded(load: Callable[[], Any]) -> Any:
        try:
            return load()
        except ConfigError as err:
            refused.append(err)
            return None

    read = {name: loaded(partial(_load_file, base / f"{name}.yaml", shown(f"{name}.yaml"),
                                 keys_of(name) if keys_of else None))
            for name in with_files if (base / f"{name}.yaml").exists()}
    read = {name: found for name, found in read.items() if found is not None}
    for name, (data, lines) in read.items() if vendor_check is not None else ():
        try:
            vendor_check(name, data)
        except MappingProblem as err:
            refused.append(ConfigError(locate(shown(err.file), lines, err.key_path), err.message))
    targets = {name: data for name, (data, _) in read.items()}
    files = {f"{name}.yaml": (shown(f"{name}.yaml"), lines) for name, (_, lines) in read.items()}
    known = list(target_names)
    routing = (loaded(lambda: _schema_load(lambda data: compile_routing(data, known), base / "routing.yaml",
                                           shown("routing.yaml")))
               if (base / "routing.yaml").exists() else compile_routing({}, known))
    messages: Mapping[str, Any] = {}
    if (base / "messages.yaml").exists():
        named = None if routing is None else {rule["then"]["message"] for rule in routing["rules"]
                                              if rule["then"].get("message")}
        messages = loaded(lambda: _schema_load(MessagesSchema(named_variants=named), base / "messages.yaml",
                                               shown("messages.yaml")))
        if routing is not None and messages is not None:
            loaded(lambda: _check_variants(routing, messages, shown("routing.yaml"), base / "routing.yaml"))
    if refused:
        raise ConfigError.joined(refused, also="\n  also ")
    absent = frozenset(name for name in (*(f"{target}.yaml" for target in with_files), "routing.yaml", "messages.yaml")
                       if not (base / name).exists())
    return Mappings(targets=targets, routing=routing, messages=messages or {}, source=str(base), files=files,
                    absent=absent)


def _check_variants(routing: Mapping[str, Any], messages: Mapping[str, Any], name: str, path: Path) -> None:
    """A rule's `message:` must name a variant of the default locale (a typo would go unnoticed)."""
    variants = messages["locales"][messages["default_locale"]].get("variants") or {}
    for index, rule in enumerate(routing["rules"]):
        wanted = rule["then"].get("message")
        if wanted and wanted not in variants:
            lines = read_yaml(path, name)[1] if path.exists() else {}
            raise ConfigError(locate(name, lines, f"rules[{index}].then.message"),
                              f"no variant {wanted!r} in messages.yaml locales.{messages['default_locale']}.variants")


class MappingStore:
    """The live mappings: `current()` re-reads the directory when a file changed (checked at most
    once per `interval` seconds, by mtime and size), and keeps the last good set when an edit is bad."""

    def __init__(self, directory: str, root: str, target_names: list[str], *, keys_of: KeysOf | None = None,
                 check: Callable[[Mappings], object] | None = None, vendor_check: VendorCheck | None = None,
                 interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, fallback: Mappings | None = None):
        """`check`: what else a set must pass before it serves (the services build the enabled
        adapters from it, whose own checks — a Zendesk custom field without an id — would
        otherwise refuse it only when first used, as a 500 on every request). `fallback`: the set
        to serve when the files are bad at start (`inherited`); without one, a bad file stops us."""
        self.directory, self.root, self.target_names, self.keys_of = directory, root, list(target_names), keys_of
        self.check, self.vendor_check = check, vendor_check
        self.interval, self._clock = interval, clock
        self._lock = threading.Lock()
        self._stamps = self._scan()
        self.errors: ConfigError | None = None
        try:
            self._mappings = self.load()
        except ConfigError as err:
            if fallback is None or not err.in_mappings:  # a setting to fix: no older set helps
                raise
            if fallback.loaded:  # a command on `none_loaded` says it itself, where it matters
                log.error("mappings edit refused at start; serving the set gunicorn last checked",
                          extra={"source": err.source, "error": err.message})
            self._mappings, self.errors = fallback, err
        self._checked = clock()

    def load(self) -> Mappings:
        """A fresh, strict load of the directory (raises ConfigError), whatever the store holds."""
        mappings = load_mappings(self.directory, self.root, self.target_names, self.keys_of, self.vendor_check)
        if self.check is not None:
            try:
                self.check(mappings)
            except MappingProblem as err:
                raise mappings.located(err) from None
        return mappings

    def _base(self) -> Path:
        base = Path(self.directory)
        return base if base.is_absolute() else Path(self.root) / base

    def _scan(self) -> dict[str, tuple[int, int]]:
        stamps: dict[str, tuple[int, int]] = {}
        try:
            found = list(self._base().iterdir())
        except OSError:  # the directory gone: the files are gone (the load says so)
            found = []
        for path in found:
            # Every name the load looks at (`_strangers` refuses a stray `routing.yml` or `Slack.YAML`):
            # a `*.yaml` glob missed those, and with one gone /readyz stayed "refused" until another
            # file changed.
            if not _looked_at(path.name):
                continue
            try:
                stat = path.stat()
            except OSError:
                try:  # a link to nothing is refused by the load: its coming and going are changes too
                    stat = path.lstat()
                except OSError:  # removed between listing and stat: the next scan sees it gone
                    continue
            stamps[path.name] = (stat.st_mtime_ns, stat.st_size)
        return stamps

    def current(self, *, verdict: bool = False) -> Mappings:
        """The set in force, the files looked at (at most once per `interval`). One caller looks
        (and reloads); the others are served the set in force meanwhile — waiting for the lock,
        every request of the process stalled while a large edited file was parsed (12 s for a
        4.5 MB lookup table, a review). `verdict`: wait for a reload under way, to read the files'
        own verdict after it (`errors`): a preview answered 200 with the set an edit was replacing."""
        now = self._clock()
        if now - self._checked < self.interval and not verdict:
            return self._mappings
        if not self._lock.acquire(blocking=verdict):
            return self._mappings
        try:
            if now - self._checked >= self.interval:
                self._checked = now
                stamps = self._scan()
                if stamps != self._stamps:
                    self._stamps = stamps  # a bad edit is reported once, not every second
                    self._reload()
        finally:
            self._lock.release()
        return self._mappings

    def _reload(self) -> None:
        before = self._mappings.absent if self._mappings.loaded else frozenset()
        try:
            self._mappings = self.load()
        except ConfigError as err:
            log.error("mappings edit refused; keeping the last good set",
                      extra={"source": err.source, "error": err.message})
            self.errors = err  # after the log line: whoever sees the refusal finds it logged too
        else:
            self.errors = None
            log.info("mappings reloaded", extra={"source": self._mappings.source})
            for name in sorted(self._mappings.absent - before):  # a file that served is gone: said, not silent
                log.warning("mapping file removed; the built-in defaults serve in its place",
                            extra={"file": name, "source": self._mappings.source})


def none_loaded(directory: str, root: str, target_names: list[str]) -> Mappings:
    """No files at all (every default): what a `flask` command starts on while an edit is refused,
    since most of them (deliveries, callbacks, replay, purge, migrate) use no mapping. `worker` and
    `preview` refuse to run on it; `check` loads the files itself and reports the refusal."""
    base = Path(directory) if Path(directory).is_absolute() else Path(root) / directory
    return Mappings(routing=compile_routing({}, list(target_names)), source=str(base), loaded=False)


# gunicorn's master keeps its store here (this module outlives a HUP, which re-runs
# gunicorn.conf.py) and the last set it checked, which the workers it forks inherit in memory. A
# worker that restarts (a crash, an OOM kill) while an edit is refused serves that set instead of
# failing to boot: gunicorn stops the whole service when a worker cannot boot. The master follows
# the files as the workers do (`follow_for_workers`), so after a good edit and then a refused one
# the new worker serves the good one. A restart of the service still stops on a bad file.
_MASTER: MappingStore | None = None
_INHERITED: Mappings | None = None
# Held while the master loads a set, and around every fork: a worker forked in the middle of a load
# could inherit a lock the follower held (a template cache's, say) that nothing would ever release.
_LOADING = threading.Lock()
_FOLLOWER: threading.Thread | None = None
_STOP = threading.Event()
_HOOKED = False


def keep_for_workers(store: MappingStore | None = None) -> None:
    """In the master: with its store at start; without, before each fork and whenever the files
    change — the files as they are now if they pass, else the last set that did (the workers log
    the refusal, /readyz shows it; the master stays quiet rather than say it again)."""
    global _MASTER, _INHERITED
    with _LOADING:
        if store is not None:
            _MASTER, _INHERITED = store, store.current()
        elif _MASTER is not None:
            try:
                _INHERITED = _MASTER.load()
            except ConfigError:
                pass


def follow_for_workers(interval: float = 1.0) -> threading.Thread:
    """In the master, once, after `keep_for_workers(store)`: look at the files every `interval`
    seconds, as the workers' stores do, and keep each set that passes for the next worker forked."""
    global _FOLLOWER
    if _FOLLOWER is not None:  # a HUP re-runs gunicorn.conf.py, not its on_starting
        return _FOLLOWER
    assert _MASTER is not None, "keep_for_workers(store) first"
    store = _MASTER

    stamps = store._stamps  # the files as of the set it holds: an edit made since is a change too

    def follow() -> None:
        nonlocal stamps
        while not _STOP.wait(interval):
            try:
                now = store._scan()
                if now != stamps:
                    stamps = now
                    before = _INHERITED
                    keep_for_workers()
                    if _INHERITED is not before:  # a refused edit: the workers say so themselves
                        log.info("mappings kept for the workers gunicorn starts next",
                                 extra={"source": store.directory})
            except Exception:  # never die quietly: pre_fork still checks the files before each fork
                log.exception("could not follow the mapping files for the workers")

    global _HOOKED
    if not _HOOKED:  # once per process: handlers cannot be taken back
        # Looked up at each fork, not bound now: a worker's own forks must take its fresh lock.
        os.register_at_fork(before=lambda: _LOADING.acquire(), after_in_parent=lambda: _LOADING.release(),
                            after_in_child=_fresh_lock)
        _HOOKED = True
    _FOLLOWER = threading.Thread(target=follow, name="mappings-for-workers", daemon=True)
    _FOLLOWER.start()
    return _FOLLOWER


def stop_following() -> None:
    """Tests: end the follower (a service ends it by exiting)."""
    global _FOLLOWER
    if _FOLLOWER is not None:
        _STOP.set()
        _FOLLOWER.join()
        _FOLLOWER = None
        _STOP.clear()


def _fresh_lock() -> None:
    # The child holds the copy the fork took (`before`); a worker never loads for others anyway.
    global _LOADING, _FOLLOWER
    _LOADING, _FOLLOWER = threading.Lock(), None


def inherited() -> Mappings | None:
    return _INHERITED
