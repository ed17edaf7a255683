"""Jinja2's sandbox for every template an admin can edit (messages, subjects, mapping values), and
the sandbox classes the agent brief's own templates render in (`Sandbox`).

Packet values are passed as data, never compiled: a `{{ 7*7 }}` a customer typed stays text.
"""

from __future__ import annotations

import operator
import re
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from functools import lru_cache, update_wrapper, wraps
from string import Formatter
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined, UndefinedError, nodes, pass_eval_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter, sync_do_join
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment, SandboxedFormatter
from markupsafe import EscapeFormatter, Markup

from .errors import ConfigError

# What `x.name` finds on a plain dict as an attribute (its methods); any other name is a key.
_DICT_ATTRIBUTES = frozenset(dir(dict))


class _DictKeysDirect:
    """`x.name` on a plain dict read as its key, as Jinja2 reads it, without the detour: Jinja2 tries
    the attribute first and reads the key once AttributeError is raised and caught. Every value of a
    packet or a brief's view is read that way, and the raised errors were a quarter of the agent
    brief's rendering. A name a dict has as an attribute (`items`, `get`) still takes Jinja2's path,
    and with it the sandbox's checks; a dict subclass or any other object too."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except (TypeError, LookupError):  # what Jinja2's own read of the key catches
                pass  # Jinja2's own path: the undefined value that names what is missing
        return super().getattr(obj, attribute)  # type: ignore[misc]


class Sandbox(_DictKeysDirect, SandboxedEnvironment):
    """Jinja2's sandbox, reading dicts' keys directly (the agent brief's templates)."""


class ImmutableSandbox(_DictKeysDirect, ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, reading dicts' keys directly (every template an admin edits)."""


# What one render of an admin's template may do: a loop in messages.yaml froze the reload and every
# request waiting on it, and `{{ 'x' * 300000000 }}` passed and rendered 300 MB. A value may be as
# large as a whole packet joined (its body is at most a few MiB: a transcript joined, then cut to a
# field's size, is the usual template); what all of a render's values add up to is bounded apart.
MAX_SIZE = 2_000_000  # characters or items of one value it makes (bits of a number), and of its output
MAX_MADE = 50_000_000  # characters, items and bits of every value it makes (`a ~ b` aside: `_fits`), added up
MAX_RANGE = 1_000  # items of a range()
MAX_STEPS = 100_000  # loop turns and calls (filters' on each item too), all of the render's together
_budget: ContextVar[list[int] | None] = ContextVar("template_budget", default=None)  # [steps, made] left


class OverLimit(SecurityError):
    """A render went past one of the limits above (a `Refused` for `render`)."""


def _fits(value: Any) -> Any:
    """`value` within MAX_SIZE. `a ~ b` is measured so, not counted in MAX_MADE: a text built up
    message by message (`{% set ns.t = ns.t ~ m.text %}`) is extended in place, and counting each of
    its lengths refused a transcript of 450 messages."""
    if _size(value) > MAX_SIZE:
        raise OverLimit(f"the template made a value over {MAX_SIZE:,} characters, items or bits (MAX_SIZE)")
    return value


def _size(value: Any) -> int:
    # Bytes too: `'x'.encode() * 300000000` counted 0 and made 300 MB (a review).
    return value.bit_length() if isinstance(value, int) \
        else len(value) if isinstance(value, (*_TEXTS, list, tuple, dict)) else 0


def _sized(value: Any) -> Any:
    size = _size(_fits(value))
    left = _budget.get()
    if left is not None:
        left[1] -= size
        if left[1] < 0:
            raise OverLimit(f"the template made over {MAX_MADE:,} characters, items and bits in all (MAX_MADE)")
    return value


def _step() -> None:
    left = _budget.get()
    if left is not None:
        left[0] -= 1
        if left[0] < 0:
            raise OverLimit(f"the template took over {MAX_STEPS:,} loop turns and calls (MAX_STEPS)")


def _too_large(asked: int) -> None:
    if asked > MAX_SIZE:
        raise OverLimit(f"the template asked for a value of {asked:,} characters, over {MAX_SIZE:,} (MAX_SIZE)")


# A printf-style conversion (`%09d`, `%.3f`, `%(name)s`; `%%` is text): its width and precision, what
# the text it makes is padded to. Refused before the text is made: `'%0999999999d' % 1` made a
# gigabyte, then was refused. Only a whole conversion counts: `order%2012345678` in a URL is text.
_PRINTF = re.compile(r"%%|%(?:\([^)]*\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?[diouxXeEfFgGcrsa]")
# The str methods and filters whose whole-number argument is a width the text is padded to.
# Names whose numbers are sizes asked for: a width, `slice`'s count of lists (`[1] | slice(20000000)`
# made twenty million lists before the result was measured: 9 s and 1.4 GB) and `batch`'s size, to
# which its fill value pads (`batch(100000000, 0)`: 1.5 GB; reviews).
_WIDTHS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "indent", "slice", "batch"})
_TEXTS = (str, bytes, bytearray)  # what a repeat, a width or a join makes longer: bytes were not measured


