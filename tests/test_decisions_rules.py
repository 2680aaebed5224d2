"""Conditions, actions, hit policies, splits and validation of decision tables (pure evaluation)."""

from __future__ import annotations

import hashlib
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from decisions.compile import compile_document, request_for, validate
from decisions.errors import ValidationFailed
from decisions.evaluate import Hit, bucket, evaluate
from decisions.loader import parse_text, read_source
from decisions.models import SegmentDef
from decisions.rewrite import rewrite_query
from decisions.segments import compile_segment, facts_for, segments_of
from gateway.headers import device_of
from gateway.identity import Visitor
from state.profiles import Profile

T0 = datetime(2026, 3, 4, 12, 30, tzinfo=UTC).timestamp()  # a Wednesday, 12:30 UTC

SEGMENTS = """
segments:
  a: { orders: 0 }
  b: { orders: 1 }
  c: { orders: 2 }
"""


def run(
    rules_yaml: str,
    segments=(),
    query: str = "",
    now: float = T0,
    visitor: str | None = "v1",
    hit: str = "first",
    extra_tables: str = "",
) -> tuple[list[Hit], str]:
    text = (
        SEGMENTS
        + textwrap.dedent(f"""
    tables:
      - id: t
        applies_to: me/products
        hit: {hit}
        rules:
    """)
        + textwrap.indent(textwrap.dedent(rules_yaml), "      ")
        + textwrap.indent(textwrap.dedent(extra_tables), "  ")
    )
    compiled = compile_document(validate(parse_text(text)), 1)
    hits = evaluate(
        compiled.by_route["me/products"], request_for(frozenset(segments), query, now, visitor)
    )
    rewrite = rewrite_query(query, [h.actions for h in hits if h.actions])
    return hits, rewrite.query


def rule_ids(hits: list[Hit]) -> list[str]:
    return [h.rule.id for h in hits]


# --- conditions -------------------------------------------------------------------------------


def test_segment_any_all_not() -> None:
    rules = """
    - id: any
      when: { segment: [a, b], not: c }
      then: { search: x }
    - id: all
      when: { all: [b, c] }
      then: { search: y }
    """
    assert rule_ids(run(rules, {"a"})[0]) == ["any"]
    assert rule_ids(run(rules, {"b"})[0]) == ["any"]
    assert rule_ids(run(rules, {"b", "c"})[0]) == ["all"]  # not: c excludes the first
    assert rule_ids(run(rules, {"c"})[0]) == []


def test_param_present_absent_equal() -> None:
    rules = """
    - id: present
      when: { param: categoryID }
      then: { sortBy: Name }
    - id: absent
      when: { absent: [search, categoryID], equals: { depth: all } }
      then: { pageSize: 5 }
    """
    assert rule_ids(run(rules, query="CategoryID=c1")[0]) == ["present"]  # keys case-insensitive
    assert rule_ids(run(rules, query="depth=all")[0]) == ["absent"]
    assert rule_ids(run(rules, query="depth=1")[0]) == []
    assert rule_ids(run(rules, query="depth=all&search=x")[0]) == []


def test_unless() -> None:
    rules = """
    - id: r
      when: { segment: a }
      unless: { param: categoryID }
      then: { categoryID: mens-watches }
    """
    assert rule_ids(run(rules, {"a"})[0]) == ["r"]
    assert rule_ids(run(rules, {"a"}, query="categoryID=x")[0]) == []


def test_schedule_from_inclusive_until_exclusive() -> None:
    rules = """
    - id: sale
      when: { from: 2026-03-01, until: "2026-03-31T00:00:00Z" }
      then: { filters: { xp.sale: true } }
    """
    start = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    end = datetime(2026, 3, 31, tzinfo=UTC).timestamp()
    assert rule_ids(run(rules, now=start - 0.001)[0]) == []
    assert rule_ids(run(rules, now=start)[0]) == ["sale"]
    assert rule_ids(run(rules, now=end - 0.001)[0]) == ["sale"]
    assert rule_ids(run(rules, now=end)[0]) == []


