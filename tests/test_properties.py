"""Properties that must hold for every input, checked with hypothesis:

- a rewritten query keeps each original pair byte for byte and in order (unless an override
  replaced its key) and only appends;
- a pin reorders a page without losing, duplicating or inventing an item;
- evaluation is deterministic and a split is sticky: the same visitor gets the same variant on
  every call and after the document is compiled again, and a weight-0 variant is never chosen;
- the proxy never sends a path outside /v1/ and /oauth/ upstream, whatever the encoding tricks;
- scrubbing's quick check never lets through what the full walk removes.
"""

from __future__ import annotations

import json
import posixpath
from urllib.parse import unquote

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from decisions.compile import compile_document, request_for, validate
from decisions.evaluate import evaluate
from decisions.loader import parse_text
from decisions.rewrite import Actions, parse_query, reorder_for, rewrite_query
from gateway.operations import recognise
from gateway.proxy import safe_path
from gateway.upstream import Upstream
from tracking.privacy import _walk, scrub

settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")

# Query text as storefronts send it: raw bytes, escapes (also broken ones), + and empty pairs.
_QUERY_CHARS = st.sampled_from(list("abcAB019_-.!*'()|~:,;/?@$ ") + ["%7C", "%20", "%", "%zz", "+"])
_QUERY_TEXT = st.lists(_QUERY_CHARS, max_size=8).map("".join)
_PAIR = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", _QUERY_TEXT, _QUERY_TEXT),
    _QUERY_TEXT,  # a key without "="
)
_RAW_QUERY = st.lists(_PAIR, max_size=6).map("&".join)
_KEY = st.sampled_from(["sortBy", "pageSize", "categoryID", "search", "ID", "xp.color", "a", "B"])
_ACTIONS = st.builds(
    Actions,
    pairs=st.lists(st.tuples(_KEY, st.text(max_size=6)), max_size=4).map(tuple),
    override=st.booleans(),
)


def _key(pair: str) -> str:
    return unquote(pair.partition("=")[0].replace("+", " ")).lower()


@given(_RAW_QUERY, st.lists(_ACTIONS, max_size=3))
def test_a_rewrite_keeps_original_pairs_verbatim_and_only_appends(
    raw: str, steps: list[Actions]
) -> None:
    result = rewrite_query(raw, steps).query
    original = parse_query(raw).pairs
    out = result.split("&") if result else []
    replaced = {k.lower() for step in steps if step.override for k, _ in step.pairs}
    kept = [p for p in original if _key(p) not in replaced]
    assert out[: len(kept)] == kept  # verbatim, in order, first
    appended = out[len(kept) :]
    if not any(step.override for step in steps):
        assert result == raw or result.startswith(raw + "&") or not raw and result == "&".join(out)
    offered = {(k.lower(), v) for step in steps for k, v in step.pairs}
    for pair in appended:
        key, _, value = pair.partition("=")
        assert (unquote(key).lower(), unquote(value)) in offered
    # every original pair whose key no override touched is still there
    for pair in original:
        assert pair in out or _key(pair) in replaced


_ID = st.text(alphabet="abcdef0123", min_size=1, max_size=3)
_ITEM = st.one_of(
    st.fixed_dictionaries({"ID": _ID, "Name": st.text(max_size=3)}),
    st.fixed_dictionaries(
        {"ID": st.one_of(st.integers(-(2**63), 2**63 - 1), st.none(), st.lists(_ID, max_size=2))}
    ),
    st.just("not an object"),
    st.integers(-(2**63), 2**63 - 1),
)


@given(st.lists(_ITEM, max_size=12), st.lists(_ID, min_size=1, max_size=6))
def test_a_pin_is_a_permutation_of_the_page(items: list[object], pin: list[str]) -> None:
    page = {"Meta": {"Page": 1, "PageSize": 20}, "Items": items}
    result = orjson.loads(reorder_for(pin)(orjson.dumps(page)))
    assert result["Meta"] == page["Meta"]
    reordered = result["Items"]
    assert sorted(map(repr, reordered)) == sorted(map(repr, items))  # nothing lost or invented
    ids = [i.get("ID") if isinstance(i, dict) else None for i in reordered]
    first = {item_id: n for n, item_id in reversed(list(enumerate(pin)))}
    ranks = [first.get(i, len(pin)) if isinstance(i, str) else len(pin) for i in ids]
    assert ranks == sorted(ranks)  # pinned first, in pin order
    unpinned = [i for i, r in zip(reordered, ranks, strict=True) if r == len(pin)]
    assert unpinned == [i for i in items if i in unpinned]  # the rest keep their order


def test_a_pin_leaves_a_body_that_is_not_a_page_alone() -> None:
    for body in (b"[]", b"{}", b'{"Items": 3}', b"null"):
        assert reorder_for(["a"])(body) == body


_SEGMENTS = ["newcomer", "repeat", "mobile", "gb"]


