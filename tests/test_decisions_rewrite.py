"""Raw query rewriting (byte-for-byte preservation, SDK encoding) and pin re-ordering."""

from __future__ import annotations

import json

from decisions.rewrite import Actions, encode, parse_query, reorder_for, rewrite_query

SDK_QUERY = (
    "ID=a%7Cb%7Cc&xp.Color=!red&xp.Color=!blue&xp.Price=%3E10&Name=Bik*&IsX=false&search=bike"
    "&searchOn=Name%2Cxp.Color&sortBy=!Name%2CID&page=2&pageSize=100&categoryID=c1&depth=all"
)


def test_original_pairs_survive_byte_for_byte_in_order() -> None:
    result = rewrite_query(SDK_QUERY, [Actions((("xp.sale", "true"), ("catalogID", "main")))])
    assert result.query == SDK_QUERY + "&xp.sale=true&catalogID=main"
    assert result.applied == ("catalogid", "xp.sale")


def test_shopper_keys_win_case_insensitively() -> None:
    result = rewrite_query(
        SDK_QUERY, [Actions((("SORTBY", "x"), ("categoryid", "c2"), ("XP.COLOR", "green")))]
    )
    assert result.query == SDK_QUERY
    assert set(result.kept) == {"sortby", "categoryid", "xp.color"}


def test_override_drops_only_the_overridden_pairs() -> None:
    result = rewrite_query(
        SDK_QUERY, [Actions((("xp.Color", "green"), ("xp.Color", "!black")), override=True)]
    )
    assert (
        result.query
        == SDK_QUERY.replace("&xp.Color=!red&xp.Color=!blue", "")
        + "&xp.Color=green&xp.Color=!black"
    )


def test_encoding_matches_encode_uri_component() -> None:
    assert encode("a|b|c") == "a%7Cb%7Cc"
    assert encode("!xp.popularity,ID") == "!xp.popularity%2CID"
    assert encode("*watch* >10 'x' (y) ~z") == "*watch*%20%3E10%20'x'%20(y)%20~z"
    assert encode("café&=?#/") == "caf%C3%A9%26%3D%3F%23%2F"


def test_pin_sets_id_filter_and_is_dropped_when_the_shopper_filtered_ids() -> None:
    pin = Actions((("ID", "p-1|p-2"),), pin=("p-1", "p-2"))
    assert rewrite_query("page=1", [pin]).query == "page=1&ID=p-1%7Cp-2"
    assert rewrite_query("page=1", [pin]).pin == ("p-1", "p-2")
    kept = rewrite_query("id=x", [pin])
    assert (kept.query, kept.pin) == ("id=x", None)


def test_empty_and_odd_queries() -> None:
    assert rewrite_query("", [Actions((("search", "a b"),))]).query == "search=a%20b"
    assert rewrite_query("a&&b=", [Actions((("c", "d"),))]).query == "a&&b=&c=d"
    parsed = parse_query("a+b=1&C%44=2&&=3&x=%7C")
    assert parsed.keys == ("a b", "cd", "", "", "x")
    assert parsed.values == {"a b": ["1"], "cd": ["2"], "": ["3"], "x": ["|"]}


def test_reorder_puts_pins_first_and_keeps_the_rest() -> None:
    page = {
        "Meta": {"Page": 1, "TotalCount": 5, "Facets": []},
        "Items": [
            {"ID": "x"},
            {"ID": "p-3"},
            {"ID": "y"},
            {"ID": "p-1", "Name": "Montre é"},
            "odd",
        ],
    }
    body = reorder_for(["p-1", "p-2", "p-3"])(json.dumps(page).encode())
    out = json.loads(body)
    assert [i["ID"] if isinstance(i, dict) else i for i in out["Items"]] == [
        "p-1",
        "p-3",
        "x",
        "y",
        "odd",
    ]
    assert out["Meta"] == page["Meta"]
    assert "Montre é".encode() in body  # UTF-8, not \\u escapes


def test_reorder_leaves_non_list_bodies_alone() -> None:
    reorder = reorder_for(["a"])
    assert reorder(b'{"Errors":[]}') == b'{"Errors":[]}'
    assert reorder(b"[1,2]") == b"[1,2]"