def test_weekday_and_hour() -> None:
    rules = """
    - id: lunch
      when: { weekday: [wed], hour: { min: 12, max: 13 } }
      then: { search: lunch }
    """
    assert rule_ids(run(rules, now=T0)[0]) == ["lunch"]
    assert rule_ids(run(rules, now=T0 + 3600)[0]) == []  # 13:30: max is exclusive
    assert rule_ids(run(rules, now=T0 + 86400)[0]) == []  # Thursday


# --- actions ----------------------------------------------------------------------------------


def test_each_action_is_appended_sdk_encoded() -> None:
    rules = """
    - id: all-actions
      then:
        pin: [p-1, p-2]
        filters: { xp.sale: true, xp.Color: ["!red", "!blue"], Name: "Bik*", xp.Price: ">10" }
        categoryID: mens watches
        catalogID: main
        sortBy: "!xp.popularity,ID"
        pageSize: 12
        search: gold watch
        searchOn: Name
        depth: all
    """
    _, query = run(rules, query="page=2")
    assert query == (
        "page=2&ID=p-1%7Cp-2&xp.sale=true&xp.Color=!red&xp.Color=!blue&Name=Bik*&xp.Price=%3E10"
        "&categoryID=mens%20watches&catalogID=main&sortBy=!xp.popularity%2CID&pageSize=12"
        "&search=gold%20watch&searchOn=Name&depth=all"
    )


def test_explicit_parameter_wins_unless_override() -> None:
    rules = """
    - id: r
      then: { sortBy: "!xp.popularity", pageSize: 12 }
    """
    _, query = run(rules, query="sortby=Name&page=1")
    assert query == "sortby=Name&page=1&pageSize=12"
    override = """
    - id: r
      then: { sortBy: "!xp.popularity", override: true }
    """
    _, query = run(override, query="SortBy=Name&page=1&sortBy=ID")
    assert query == "page=1&sortBy=!xp.popularity"


# --- hit policies -----------------------------------------------------------------------------


def test_first_hit_stops_at_first_match() -> None:
    rules = """
    - id: one
      when: { segment: a }
      then: { search: one }
    - id: two
      then: { search: two }
    """
    assert rule_ids(run(rules, {"a"})[0]) == ["one"]
    assert rule_ids(run(rules, set())[0]) == ["two"]


def test_priority_hit_picks_highest_priority() -> None:
    rules = """
    - id: low
      priority: 1
      then: { search: low }
    - id: high
      priority: 10
      when: { segment: a }
      then: { search: high }
    - id: mid
      priority: 5
      when: { segment: [a, b] }
      then: { search: mid }
    """
    assert rule_ids(run(rules, {"a"}, hit="priority")[0]) == ["high"]
    assert rule_ids(run(rules, {"b"}, hit="priority")[0]) == ["mid"]
    assert rule_ids(run(rules, set(), hit="priority")[0]) == ["low"]


def test_collect_merges_all_matches() -> None:
    rules = """
    - id: sale
      when: { segment: a }
      then: { filters: { xp.sale: true } }
    - id: size
      then: { pageSize: 12, filters: { xp.sale: true } }
    """
    hits, query = run(rules, {"a"}, hit="collect")
    assert rule_ids(hits) == ["sale", "size"]
    assert query == "xp.sale=true&pageSize=12"


def test_collect_conflict_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailed) as info:
        run(
            """
        - id: a
          then: { sortBy: Name }
        - id: b
          then: { sortBy: ID }
        """,
            hit="collect",
        )
    [error] = info.value.errors
    assert (error.table, error.rule, error.field) == ("t", "b", "then.sortBy")
    assert "conflicts with rule 'a'" in error.message


def test_two_tables_on_one_route_first_table_wins_a_key() -> None:
    hits, query = run(
        """
    - id: r1
      then: { sortBy: Name }
    """,
        extra_tables="""
    - id: t2
      applies_to: me/products
      rules:
        - id: r2
          then: { sortBy: ID, pageSize: 7 }
    """,
    )
    assert rule_ids(hits) == ["r1", "r2"]
    assert query == "sortBy=Name&pageSize=7"