def _whole_numbers(values: Iterable[Any]) -> list[int]:
    return [n for n in values if isinstance(n, int) and not isinstance(n, bool)]


def _written(value: Any) -> None:
    """A list or mapping, measured as the text it is written out as (printed, a filter's, a format's)."""
    if isinstance(value, (list, tuple, dict)):
        _too_large(_weight(value))


def _spec_fits(spec: str) -> None:
    for digits in re.findall(r"\d+", spec):
        _too_large(int(digits) if len(digits) < 100 else 10 ** 100)  # int() of thousands of digits refuses


def _weight(value: Any, seen: dict[int, int] | None = None) -> int:
    """Characters and items `value` prints as, counting a list repeated inside another each time:
    `[[('x' * 2000)] * 1000] * 1000` is a thousand items at each level, and two billion characters."""
    seen = {} if seen is None else seen
    if isinstance(value, str):
        return len(value)
    if not isinstance(value, (list, tuple, dict)):
        return 1
    if id(value) not in seen:
        items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        seen[id(value)] = len(items) + sum(_weight(item, seen) for item in items)
    return seen[id(value)]


# The filters that read a list or a mapping as one, without turning it into text: not measured
# (measuring the transcript at each message's `length` made a loop over it 600 times slower). Every
# other filter given one writes it out first (`upper`, `e`, `tojson`): its text is measured before.
_STRUCTURAL = frozenset({"length", "count", "first", "last", "map", "select", "reject", "selectattr", "rejectattr",
                         "list", "sort", "unique", "min", "max", "sum", "batch", "slice", "groupby", "dictsort",
                         "items", "default", "d", "attr", "random", "reverse", "abs", "int", "float", "bool"})


def _printf_fits(text: str) -> None:
    """A printf-style text's widths (`%09d`), before it is filled; one taken from the values is not
    offered (`%*d`: write it in the text)."""
    for conversion in _PRINTF.finditer(text):
        if "*" in conversion.group(0):
            raise OverLimit("a width taken from the values ('%*d') is not offered: write it in the text")
        _spec_fits(" ".join(part for part in conversion.groups() if part))


def _before(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any], method: bool = False) -> None:
    """What a filter or a str method is asked to make of `value`, refused before it is made when it
    would be too large: a width (`center(2000000000)`, `ljust`, `indent`), a format's widths, what
    `replace` or `join` would add (`replace('', 'x' * 100000)` goes between every character). Any
    other number is a value (`'Order %s' | format(12345678)`, `default(3600000)`)."""
    given = (*args, *kwargs.values())
    texts = [text for text in given if isinstance(text, str)]
    if name in _WIDTHS:
        for number in _whole_numbers(given):
            _too_large(number)
        if name == "indent" and isinstance(value, str):  # a text width: before every line
            _too_large(len(value) + sum(map(len, texts)) * (value.count("\n") + 1))
        if name == "expandtabs" and isinstance(value, str):  # up to the width at every tab
            _too_large(len(value) + value.count("\t") * max(_whole_numbers(given) or [8]))
    if name not in _STRUCTURAL:
        _written(value)
    if name == "join":
        if isinstance(value, _TEXTS) and args and isinstance(args[0], (list, tuple, dict, range)):  # sep.join(items)
            _too_large(max(len(args[0]) - 1, 0) * len(value) + _lengths(args[0]))
        elif isinstance(value, (list, tuple, dict, range, str)):  # items | join(sep)
            _too_large(max(len(value) - 1, 0) * sum(map(len, texts)) + _lengths(value))
    if name == "sum" and isinstance(value, (list, tuple)):  # lists added up (`sum(start=[])`): what they make
        _too_large(_lengths(value))
    if not isinstance(value, str):
        return
    if name in ("format", "format_map") and method:  # str.format: `{:>9}`, widths from the values too
        _format_fits(value, args, kwargs, name == "format_map")
        for written in given:
            _written(written)
    elif name == "format":  # the filter: printf-style, `'%09d' | format(n)`
        _printf_fits(value)
    if name == "replace" and len(texts) >= 2:
        old, new = texts[:2]
        _too_large(len(value) + (value.count(old) if old else len(value) + 1) * (len(new) - len(old)))
    if name == "wordwrap" and texts:  # a wrap about every `width` characters, and at each line's end
        width = next(iter(_whole_numbers(given)), 79)
        wraps = len(value) // max(width, 1) + value.count("\n") + 1
        _too_large(len(value) + wraps * max(len(t) for t in texts))


