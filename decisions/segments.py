"""Local segments: what the gateway knows of a visitor (their Profile plus this request) and the
compiled membership tests over it. Pure: no I/O, `now` is an argument.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from decisions.models import HourRange, Range, SegmentDef
from gateway.headers import COUNTRY_HEADERS, country, device_of, user_agent
from gateway.identity import Visitor
from state.profiles import Profile

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything a local segment may test, captured once per call."""

    visitor_id: str | None = None
    anonymous: bool = True
    buyer_id: str | None = None
    orders: int = 0
    spent: float = 0.0
    viewed_categories: frozenset[str] = frozenset()
    viewed_products: frozenset[str] = frozenset()
    cart_products: frozenset[str] = frozenset()
    cart_value: float = 0.0
    first_seen: float = 0.0
    last_seen: float = 0.0
    language: str | None = None
    currency: str | None = None
    channel: str = "web"
    device: str = "desktop"
    country: str | None = None
    now: float = 0.0
    weekday: int = 0  # 0 = Monday, UTC
    hour: int = 0  # UTC


def facts_for(
    visitor: Visitor | None,
    profile: Profile | None,
    headers: Mapping[str, str],
    now: float | None = None,
    country_headers: Sequence[str] = COUNTRY_HEADERS,
) -> Facts:
    """Merge the stored profile with what this request says (headers win for request context)."""
    now = time.time() if now is None else now
    tm = time.gmtime(now)
    accept = headers.get("accept-language", "")
    language = (
        (profile.language if profile else None)
        or (visitor.language if visitor else None)
        or (accept.split(",")[0].split(";")[0].strip() or None)
    )
    return Facts(
        visitor_id=visitor.id if visitor else (profile.visitor_id if profile else None),
        anonymous=visitor.anonymous if visitor else (profile.anonymous if profile else True),
        buyer_id=(visitor.buyer_id if visitor else None) or (profile.buyer_id if profile else None),
        orders=profile.orders if profile else 0,
        spent=profile.spent if profile else 0.0,
        viewed_categories=frozenset(profile.viewed_categories) if profile else frozenset(),
        viewed_products=frozenset(profile.viewed_products) if profile else frozenset(),
        cart_products=frozenset(profile.cart_products) if profile else frozenset(),
        cart_value=profile.cart_value if profile else 0.0,
        first_seen=(profile.first_seen if profile else 0.0) or now,
        last_seen=(profile.last_seen if profile else 0.0) or now,
        language=language,
        currency=(profile.currency if profile else None) or (visitor.currency if visitor else None),
        channel=(headers.get("x-channel") or "web").strip().lower(),
        device=device_of(user_agent(headers)),
        country=country(headers, country_headers),
        now=now,
        weekday=tm.tm_wday,
        hour=tm.tm_hour,
    )


SegmentTest = Callable[[Facts, frozenset[str]], bool]  # (facts, CDP segment names) -> member?


def _many(value: str | list[str]) -> frozenset[str]:
    return frozenset([value] if isinstance(value, str) else value)


def _within(bound: float | Range) -> Callable[[float], bool]:
    if not isinstance(bound, Range):
        return lambda v: v == bound
    lo = float("-inf") if bound.min is None else bound.min
    hi = float("inf") if bound.max is None else bound.max
    return lambda v: lo <= v <= hi


def hour_test(hours: HourRange) -> Callable[[int], bool]:
    return lambda h: hours.min <= h < hours.max


def _is_in(get: Callable[[Facts], object], allowed: frozenset[object]) -> SegmentTest:
    return lambda f, c: get(f) in allowed


def _overlaps(get: Callable[[Facts], frozenset[str]], wanted: frozenset[str]) -> SegmentTest:
    return lambda f, c: not wanted.isdisjoint(get(f))


def _passes(get: Callable[[Facts], Any], ok: Callable[[Any], bool]) -> SegmentTest:
    return lambda f, c: ok(get(f))


def _cdp_member(name: str) -> SegmentTest:
    return lambda f, c: name in c


def _days_since(attr: str) -> Callable[[Facts], float]:
    return lambda f: (f.now - getattr(f, attr)) / 86400


def _locale_test(prefixes: tuple[str, ...]) -> Callable[[str | None], bool]:
    return lambda language: bool(language) and language.lower().startswith(prefixes)  # type: ignore[union-attr]


def compile_segment(definition: SegmentDef) -> SegmentTest:
    """Turn a definition into one closure; conditions are AND-ed, lists inside one are OR-ed."""
    d = definition
    tests: list[SegmentTest] = []
    if d.anonymous is not None:
        tests.append(_is_in(attrgetter("anonymous"), frozenset({d.anonymous})))
    if d.buyer is not None:
        tests.append(_is_in(attrgetter("buyer_id"), _many(d.buyer)))
    if d.device is not None:
        tests.append(_is_in(attrgetter("device"), _many(d.device)))
    if d.currency is not None:
        upper = frozenset(x.upper() for x in _many(d.currency))
        tests.append(_is_in(lambda f: (f.currency or "").upper(), upper))
    if d.channel is not None:
        tests.append(_is_in(attrgetter("channel"), frozenset(x.lower() for x in _many(d.channel))))
    if d.country is not None:
        tests.append(_is_in(attrgetter("country"), frozenset(x.upper() for x in _many(d.country))))
    if d.weekday is not None:
        days = frozenset(WEEKDAYS.index(w) for w in d.weekday)
        tests.append(_is_in(attrgetter("weekday"), days))
    for field, get in (
        ("orders", attrgetter("orders")),
        ("spent", attrgetter("spent")),
        ("cart_value", attrgetter("cart_value")),
        ("first_seen_days", _days_since("first_seen")),
        ("last_seen_days", _days_since("last_seen")),
    ):
        bound = getattr(d, field)
        if bound is not None:
            tests.append(_passes(get, _within(bound)))
    for field, attr in (
        ("viewed_category", "viewed_categories"),
        ("viewed_product", "viewed_products"),
        ("cart_contains", "cart_products"),
    ):
        wanted = getattr(d, field)
        if wanted is not None:
            tests.append(_overlaps(attrgetter(attr), _many(wanted)))
    if d.locale is not None:
        prefixes = tuple(p.lower() for p in _many(d.locale))
        tests.append(_passes(attrgetter("language"), _locale_test(prefixes)))
    if d.hour is not None:
        tests.append(_passes(attrgetter("hour"), hour_test(d.hour)))
    if d.cdp is not None:
        tests.append(_cdp_member(d.cdp.casefold()))
    if len(tests) == 1:
        return tests[0]
    every = tuple(tests)
    return lambda f, c: all(t(f, c) for t in every)


def segments_of(
    tests: Mapping[str, SegmentTest], facts: Facts, cdp: frozenset[str]
) -> frozenset[str]:
    """Names of the local segments this visitor is in. `cdp` holds casefolded CDP segment names."""
    return frozenset(name for name, test in tests.items() if test(facts, cdp))
