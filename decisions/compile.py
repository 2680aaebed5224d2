"""Validate a table document and compile it into indexed, closure-based tables.

Runs once per published version, so everything that can be decided ahead of a request is decided
here: segment names are resolved, rules are indexed by a segment they need, actions become ready
query pairs, split weights become cumulative shares, and collect conflicts are refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from operator import attrgetter
from typing import Any

from pydantic import ValidationError

from decisions.errors import TableError, ValidationFailed
from decisions.evaluate import Check, CompiledRule, CompiledTable, Request
from decisions.loader import Parsed
from decisions.models import NAMED_KEYS, Rule, Table, TableSet, Then, When
from decisions.rewrite import Actions, Query, parse_query
from decisions.segments import WEEKDAYS, SegmentTest, compile_segment, hour_test


@dataclass(frozen=True, slots=True)
class Compiled:
    """One live version: what the service evaluates."""

    version: int
    document: TableSet
    by_route: dict[str, tuple[CompiledTable, ...]]
    segments: dict[str, SegmentTest]
    cdp_names: frozenset[str]  # casefolded CDP segment names the document refers to


def _name(items: Any, index: object, fallback: str) -> str:
    try:
        value = items[index].get("id")  # type: ignore[index,union-attr]
        return str(value) if value else fallback
    except (AttributeError, IndexError, KeyError, TypeError):
        return fallback


def _real_path(data: object, path: Sequence[object], missing: bool) -> list[object]:
    """Drop the parts of a pydantic error path that are not in the document (union member tags);
    a missing field's own name is kept."""
    real: list[object] = []
    node = data
    for i, part in enumerate(path):
        if (
            isinstance(node, dict)
            and part in node
            or isinstance(node, list)
            and isinstance(part, int)
            and 0 <= part < len(node)
        ):
            node = node[part]
        elif missing and i == len(path) - 1:
            pass
        else:
            continue
        real.append(part)
    return real


def locate_error(
    parsed: Parsed, path: Sequence[object], message: str, missing: bool = False
) -> TableError:
    """Name table, rule (or segment) and field for a path into the document, plus file and line."""
    path = _real_path(parsed.data, path, missing)
    file, line = parsed.locate(path)
    data = parsed.data
    table = rule = segment = None
    rest = list(path)
    if len(path) >= 2 and path[0] == "tables" and isinstance(path[1], int):
        tables = data["tables"]
        table = _name(tables, path[1], f"#{path[1] + 1}")
        rest = list(path[2:])
        if len(path) >= 4 and path[2] == "rules" and isinstance(path[3], int):
            rule = _name(tables[path[1]]["rules"], path[3], f"rule-{path[3] + 1}")
            rest = list(path[4:])
    elif len(path) >= 2 and path[0] == "segments":
        segment, rest = str(path[1]), list(path[2:])
    fields = ".".join(str(p) for p in rest)
    return TableError(
        message, table=table, rule=rule, segment=segment, field=fields or None, file=file, line=line
    )


MAX_REPORTED_ERRORS = 100


def _reported(errors: list[TableError], total: int) -> ValidationFailed:
    """The first MAX_REPORTED_ERRORS of `total` errors: a 100,000-rule document broken on every
    rule would otherwise answer with megabytes of errors nobody reads."""
    kept = errors[:MAX_REPORTED_ERRORS]
    if total > len(kept):
        kept.append(TableError(f"… and {total - len(kept)} more"))
    return ValidationFailed(kept)


def validate(parsed: Parsed) -> TableSet:
    """The document as models, or ValidationFailed listing the problems found."""
    try:
        document = TableSet.model_validate(parsed.data)
    except ValidationError as exc:
        found = exc.errors(include_url=False, include_context=False, include_input=False)
        errors = [
            locate_error(parsed, e["loc"], e["msg"], e["type"] == "missing")
            for e in found[:MAX_REPORTED_ERRORS]
        ]
        raise _reported(errors, len(found)) from None
    errors = _cross_check(document, parsed)
    if errors:
        raise _reported(errors, len(errors))
    return document


def rule_ids(table: Table) -> list[str]:
    return [r.id or f"rule-{i + 1}" for i, r in enumerate(table.rules)]


def _refs(when: When | None) -> list[tuple[str, str]]:
    if when is None:
        return []
    out = []
    for field, value in (("segment", when.segment), ("all", when.all), ("not", when.not_)):
        for name in [value] if isinstance(value, str) else value or []:
            out.append((field, name))
    return out