PARAM_RULES = """
- id: search-sort
  priority: 1
  when: { param: [Search, searchOn] }
  then: { sortBy: Name }
- id: seg-a
  priority: 5
  when: { segment: a }
  then: { pageSize: 5 }
- id: cat-depth
  priority: 9
  when: { param: categoryID, absent: depth }
  then: { depth: all }
- id: both
  priority: 9
  when: { segment: b, param: search }
  then: { catalogID: c1 }
- id: search-size
  priority: 3
  when: { param: search }
  then: { search: shoes }
"""


@pytest.mark.parametrize(
    ("hit", "segments", "query", "expected"),
    [
        ("first", (), "search=x", ["search-sort"]),
        ("first", ("a",), "SEARCH=x", ["search-sort"]),
        ("first", ("a",), "categoryid=c", ["seg-a"]),
        ("first", (), "categoryID=c&depth=1", []),
        ("priority", ("a",), "categoryID=c&search=x", ["cat-depth"]),
        ("priority", ("b",), "search=x", ["both"]),
        ("priority", (), "searchOn=Name", ["search-sort"]),
        (
            "collect",
            ("a", "b"),
            "search=x&categoryID=c",
            ["search-sort", "seg-a", "cat-depth", "both", "search-size"],
        ),
        ("collect", (), "searchOn=ID&search=x", ["search-sort", "search-size"]),
    ],
)
def test_param_only_rules_are_indexed_by_key_and_keep_their_order(
    hit: str, segments: tuple[str, ...], query: str, expected: list[str]
) -> None:
    text = SEGMENTS + "tables:\n  - id: t\n    applies_to: me/products\n    hit: " + hit
    text += "\n    rules:\n" + textwrap.indent(textwrap.dedent(PARAM_RULES), "      ")
    [table] = compile_document(validate(parse_text(text)), 1).by_route["me/products"]
    assert None not in table.index  # no rule is tried for every request
    assert {k: [r.id for r in v] for k, v in table.by_param.items()} == {
        "search": ["search-sort", "search-size"][:: -1 if hit == "priority" else 1],
        "searchon": ["search-sort"],
        "categoryid": ["cat-depth"],
    }
    request = request_for(frozenset(segments), query, T0, "v1")
    assert rule_ids(evaluate([table], request)) == expected
    # The index is only a shortcut: every rule, in order, gives the same answer.
    matching = [r.id for r in sorted(table.rules, key=lambda r: r.order) if not r.failing(request)]
    assert expected == (matching if hit == "collect" else matching[:1])


def test_disabled_rules_are_skipped_and_yes_no_on_off_stay_strings() -> None:
    hits, query = run("""
    - id: off
      enabled: false
      then: { search: off }
    - id: on
      then: { search: on, filters: { xp.sale: yes } }
    """)
    assert rule_ids(hits) == ["on"]
    assert query == "xp.sale=yes&search=on"


# --- experiments --------------------------------------------------------------------------------

SPLIT = """
- id: exp
  then: { pageSize: 12 }
  split: { treatment: 30, control: 70 }
"""


def test_split_is_sticky_and_control_leaves_query_unchanged() -> None:
    first = [run(SPLIT, visitor=f"v{i}")[0][0].variant for i in range(50)]
    again = [run(SPLIT, visitor=f"v{i}")[0][0].variant for i in range(50)]
    assert first == again
    for i in range(50):
        hits, query = run(SPLIT, visitor=f"v{i}", query="page=1")
        assert query == ("page=1&pageSize=12" if hits[0].variant == "treatment" else "page=1")


def test_split_bucket_is_a_plain_sha256_of_table_rule_visitor() -> None:
    # Same answer on every replica and after restarts: nothing but the ids go into the hash.
    digest = hashlib.sha256(b"t\x1fexp\x1fvisitor-42").digest()
    assert bucket("visitor-42", "t", "exp") == int.from_bytes(digest[:8], "big") / 2**64


def test_split_proportions_over_10000_visitors() -> None:
    compiled = compile_document(
        validate(
            parse_text(
                SEGMENTS
                + textwrap.dedent("""
    tables:
      - id: t
        applies_to: me/products
        rules:
          - id: exp
            then: { pageSize: 12 }
            split: { treatment: 30, control: 70 }
    """)
            )
        ),
        1,
    )
    tables = compiled.by_route["me/products"]
    treated = sum(
        evaluate(tables, request_for(frozenset(), "", T0, f"visitor-{i}"))[0].variant == "treatment"
        for i in range(10_000)
    )
    assert 2800 <= treated <= 3200