def _lengths(items: Any) -> int:
    """What the texts and lists among `items` (a list or a tuple already made) hold, added up: what
    joining or adding them makes — measured after, `''.join(['x' * 2000000] * 150)` made 300 MB first."""
    return sum(len(item) for item in items if isinstance(item, (*_TEXTS, list, tuple))) \
        if isinstance(items, (list, tuple)) else 0


def _format_fits(text: str, args: tuple[Any, ...], kwargs: dict[str, Any], as_map: bool) -> None:
    """A str.format text's widths (`{:>20}`), read as str.format reads its fields (`{{` is text); one
    taken from the values (`{0:>{1}}`) filled in as the sandbox's formatter fills it (its reads
    checked as any), then measured."""
    if as_map:
        args, kwargs = (), (args[0] if args and isinstance(args[0], dict) else {})
    formatter, auto = _TextFormatter(_env), 0  # a field filled as the real format fills it: a null as ""
    for _literal, field, spec, _conversion in Formatter().parse(text):
        auto += field == ""  # `{}` numbered as str.format numbers it: the field, then those in its spec
        if spec and "{" not in spec:
            _spec_fits(spec)
        elif spec:
            if any(inner for _text, _name, inner, _conv in Formatter().parse(spec)):  # `{:{0:{1}}}`
                raise OverLimit("a width nested in a width is not offered")
            pieces = spec.split("{}")
            numbered = pieces[0] + "".join(f"{{{auto + n}}}{piece}" for n, piece in enumerate(pieces[1:]))
            auto += len(pieces) - 1
            _spec_fits(formatter.vformat(numbered, args, kwargs))


def _range(*args: int) -> range:
    items = range(*args)
    if len(items) > MAX_RANGE:
        raise OverLimit(f"range() of {len(items):,} items, over {MAX_RANGE:,} (MAX_RANGE)")
    return items


class _Counting(CodeGenerator):
    """Every `for` loop's items go through `environment.counted` (`MAX_STEPS`)."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        node.iter = nodes.Call(nodes.EnvironmentAttribute("counted"), [node.iter], [], None, None)
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        """`a ~ b` measured (`fits`: doubled in a loop), a null in it empty text as `{{ }}` prints it
        (`text_of`): a bot's unset company made "Dana (None)". Jinja2's own, with each part wrapped."""
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        else:
            join = "markup_join" if frame.eval_ctx.autoescape else "str_join"
        self.write(f"environment.fits({join}((")
        for part in node.nodes:
            self.write("environment.text_of(")
            self.visit(part, frame)
            self.write("), ")
        self.write(")))")


_ON_MISSING = frozenset({"default", "d"})  # the filters a missing value may go through
# Filters that make text of their value: a null (a bot's unset field) is empty text to them
# (`_NULL_TEXT`), where they made "None" ("NONE" through `upper`) of it, and an object or a list is
# refused (`_as_text`) (reviews). `urlencode` takes a null so, but writes an object or a list as a
# query string (`id=A1&region=eu`): its own reading, not Python's.
_TEXT_FILTERS = frozenset({"capitalize", "center", "e", "escape", "forceescape", "indent", "lower", "replace",
                           "safe", "string", "striptags", "title", "trim", "truncate", "upper", "urlize",
                           "wordcount", "wordwrap"})
_NULL_AS_TEXT = _TEXT_FILTERS | {"urlencode"}
_PRINTF_FILTERS = frozenset({"format"})  # printf-style, its values after the text


class _NullText(str):
    """The empty text a null is made by a filter that makes text: `in`, `length` and slicing work on
    it as on any text, and `join` leaves it out as it leaves a null out — `[last, first] | map('title')
    | join(', ')` made ", Dana" of a bot's unset last name (a review)."""

    __slots__ = ()