def _cross_check(document: TableSet, parsed: Parsed) -> list[TableError]:
    errors: list[TableError] = []
    seen_tables: set[str] = set()
    for t, table in enumerate(document.tables):
        base = ("tables", t)
        if table.id in seen_tables:
            errors.append(locate_error(parsed, (*base, "id"), f"duplicate table id {table.id!r}"))
        seen_tables.add(table.id)
        ids = rule_ids(table)
        seen_rules: set[str] = set()
        for r, (rule, rid) in enumerate(zip(table.rules, ids)):
            at = (*base, "rules", r)
            if rid in seen_rules:
                errors.append(locate_error(parsed, (*at, "id"), f"duplicate rule id {rid!r}"))
            seen_rules.add(rid)
            for part in ("when", "unless"):
                when: When | None = getattr(rule, part)
                for field, name in _refs(when):
                    if name not in document.segments:
                        errors.append(
                            locate_error(parsed, (*at, part, field), f"unknown segment {name!r}")
                        )
                if when and when.from_ and when.until and _epoch(when.from_) >= _epoch(when.until):
                    errors.append(
                        locate_error(parsed, (*at, part, "until"), "until must be after from")
                    )
        errors.extend(_unreachable(table, parsed, base))
        if table.hit == "collect":
            errors.extend(_conflicts(table, parsed, base))
    return errors


def _unconditional(rule: Rule) -> bool:
    return rule.enabled and rule.when is None and rule.unless is None and rule.split is None


def _unreachable(table: Table, parsed: Parsed, base: tuple[object, ...]) -> list[TableError]:
    if table.hit != "first":
        return []
    for r, rule in enumerate(table.rules[:-1]):
        if _unconditional(rule):
            return [
                locate_error(
                    parsed,
                    (*base, "rules", r + 1),
                    f"unreachable: rule {rule_ids(table)[r]!r} "
                    "above it always matches (hit: first)",
                )
            ]
    return []


def _conflicts(table: Table, parsed: Parsed, base: tuple[object, ...]) -> list[TableError]:
    """Under collect, two rules may not set the same key to different values."""
    errors: list[TableError] = []
    owner: dict[str, tuple[tuple[str, ...], str]] = {}  # lower key -> (values, rule id)
    for r, (rule, rid) in enumerate(zip(table.rules, rule_ids(table))):
        for field, key, values in _fields(rule.then):
            low = key.lower()
            if low in owner and owner[low][0] != values:
                errors.append(
                    locate_error(
                        parsed,
                        (*base, "rules", r, "then", *field),
                        f"conflicts with rule {owner[low][1]!r} under hit: collect",
                    )
                )
            owner.setdefault(low, (values, rid))
    return errors


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # as the OrderCloud SDK writes booleans
    return str(value)


def _fields(then: Then) -> list[tuple[tuple[str, ...], str, tuple[str, ...]]]:
    """(path under then, query key, values) per action, in SDK order (filters first); a list
    filter has several values: the key repeats, an AND in OrderCloud."""
    out: list[tuple[tuple[str, ...], str, tuple[str, ...]]] = []
    if then.pin:
        out.append((("pin",), "ID", ("|".join(then.pin),)))
    for key, value in (then.filters or {}).items():
        values = tuple(map(_text, value)) if isinstance(value, list) else (_text(value),)
        out.append((("filters", key), key, values))
    for key in NAMED_KEYS:
        value = getattr(then, key)
        if value is not None:
            out.append(((key,), key, (_text(value),)))
    return out


def actions_of(then: Then) -> Actions:
    pairs = tuple((key, value) for _, key, values in _fields(then) for value in values)
    return Actions(pairs, tuple(then.pin) if then.pin else None, then.override)


def _epoch(moment: datetime | date) -> float:
    if isinstance(moment, datetime):
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC).timestamp()


def _many(value: str | list[str] | None) -> frozenset[str]:
    if value is None:
        return frozenset()
    return frozenset([value] if isinstance(value, str) else value)


def _overlaps(get: Callable[[Request], frozenset[str]], wanted: frozenset[str]) -> Check:
    return lambda q: not wanted.isdisjoint(get(q))


def _none_of(get: Callable[[Request], frozenset[str]], unwanted: frozenset[str]) -> Check:
    return lambda q: unwanted.isdisjoint(get(q))


def _subset(wanted: frozenset[str]) -> Check:
    return lambda q: wanted <= q.segments


def _equals(wanted: tuple[tuple[str, str], ...]) -> Check:
    if len(wanted) == 1:
        ((key, value),) = wanted
        return lambda q: value in q.values.get(key, ())
    return lambda q: all(v in q.values.get(k, ()) for k, v in wanted)


def _not_before(moment: float) -> Check:
    return lambda q: q.now >= moment


def _before(moment: float) -> Check:
    return lambda q: q.now < moment


def _on_days(days: frozenset[int]) -> Check:
    return lambda q: q.weekday in days


def _in_hours(ok: Callable[[int], bool]) -> Check:
    return lambda q: ok(q.hour)


_SEGMENTS = attrgetter("segments")
_KEYS = attrgetter("keys")


