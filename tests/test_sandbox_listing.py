"""OrderCloud list semantics of the sandbox, on plain dicts (no HTTP)."""

from __future__ import annotations

import pytest

from gateway.sandbox import listing
from gateway.sandbox.errors import ApiError

ITEMS = [
    {
        "ID": "a1",
        "Name": "Steel Diver",
        "Description": "A dive watch",
        "xp": {"price": 300, "sale": True, "color": "blue", "tags": ["dive", "steel"]},
        "DateCreated": "2025-01-10T00:00:00+00:00",
    },
    {
        "ID": "a2",
        "Name": "Gold Ring",
        "Description": "Solid gold",
        "xp": {"price": 120.5, "sale": False, "color": "gold"},
        "DateCreated": "2025-03-01T00:00:00+00:00",
    },
    {
        "ID": "b1",
        "Name": "Leather Strap",
        "Description": "Brown leather",
        "xp": {"price": 45, "sale": False, "color": None},
        "DateCreated": "2025-06-15T00:00:00+00:00",
    },
    {
        "ID": "b2",
        "Name": "Blue Scarf",
        "Description": "Wool scarf",
        "xp": {"price": 85, "sale": True},
        "DateCreated": "2025-09-30T00:00:00+00:00",
    },
]


def ids(query: str, **kwargs) -> list[str]:
    page = listing.page_of(ITEMS, listing.parse(query), **kwargs)
    return [item["ID"] for item in page["Items"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("ID=a1%7Cb2", ["a1", "b2"]),  # %7C decodes to | (OR)
        ("ID=a1|b1|zz", ["a1", "b1"]),
        ("ID=!a1", ["a2", "b1", "b2"]),
        ("ID=a*", ["a1", "a2"]),
        ("Name=*scarf", ["b2"]),  # wildcard, case-insensitive
        ("name=gold ring", ["a2"]),  # property and value case-insensitive
        ("xp.sale=true", ["a1", "b2"]),
        ("xp.sale=TRUE", ["a1", "b2"]),
        ("xp.sale=false", ["a2", "b1"]),
        ("xp.price=%3E100", ["a1", "a2"]),
        ("xp.price=<85", ["b1"]),
        ("xp.price=!<85", ["a1", "a2", "b2"]),
        ("xp.price=85", ["b2"]),
        ("xp.price=120.5", ["a2"]),
        ("xp.color=!blue&xp.color=!gold", ["b1", "b2"]),  # repeated key = AND
        ("xp.color=!*", ["b1", "b2"]),  # null or absent
        ("xp.color=*", ["a1", "a2"]),
        ("xp.tags=steel", ["a1"]),  # a list matches when an element does
        ("DateCreated=%3E2025-03-01", ["b1", "b2"]),
        ("DateCreated=<2025-02-01T00:00:00Z", ["a1"]),
        ("ID=a*&xp.sale=true", ["a1"]),
        ("xp.missing.deep=x", []),
    ],
)
def test_filters(query: str, expected: list[str]) -> None:
    assert ids(query) == expected


def test_search_is_case_insensitive_over_id_name_description() -> None:
    assert ids("search=LEATHER") == ["b1"]
    assert ids("search=b2") == ["b2"]
    assert ids("search=gold&searchOn=Description") == ["a2"]
    assert ids("search=gold&searchOn=ID") == []


def test_search_types_and_relevance() -> None:
    # AnyTerm (default): either word; the item matching both words ranks first.
    assert ids("search=steel dive") == ["a1"]
    assert ids("search=wool blue") == ["b2"]
    assert ids("search=gold leather") == ["a2", "b1"]
    assert ids("search=gold leather&searchType=AllTermsAnyField") == []
    assert ids("search=blue scarf&searchType=AllTermsSameField") == ["b2"]
    assert ids("search=dive watch&searchType=ExactPhrase") == ["a1"]
    assert ids("search=leath&searchType=ExactPhrasePrefix") == ["b1"]


def test_sort_ascending_descending_and_multiple_keys() -> None:
    assert ids("sortBy=!xp.price") == ["a1", "a2", "b2", "b1"]
    assert ids("sortBy=xp.price") == ["b1", "b2", "a2", "a1"]
    assert ids("sortBy=Name") == ["b2", "a2", "b1", "a1"]
    assert ids("sortBy=!xp.sale,ID") == ["a1", "b2", "a2", "b1"]
    # Items without the property stay last in both directions.
    assert ids("sortBy=xp.color") == ["a1", "a2", "b1", "b2"]
    assert ids("sortBy=!xp.color") == ["a2", "a1", "b1", "b2"]


def test_paging_meta() -> None:
    page = listing.page_of(ITEMS, listing.parse("page=2&pageSize=3"))
    assert page["Meta"] == {
        "Page": 2,
        "PageSize": 3,
        "TotalCount": 4,
        "TotalPages": 2,
        "ItemRange": [4, 4],
        "NextPageKey": None,
    }
    assert [item["ID"] for item in page["Items"]] == ["b2"]
    assert "Facets" not in page["Meta"]
    empty = listing.page_of(ITEMS, listing.parse("page=9"), facets=True)
    assert empty["Items"] == [] and empty["Meta"]["ItemRange"] == [0, 0]
    assert empty["Meta"]["Facets"] == []


@pytest.mark.parametrize(
    "query", ["pageSize=101", "pageSize=0", "pageSize=x", "page=0", "searchType=Fuzzy"]
)
def test_bad_list_parameters_are_400(query: str) -> None:
    with pytest.raises(ApiError) as caught:
        listing.parse(query)
    assert caught.value.status == 400


def test_route_parameters_are_not_filters() -> None:
    args = listing.parse(
        "categoryID=rings&depth=all&xp.color=red&PageSize=5", ("categoryid", "depth")
    )
    assert args.params == {"categoryid": "rings", "depth": "all"}
    assert args.filters == [("xp.color", "red")]
    assert args.page_size == 5
