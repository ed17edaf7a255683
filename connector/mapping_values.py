"""The value language of vendor field mappings: where a field's value comes from.

A value spec in YAML is one of

* `{path: collected_data.order_number}` — a dotted path into the packet (`transcript.0.text`
  indexes a list); a missing value resolves to `MISSING` and the adapter leaves the field out;
* `{template: "{{ intent.name | default('') }}"}` — a Jinja2 template rendered in the sandbox, with
  the packet's top-level keys (and any extra context, e.g. `assignment`) as variables;
* `{literal: Web}` — a fixed value (so is any bare number or boolean);
* `{lookup: sentiment_priority, from: sentiment.label, default: normal}` — the value at a path
  translated through a table (named in the file's `lookups:` or written inline as a mapping).

A bare string is a path when it is well-formed and starts at a packet field (`customer.id`,
`assignment.team`), a template when it contains `{{` or `{%`, else a literal — so existing
`Field__c: customer.account_id` entries keep working. Write `{literal: …}` to force a literal.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from jinja2 import TemplateSyntaxError, meta, nodes

from .errors import ConfigError, MappingProblem
from .schemas.near_misses import path_near_miss
from .templating import GLOBALS, FailedOnValues, MissingValue, compiled, parsed, render
from .text_rules import did_you_mean, visible_controls

log = logging.getLogger(__name__)

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING", "__bool__": lambda self: False})()

# Packet fields (contract §2) plus what the connector adds for mappings.
ROOTS = frozenset({
    "bot", "conversation", "customer", "transcript", "intent", "sentiment", "attempted_solutions",
    "collected_data", "history", "escalation", "routing", "targets", "callback", "vendor_extra",
    "metadata", "assignment", "handoff", "brief",
})
# What the connector builds for mappings (`adapters.base.mapping_context`, `routing.assign`): their
# keys are known, and a misspelt one (`assignment.teem`, `handoff.uuid`) found nothing on any handoff
# — the field left off every ticket, the receipt silent (a review). tests/test_mapping_paths.py keeps
# the assignment's in step with what routing writes.
BUILT_KEYS: dict[str, frozenset[str]] = {
    "handoff": frozenset({"id"}),
    "brief": frozenset({"subject"}),
    "assignment": frozenset({"team", "queue", "agent", "priority", "rule", "targets", "target_names", "trace",
                             "previous_agent", "business_hours", "out_of_hours", "routed_agents", "kept",
                             "customer_message_template", "customer_words"}),
}
_SEGMENT = r"(?:[A-Za-z_][A-Za-z0-9_-]*|[0-9]+)"
PATH_RE = re.compile(rf"^[A-Za-z_][A-Za-z0-9_]*(?:\.{_SEGMENT})*$")
KINDS = ("path", "template", "literal", "lookup")


@dataclass(frozen=True)
class Value:
    """A compiled spec: validated once at load, resolved per handoff."""

    kind: str
    source: Any  # the path, template text, literal, or (for lookup) the `from` path
    where: str
    table: Mapping[Any, Any] | None = None
    default: Any = MISSING


def check_path(path: Any, where: str) -> str:
    if not isinstance(path, str) or not PATH_RE.match(path):
        raise ConfigError(where, f"{path!r} is not a dotted path (e.g. collected_data.order_number, transcript.0.text)")
    root = path.split(".")[0]
    if root not in ROOTS:  # it would find nothing in any packet: the field left out, always, without a word
        raise ConfigError(where, f"{path!r} starts at {root!r}, which is not a packet field; "
                                 f"{_guess(root)}paths start at one of {', '.join(sorted(ROOTS))}")
    parts = path.split(".")
    if len(parts) > 1 and (problem := _not_built(root, parts[1])):
        raise ConfigError(where, f"{path!r}: {problem}")
    return path


def _not_built(root: str, key: str) -> str | None:
    """What is wrong with `root.key` when the connector builds `root` (`BUILT_KEYS`), or None."""
    known = BUILT_KEYS.get(root)
    if known is None or key in known:
        return None
    return (f"{root} has no {key!r}; {did_you_mean(key, sorted(known), cutoff=0.6)}"
            f"it holds {', '.join(sorted(known))}")


def _guess(root: str) -> str:
    return did_you_mean(root, sorted(ROOTS), cutoff=0.8)


def _built_keys_read(node: nodes.Node, own: set[str], built: frozenset[str]) -> Iterator[tuple[str, str]]:
    """Each `name.key` the template reads of what the connector builds (`built`, given to it), in
    the template's own scopes: a name it binds itself — a loop's `handoff`, a macro's argument, a
    `set brief` before — is its own where Jinja2 binds it, and the connector's again after (the
    loop's end): refused, a file that had loaded stopped the service; taken as bound anywhere, a
    misspelt `handoff.uuid` after such a loop loaded again (reviews of the mend). `own` (the names
    bound so far in this scope) gains a `set`'s, which later statements of the scope see."""
    def walk(child: nodes.Node | None, names: set[str]) -> Iterator[tuple[str, str]]:
        return _built_keys_read(child, names, built) if child is not None else iter(())

    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name in built \
            and node.node.name not in own:
        yield node.node.name, node.attr
    if isinstance(node, nodes.For):
        yield from walk(node.iter, own)
        inner = own | _stored(node.target) | {"loop"}  # a new set: the body's own `set`s end with it
        for child in (node.test, *node.body):
            yield from walk(child, inner)
        for child in node.else_:
            yield from walk(child, own)
    elif isinstance(node, (nodes.Macro, nodes.CallBlock)):
        for child in (*node.defaults, *([node.call] if isinstance(node, nodes.CallBlock) else [])):
            yield from walk(child, own)
        inner = own | {arg.name for arg in node.args} | {"caller", "varargs", "kwargs"}
        for child in node.body:
            yield from walk(child, inner)
    elif isinstance(node, nodes.With):
        for child in node.values:
            yield from walk(child, own)
        inner = own | {name for target in node.targets for name in _stored(target)}
        for child in node.body:
            yield from walk(child, inner)
    elif isinstance(node, (nodes.Assign, nodes.AssignBlock)):
        for child in ([node.node] if isinstance(node, nodes.Assign) else [*node.body, node.filter]):
            yield from walk(child, own)
        own.update(_stored(node.target))  # the scope's later statements read the template's own
    else:
        for child in node.iter_child_nodes():
            yield from walk(child, own)