def _checks(when: When) -> list[tuple[str, Check]]:
    """(condition name, test) for each condition given; the names are what explain reports."""
    checks: list[tuple[str, Check]] = []
    if when.segment is not None:
        checks.append(("segment", _overlaps(_SEGMENTS, _many(when.segment))))
    if when.all:
        checks.append(("all", _subset(frozenset(when.all))))
    if when.not_ is not None:
        checks.append(("not", _none_of(_SEGMENTS, _many(when.not_))))
    if when.param is not None:
        checks.append(("param", _overlaps(_KEYS, frozenset(k.lower() for k in _many(when.param)))))
    if when.absent is not None:
        checks.append(("absent", _none_of(_KEYS, frozenset(k.lower() for k in _many(when.absent)))))
    if when.equals:
        checks.append(("equals", _equals(tuple((k.lower(), v) for k, v in when.equals.items()))))
    if when.from_ is not None:
        checks.append(("from", _not_before(_epoch(when.from_))))
    if when.until is not None:
        checks.append(("until", _before(_epoch(when.until))))
    if when.weekday is not None:
        checks.append(("weekday", _on_days(frozenset(WEEKDAYS.index(d) for d in when.weekday))))
    if when.hour is not None:
        checks.append(("hour", _in_hours(hour_test(when.hour))))
    return checks


def _negated(check: Check) -> Check:
    return lambda q: not check(q)


def _fuse(checks: list[Check]) -> Check | None:
    """One callable for several checks, without a Python-level loop for the common short cases."""
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda q: first(q) and second(q)
    every = tuple(checks)
    return lambda q: all(c(q) for c in every)


def _compile_rule(table: Table, rule: Rule, rid: str, order: int) -> CompiledRule:
    checks = _checks(rule.when) if rule.when else []
    if rule.unless is not None:
        inner = _fuse([c for _, c in _checks(rule.unless)])
        if inner is not None:  # an empty `unless` never skips the rule
            checks.append(("unless", _negated(inner)))
    split = None
    if rule.split:
        total = sum(rule.split.values())
        running, shares = 0, []
        for name, weight in rule.split.items():
            running += weight
            shares.append((name, running / total))
        split = tuple(shares)
    # A rule is only reached through the index of one of its any-of segments (or, failing one,
    # parameters), so that test is implied.
    condition, _ = _index_keys(rule)
    implied = {condition} if condition in ("segment", "param") else set()
    fast = _fuse([check for name, check in checks if name not in implied])
    return CompiledRule(table.id, rid, order, tuple(checks), actions_of(rule.then), split, fast)


def _index_keys(rule: Rule) -> tuple[str | None, list[str]]:
    """(condition, keys): the segments, else the query keys (lower-cased), of which the rule
    needs one; (None, []): the rule is tried for every request. Through an any-of condition
    (segment, param) the rule is reachable by each value, so the index implies that test;
    through `all` only by its first segment, so the test stays."""
    when = rule.when
    if when is not None and when.segment is not None:
        return "segment", sorted(_many(when.segment))
    if when is not None and when.all:
        return "all", [when.all[0]]
    if when is not None and when.param is not None:
        return "param", sorted({k.lower() for k in _many(when.param)})
    return None, []


def compile_table(table: Table) -> CompiledTable:
    ids = rule_ids(table)
    live = [
        (pos, rule, rid) for pos, (rule, rid) in enumerate(zip(table.rules, ids)) if rule.enabled
    ]
    if table.hit == "priority":
        live.sort(key=lambda p: (-p[1].priority, p[0]))
    rules = tuple(
        _compile_rule(table, rule, rid, order) for order, (_, rule, rid) in enumerate(live)
    )
    index: dict[str | None, list[CompiledRule]] = {}
    by_param: dict[str, list[CompiledRule]] = {}
    for (_, rule, _), compiled in zip(live, rules):
        condition, keys = _index_keys(rule)
        if condition == "param":
            for key in keys:
                by_param.setdefault(key, []).append(compiled)
        else:
            for key in keys or [None]:
                index.setdefault(key, []).append(compiled)
    return CompiledTable(
        table.id,
        table.applies_to,
        table.hit,
        rules,
        {k: tuple(v) for k, v in index.items()},
        {k: tuple(v) for k, v in by_param.items()},
    )


def compile_document(document: TableSet, version: int) -> Compiled:
    by_route: dict[str, list[CompiledTable]] = {}
    for table in document.tables:
        if table.enabled:
            by_route.setdefault(table.applies_to, []).append(compile_table(table))
    segments = {name: compile_segment(d) for name, d in document.segments.items()}
    cdp = frozenset(d.cdp.casefold() for d in document.segments.values() if d.cdp)
    return Compiled(version, document, {k: tuple(v) for k, v in by_route.items()}, segments, cdp)


def request_for(
    segments: frozenset[str], query: Query | str, now: float, visitor_id: str | None
) -> Request:
    """Everything rule conditions look at, from one call."""
    if isinstance(query, str):
        query = parse_query(query)
    tm = time.gmtime(now)
    return Request(segments, query.key_set, query.values, now, tm.tm_wday, tm.tm_hour, visitor_id)