_NULL_TEXT = _NullText()


def _no_null(value: Any) -> bool:
    return value is None or isinstance(value, _NullText)


def _blank(value: Any) -> Any:
    """`value`, a null as empty text."""
    return "" if _no_null(value) else value


def _printf_values(text: str, values: Any) -> Any:
    """A printf-style format's values (`'%s' % x`, `| format(x)`): a null is empty text ("Plan: None"
    before), an object or a list refused as printing refuses it. A mapping for a text that names its
    values (`'%(plan)s' % m`): its nulls empty text (which of them the text uses is the format's to say)."""
    if isinstance(values, Mapping) and any(found.group().startswith("%(") for found in _PRINTF.finditer(text)):
        return {key: _blank(value) for key, value in values.items()}
    if isinstance(values, tuple):
        return tuple(_printf_value(value) for value in values)
    return _printf_value(values)


def _printf_value(value: Any) -> Any:
    value = _blank(value)
    _as_text(value, "formats")
    return value


def _urlencode_values(value: Any) -> Any:
    """`urlencode`'s object or pairs with their nulls empty ("plan=None" before): each value is str()-ed."""
    if isinstance(value, Mapping):
        return {key: _blank(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [(pair[0], _blank(pair[1])) if isinstance(pair, (list, tuple)) and len(pair) == 2 else pair
                for pair in value]
    return value


def _sized_filter(name: str, function: Any) -> Any:
    value_at = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0  # after a context it is passed

    @wraps(function)  # keeps Jinja2's pass_context marks
    def sized(*args: Any, **kwargs: Any) -> Any:
        if len(args) > value_at and isinstance(args[value_at], _Missing) and name not in _ON_MISSING:
            # `map`, `select` and the like skip a false value: a missing one sent an empty field (a review).
            args[value_at]._fail_with_undefined_error()
        if len(args) > value_at and args[value_at] is None and name in _ON_MISSING:
            # The admin's stand-in for a null as for a missing value (Jinja2's is for a missing one only).
            return args[value_at + 1] if len(args) > value_at + 1 else kwargs.get("default_value", "")
        if len(args) > value_at and name in ("join", "sum") and isinstance(args[value_at], Iterator):
            # What `select`, `reject` or `reverse` give: made a list first, so what joining or adding
            # them makes is measured before (through a generator, 300 MB were made first; a review).
            args = (*args[:value_at], list(args[value_at]), *args[value_at + 1:])
        null = len(args) > value_at and name in _NULL_AS_TEXT and _no_null(args[value_at])
        if null:  # as empty text, within the limits as any (a null through `center(3000000)` was not measured)
            args = (*args[:value_at], "", *args[value_at + 1:])
        if len(args) > value_at:
            _before(name, args[value_at], args[value_at + 1:], kwargs)  # too large: that limit is named first
            if name in _PRINTF_FILTERS:
                _written(args[value_at + 1:])
                text = str(args[value_at])
                args = (*args[:value_at + 1], *_printf_values(text, tuple(args[value_at + 1:])))
                kwargs = _printf_values(text, kwargs) if kwargs else kwargs  # `'%(plan)s' | format(plan=…)`
            elif name == "urlencode":
                args = (*args[:value_at], _urlencode_values(args[value_at]), *args[value_at + 1:])
            elif name in _TEXT_FILTERS:
                _as_text(args[value_at], f"makes text ({name}) of")
        made = _sized(function(*args, **kwargs))
        return _NULL_TEXT if null and made == "" else made
    return sized


def _printed(value: Any) -> Any:
    """What `{{ … }}` prints, measured before it is turned into text. A null prints nothing: a bot's
    unset field (`"order_title": null`) made a ticket titled "None" and "Order: None"."""
    if value is None:
        return ""
    _written(value)  # too large to write out: that limit is named first
    _as_text(value, "prints")
    return value


def _text_of(value: Any) -> Any:
    """A part of `a ~ b`: a null empty text, an object or a list refused (`_as_text`)."""
    if value is None:
        return ""
    _as_text(value, "joins (~)")
    return value


def _as_text(value: Any, does: str) -> None:
    """An object or a list made text is Python's writing of it (`{'plan': None}`, `['a', None]`, a
    `map` not joined: `<generator object …>`), which no field reads: the template fails, and its
    field is left out as a path finding an object is (`mapping_values`), with what to write instead."""
    if isinstance(value, Iterable) and not isinstance(value, (str, Undefined)):  # (an `if` without `else`: nothing)
        raise TypeError(f"{does} {'an object' if isinstance(value, Mapping) else 'a list'} as Python writes it: "
                        "write `| tojson` (an object) or `| join(', ')` (a list)")


@pass_eval_context
def _join(eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: str | int | None = None) -> str:
    """Jinja2's `join`, leaving nulls out: `[first_name, last_name] | join(' ')` of a bot that sent no
    last name made "Dana None"."""
    if attribute is not None:
        value = map(make_attrgetter(eval_ctx.environment, attribute), value)
    items = [item for item in value if not _no_null(item)]
    for item in items:
        _as_text(item, "joins (join)")
    return sync_do_join(eval_ctx, items, d)


def _concat(parts: Iterable[str]) -> str:
    """Jinja2's `concat` (a `{% set %}` block's text, a macro's): twelve blocks each doubling the
    last made 400 million characters without a look."""
    return _sized("".join(parts))


class _TextFormatter(SandboxedFormatter):
    """str.format's fields as text: a null empty text, an object or a list refused (`_as_text`)."""

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        # Before `!s` / `!r`, which made "None" of a null and Python's writing of a list, past `format_field`.
        return super().convert_field(_printf_value(value), conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        return super().format_field(_printf_value(value), format_spec)


class _TextEscapeFormatter(_TextFormatter, EscapeFormatter):
    pass


class AdminSandbox(ImmutableSandbox):
    """The immutable sandbox within the limits above: `*`, `**`, `%`, a filter and a str method
    refused before they make a value too large when what they are asked says so, every value made
    (`+`, `~`, a block's text, a call's or a filter's result) counted after; range() capped; every
    loop turn and call counted, a filter's on each item of `map` or `select` too; no `lipsum()`
    (lorem ipsum of any length); the output cut off past MAX_SIZE (`render`)."""

    code_generator_class = _Counting
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    sized = staticmethod(_sized)
    fits = staticmethod(_fits)
    text_of = staticmethod(_text_of)
    concat = staticmethod(_concat)

    def __init__(self, **options: Any):
        super().__init__(finalize=_printed, **options)
        self.globals["range"] = _range
        self.globals.pop("lipsum", None)
        self.filters["join"] = _join
        self.filters = {name: _sized_filter(name, function) for name, function in self.filters.items()}

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        # No bytes: no field takes them, and every text check reads `str` — `replace`, a `%` width and
        # a join of bytes made 300 MB past MAX_SIZE (reviews). `encode` is their only way in.
        if attr == "encode" and isinstance(obj, str):
            return False
        return super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Jinja2's own, with a formatter that writes each field as text (`_TextFormatter`): a null
        read by `{0[plan]}`, `{0.plan}` or `format_map` printed "None"."""
        if not (isinstance(value, (types.MethodType, types.BuiltinMethodType))
                and value.__name__ in ("format", "format_map") and isinstance(value.__self__, str)):
            return None
        text, as_map = value.__self__, value.__name__ == "format_map"
        formatter = _TextEscapeFormatter(self, escape=text.escape) if isinstance(text, Markup) else _TextFormatter(self)

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if as_map:
                if kwargs or len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                args, kwargs = (), args[0]
            return type(text)(formatter.vformat(text, args, kwargs))

        return update_wrapper(wrapper, value)

    def call_filter(self, *args: Any, **kwargs: Any) -> Any:  # `map('upper')`: once per item
        _step()
        return super().call_filter(*args, **kwargs)

    def call_test(self, *args: Any, **kwargs: Any) -> Any:  # `select('odd')`: once per item
        _step()
        return super().call_test(*args, **kwargs)

    def counted(self, items: Iterable[Any]) -> Iterator[Any]:
        for item in items:
            _step()
            yield item

    def call_binop(self, context: Context, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "*" and isinstance(left, int) != isinstance(right, int):  # a repeat: 'x' * n
            count, repeated = (left, right) if isinstance(left, int) else (right, left)
            if isinstance(repeated, (*_TEXTS, list, tuple)):
                _too_large(count * len(repeated))
        if operator_name == "**" and isinstance(left, int) and isinstance(right, int) and right > 0 \
                and right * max(abs(left).bit_length() - 1, 0) > MAX_SIZE:
            raise OverLimit(f"the template made a number over {MAX_SIZE:,} bits (MAX_SIZE)")
        if operator_name == "%" and isinstance(left, str):
            _printf_fits(left)
            _written(right)  # '%s' % (big,)
            right = _printf_values(left, right)
        return _sized(_BINOPS[operator_name](left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _step()
        method = getattr(__obj, "__wrapped__", __obj)  # str.format comes wrapped by the sandbox
        if isinstance(getattr(method, "__self__", None), _TEXTS):  # 'x'.ljust(10**9), '{:>9999999999}'.format(1)
            _before(method.__name__, method.__self__, args, kwargs, method=True)
        if isinstance(__obj, LoopContext) and args:  # a recursive loop's `loop(items)`: its items counted too
            args = (__self.counted(args[0]), *args[1:])
        return _sized(super().call(__context, __obj, *args, **kwargs))


class _Missing(StrictUndefined):
    """A value the context lacks. As StrictUndefined, printing it (inside a list too), looping over
    it, comparing or computing with it, or any filter but `default` (`_sized_filter`), fails — the
    field is left out (`MissingValue`) — but a path through it is missing too, and it is false, so
    a template's own fallback works on a packet without the parent: `intent.name | default('unknown')`,
    `customer.segment or 'standard'`, `{% if m.attachments %}` on a message without any. StrictUndefined
    raised at `intent.name` itself: the README's own example left the field out of every packet
    without an intent, and a test of an optional key of each message left it out of nearly every
    packet, with nothing said (reviews)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name[:2] == "__":
            raise AttributeError(name)
        return self

    def __getitem__(self, _: Any) -> Any:
        return self

    def __repr__(self) -> str:  # `{{ [intent.name] }}` printed "[Undefined]"
        return self._fail_with_undefined_error()  # type: ignore[no-any-return]

    def __bool__(self) -> bool:
        return False


_BINOPS = {"*": operator.mul, "**": operator.pow, "+": operator.add, "%": operator.mod}
_env = AdminSandbox(undefined=_Missing, autoescape=False)


class MissingValue(ConfigError):
    """The template prints (or computes with) a value its context lacks (`_Missing`)."""


class FailedOnValues(ConfigError):
    """The template raised on this context's values (`seats + ' seats'` with a number, `x // 0`):
    Python's own errors inside the sandbox, named as the template's."""


class Refused(FailedOnValues):
    """The sandbox refused what the template does (`customer.attributes.pop('plan')` changes the packet;
    an attribute named `_…` at run time): refused at load when the sample packets show it
    (`template_trial.refuse_on_samples`), else, at delivery, a field left out as any failure on values."""


def parsed(source: str) -> nodes.Template:
    """`source`'s syntax tree, in the environment that renders it: what reads it (the variables it
    uses: `jinja2.meta`) runs Jinja2's code generator, which works out constant parts by calling
    their filters — an environment of Jinja2's own called them unchecked, and `check` of
    `{{ ([[1] * 2000000] * 100) | sum(start=[]) }}` took 74 s and 3 GB (a review)."""
    return _env.parse(source)


GLOBALS = frozenset(_env.globals)


@lru_cache(maxsize=512)
def compiled(source: str):  # type: ignore[no-untyped-def]
    """`source` compiled in the sandbox (cached); raises Jinja2's TemplateSyntaxError."""
    return _env.from_string(source)


def render(source: str, where: str, **context: Any) -> str:
    """Render an admin template; `where` names the file and key for the error message."""
    try:
        template = compiled(source)
    except TemplateError as err:  # what `check_template` refuses at load
        raise ConfigError(where, f"template error: {err}") from None
    budget = _budget.set([MAX_STEPS, MAX_MADE])
    try:
        return _output(template.generate(**context))
    except UndefinedError as err:
        raise MissingValue(where, f"template error: {err}") from None
    except SecurityError as err:
        raise Refused(where, f"template error: {err}") from None
    except Exception as err:  # the sandbox runs the template's operations: their errors are its own
        raise FailedOnValues(where, f"template error: {type(err).__name__}: {err}") from None
    finally:
        _budget.reset(budget)


def _output(parts: Iterable[str]) -> str:
    """The rendered text, given up past MAX_SIZE characters."""
    said, size = [], 0
    for part in parts:
        size += len(part)
        if size > MAX_SIZE:
            raise OverLimit(f"the template's output is over {MAX_SIZE:,} characters (MAX_SIZE)")
        said.append(part)
    return "".join(said)