def _stored(target: nodes.Node) -> set[str]:
    """The names an assignment's or a loop's target binds (`handoff`, or `a, handoff`)."""
    names = {name.name for name in target.find_all(nodes.Name)}
    return names | ({target.name} if isinstance(target, nodes.Name) else set())


def check_template(source: Any, where: str, variables: Collection[str] = ROOTS) -> str:
    """Compile `source` and refuse, at load time, what could only be a sandbox escape
    (`_`-attributes), a filter or test Jinja2 does not have, and a variable the template will not
    be given (`variables`: a vendor file's templates see the packet's fields, `ROOTS`).

    The sandbox would refuse escapes at render time too; refusing here means a bad edit never goes
    live. A misspelt variable or filter used to pass and fail at render: a customer message's made
    every handoff a 500, a vendor template's every delivery of that vendor.
    """
    if not isinstance(source, str):
        raise ConfigError(where, "a template must be a string")
    try:
        tree = parsed(source)
        compiled(source)  # unknown filters and tests are refused when compiling
    except TemplateSyntaxError as err:
        raise ConfigError(where, f"template syntax error: {err.message} (template line {err.lineno})") from None
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name, nodes.Const)):
        if isinstance(node, nodes.Const):  # `|attr('__class__')`, `x['__init__']`
            name, bad = node.value, isinstance(node.value, str) and node.value.startswith("__")
        else:
            name = node.attr if isinstance(node, nodes.Getattr) else getattr(node, "name", None)
            bad = isinstance(name, str) and name.startswith("_")
        if bad:
            raise ConfigError(where, f"template refers to {name!r}: names starting with '_' are not allowed")
    for name, key in _built_keys_read(tree, set(), frozenset(variables) & BUILT_KEYS.keys()):
        if problem := _not_built(name, key):
            raise ConfigError(where, f"template refers to {name}.{key}: {problem}")
    unknown = sorted(meta.find_undeclared_variables(tree) - set(variables) - GLOBALS)
    if unknown:
        given = ", ".join(sorted(variables)) or "none"
        raise ConfigError(where, f"template uses {', '.join(unknown)}, which it is not given here "
                                 f"(it is given: {given})")
    return source


