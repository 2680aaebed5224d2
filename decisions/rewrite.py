"""Rewriting the shopper's raw OrderCloud list query, and re-ordering a ListPage to a pin order.

The raw query is never rebuilt from a dict: each original `key=value` pair is kept byte for byte and
in order; only pairs an `override: true` action replaces are dropped, and the decision's pairs are
appended, encoded the way the OrderCloud JS SDK encodes (`encodeURIComponent`: `|` as %7C, `!` `*`
raw), so OrderCloud sees what a storefront would have sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote_plus

import orjson

Pair = tuple[str, str]  # decoded (key, value)


@dataclass(frozen=True, slots=True)
class Actions:
    """One rule's rewrite: pairs to append (decoded), an optional pin, and whether it overrides."""

    pairs: tuple[Pair, ...]
    pin: tuple[str, ...] | None = None
    override: bool = False


def encode(text: str) -> str:
    """encodeURIComponent: unreserved characters and !*'() stay raw, everything else is escaped."""
    return quote(text, safe="!*'()")


def _decode(text: str) -> str:
    return unquote_plus(text) if "%" in text or "+" in text else text


@dataclass(frozen=True, slots=True)
class Query:
    """A raw query split once: the raw pairs (kept verbatim) and their decoded, lower-cased keys."""

    raw: str
    pairs: tuple[str, ...]
    keys: tuple[str, ...]  # lower-cased decoded key of each pair
    values: dict[str, list[str]]  # lower-cased key -> decoded values, for `equals` conditions

    @property
    def key_set(self) -> frozenset[str]:
        return frozenset(self.keys)


def parse_query(raw_query: str) -> Query:
    pairs = tuple(raw_query.split("&")) if raw_query else ()
    keys: list[str] = []
    values: dict[str, list[str]] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        low = _decode(key).lower()
        keys.append(low)
        if pair:
            values.setdefault(low, []).append(_decode(value))
    return Query(raw_query, pairs, tuple(keys), values)


@dataclass(frozen=True, slots=True)
class Rewrite:
    query: str
    pin: tuple[str, ...] | None
    applied: tuple[str, ...]  # lower-cased keys the decision set
    kept: tuple[str, ...]  # lower-cased keys left as the shopper set them


def rewrite_query(query: Query | str, steps: Iterable[Actions]) -> Rewrite:
    """Apply each rule's actions in order. The shopper's explicit keys win unless `override`;
    a key set by an earlier step wins over a later one (first table/rule first)."""
    if isinstance(query, str):
        query = parse_query(query)
    original = list(query.pairs)
    shopper = query.key_set
    dropped: set[str] = set()
    taken: set[str] = set()
    added: list[str] = []
    kept: list[str] = []
    pin: tuple[str, ...] | None = None
    for step in steps:
        step_keys: set[str] = set()
        for key, value in step.pairs:
            low = key.lower()
            if low in taken and low not in step_keys:
                continue
            if low in shopper and low not in dropped:
                if not step.override:
                    kept.append(low)
                    continue
                dropped.add(low)
            step_keys.add(low)
            added.append(f"{encode(key)}={encode(value)}")
            if low == "id" and step.pin is not None:
                pin = step.pin
        taken |= step_keys
    if dropped:
        original = [p for p, key in zip(query.pairs, query.keys) if key not in dropped]
    return Rewrite(
        "&".join(original + added), pin, tuple(sorted(taken)), tuple(dict.fromkeys(kept))
    )


def reorder_for(pin: Sequence[str]) -> Callable[[bytes], bytes]:
    """A body rewriter: `Items` in pin order first, unpinned items after in their own order.
    An ID pinned twice keeps its first place; an item whose ID is not a string is unpinned."""
    rank: dict[str, int] = {}
    for i, item_id in enumerate(pin):
        rank.setdefault(item_id, i)

    def reorder(body: bytes) -> bytes:
        page = orjson.loads(body)
        items = page.get("Items") if isinstance(page, dict) else None
        if not isinstance(items, list):
            return body
        size = len(pin)  # after every pinned place, duplicates included
        keyed = sorted(
            enumerate(items),
            key=lambda p: (
                rank.get(_id_of(p[1]), size),
                p[0],
            ),
        )
        page["Items"] = [item for _, item in keyed]
        return orjson.dumps(page)

    return reorder


def _id_of(item: object) -> str | None:
    item_id = item.get("ID") if isinstance(item, dict) else None
    return item_id if isinstance(item_id, str) else None
