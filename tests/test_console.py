"""The admin UI over HTTP, in process: sign-in and its rate limit, roles, CSRF, drafts, the rule
form's validation, approval, history and rollback, preview, experiments and the audit log.

The gateway runs in front of the local OrderCloud sandbox, so preview lists are real calls."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import pytest

from console.passwords import hash_password
from gateway.app import Gateway
from gateway.sandbox import create_app as create_sandbox
from gateway.sandbox.catalog import CLIENT_ID
from gateway.serving import serve_in_thread
from gateway.settings import Settings
from state.accounts import Account
from state.exposures import Exposure
from state.shoppers import SavedShopper

pytestmark = pytest.mark.anyio
DEMO = files("decisions").joinpath("demo.yaml").read_text()
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    with serve_in_thread(create_sandbox()) as url:
        yield url


async def _gateway(sandbox: str, tmp: Path, **extra: Any) -> Gateway:
    settings = Settings(
        upstream_url=sandbox,  # type: ignore[arg-type]
        store=str(tmp / "gw.db"),
        events_file=tmp / "events.jsonl",
        admin_token="api-token",
        preview_username="joe",
        preview_password="joe-pass",
        preview_client_id=CLIENT_ID,
        experiment_min_visitors=20,
        **extra,
    )
    gateway = Gateway(settings)
    await gateway.start()
    assert gateway.state is not None and gateway.decisions is not None
    await gateway.decisions.publish(DEMO, "file:demo", "demo tables")
    for name, role in (("mia", "publisher"), ("pat", "publisher"), ("eddie", "editor")):
        await gateway.state.console.accounts.put(
            Account(name, role, hash_password(PASSWORD), time.time())
        )
    await gateway.state.console.shoppers.put(SavedShopper("repeat", orders=3, spent=640.0))
    await gateway.state.console.shoppers.put(SavedShopper("newcomer"))
    return gateway


@pytest.fixture
async def gateway(sandbox: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    gateway = await _gateway(sandbox, tmp_path)
    yield gateway
    await gateway.stop()


def _client(gateway: Gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway), base_url="http://gw", follow_redirects=False
    )


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, name: str, password: str = PASSWORD) -> str:
    """Sign in; the session's CSRF token."""
    form = await client.get("/admin/signin")
    answer = await client.post(
        "/admin/signin",
        data={"csrf": csrf_of(form.text), "username": name, "password": password},
    )
    assert answer.status_code == 303, answer.text
    page = await client.get("/admin/")
    assert page.status_code == 200
    return csrf_of(page.text)


async def new_draft(client: httpx.AsyncClient, csrf: str, title: str = "change") -> str:
    answer = await client.post("/admin/drafts", data={"csrf": csrf, "title": title})
    assert answer.status_code == 303
    return answer.headers["location"].rsplit("/", 1)[-1]


async def test_pages_need_a_sign_in_and_the_api_keeps_its_token(gateway: Gateway) -> None:
    async with _client(gateway) as client:
        answer = await client.get("/admin/drafts")
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/admin/signin?next=")
        assert (await client.get("/admin/tables")).status_code == 401
        api = await client.get("/admin/tables", headers={"Authorization": "Bearer api-token"})
        assert api.status_code == 200 and api.json()["version"] == 1
        await sign_in(client, "mia")
        page = await client.get("/admin/")
        assert page.status_code == 200
        assert "featured-products" in page.text and "vip-watches" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        cookie = next(c for c in client.cookies.jar if c.name == "ocgw_session")
        assert cookie.has_nonstandard_attr("HttpOnly") and cookie.path == "/admin"
        # the session does not open the API: that still needs the bearer token
        assert (await client.get("/admin/versions")).status_code == 401


async def test_a_wrong_password_is_refused_and_rate_limited(gateway: Gateway) -> None:
    async with _client(gateway) as client:
        for _ in range(5):
            form = await client.get("/admin/signin")
            answer = await client.post(
                "/admin/signin",
                data={"csrf": csrf_of(form.text), "username": "mia", "password": "nope"},
            )
            assert answer.status_code == 401
        form = await client.get("/admin/signin")
        answer = await client.post(
            "/admin/signin",
            data={"csrf": csrf_of(form.text), "username": "mia", "password": PASSWORD},
        )
        assert answer.status_code == 429  # even the right password, while locked
        entries = await gateway.state.console.audit.recent()  # type: ignore[union-attr]
        assert [e.action for e in entries[:2]] == ["sign-in refused", "sign-in failed"]


async def test_state_changes_need_the_csrf_token(gateway: Gateway) -> None:
    async with _client(gateway) as client:
        csrf = await sign_in(client, "mia")
        for data in ({"title": "x"}, {"title": "x", "csrf": "wrong"}):
            answer = await client.post("/admin/drafts", data=data)
            assert answer.status_code == 403
        assert await gateway.state.console.drafts.list() == []  # type: ignore[union-attr]
        check = await client.post("/admin/check", json={"source": DEMO})
        assert check.status_code == 403
        check = await client.post(
            "/admin/check", json={"source": DEMO}, headers={"X-CSRF-Token": csrf}
        )
        assert check.json() == {"ok": True, "errors": []}