def variables_used(source: str) -> set[str]:
    """The names a template reads (one `check_template` has passed)."""
    return set(meta.find_undeclared_variables(parsed(source)))


def looks_like_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def compile_value(raw: Any, where: str, tables: Mapping[str, Mapping[Any, Any]] | None = None) -> Value:
    """Validate one spec (see the module doc); `where` names the file, line and key for errors."""
    if isinstance(raw, Value):
        return raw
    if isinstance(raw, Mapping):
        kinds = [kind for kind in KINDS if kind in raw]
        if len(kinds) != 1:
            raise ConfigError(where, f"a value needs exactly one of {', '.join(KINDS)}; got keys {sorted(raw)}")
        kind = kinds[0]
        allowed = {"lookup", "from", "default"} if kind == "lookup" else {kind}
        if extra := sorted(set(raw) - allowed):
            raise ConfigError(where, f"unknown key(s) {extra} in a {kind} value")
        if kind == "path":
            return Value("path", check_path(raw["path"], f"{where}.path"), where)
        if kind == "template":
            return Value("template", check_template(raw["template"], f"{where}.template"), where)
        if kind == "literal":
            _sendable(raw["literal"], f"{where}.literal")
            return Value("literal", raw["literal"], where)
        if "default" in raw:
            _sendable(raw["default"], f"{where}.default")
        return Value("lookup", check_path(raw.get("from"), f"{where}.from"), where,
                     table=_table(raw["lookup"], tables, f"{where}.lookup"), default=raw.get("default", MISSING))
    if isinstance(raw, str):
        if looks_like_template(raw):
            return Value("template", check_template(raw, where), where)
        if PATH_RE.match(raw) and raw.split(".")[0] in ROOTS:
            return Value("path", raw, where)
        if "." in raw and PATH_RE.match(raw) and _guess(raw.split(".")[0]):
            # `colected_data.order_number` went to the vendor as that text, every time.
            raise ConfigError(where, f"{raw!r} reads as a misspelt path: {_guess(raw.split('.')[0])}"
                                     f"write {{literal: {raw}}} if the text itself is meant")
    if raw is not None and not isinstance(raw, (str, int, float, bool)):
        raise ConfigError(where, f"a value must be a scalar or one of {{path|template|literal|lookup: …}}, got {raw!r}")
    return Value("literal", raw, where)


def compile_for(target: str, spec: Any, key_path: str, tables: Mapping[str, Mapping[Any, Any]] | None) -> Value:
    """`compile_value` for a value spec in a vendor's own key (Zendesk's subject and custom fields,
    Salesforce's fields), checked when the file is loaded: a refusal is a `MappingProblem`, which
    the mapping store names with the file as read and the key's line."""
    try:
        return compile_value(spec, key_path, tables)
    except ConfigError as err:
        raise MappingProblem(target, err.source, err.message) from None


def misspelt_in(target: str, specs: Iterable[tuple[str, Any]],
                tables: Mapping[str, Mapping[Any, Any]] | None) -> list[str]:
    """Warnings for the packet paths the value specs of target's file read (`(key path, spec)`, each
    one `compile_for` passed) that most likely misspell a field the packet declares: `customer.segmnt`
    found nothing in any packet, and the field went off every ticket — or a lookup's `default` onto
    every VIP's — with `check` saying ok (an admin's review). Not refused: a bot's own keys are read
    as written, and one may sit that close to a declared name."""
    said = []
    for key_path, spec in specs:
        value = compile_value(spec, key_path, tables)
        for path in _paths_of(value):
            if (meant := path_near_miss(path)) is not None:
                said.append(f"mappings/{target}.yaml: {key_path}: {path} is no field the packet declares — did you "
                            f"mean {meant}? (a bot's own field is read as written)")
    return list(dict.fromkeys(said))


