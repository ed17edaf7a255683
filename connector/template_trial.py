"""The vendor mappings' templates tried on the sample packets (`examples/`) before they serve.

A template can compile and still fail on a packet's values (`{{ customer.attributes.seats + ' seats' }}`
with a number of seats, `{{ x // 0 }}`): at delivery its field is then left out, and said in the log
(`mapping_values.resolve`). Tried here, the same failure is named — file, key, error — by `connector
check`, at start-up and after an edit. A warning, not a refusal: the samples are not the bots' packets.
What the sandbox refuses on them (`templating.Refused`: the template changes the packet) is the
template's own doing, whatever the packet: that edit is refused when the file is loaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from adapters.base import Adapter, HandoffContext

from .brief import render_brief
from .errors import ConfigError
from .mapping_values import template_failures
from .schemas import Limits, PacketSchema
from .templating import Refused, render

SAMPLES = Path(__file__).resolve().parents[1] / "examples"
TRIAL_ID = "hnd_TRIAL"


@lru_cache(maxsize=1)  # read at every load of the mappings; the sandbox renders them read-only
def _samples() -> tuple[tuple[str, Mapping[str, Any]], ...]:
    if not SAMPLES.is_dir():  # installed without them: nothing to try on
        return ()
    schema = PacketSchema(Limits())
    return tuple((path.name, schema.load(json.loads(path.read_text(encoding="utf-8"))))
                 for path in sorted(SAMPLES.glob("*.json")))


def refuse_on_samples(templates: Iterable[tuple[str, str]]) -> None:
    """Raise ConfigError naming the first template (key path, source) the sandbox refuses on a
    sample's values: `customer.attributes.pop('plan')` passed the load, and every delivery raised."""
    for sample, packet in _samples():
        for where, source in templates:
            try:
                render(source, where, **packet, handoff={"id": TRIAL_ID})
            except Refused as err:
                raise ConfigError(where, f"{err.message} (on the values of {sample})") from None
            except ConfigError:  # a value the sample lacks or fails on: `template_warnings` says it
                pass


def template_warnings(adapters: Mapping[str, Adapter]) -> list[str]:
    """One line per template that fails on a sample's values, for each enabled target."""
    said: list[str] = []
    for sample, packet in _samples():
        brief = render_brief(packet, TRIAL_ID)
        for name, adapter in adapters.items():
            ctx = adapter.for_target(HandoffContext(handoff_id=TRIAL_ID, target=name, packet=packet, brief=brief,
                                                    assignment={}, idempotency_key=f"{TRIAL_ID}:{name}"))
            with template_failures() as failed:
                try:
                    adapter.render(ctx)
                except Exception as broke:  # a trial must not stop a start, a check or a request
                    said.append(f"{name}: the payload for {sample} could not be built: {type(broke).__name__}: {broke}")
            said += [f"{err.source}: {err.message} — on the values of {sample}; deliveries with such values leave "
                     "that field out" for err in failed]
    return list(dict.fromkeys(said))  # each once, though both samples fail it