def test_split_rule_is_skipped_without_a_visitor_id() -> None:
    assert run(SPLIT, visitor=None)[0] == []


# --- local segments ---------------------------------------------------------------------------


def seg(**definition: object):
    return compile_segment(SegmentDef.model_validate(definition))


def test_local_segment_conditions() -> None:
    profile = Profile(
        "acme-u1",
        anonymous=False,
        buyer_id="acme",
        orders=3,
        spent=620.0,
        viewed_products=["p-1"],
        viewed_categories=["mens-watches"],
        cart_products=["p-9"],
        cart_value=80.0,
        first_seen=T0 - 10 * 86400,
        last_seen=T0 - 86400,
        language="en-GB",
        currency="gbp",
    )
    visitor = Visitor("acme-u1", anonymous=False, buyer_id="acme")
    headers = {
        "user-agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148",
        "cf-ipcountry": "gb",
        "x-channel": "App",
    }
    facts = facts_for(visitor, profile, headers, T0)
    cdp = frozenset({"vip"})
    yes = [
        seg(anonymous=False),
        seg(buyer=["acme", "globex"]),
        seg(orders={"min": 2}),
        seg(orders=3),
        seg(spent={"min": 500, "max": 1000}),
        seg(viewed_category="mens-watches"),
        seg(viewed_product=["p-1"]),
        seg(cart_contains="p-9"),
        seg(cart_value={"min": 50}),
        seg(first_seen_days={"min": 7}),
        seg(last_seen_days={"max": 2}),
        seg(locale="en"),
        seg(currency="GBP"),
        seg(channel="app"),
        seg(device="mobile"),
        seg(country=["GB", "IE"]),
        seg(weekday=["wed"]),
        seg(hour={"min": 12, "max": 13}),
        seg(cdp="VIP"),
        seg(orders={"min": 1}, cdp="vip"),
    ]
    no = [
        seg(anonymous=True),
        seg(buyer="globex"),
        seg(orders=0),
        seg(spent={"max": 100}),
        seg(viewed_category="jewellery"),
        seg(cart_contains="p-1"),
        seg(first_seen_days={"max": 1}),
        seg(locale="fr"),
        seg(currency="EUR"),
        seg(device="desktop"),
        seg(country="US"),
        seg(cdp="gold"),
        seg(orders={"min": 1}, cdp="gold"),
    ]
    assert [t(facts, cdp) for t in yes] == [True] * len(yes)
    assert [t(facts, cdp) for t in no] == [False] * len(no)
    assert segments_of({"x": yes[0], "y": no[0]}, facts, cdp) == {"x"}


def test_unknown_visitor_is_an_anonymous_newcomer() -> None:
    facts = facts_for(None, None, {}, T0)
    assert (facts.anonymous, facts.orders, facts.visitor_id, facts.device) == (True, 0, None, "bot")
    assert seg(anonymous=True, orders=0)(facts, frozenset())


def test_device_from_user_agent() -> None:
    assert device_of("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120") == "desktop"
    assert device_of("Mozilla/5.0 (iPad; CPU OS 17_0)") == "tablet"
    assert device_of("Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile Safari") == "mobile"
    assert device_of("Googlebot/2.1") == "bot"


# --- validation ---------------------------------------------------------------------------------


def test_validation_errors_name_table_rule_field_and_line() -> None:
    text = textwrap.dedent("""\
    segments:
      newcomer: { orders: 0 }
    tables:
      - id: featured
        applies_to: me/products
        rules:
          - id: r1
            when: { segment: newcomer }
            then: { pageSize: 500 }
          - id: r2
            when: { segment: nobody }
            then: { sortBy: x }
    """)
    with pytest.raises(ValidationFailed) as info:
        validate(parse_text(text, "tables.yaml"))
    [error] = info.value.errors
    assert (error.table, error.rule, error.field, error.file, error.line) == (
        "featured",
        "r1",
        "then.pageSize",
        "tables.yaml",
        9,
    )
    assert str(error).startswith("tables.yaml:9: table featured, rule r1, field then.pageSize:")
    with pytest.raises(ValidationFailed) as info:
        validate(parse_text(text.replace("500", "50"), "tables.yaml"))
    [error] = info.value.errors
    assert (error.rule, error.field, error.line, error.message) == (
        "r2",
        "when.segment",
        11,
        "unknown segment 'nobody'",
    )


