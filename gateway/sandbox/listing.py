"""OrderCloud list semantics: filters, search, sort and paging over plain dicts.

The query is read from the raw query string so repeated keys survive (`xp.color=!red&xp.color=!blue`
is an AND). Every key that is not a list parameter of the route is a filter on a (dotted) property
path; a value is `|`-separated alternatives, each optionally `!`-negated, compared with `>`/`<`,
or matched with `*` wildcards. Property names match case-insensitively, as OrderCloud's do.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from .errors import invalid

_LIST_PARAMS = frozenset({"page", "pagesize", "sortby", "search", "searchon", "searchtype"})
_SEARCH_TYPES = {
    "anyterm",
    "alltermsanyfield",
    "alltermssamefield",
    "exactphrase",
    "exactphraseprefix",
}
_MISSING = object()


@dataclass(slots=True)
class ListArgs:
    """A parsed list query. `params` holds the route's own parameters (lower-cased keys)."""

    page: int = 1
    page_size: int = 20
    sort_by: list[str] = field(default_factory=list)
    search: str | None = None
    search_on: list[str] = field(default_factory=list)
    search_type: str = "anyterm"
    params: dict[str, str] = field(default_factory=dict)
    filters: list[tuple[str, str]] = field(default_factory=list)


def parse(raw_query: str, route_params: Iterable[str] = ()) -> ListArgs:
    """Parse a raw query string; `route_params` are the lower-case keys that are not filters."""
    own = frozenset(route_params)
    args = ListArgs()
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        lower = key.lower()
        if lower == "page":
            args.page = _positive_int("page", value, None)
        elif lower == "pagesize":
            args.page_size = _positive_int("pageSize", value, 100)
        elif lower == "sortby":
            args.sort_by = [part.strip() for part in value.split(",") if part.strip()]
        elif lower == "search":
            args.search = value or None
        elif lower == "searchon":
            args.search_on = [part.strip() for part in value.split(",") if part.strip()]
        elif lower == "searchtype":
            if value.lower() not in _SEARCH_TYPES:
                raise invalid(f"searchType is invalid: {value}", data={"Parameter": "searchType"})
            args.search_type = value.lower()
        elif lower in own:
            args.params[lower] = value
        elif value != "":
            args.filters.append((key, value))
    return args


def _positive_int(name: str, value: str, maximum: int | None) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1 or (maximum is not None and number > maximum):
        limit = f"between 1 and {maximum}" if maximum else "at least 1"
        raise invalid(f"{name} must be {limit}.", data={"Parameter": name, "Value": value})
    return number


def lookup(item: Any, path: str) -> Any:
    """The value at a dotted property path (case-insensitive keys), or `_MISSING`."""
    current = item
    for part in path.split("."):
        if not isinstance(current, dict):
            return _MISSING
        if part in current:
            current = current[part]
            continue
        lowered = part.lower()
        for key, value in current.items():
            if key.lower() == lowered:
                current = value
                break
        else:
            return _MISSING
    return current


