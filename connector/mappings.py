"""Admin-editable files in `mappings/`: one per target, plus routing and customer messages.

YAML through `yaml.safe_load` only. Every file carries `version: 1`; an error names the file
(and the key) to fix. Templates inside these files render in Jinja2's sandbox (`connector.templating`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import ConfigError

SUPPORTED_VERSIONS = {1}


@dataclass(frozen=True)
class Mappings:
    targets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    routing: Mapping[str, Any] = field(default_factory=dict)
    messages: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""


def load_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(where, f"is not valid YAML: {err.problem}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(str(path), f"cannot be read: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), "must be a mapping with a 'version:' key at the top")
    if data.get("version") not in SUPPORTED_VERSIONS:
        raise ConfigError(f"{path}: version", f"must be one of {sorted(SUPPORTED_VERSIONS)}, got {data.get('version')!r}")
    return data


def load_mappings(directory: str, root: str, target_names: list[str]) -> Mappings:
    base = Path(directory)
    if not base.is_absolute():
        base = Path(root) / base
    if not base.is_dir():
        raise ConfigError("CONNECTOR_MAPPINGS_DIR", f"{base} is not a directory")
    targets = {name: load_file(base / f"{name}.yaml") for name in target_names if (base / f"{name}.yaml").exists()}
    routing = load_file(base / "routing.yaml") if (base / "routing.yaml").exists() else {}
    messages = load_file(base / "messages.yaml") if (base / "messages.yaml").exists() else {}
    return Mappings(targets=targets, routing=routing, messages=messages, source=str(base))
