"""Form fields generated from the document's pydantic models, and back.

The editor never hard-codes the format: every field of `When`, `Then`, `Rule`, `SegmentDef` and
`Table` becomes an input chosen by its type (a list of IDs, a min/max pair, checkboxes for a
`Literal`, key=value lines for a mapping, …), with the model's description as help. What a form
sends is turned back into plain document data, which the models then validate, so a new field
in the format appears in the editor without touching it.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from decisions.models import HourRange, Range

_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str  # the key in the document
    kind: str  # list, choice, choices, range, hours, bool, flag, int, text, mapping, datetime
    help: str = ""
    choices: tuple[str, ...] = ()
    single: bool = False  # list/choices: one value may be written as a plain string
    integer: bool = False  # range: whole numbers; a plain number is allowed when `exact`
    exact: bool = False
    values: str = "str"  # mapping: str, int or scalar (true/false/numbers as such)
    default: Any = None


def _members(annotation: Any) -> list[Any]:
    if get_origin(annotation) in (Union, types.UnionType):
        return [a for a in get_args(annotation) if a is not type(None)]
    return [annotation]


def _literals(members: list[Any]) -> tuple[tuple[str, ...], bool, bool]:
    """(choices, a single value allowed, a list allowed) when the type is made of Literals."""
    choices: list[str] = []
    single = many = False
    for member in members:
        if get_origin(member) is Literal:
            choices += get_args(member)
            single = True
        elif get_origin(member) is list and get_origin(get_args(member)[0]) is Literal:
            choices += get_args(get_args(member)[0])
            many = True
        else:
            return (), False, False
    return tuple(dict.fromkeys(choices)), single, many


def _spec(name: str, annotation: Any, help: str, default: Any) -> FieldSpec:
    members = _members(annotation)
    choices, single, many = _literals(members)
    if choices:
        return FieldSpec(
            name, "choices" if many else "choice", help, choices, single, default=default
        )
    if HourRange in members:
        return FieldSpec(name, "hours", help)
    if Range in members:
        whole = int in members
        return FieldSpec(name, "range", help, integer=whole, exact=whole or float in members)
    if set(members) <= {str, list[str]} and list[str] in members:
        return FieldSpec(name, "list", help, single=str in members)
    mapping = next((m for m in members if get_origin(m) is dict), None)
    if mapping is not None:
        value = get_args(mapping)[1]
        kind = "int" if value is int else "str" if value is str else "scalar"
        return FieldSpec(name, "mapping", help, values=kind)
    if datetime in members or date in members:
        return FieldSpec(name, "datetime", help)
    if members == [bool]:
        return FieldSpec(
            name, "flag" if isinstance(default, bool) else "bool", help, default=default
        )
    if members == [int]:
        return FieldSpec(name, "int", help, default=default)
    return FieldSpec(name, "text", help)


def specs(model: type[BaseModel], skip: Iterable[str] = ()) -> tuple[FieldSpec, ...]:
    """One field per model field (by its document name), in the model's order."""
    out = []
    for attr, info in model.model_fields.items():
        name = info.alias or attr
        if name in skip:
            continue
        default = None if info.default is PydanticUndefined else info.default
        out.append(_spec(name, info.annotation, info.description or "", default))
    return tuple(out)


# form -> document data ---------------------------------------------------------------------


def _items(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,\n]", text) if part.strip()]


def _number(text: str, integer: bool) -> Any:
    text = text.strip()
    if not text:
        return None
    if _NUMBER.match(text):
        return (
            int(text) if integer and "." not in text else float(text) if "." in text else int(text)
        )
    return text  # the model reports it, beside the field


def _scalar(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    if _NUMBER.match(text):
        return float(text) if "." in text else int(text)
    return text


def _mapping(text: str, values: str) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not key:
            continue
        parsed: Any = value
        if values == "int":
            parsed = _number(value, True)
        elif values == "scalar":
            parsed = _scalar(value)
        if key in out:  # a repeated key is a list of values (an AND of filters)
            before = out[key] if isinstance(out[key], list) else [out[key]]
            parsed = [*before, value]
        out[key] = parsed
    return out or None


def _when(text: str) -> Any:
    text = text.strip()
    if not text:
        return None
    for parse in (date.fromisoformat, datetime.fromisoformat):
        try:
            return parse(text)
        except ValueError:
            continue
    return text


def read(spec: FieldSpec, form: Mapping[str, Any], prefix: str) -> Any:
    """The document value for this field from a submitted form (None: leave it out)."""
    key = prefix + spec.name
    text = str(form.get(key) or "")
    kind = spec.kind
    value: Any
    if kind == "list":
        items = _items(text)
        value = (items[0] if spec.single and len(items) == 1 else items) or None
    elif kind in ("choice", "choices"):
        picked = [c for c in spec.choices if form.get(f"{key}.{c}")] if kind == "choices" else []
        if kind == "choice":
            picked = [text] if text else []
        value = (picked[0] if spec.single and len(picked) == 1 else picked) or None
    elif kind in ("range", "hours"):
        low = _number(str(form.get(f"{key}.min") or ""), spec.integer or kind == "hours")
        high = _number(str(form.get(f"{key}.max") or ""), spec.integer or kind == "hours")
        if spec.exact and low is not None and low == high:
            value = low
        else:
            value = {k: v for k, v in (("min", low), ("max", high)) if v is not None} or None
    elif kind == "bool":
        value = {"true": True, "false": False}.get(text)
    elif kind == "flag":
        value = key in form
    elif kind == "int":
        value = _number(text, True)
    elif kind == "mapping":
        value = _mapping(text, spec.values)
    elif kind == "datetime":
        value = _when(text)
    else:
        value = text.strip() or None
    return None if value == spec.default else value


def read_all(
    fields: Iterable[FieldSpec], form: Mapping[str, Any], prefix: str, into: dict[str, Any]
) -> dict[str, Any]:
    """`into` with every field set from the form (or removed); keys the form does not know kept."""
    out = dict(into)
    for spec in fields:
        value = read(spec, form, prefix)
        if value is None:
            out.pop(spec.name, None)
        else:
            out[spec.name] = value
    return out


# document data -> form ---------------------------------------------------------------------


def shown(spec: FieldSpec, value: Any) -> dict[str, Any]:
    """What the template shows: `text`, `min`/`max`, or `picked`."""
    if value is None:
        value = spec.default
    kind = spec.kind
    if kind in ("range", "hours"):
        if isinstance(value, dict):
            return {"min": _plain(value.get("min")), "max": _plain(value.get("max"))}
        return {"min": _plain(value), "max": _plain(value)}
    if kind in ("choice", "choices"):
        picked = value if isinstance(value, list) else [] if value is None else [value]
        return {"picked": [str(v) for v in picked], "text": "" if value is None else str(value)}
    if kind == "list":
        items = value if isinstance(value, list) else [] if value is None else [value]
        return {"text": ", ".join(str(i) for i in items)}
    if kind == "mapping":
        lines = []
        for key, item in (value or {}).items():
            for one in item if isinstance(item, list) else [item]:
                lines.append(f"{key}={_plain(one)}")
        return {"text": "\n".join(lines)}
    if kind in ("bool", "flag"):
        return {"text": "" if value is None else str(bool(value)).lower(), "on": bool(value)}
    return {"text": _plain(value)}


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)
