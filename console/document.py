"""A draft's document as plain data: read it, change one rule, table or segment, write it back,
and describe rules in words for the overview.

Form edits rewrite the YAML in a canonical layout (comments are dropped); the source view edits
the text itself.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import yaml

from decisions.loader import parse_text
from decisions.models import Rule, When


def load(source: str) -> dict[str, Any]:
    """The document's data; a document that does not parse raises ValidationFailed."""
    data = parse_text(source).data
    data.setdefault("segments", {})
    data.setdefault("tables", [])
    return data


class _Dumper(yaml.SafeDumper):
    """Block style, but short lists of scalars on one line, as people write them."""


def _list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.Node:
    flow = len(value) <= 8 and all(isinstance(v, str | int | float | bool) for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


_Dumper.add_representer(list, _list)


def dump(data: dict[str, Any]) -> str:
    if not data.get("segments"):
        data = {k: v for k, v in data.items() if k != "segments"}
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def rule_id(rule: dict[str, Any] | Rule, index: int) -> str:
    value = rule.get("id") if isinstance(rule, dict) else rule.id
    return str(value) if value else f"rule-{index + 1}"


# words ------------------------------------------------------------------------------------


def _names(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return ", ".join(value) if isinstance(value, list) else str(value)


def when_words(when: When | None) -> str:
    """The conditions of a rule as a merchandiser reads them."""
    if when is None:
        return "everyone"
    parts = []
    if when.segment:
        parts.append(f"in {_names(when.segment)}")
    if when.all:
        parts.append(f"in all of {_names(when.all)}")
    if when.not_:
        parts.append(f"not in {_names(when.not_)}")
    if when.param:
        parts.append(f"query has {_names(when.param)}")
    if when.absent:
        parts.append(f"query has no {_names(when.absent)}")
    for key, value in (when.equals or {}).items():
        parts.append(f"{key} = {value}")
    if when.weekday:
        parts.append("on " + ", ".join(when.weekday))
    if when.hour:
        parts.append(f"{when.hour.min:02d}:00–{when.hour.max:02d}:00 UTC")
    return "; ".join(parts) or "everyone"


def schedule_words(when: When | None) -> str:
    if when is None or (when.from_ is None and when.until is None):
        return ""
    start = _when(when.from_) if when.from_ else "now"
    end = _when(when.until) if when.until else "open-ended"
    return f"{start} → {end}"


def _when(value: date | datetime) -> str:
    return value.isoformat().replace("T", " ").replace("+00:00", "")


def then_words(rule: Rule) -> str:
    then = rule.then
    parts = []
    if then.pin:
        parts.append("pin " + ", ".join(then.pin))
    for key in ("categoryID", "catalogID", "depth", "search", "searchOn", "sortBy", "pageSize"):
        value = getattr(then, key)
        if value is not None:
            parts.append(f"{key} {value}")
    for key, value in (then.filters or {}).items():
        parts.append(f"{key} = {_names(value)}")
    if then.override:
        parts.append("(overrides the shopper's choice)")
    return "; ".join(parts)


def split_words(rule: Rule) -> str:
    if not rule.split:
        return ""
    return " / ".join(f"{name} {weight}" for name, weight in rule.split.items())