def _document(weights: list[int], segment: str, param: str) -> str:
    split = {f"v{i}": w for i, w in enumerate(weights)}
    return json.dumps(
        {
            "segments": {name: {"channel": name} for name in _SEGMENTS},
            "tables": [
                {
                    "id": "t",
                    "applies_to": "me/products",
                    "hit": "collect",
                    "rules": [
                        {"id": "split", "split": split, "then": {"sortBy": "name"}},
                        {"id": "seg", "when": {"segment": segment}, "then": {"pageSize": 5}},
                        {"id": "param", "when": {"param": param}, "then": {"search": "x"}},
                    ],
                }
            ],
        }
    )


@given(
    weights=st.lists(st.integers(0, 5), min_size=2, max_size=4).filter(lambda w: sum(w) > 0),
    segment=st.sampled_from(_SEGMENTS),
    param=st.sampled_from(["search", "catalogID", "xp.size"]),
    visitors=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=5),
    segments=st.frozensets(st.sampled_from(_SEGMENTS)),
    query=_RAW_QUERY,
)
def test_evaluation_is_deterministic_and_a_split_is_sticky(
    weights: list[int],
    segment: str,
    param: str,
    visitors: list[str],
    segments: frozenset[str],
    query: str,
) -> None:
    source = _document(weights, segment, param)
    first = compile_document(validate(parse_text(source)), 1).by_route["me/products"]
    again = compile_document(validate(parse_text(source)), 2).by_route["me/products"]
    for visitor in visitors:
        request = request_for(segments, query, 1_700_000_000.0, visitor)
        seen = {
            tuple((h.rule.id, h.variant) for h in evaluate(tables, request))
            for tables in (first, first, again)
        }
        assert len(seen) == 1
        (hits,) = seen
        variants = [variant for rule, variant in hits if rule == "split"]
        assert len(variants) == 1 and weights[int(variants[0][1:])] > 0


# Paths as an attacker would write them: separators, dots and their escapes, case changes.
_PATH_PART = st.sampled_from(
    [
        "/",
        "v1",
        "V1",
        "oauth",
        "me",
        "products",
        ".",
        "..",
        "%2e",
        "%2E",
        "%2f",
        "%5c",
        "\\",
        "%25",
        "%252e",
        "%252f",
        "%00",
        "%c0%ae",
        ";",
        "?",
        "#",
        "@",
        ":",
        "//",
        "x",
        "%",
        "%e2%80%a8",
    ]
)
_PATH = st.lists(_PATH_PART, min_size=1, max_size=10).map("".join)
_PREFIXES = ("/v1/", "/oauth/")
_METHODS = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"])


_UPSTREAM = Upstream("https://oc.example", connections=1, connect_timeout=1, read_timeout=1)


@settings(max_examples=2000)
@example("/v1/.%252e/oauth/token")  # `..` to a server that decodes twice
@example("/v1/me/..#/oauth/token")  # the fragment would end the path at the upstream client
@example("/v1/%2e%2e/admin")
@given(st.one_of(_PATH, _PATH.map(lambda p: "/v1/" + p), _PATH.map(lambda p: "/oauth/" + p)))
def test_only_v1_and_oauth_paths_ever_go_upstream(path: str) -> None:
    if not safe_path(path):
        return
    assert path not in ("/v1/.%252e/oauth/token", "/v1/me/..#/oauth/token", "/v1/%2e%2e/admin")
    assert path.lower().startswith(_PREFIXES)
    url = _UPSTREAM.url(path)
    assert (url.scheme, url.host, url.port) == ("https", "oc.example", 443)
    # What the upstream makes of it: decode, remove dot segments. Also for a server that decodes
    # twice or three times (%252e → %2e → .).
    decoded = url.raw_path
    for _ in range(3):
        decoded = unquote(decoded)
        resolved = posixpath.normpath(decoded) + "/"
        assert resolved.lower().startswith(_PREFIXES), (path, decoded)


@given(_METHODS, _PATH)
def test_the_route_table_recognises_nothing_outside_v1_and_oauth(method: str, path: str) -> None:
    if recognise(method, path) is not None:
        assert path.lower().startswith(_PREFIXES)


# JSON-like values with secret keys (any case, also non-ASCII look-alikes such as the Kelvin sign,
# which lower-cases to "k") and JWT-shaped strings mixed in with ordinary ones.
_SCRUB_KEYS = st.sampled_from(
    ["ID", "Name", "xp", "Password", "ACCESS_TOKEN", "toKen", "to\u212aen", "Café", "refresh_token"]
)
_SCRUB_TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["eyJhbGciOi.eyJzdWIi.sig", "x eyJabcd.efghij.k", "eyJ", "password:"]),
)
_SCRUB_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), _SCRUB_TEXT),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_SCRUB_KEYS, inner, max_size=4)
    ),
    max_leaves=20,
)


@given(_SCRUB_VALUES)
def test_scrub_quick_check_agrees_with_the_walk(value: object) -> None:
    assert scrub(value) == _walk(value)
