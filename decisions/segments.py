"""Local segments: what the gateway knows of a visitor (their Profile plus this request) and the
compiled membership tests over it. Pure: no I/O, `now` is an argument.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from decisions.models import HourRange, Range, SegmentDef
from gateway.identity import Visitor
from tracking.profiles import Profile

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
COUNTRY_HEADERS = ("cf-ipcountry", "x-country", "cloudfront-viewer-country", "x-vercel-ip-country")
_BOT = re.compile(r"bot|crawl|spider|slurp|headless|curl|wget|python-|httpx|go-http", re.IGNORECASE)
_TABLET = re.compile(r"ipad|tablet|kindle|silk|playbook", re.IGNORECASE)
_MOBILE = re.compile(r"mobi|iphone|ipod|android|windows phone", re.IGNORECASE)


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


@lru_cache(maxsize=4096)
def device_of(user_agent: str) -> str:
    """A coarse device class; good enough for targeting, not for analytics."""
    if not user_agent or _BOT.search(user_agent):
        return "bot"
    if _TABLET.search(user_agent) or (
        "android" in user_agent.lower() and "mobile" not in user_agent.lower()
    ):
        return "tablet"
    if _MOBILE.search(user_agent):
        return "mobile"
    return "desktop"


def facts_for(
    visitor: Visitor | None,
    profile: Profile | None,
    headers: Mapping[str, str],
    now: float | None = None,
) -> Facts:
    """Merge the stored profile with what this request says (headers win for request context)."""
    now = time.time() if now is None else now
    tm = time.gmtime(now)
    country = next((headers[h] for h in COUNTRY_HEADERS if headers.get(h)), None)
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
        device=device_of(headers.get("user-agent", "")),
        country=country.strip().upper() if country else None,
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


def compile_segment(definition: SegmentDef) -> SegmentTest:
    """Turn a definition into one closure; conditions are AND-ed, lists inside one are OR-ed."""
    tests: list[SegmentTest] = []
    d = definition
    if d.anonymous is not None:
        tests.append(lambda f, c, want=d.anonymous: f.anonymous is want)
    if d.buyer is not None:
        tests.append(lambda f, c, s=_many(d.buyer): f.buyer_id in s)
    if d.orders is not None:
        tests.append(lambda f, c, ok=_within(d.orders): ok(f.orders))
    if d.spent is not None:
        tests.append(lambda f, c, ok=_within(d.spent): ok(f.spent))
    if d.cart_value is not None:
        tests.append(lambda f, c, ok=_within(d.cart_value): ok(f.cart_value))
    if d.viewed_category is not None:
        tests.append(lambda f, c, s=_many(d.viewed_category): not s.isdisjoint(f.viewed_categories))
    if d.viewed_product is not None:
        tests.append(lambda f, c, s=_many(d.viewed_product): not s.isdisjoint(f.viewed_products))
    if d.cart_contains is not None:
        tests.append(lambda f, c, s=_many(d.cart_contains): not s.isdisjoint(f.cart_products))
    if d.first_seen_days is not None:
        tests.append(lambda f, c, ok=_within(d.first_seen_days): ok((f.now - f.first_seen) / 86400))
    if d.last_seen_days is not None:
        tests.append(lambda f, c, ok=_within(d.last_seen_days): ok((f.now - f.last_seen) / 86400))
    if d.locale is not None:
        prefixes = tuple(p.lower() for p in _many(d.locale))
        tests.append(lambda f, c, p=prefixes: bool(f.language) and f.language.lower().startswith(p))
    if d.currency is not None:
        tests.append(
            lambda f, c, s=frozenset(x.upper() for x in _many(d.currency)): (
                (f.currency or "").upper() in s
            )
        )
    if d.channel is not None:
        tests.append(lambda f, c, s=frozenset(x.lower() for x in _many(d.channel)): f.channel in s)
    if d.device is not None:
        tests.append(lambda f, c, s=_many(d.device): f.device in s)
    if d.country is not None:
        tests.append(lambda f, c, s=frozenset(x.upper() for x in _many(d.country)): f.country in s)
    if d.weekday is not None:
        days = frozenset(WEEKDAYS.index(w) for w in d.weekday)
        tests.append(lambda f, c, s=days: f.weekday in s)
    if d.hour is not None:
        tests.append(lambda f, c, ok=hour_test(d.hour): ok(f.hour))
    if d.cdp is not None:
        tests.append(lambda f, c, name=d.cdp.casefold(): name in c)
    if len(tests) == 1:
        return tests[0]
    return lambda f, c: all(t(f, c) for t in tests)


def segments_of(
    tests: Mapping[str, SegmentTest], facts: Facts, cdp: frozenset[str]
) -> frozenset[str]:
    """Names of the local segments this visitor is in. `cdp` holds casefolded CDP segment names."""
    return frozenset(name for name, test in tests.items() if test(facts, cdp))