def _paths_of(value: Value) -> list[str]:
    """The packet paths `value` reads: its path, its lookup's `from`, or each `root.key…` its template does."""
    if value.kind in ("path", "lookup"):
        return [value.source]
    if value.kind != "template":
        return []
    paths = []
    for node in parsed(value.source).find_all(nodes.Getattr):
        keys: list[str] = []
        while isinstance(node, nodes.Getattr):
            keys.append(node.attr)
            node = node.node
        if isinstance(node, nodes.Name) and node.name in ROOTS:
            paths.append(".".join([node.name, *reversed(keys)]))
    return sorted(set(paths))


def table_problem(table: Mapping[Any, Any]) -> tuple[str, str] | None:
    """(key, what is wrong) for a lookup table's value no field can be sent — a mapping, or a list
    holding one — else None. Found per handoff, the WARNING blamed the packet's field the lookup
    reads (`sentiment.label is an object…`) and the field went off every such ticket (a review)."""
    for key, value in table.items():
        if wrong := _unsendable(value):
            return str(key), wrong
    return None


def _unsendable(value: Any) -> str | None:
    """What is wrong with `value`, written in a mapping as a field's value, or None."""
    if isinstance(value, (dt.date, dt.time)):
        # YAML reads `2026-12-07` as a date: it passed `check`, and every render of it failed (no
        # JSON for a date), the preview's and every delivery's (a review).
        return f"{value} is read as a date: write it quoted ('{value}') to send it as text"
    items = value if isinstance(value, (list, tuple)) else [value]
    if any(isinstance(item, (Mapping, list, tuple)) for item in items):
        return (f"{json.dumps(value, default=str)[:80]} cannot be a field's value: a lookup gives "
                "text, a number, true/false, or a list of those (a multi-select)")
    return None


def _sendable(value: Any, where: str) -> None:
    """A `literal:` or a lookup's `default:` that no field can take, refused at load: warned per
    handoff, the warning blamed the packet's field the lookup reads, and the field went off every
    ticket that fell through to it (a review)."""
    if wrong := _unsendable(value):
        raise ConfigError(where, wrong.replace("a lookup gives", "a mapping value is"))


def _table(ref: Any, tables: Mapping[str, Mapping[Any, Any]] | None, where: str) -> Mapping[Any, Any]:
    if isinstance(ref, Mapping):
        if wrong := table_problem(ref):
            raise ConfigError(f"{where}.{wrong[0]}", wrong[1])
        return ref
    if isinstance(ref, str) and tables is not None and isinstance(tables.get(ref), Mapping):
        return tables[ref]
    known = ", ".join(sorted(tables or {})) or "none"
    raise ConfigError(where, f"no lookup table {ref!r} (known: {known}); define it under 'lookups:'")


def get_path(data: Any, path: str) -> Any:
    """The value at a dotted path, or MISSING; digits index lists (`transcript.0.text`)."""
    current = data
    for step in path.split("."):
        if isinstance(current, Mapping) and step in current:
            current = current[step]
        elif isinstance(current, (list, tuple)) and step.isdigit() and int(step) < len(current):
            current = current[int(step)]
        else:
            return MISSING
    return MISSING if current is None else current


def lookup(table: Mapping[Any, Any], value: Any, default: Any = MISSING) -> Any:
    """`table[value]`, matching as text, case-insensitively; `default` when absent.

    As text because YAML reads an unquoted key as it looks: `4012:` a number, `yes:` true. Matched
    exactly, neither ever met the packet's "4012" or "yes", and the field was left out without a
    word (a review). A true/false key matches the words YAML reads so (`yes`, `on`, `true`); a
    number, a number however written (`1.0:` the packet's 1, "1" or "1.0")."""
    if value is MISSING or value is None:
        return default
    if isinstance(value, str) and value in table:
        return table[value]
    wanted = _key_words(value)
    found = next((mapped for key, mapped in table.items() if wanted & _key_words(key)), MISSING)
    if found is MISSING and (number := _number(value)) is not None:  # as text first: '007' is not 7's
        # Then as a number, keys written as numbers first (7.0 is 7's, not '007''s).
        keys = sorted(table.items(), key=lambda item: isinstance(item[0], (str, bool)))
        found = next((mapped for key, mapped in keys if number == _number(key)), MISSING)
    return default if found is MISSING else found