async def test_the_rule_form_saves_a_valid_rule_and_shows_errors_beside_fields(
    gateway: Gateway,
) -> None:
    async with _client(gateway) as client:
        csrf = await sign_in(client, "eddie")
        draft_id = await new_draft(client, csrf)
        form = await client.get(f"/admin/drafts/{draft_id}/rules/0/1")
        assert 'value="newcomer"' in form.text and "p-001" in form.text
        fields = {
            "csrf": csrf,
            "id": "newcomer-picks",
            "enabled": "on",
            "when.segment": "newcomer",
            "when.absent": "categoryID, search",
            "then.pin": "p-002, p-001",
            "then.pageSize": "500",
        }
        bad = await client.post(f"/admin/drafts/{draft_id}/rules/0/1", data=fields)
        assert bad.status_code == 422
        assert re.search(
            r'data-field="then.pageSize".*?field-error[^>]*>Input should be less than or equal to 100',
            bad.text,
            re.S,
        )
        fields["then.pageSize"] = "6"
        good = await client.post(f"/admin/drafts/{draft_id}/rules/0/1", data=fields)
        assert good.status_code == 303
        draft = await gateway.state.console.drafts.get(draft_id)  # type: ignore[union-attr]
        assert "pin: [p-002, p-001]" in draft.source and "pageSize: 6" in draft.source  # type: ignore[union-attr]
        page = await client.get(f"/admin/drafts/{draft_id}")
        assert (
            "+        pin: [p-002, p-001]" in page.text.replace("&#43;", "+")
            or "p-002" in page.text
        )
        # an unknown segment is flagged beside the segment field
        fields["when.segment"] = "newcomers"
        bad = await client.post(f"/admin/drafts/{draft_id}/rules/0/1", data=fields)
        assert re.search(r'data-field="when.segment".*?unknown segment', bad.text, re.S)


async def test_an_editor_cannot_publish_roll_back_or_approve(gateway: Gateway) -> None:
    async with _client(gateway) as client:
        csrf = await sign_in(client, "eddie")
        draft_id = await new_draft(client, csrf)
        answer = await client.post(
            f"/admin/drafts/{draft_id}/publish", data={"csrf": csrf, "comment": "go"}
        )
        assert answer.status_code == 403 and "only a publisher" in answer.text
        answer = await client.post("/admin/history/1/rollback", data={"csrf": csrf})
        assert answer.status_code == 403
        assert gateway.decisions.version == 1  # type: ignore[union-attr]


async def test_publish_needs_a_comment_then_history_and_rollback(gateway: Gateway) -> None:
    async with _client(gateway) as client:
        csrf = await sign_in(client, "mia")
        draft_id = await new_draft(client, csrf)
        source = DEMO.replace("pageSize: 12", "pageSize: 24")
        await client.post(f"/admin/drafts/{draft_id}/source", data={"csrf": csrf, "source": source})
        answer = await client.post(f"/admin/drafts/{draft_id}/publish", data={"csrf": csrf})
        assert answer.status_code == 422
        answer = await client.post(
            f"/admin/drafts/{draft_id}/publish", data={"csrf": csrf, "comment": "bigger sale page"}
        )
        assert answer.status_code == 303 and answer.headers["location"].startswith(
            "/admin/history/2?"
        )
        assert gateway.decisions.version == 2  # type: ignore[union-attr]
        draft = await gateway.state.console.drafts.get(draft_id)  # type: ignore[union-attr]
        assert draft.state == "published" and draft.published_version == 2  # type: ignore[union-attr]
        again = await client.post(
            f"/admin/drafts/{draft_id}/publish", data={"csrf": csrf, "comment": "twice"}
        )
        assert again.status_code == 409
        history = await client.get("/admin/history/2")
        assert "bigger sale page" in history.text and "pageSize: 24" in history.text
        compare = await client.get("/admin/compare?a=1&b=2")
        assert "pageSize: 12" in compare.text and "pageSize: 24" in compare.text
        rolled = await client.post(
            "/admin/history/1/rollback", data={"csrf": csrf, "reason": "too long"}
        )
        assert rolled.status_code == 303
        assert gateway.decisions.version == 3  # type: ignore[union-attr]
        v3 = await gateway.decisions.get_version(3)  # type: ignore[union-attr]
        assert v3.source == DEMO and v3.comment == "rollback to v1: too long"  # type: ignore[union-attr]
        actions = [e.action for e in await gateway.state.console.audit.recent()]  # type: ignore[union-attr]
        assert actions[:4] == ["rolled back", "published", "draft saved", "draft created"]