def test_validation_of_segments_missing_fields_and_yaml_syntax() -> None:
    with pytest.raises(ValidationFailed) as info:
        validate(
            parse_text(
                "segments:\n  x: { orders: many }\ntables:\n  - id: t\n    applies_to: me/products\n"
                "    rules:\n      - id: r\n        when: { segment: x }\n",
                "f.yaml",
            )
        )
    found = {(e.segment, e.table, e.rule, e.field, e.line) for e in info.value.errors}
    assert (None, "t", "r", "then", 7) in found  # the missing field is named, at its rule's line
    assert ("x", None, None, "orders", 2) in found
    with pytest.raises(ValidationFailed) as info:
        parse_text("tables:\n  - id: [unclosed\n", "f.yaml")
    assert info.value.errors[0].line == 3 and info.value.errors[0].file == "f.yaml"


def test_duplicate_ids_unreachable_rules_and_bad_filters() -> None:
    text = """
    tables:
      - id: t
        applies_to: me/products
        rules:
          - id: r
            then: { search: x }
          - id: r
            then: { filters: { categoryID: x } }
      - id: t
        applies_to: me/promotions
        rules:
          - then: { search: y }
    """
    with pytest.raises(ValidationFailed) as info:
        validate(parse_text(textwrap.dedent(text)))
    assert "filter 'categoryID' is not a filter" in str(info.value)
    with pytest.raises(ValidationFailed) as info:
        validate(parse_text(textwrap.dedent(text).replace("search: y", "pin: [a|b]")))
    assert "contain no '|'" in str(info.value)
    with pytest.raises(ValidationFailed) as info:
        validate(parse_text(textwrap.dedent(text).replace("categoryID: x", "xp.a: x")))
    messages = {(e.table, e.rule, e.message.split(":")[0]) for e in info.value.errors}
    assert ("t", "r", "duplicate rule id 'r'") in messages
    assert ("t", "r", "unreachable") in messages
    assert ("t", None, "duplicate table id 't'") in messages


def test_folder_is_merged_and_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "a-segments.yaml").write_text("segments:\n  newcomer: { orders: 0 }\n")
    (tmp_path / "b-products.yaml").write_text(
        "tables:\n  - id: p\n    applies_to: me/products\n    rules:\n"
        "      - id: r\n        when: { segment: newcomer }\n        then: { pin: [x] }\n"
    )
    (tmp_path / "c-promos.yml").write_text(
        "tables:\n  - id: q\n    applies_to: me/promotions\n    rules:\n"
        "      - id: r\n        then: { pageSize: 0 }\n"
    )
    with pytest.raises(ValidationFailed) as info:
        validate(read_source(tmp_path)[1])
    [error] = info.value.errors
    assert (error.file, error.line, error.table, error.field) == (
        str(tmp_path / "c-promos.yml"),
        6,
        "q",
        "then.pageSize",
    )
    (tmp_path / "c-promos.yml").write_text(
        "tables:\n  - id: q\n    applies_to: me/promotions\n    rules:\n"
        "      - id: r\n        then: { pageSize: 5 }\n"
    )
    source, parsed = read_source(tmp_path)
    document = validate(parsed)
    assert [t.id for t in document.tables] == ["p", "q"] and "newcomer" in document.segments
    assert "newcomer" in source  # a folder is stored as one merged document


def test_the_demo_tables_are_valid_and_packaged_unchanged() -> None:
    root = Path(__file__).parent.parent
    # decisions/demo.yaml ships in the wheel for `ocgateway demo`; it is the example, verbatim.
    example = (root / "examples" / "decisions.yaml").read_text()
    assert (root / "decisions" / "demo.yaml").read_text() == example
    document = validate(read_source(root / "examples" / "decisions.yaml")[1])
    assert {t.applies_to for t in document.tables} == {
        "me/products",
        "me/promotions",
        "me/categories",
    }