def _text(value: Any) -> str:
    """How a value reads in a filter: booleans as true/false, whole floats without `.0`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _date(text: str) -> datetime | None:
    if len(text) < 8 or not text[:4].isdigit():
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@lru_cache(maxsize=512)
def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile(
        ".*".join(re.escape(part) for part in pattern.split("*")), re.IGNORECASE | re.DOTALL
    )


@dataclass(frozen=True, slots=True)
class _Operand:
    """A filter value, parsed once per query rather than once per item."""

    text: str
    folded: str
    number: float | None
    date: datetime | None
    pattern: re.Pattern[str] | None

    @classmethod
    def of(cls, text: str) -> _Operand:
        pattern = _wildcard(text) if "*" in text else None
        return cls(text, text.casefold(), _number(text), _date(text), pattern)


def _value_number(value: Any, text: str) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return _number(text)


def _compare(value: Any, op: str, operand: _Operand) -> bool:
    """One positive term against one scalar value."""
    if value is None or isinstance(value, (dict, list)):
        return False
    text = _text(value)
    if op == "=":
        if operand.pattern is not None:
            return operand.pattern.fullmatch(text) is not None
        if operand.number is not None:
            number = _value_number(value, text)
            if number is not None:
                return number == operand.number
        return text.casefold() == operand.folded
    left: Any
    right: Any
    number = _value_number(value, text) if operand.number is not None else None
    moment = _date(text) if number is None and operand.date is not None else None
    if number is not None:
        left, right = number, operand.number
    elif moment is not None:
        left, right = moment, operand.date
    else:
        left, right = text.casefold(), operand.folded
    if op == ">":
        return left > right
    if op == "<":
        return left < right
    if op == ">=":
        return left >= right
    return left <= right


def _term(term: str) -> Callable[[Any], bool]:
    """Compile one `|` alternative: `[!](>|<|>=|<=)?operand` or `[!]*`."""
    negate = term.startswith("!")
    body = term[1:] if negate else term
    op = "="
    for prefix in (">=", "<=", ">", "<"):
        if body.startswith(prefix):
            op, body = prefix, body[len(prefix) :]
            break
    if op == "=" and body == "*":  # `*` = has a value; `!*` = absent or null

        def present(value: Any) -> bool:
            return value is not _MISSING and value is not None

        return (lambda value: not present(value)) if negate else present
    operand = _Operand.of(body)

    def matches(value: Any) -> bool:
        if value is _MISSING:
            return False
        if isinstance(value, list):  # a list property matches when any element does
            return any(_compare(element, op, operand) for element in value)
        return _compare(value, op, operand)

    return (lambda value: not matches(value)) if negate else matches


def _filter(path: str, expression: str) -> Callable[[Any], bool]:
    terms = [_term(term) for term in expression.split("|")]

    def accepts(item: Any) -> bool:
        value = lookup(item, path)
        return any(term(value) for term in terms)

    return accepts


def _search_score(item: Any, args: ListArgs, fields: list[str]) -> int:
    """0 when the item does not match the search, else a relevance (more hits, higher)."""
    assert args.search is not None
    texts = []
    for path in fields:
        value = lookup(item, path)
        if value is not _MISSING and value is not None and not isinstance(value, (dict, list)):
            texts.append(_text(value).casefold())
    phrase = args.search.casefold()
    kind = args.search_type
    if kind == "exactphrase":
        return sum(phrase in text for text in texts)
    if kind == "exactphraseprefix":
        return sum(text.startswith(phrase) or f" {phrase}" in text for text in texts)
    terms = phrase.split() or [phrase]
    hits = [[term in text for text in texts] for term in terms]
    score = sum(sum(row) for row in hits)
    if kind == "alltermsanyfield" and not all(any(row) for row in hits):
        return 0
    if kind == "alltermssamefield" and not any(
        all(hits[t][f] for t in range(len(terms))) for f in range(len(texts))
    ):
        return 0
    return score


def _sort_key(path: str) -> Callable[[Any], tuple]:
    def key(item: Any) -> tuple:
        value = lookup(item, path)
        if value is _MISSING or value is None:
            return (2, 0)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (0, value)
        return (1, _text(value).casefold())

    return key


def page_of(
    items: Iterable[dict[str, Any]],
    args: ListArgs,
    search_fields: tuple[str, ...] = ("ID", "Name", "Description"),
    facets: bool = False,
) -> dict[str, Any]:
    """Filter, search, sort and page `items` into a ListPage (ListPageWithFacets if `facets`)."""
    checks = [_filter(path, expression) for path, expression in args.filters]
    selected = [item for item in items if all(check(item) for check in checks)]
    if args.search:
        fields = args.search_on or list(search_fields)
        scored = [(_search_score(item, args, fields), item) for item in selected]
        scored = [pair for pair in scored if pair[0] > 0]
        if not args.sort_by:  # relevance first, stable within equal scores
            scored.sort(key=lambda pair: -pair[0])
        selected = [item for _, item in scored]
    for spec in reversed(args.sort_by):
        descending = spec.startswith("!")
        path = spec[1:] if descending else spec
        key = _sort_key(path)
        keyed = [(key(item), item) for item in selected]
        present = [pair for pair in keyed if pair[0][0] != 2]
        present.sort(key=lambda pair: pair[0], reverse=descending)
        # Items without the property stay last whichever way the sort runs.
        selected = [item for _, item in present] + [item for k, item in keyed if k[0] == 2]
    total = len(selected)
    start = (args.page - 1) * args.page_size
    window = selected[start : start + args.page_size]
    meta: dict[str, Any] = {
        "Page": args.page,
        "PageSize": args.page_size,
        "TotalCount": total,
        "TotalPages": math.ceil(total / args.page_size),
        "ItemRange": [start + 1, start + len(window)] if window else [0, 0],
        "NextPageKey": None,
    }
    if facets:
        meta["Facets"] = []
    return {"Meta": meta, "Items": window}
