"""The only place that knows target names. Modules are imported lazily, so a target's library is
needed only when it is enabled or previewed."""

from __future__ import annotations

import importlib
from collections.abc import Collection, Mapping
from typing import Any

from connector.errors import ConfigError
from connector.settings import Settings

from .base import COMMON_MAPPING_KEYS, COMMON_MAPPING_TYPES, Adapter

TARGETS: dict[str, str] = {
    "preview": "adapters.preview:PreviewAdapter",
    "zendesk": "adapters.zendesk:ZendeskAdapter",
    "salesforce": "adapters.salesforce:SalesforceAdapter",
    "slack": "adapters.slack:SlackAdapter",
}
BUILT_IN = "preview"


def adapter_class(name: str) -> type[Adapter]:
    module_name, _, class_name = TARGETS[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def mapping_keys(name: str) -> dict[str, type | tuple[type, ...] | None] | None:
    """The top-level keys target `name`'s mapping file may hold, each with the type it must hold
    (None: checked by the adapter, or anything goes); None for the built-in `preview`, which has no
    file (it renders every vendor's): a `preview.yaml` would be read and used by nothing."""
    if name == BUILT_IN:
        return None
    cls = adapter_class(name)
    return {key: None for key in sorted(COMMON_MAPPING_KEYS | cls.mapping_keys)} | dict(COMMON_MAPPING_TYPES) \
        | dict(cls.mapping_types)


def vendor_names() -> list[str]:
    """Real vendors, in a stable order (what `preview` renders)."""
    return [name for name in TARGETS if name != BUILT_IN]


def reaches_agents(target: str, targets: Collection[str]) -> bool:
    """Whether a ticket at `target`, one of a handoff's `targets`, means an agent can see the
    handoff: every target's but the built-in preview's beside a vendor's — preview renders what each
    vendor would get and shows it to nobody, so with Zendesk given up a handoff to `preview,zendesk`
    told the customer someone would reply and the bot `delivered`. Alone (the quickstart, mappings
    being tried out) it stands in for the vendors, and its ticket counts."""
    return target != BUILT_IN or all(name == BUILT_IN for name in targets)


def unreached_beside_preview(targets: Collection[str], enabled: Collection[str]) -> list[str]:
    """The enabled vendors, when `targets` name only the built-in preview beside them (it reaches no
    agent there: `reaches_agents`); else none. Intake refuses such a packet, routing passes over such a
    rule, each naming these vendors."""
    vendors = [name for name in enabled if name != BUILT_IN]
    return vendors if targets and all(name == BUILT_IN for name in targets) else []


def agent_fields() -> dict[str, str]:
    """Vendor → the routing field that assigns an agent there (sticky routing's default)."""
    return {name: field for name in vendor_names() if (field := adapter_class(name).agent_field)}


def check_targets(names: tuple[str, ...], settings: Settings) -> None:
    """Refuse unknown names and enabled targets with missing credentials (start-up). Every target
    is checked before refusing, so one start-up names what each of them lacks."""
    refused: list[ConfigError] = []
    for name in names:
        if name not in TARGETS:
            raise ConfigError("CONNECTOR_TARGETS", f"unknown target {name!r}; known: {', '.join(TARGETS)}")
        try:
            adapter_class(name).check_settings(settings)
        except ConfigError as err:
            refused.append(err)
    if refused:
        raise ConfigError.joined(refused)


def build_adapters(settings: Settings, mappings: Mapping[str, Mapping[str, Any]]) -> dict[str, Adapter]:
    """Instances of the enabled targets. `preview` gets every vendor's mapping: it renders them all.
    Every vendor's own checks of its mapping run, enabled or not: with only `preview` enabled (the
    default, where admins try mappings out) a file its vendor refuses passed `check` and the reload,
    then failed every preview delivery and the `preview` command."""
    check_targets(settings.targets, settings)
    for name in vendor_names():
        if name not in settings.targets:
            adapter_class(name)(settings, mappings.get(name, {}))
    return {
        name: adapter_class(name)(settings, mappings if name == BUILT_IN else mappings.get(name, {}))
        for name in settings.targets
    }