async def test_approval_needs_a_second_publisher(sandbox: str, tmp_path: Path) -> None:
    gateway = await _gateway(sandbox, tmp_path, require_approval=True)
    try:
        async with _client(gateway) as mia, _client(gateway) as pat, _client(gateway) as ed:
            mia_csrf = await sign_in(mia, "mia")
            pat_csrf = await sign_in(pat, "pat")
            ed_csrf = await sign_in(ed, "eddie")
            draft_id = await new_draft(mia, mia_csrf)
            source = DEMO.replace("pageSize: 12", "pageSize: 30")
            await mia.post(
                f"/admin/drafts/{draft_id}/source", data={"csrf": mia_csrf, "source": source}
            )
            asked = await mia.post(
                f"/admin/drafts/{draft_id}/publish", data={"csrf": mia_csrf, "comment": "sale"}
            )
            assert asked.status_code == 303 and gateway.decisions.version == 1  # type: ignore[union-attr]
            # locked while pending
            edit = await mia.post(
                f"/admin/drafts/{draft_id}/source", data={"csrf": mia_csrf, "source": DEMO}
            )
            assert edit.status_code == 409
            own = await mia.post(f"/admin/drafts/{draft_id}/approve", data={"csrf": mia_csrf})
            assert own.status_code == 403 and "second publisher" in own.text
            editor = await ed.post(f"/admin/drafts/{draft_id}/approve", data={"csrf": ed_csrf})
            assert editor.status_code == 403
            approved = await pat.post(f"/admin/drafts/{draft_id}/approve", data={"csrf": pat_csrf})
            assert approved.status_code == 303
            assert gateway.decisions.version == 2  # type: ignore[union-attr]
            version = await gateway.decisions.get_version(2)  # type: ignore[union-attr]
            assert version.author == "pat" and version.comment == "sale"  # type: ignore[union-attr]
            draft = await gateway.state.console.drafts.get(draft_id)  # type: ignore[union-attr]
            assert draft.approved_by == "pat" and draft.requested_by == "mia"  # type: ignore[union-attr]
    finally:
        await gateway.stop()


async def test_preview_shows_different_lists_for_the_two_test_shoppers(gateway: Gateway) -> None:
    async with _client(gateway) as client:
        await sign_in(client, "eddie")
        page = await client.get(
            "/admin/preview", params={"shopper": ["repeat", "newcomer"], "call": "me/products"}
        )
        assert page.status_code == 200
        columns = page.text.split('data-shopper="')[1:]
        repeat = next(c for c in columns if c.startswith("repeat"))
        newcomer = next(c for c in columns if c.startswith("newcomer"))
        assert (
            "categoryID=mens-watches" in repeat and 'class="chosen"><strong>vip-watches' in repeat
        )
        assert "ID=p-001%7Cp-007%7Cp-013%7Cp-021" in newcomer
        ids = re.findall(r'<li data-id="([^"]+)"', newcomer)
        assert ids[:4] == ["p-001", "p-007", "p-013", "p-021"]  # pinned order
        assert re.findall(r'<li data-id="([^"]+)"', repeat)[:4] != ids[:4]
        assert "segment fails" in repeat or "does not apply" in repeat


async def test_experiments_report_and_ending_one_makes_a_draft(gateway: Gateway) -> None:
    now = time.time()
    exposures = [
        Exposure(f"v{i}", "featured-products", "vip-sale", variant, 1, "me/products", now)
        for i, variant in enumerate(["treatment", "control"] * 40)
    ]
    await gateway.state.exposures.add(exposures)  # type: ignore[union-attr]
    for i in range(0, 80, 4):
        await gateway.state.exposures.convert(f"v{i}", f"o{i}", 100.0, now + 1)  # type: ignore[union-attr]
    async with _client(gateway) as client:
        csrf = await sign_in(client, "eddie")
        page = await client.get("/admin/experiments")
        assert "<svg" in page.text and "treatment" in page.text
        assert "interval" in page.text
        overview = await client.get("/admin/")
        assert re.search(r"vip-sale.*?<td class=\"num\">80</td>", overview.text, re.S)
        ended = await client.post(
            "/admin/experiments/end",
            data={
                "csrf": csrf,
                "table": "featured-products",
                "rule": "vip-sale",
                "winner": "treatment",
            },
        )
        assert ended.status_code == 303
        draft_id = ended.headers["location"].split("?")[0].rsplit("/", 1)[-1]
        draft = await gateway.state.console.drafts.get(draft_id)  # type: ignore[union-attr]
        assert "split" not in draft.source and "xp.sale: true" in draft.source  # type: ignore[union-attr]


async def test_pages_escape_what_users_typed(gateway: Gateway) -> None:
    async with _client(gateway) as client:
        csrf = await sign_in(client, "eddie")
        await new_draft(client, csrf, "<script>alert(1)</script>")
        page = await client.get("/admin/drafts")
        assert "<script>alert(1)</script>" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
