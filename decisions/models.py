"""The decision-table document marketers write, as pydantic models.

The models are the one definition of the format: validation, the published JSON Schema
(decisions/schema.json) and the admin API's OpenAPI components all come from them.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Route = Literal["me/products", "me/promotions", "me/categories"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Device = Literal["mobile", "tablet", "desktop", "bot"]

# Query keys an action sets by name; a filter may not smuggle them in.
NAMED_KEYS = ("categoryID", "catalogID", "sortBy", "pageSize", "search", "searchOn", "depth")
RESERVED_FILTER_KEYS = frozenset(k.lower() for k in (*NAMED_KEYS, "page", "searchType", "ID"))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Range(_Strict):
    """Inclusive bounds; either may be left out."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        return self


class HourRange(_Strict):
    """UTC hours: min <= hour < max (9..17 = 09:00 to 16:59)."""

    min: int = Field(0, ge=0, le=23)
    max: int = Field(24, ge=1, le=24)

    @model_validator(mode="after")
    def _ordered(self) -> HourRange:
        if self.min >= self.max:
            raise ValueError("min must be below max")
        return self


OneOrMany = str | list[str]


class SegmentDef(_Strict):
    """A local segment: every condition given must hold (AND). List values mean "any of"."""

    anonymous: bool | None = None
    buyer: OneOrMany | None = None
    orders: int | Range | None = None
    spent: float | Range | None = None
    viewed_category: OneOrMany | None = None
    viewed_product: OneOrMany | None = None
    cart_contains: OneOrMany | None = None
    cart_value: float | Range | None = None
    first_seen_days: Range | None = Field(None, description="days since the visitor was first seen")
    last_seen_days: Range | None = Field(None, description="days since the visitor was last seen")
    locale: OneOrMany | None = Field(None, description="language prefix: en matches en-GB")
    currency: OneOrMany | None = None
    channel: OneOrMany | None = Field(None, description="X-Channel header, default web")
    device: Device | list[Device] | None = Field(None, description="from the User-Agent")
    country: OneOrMany | None = Field(None, description="CF-IPCountry / X-Country header")
    weekday: list[Weekday] | None = None
    hour: HourRange | None = None
    cdp: str | None = Field(None, description="member of this CDP/Personalize segment")

    @model_validator(mode="after")
    def _not_empty(self) -> SegmentDef:
        if not self.model_fields_set:
            raise ValueError("a segment needs at least one condition")
        return self


class When(_Strict):
    """Rule conditions, all of which must hold. Schedule: from inclusive, until exclusive (UTC)."""

    segment: OneOrMany | None = Field(None, description="member of any of these segments")
    all: list[str] | None = Field(None, description="member of all of these segments")
    not_: OneOrMany | None = Field(None, alias="not", description="member of none of these")
    param: OneOrMany | None = Field(None, description="the shopper's query has any of these keys")
    absent: OneOrMany | None = Field(None, description="the shopper's query has none of these")
    equals: dict[str, str] | None = Field(None, description="query key = decoded value")
    from_: datetime | date | None = Field(None, alias="from")
    until: datetime | date | None = None
    weekday: list[Weekday] | None = None
    hour: HourRange | None = None


FilterValue = str | int | float | bool | list[str]


class Then(_Strict):
    """Actions on the OrderCloud list query."""

    pin: list[str] | None = Field(None, min_length=1, max_length=100)
    categoryID: str | None = None
    catalogID: str | None = None
    filters: dict[str, FilterValue] | None = None
    sortBy: str | None = None
    pageSize: int | None = Field(None, ge=1, le=100)
    search: str | None = None
    searchOn: str | None = None
    depth: str | None = None
    override: bool = Field(False, description="replace parameters the shopper set explicitly")

    @model_validator(mode="after")
    def _sane(self) -> Then:
        if not (self.model_fields_set - {"override"}):
            raise ValueError("then needs at least one action")
        for item in self.pin or []:
            if not item or "|" in item:
                raise ValueError(f"pin ID {item!r}: IDs must be non-empty and contain no '|'")
        for key in self.filters or {}:
            if key.lower() in RESERVED_FILTER_KEYS:
                raise ValueError(f"filter {key!r} is not a filter: use the action (pin for ID)")
        return self


class Rule(_Strict):
    id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]+$", max_length=100)
    enabled: bool = True
    priority: int = Field(0, description="higher wins under hit: priority")
    when: When | None = None
    unless: When | None = Field(None, description="the rule is skipped when these all hold")
    then: Then
    split: dict[str, int] | None = Field(
        None, description="variant -> weight; 'control' leaves the query unchanged"
    )

    @model_validator(mode="after")
    def _split(self) -> Rule:
        if self.split is not None:
            if len(self.split) < 2:
                raise ValueError("split needs at least two variants")
            if any(w < 0 for w in self.split.values()) or sum(self.split.values()) <= 0:
                raise ValueError("split weights must be >= 0 and not all 0")
            for name in self.split:
                if not name.replace("-", "").replace("_", "").isalnum():
                    raise ValueError(f"variant name {name!r}: letters, digits, - and _ only")
        return self


class Table(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$", max_length=100)
    applies_to: Route
    hit: Literal["first", "priority", "collect"] = "first"
    enabled: bool = True
    description: str | None = None
    rules: list[Rule] = Field(min_length=1)


class TableSet(_Strict):
    """A whole published document: shared segment definitions plus the tables."""

    segments: dict[str, SegmentDef] = Field(default_factory=dict)
    tables: list[Table] = Field(default_factory=list)


def json_schema() -> str:
    """The published JSON Schema of a table document (decisions/schema.json is this, committed)."""
    schema = TableSet.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "ocgateway decision tables"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