# The plain words PyYAML (YAML 1.1) reads as true and false.
_YAML_WORDS = {True: frozenset({"true", "yes", "on"}), False: frozenset({"false", "no", "off"})}


def _key_words(value: Any) -> frozenset[str]:
    if isinstance(value, bool):
        return _YAML_WORDS[value]
    if isinstance(value, (int, float)):
        return frozenset({str(value)})
    return frozenset({value.casefold()}) if isinstance(value, str) else frozenset()


def _number(value: Any) -> Decimal | None:
    """A number, or a text that is one in decimal ("4012", "1.0"; not "0x10" or "١٢"), exactly: as
    floats, ids past 2**53 (9007199254740993 and …992) were one number, and the wrong row was sent."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return Decimal(value.strip())
    return None


# An exponent of at most 4 digits: Decimal refuses one past its context's (InvalidOperation), and a
# packet's "1e99999999999" failed every delivery of its handoff (a review).
_DECIMAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d{1,4})?", re.ASCII)


def resolve(spec: Any, packet: Mapping[str, Any], extra_context: Mapping[str, Any] | None = None,
            *, tables: Mapping[str, Mapping[Any, Any]] | None = None, where: str = "mapping value",
            one_value: bool = False, masked: Callable[[Any], Any] | None = None) -> Any:
    """The value `spec` gives for this packet; MISSING when a path or lookup finds nothing.
    `where`: the file and key it was read from (`zendesk.yaml custom_fields[0]`), for what is said.
    `one_value`: a field that takes no list either (a subject: `routing.skills` went as "['a', 'b']").
    `masked`: the target's masking (`Adapter.masked`), for what a template writes: the packet was
    masked before, but a template can put a card back together from pieces (a review). A path's
    value is the packet's as masked — or an identity field the admin sends on purpose."""
    value = spec if isinstance(spec, Value) else compile_value(spec, where, tables)
    found = _value_of(value, {**packet, **(extra_context or {})})
    if masked is not None and value.kind == "template" and found is not MISSING:
        found = masked(found)
    if one_value and isinstance(found, (list, tuple)):
        _told(FailedOnValues(value.where, f"{value.source} is a list, which this field does not take; write it as "
                                          f"text with a template: {{{{ {value.source} | join(', ') }}}}"),
              "a mapping value is a list on this handoff's values; it is not sent")
        return MISSING
    items = found if isinstance(found, (list, tuple)) else [found]  # a list of scalars is a multi-select's value
    if any(isinstance(item, (Mapping, list, tuple)) for item in items):
        # `customer.attributes` went to Zendesk as an object, which it refuses with the whole ticket,
        # and to Salesforce as Python's repr ("{'plan': …}"). Left out and said, as a failing template.
        _told(FailedOnValues(value.where, f"{value.source} is an object or a list of them, which a field does not "
                                          f"take; write it as text with a template: {{{{ {value.source} | tojson }}}}"),
              "a mapping value is an object on this handoff's values; it is not sent")
        return MISSING
    if isinstance(found, (list, tuple)):
        return multi_select(found)
    # A bidirectional control in a field agents read (an order number) is named, as the brief names
    # it: raw, "ORD-\u202e1234\u202c" showed as ORD-4321 in a custom field beside a right brief.
    return visible_controls(found) if isinstance(found, str) else found


def multi_select(items: list[Any] | tuple[Any, ...]) -> list[str]:
    """A list of scalars as a multi-select's options: text, each (Zendesk's value is an array of
    strings; `order_ids: [1042, 1043]` broke its schema, and the refusal remade the ticket without
    any custom field), a null left out (not "None"), true/false as JSON writes them."""
    return [_option(item) for item in items if item is not None]


def _option(scalar: Any) -> str:
    if isinstance(scalar, bool):
        return "true" if scalar else "false"
    return visible_controls(scalar) if isinstance(scalar, str) else str(scalar)


