"""Pure evaluation: compiled tables + a request's segments, params and time -> the rules that hit.

No I/O and no clock: everything arrives in `Request`. Tables are compiled once per published
version (decisions/compile.py) with rules indexed by a segment they require (or, for rules with
no segment condition, a query parameter they require), so a call only tries the rules its
visitor and query could match.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from decisions.rewrite import Actions


@dataclass(frozen=True, slots=True)
class Request:
    segments: frozenset[str]
    keys: frozenset[str]  # lower-cased query keys the shopper set
    values: dict[str, list[str]]  # lower-cased key -> decoded values
    now: float
    weekday: int
    hour: int
    visitor_id: str | None


Check = Callable[[Request], bool]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    table: str
    id: str
    order: int  # position under first/collect; priority rank under priority
    checks: tuple[tuple[str, Check], ...]  # (condition name, test), all must pass
    actions: Actions
    split: tuple[tuple[str, float], ...] | None = None  # (variant, cumulative share in 0..1)
    test: Check | None = None  # the checks the index does not already imply, fused; None: always

    def matches(self, request: Request) -> bool:
        """Fast path, for rules reached through the index."""
        if self.test is not None and not self.test(request):
            return False
        return self.split is None or request.visitor_id is not None

    def failing(self, request: Request) -> str | None:
        """The first condition that does not hold, or None."""
        for name, check in self.checks:
            if not check(request):
                return name
        if self.split is not None and request.visitor_id is None:
            return "split (no visitor id to bucket)"
        return None


@dataclass(frozen=True, slots=True)
class CompiledTable:
    id: str
    route: str
    hit: str
    rules: tuple[CompiledRule, ...]  # in evaluation order
    index: dict[str | None, tuple[CompiledRule, ...]] = field(default_factory=dict)  # by segment
    by_param: dict[str, tuple[CompiledRule, ...]] = field(default_factory=dict)  # lower-case key

    def lists(self, request: Request) -> list[tuple[CompiledRule, ...]]:
        """Index lists this request could match from, each in evaluation order: rules needing a
        segment the visitor has, rules needing only a query key the shopper set, the rest."""
        index, by_param = self.index, self.by_param
        lists = [index[s] for s in request.segments if s in index]
        if by_param:
            lists.extend(by_param[k] for k in request.keys if k in by_param)
        rest = index.get(None)
        if rest:
            lists.append(rest)
        return lists


def _order(rule: CompiledRule) -> int:
    return rule.order


@dataclass(frozen=True, slots=True)
class Hit:
    rule: CompiledRule
    variant: str | None  # None when the rule has no split; "control" means no rewrite

    @property
    def actions(self) -> Actions | None:
        return None if self.variant == "control" else self.rule.actions


def bucket(visitor_id: str, table: str, rule: str) -> float:
    """A stable number in [0, 1) per visitor and rule: same on every replica and after restarts."""
    digest = hashlib.sha256(f"{table}\x1f{rule}\x1f{visitor_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def variant_of(rule: CompiledRule, visitor_id: str) -> str:
    point = bucket(visitor_id, rule.table, rule.id)
    assert rule.split is not None
    for name, upto in rule.split:
        if point < upto:
            return name
    return rule.split[-1][0]


def _hit(rule: CompiledRule, request: Request) -> Hit:
    if rule.split is None:
        return Hit(rule, None)
    return Hit(rule, variant_of(rule, request.visitor_id))  # type: ignore[arg-type]


def evaluate_table(table: CompiledTable, request: Request) -> list[Hit]:
    """The hits of one table under its hit policy (first and priority: at most one).

    Each index list is already in evaluation order, so for a single hit the winner is the
    earliest match across lists: scan each list only up to the best match found so far, with no
    merging or sorting on the request path."""
    lists = table.lists(request)
    if table.hit == "collect":
        matched = {r.order: r for rules in lists for r in rules if r.matches(request)}
        return [_hit(matched[order], request) for order in sorted(matched)]
    best: CompiledRule | None = None
    for rules in lists:
        for rule in rules:
            if best is not None and rule.order >= best.order:
                break
            if rule.matches(request):
                best = rule
                break
    return [] if best is None else [_hit(best, request)]


def evaluate(tables: Sequence[CompiledTable], request: Request) -> list[Hit]:
    """Hits of every table for one route, in table order."""
    hits: list[Hit] = []
    for table in tables:
        hits.extend(evaluate_table(table, request))
    return hits


def explain_table(table: CompiledTable, request: Request) -> list[dict[str, object]]:
    """Every rule of a table with whether it matched and, if not, the condition that failed."""
    winners = {id(h.rule): h for h in evaluate_table(table, request)}
    out: list[dict[str, object]] = []
    for rule in sorted(table.rules, key=_order):
        failed = rule.failing(request)
        entry: dict[str, object] = {
            "rule": rule.id,
            "matched": failed is None,
            "chosen": id(rule) in winners,
        }
        if failed is not None:
            entry["failed"] = failed
        elif id(rule) in winners and winners[id(rule)].variant is not None:
            entry["variant"] = winners[id(rule)].variant
        elif failed is None and id(rule) not in winners:
            entry["note"] = f"an earlier rule won (hit: {table.hit})"
        out.append(entry)
    return out