def _value_of(value: Value, view: Mapping[str, Any]) -> Any:
    if value.kind == "literal":
        return value.source
    if value.kind == "path":
        return get_path(view, value.source)
    if value.kind == "lookup":
        found = get_path(view, value.source)
        if isinstance(found, Mapping):  # left out and named by `resolve`, as at a path
            return found
        if isinstance(found, (list, tuple)):
            return _looked_up_each(value, found)
        return lookup(value.table or {}, found, value.default)
    # A template sees only packet keys as variables; packet text is data, never compiled. A part
    # the packet lacks (`{{ sentiment.label }}` with no sentiment) leaves the field out, as a path does.
    try:
        return render(value.source, value.where, **{k: v for k, v in view.items() if isinstance(k, str)})
    except MissingValue:
        return MISSING
    except FailedOnValues as err:
        # On this packet's values only (a number where the template adds text): the field is left
        # out as a missing value is, and said. Raised, it failed the whole delivery as an internal
        # error, retried until dead, naming neither the file nor the key.
        _told(err, "a mapping template failed on this handoff's values; its value is not sent")
        return MISSING


def _looked_up_each(value: Value, found: list[Any] | tuple[Any, ...]) -> Any:
    """Each item of a list looked up, for a multi-select (`routing.skills` through a table of
    options): the list itself was looked up, an internal error that failed every delivery. A table
    entry (or `default:`) that is a list gives its options, as it does for one value; an option
    given twice goes once; an item the table lacks (and no default) is left out; an object or a
    list among the packet's items is kept, for `resolve` to leave out and name."""
    options: list[Any] = []
    for item in found:
        if isinstance(item, (Mapping, list, tuple)):
            options.append(item)
            continue
        got = lookup(value.table or {}, item, value.default)
        for option in got if isinstance(got, (list, tuple)) else [got]:
            if option is not MISSING and (isinstance(option, (Mapping, list)) or option not in options):
                options.append(option)
    return options or MISSING


def _told(err: FailedOnValues, said: str) -> None:
    """A value left out, said in the log and to `template_failures`' block (the receipt)."""
    told = _failures.get()
    if told is None or not told[1]:  # a trial's report says it instead
        log.warning(said, extra={"source": err.source, "error": err.message})
    if told is not None:
        told[0].append(err)


# `template_failures`: where a template failing on a packet's values is told, besides the log.
_failures: ContextVar[tuple[list[FailedOnValues], bool] | None] = ContextVar("mapping_template_failures",
                                                                             default=None)


@contextmanager
def template_failures(*, quiet: bool = True) -> Iterator[list[FailedOnValues]]:
    """The templates that fail on the values rendered inside the block: a trial render's report
    (`quiet`: not logged), a delivery's receipt (logged as well)."""
    failed: list[FailedOnValues] = []
    token = _failures.set((failed, quiet))
    try:
        yield failed
    finally:
        _failures.reset(token)


def check_document(data: Any, where: str,
                   tables: Mapping[str, Mapping[Any, Any]] | None = None) -> list[tuple[str, str]]:
    """Validate the common part of a vendor file: every template compiles, every path is well-formed.
    Returns its templates, each after its key path, for the trial on the sample packets
    (`template_trial.refuse_on_samples`).

    Vendor-specific keys are the adapter's; here only `{path|template|literal|lookup}` mappings and
    strings that look like templates are checked, wherever they sit.
    """
    if isinstance(data, Mapping):
        if any(kind in data for kind in KINDS) and set(data) <= {*KINDS, "from", "default", "id", "name", "field"}:
            compile_value({k: v for k, v in data.items() if k in {*KINDS, "from", "default"}}, where, tables)
            return [(f"{where}.template", data["template"])] if "template" in data else []
        return [found for key, item in data.items()
                for found in check_document(item, f"{where}.{key}" if where else str(key), tables)]
    if isinstance(data, list):
        return [found for index, item in enumerate(data) for found in check_document(item, f"{where}[{index}]", tables)]
    if isinstance(data, str) and looks_like_template(data):
        # Only templates: a bare string elsewhere may be a vendor's own value sent as written (a
        # Salesforce status `Escalation.L2`, a tag). Where a bare string is a value spec (a path or
        # a literal), its adapter compiles it at load (`compile_value`) and names its line.
        return [(where, check_template(data, where))]
    return []
