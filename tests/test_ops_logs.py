"""X-Request-Id (taken or minted, sent upstream, echoed, in every log line and event of the call)
and OCGW_LOG_FORMAT=json."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.logs import JsonFormatter
from gateway.sandbox import create_app as create_sandbox
from gateway.serving import serve_in_thread as running
from gateway.settings import Settings
from tests.fake_upstream import FakeUpstream
from tests.servers import gateway_process, wait_for
from tests.shoppers import password_grant
from tests.tokens import signed

pytestmark = pytest.mark.e2e


class Lines(logging.Handler):
    """Formats each record as it is emitted (inside the call: its request id is current)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[str, FakeUpstream, Lines]]:
    fake = FakeUpstream()
    lines = Lines()
    access = logging.getLogger("ocgateway.access")
    level = access.level
    access.addHandler(lines)
    access.setLevel(logging.INFO)
    try:
        with running(fake) as upstream:
            settings = Settings(upstream_url=upstream, store=tmp_path / "gw.db", tracking=False)  # type: ignore[arg-type]
            with running(create_app(settings), lifespan="on") as gateway:
                yield gateway, fake, lines
    finally:
        access.removeHandler(lines)
        access.setLevel(level)


def sent_upstream(fake: FakeUpstream) -> list[str]:
    return [v for k, v in fake.seen[-1]["headers"] if k.lower() == "x-request-id"]


@pytest.mark.parametrize(
    "given, kept",
    [
        ("checkout-7f3a:2", True),
        ("a" * 128, True),
        ("a" * 129, False),  # too long
        ("evil id;x", False),  # unsafe characters
        ('{"json":1}', False),
        (None, False),  # none given
    ],
)
def test_a_request_id_is_taken_or_minted_sent_upstream_echoed_and_logged(proxied, given, kept):
    gateway, fake, lines = proxied
    headers = {"X-Request-Id": given} if given is not None else {}
    response = httpx.get(gateway + "/v1/echo/rid", headers=headers)
    rid = response.headers["x-request-id"]
    if kept:
        assert rid == given
    else:
        assert len(rid) == 32 and int(rid, 16) >= 0
    assert sent_upstream(fake) == [rid]  # exactly one: the client's unsafe value never goes up
    access = [line for line in lines.lines if line.get("path") == "/v1/echo/rid"][-1]
    assert access["request_id"] == rid
    assert access["status"] == 200 and access["method"] == "GET"


def test_each_call_gets_its_own_minted_id(proxied):
    gateway, _, _ = proxied
    ids = {httpx.get(gateway + "/v1/echo/x").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


def test_the_events_a_call_records_carry_its_request_id(tmp_path):
    with running(create_sandbox()) as sandbox:
        settings = Settings(
            upstream_url=sandbox,
            store=tmp_path / "gw.db",  # type: ignore[arg-type]
            events_file=tmp_path / "events.jsonl",
        )
        with (
            running(create_app(settings), lifespan="on") as gateway,
            httpx.Client(base_url=gateway) as http,
        ):
            form = password_grant("jane")
            login = http.post("/oauth/token", data=form, headers={"X-Request-Id": "login-1"})
            http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
            line = {"ProductID": "p-001", "Quantity": 1}
            added = http.post("/v1/cart/lineitems", json=line, headers={"X-Request-Id": "add-1"})
            assert added.status_code == 201 and added.headers["x-request-id"] == "add-1"

            def recorded() -> dict[str, str]:
                path = tmp_path / "events.jsonl"
                events = (
                    [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
                )
                found = {e["type"]: (e.get("context") or {}).get("request_id") for e in events}
                return found if len(found) >= 2 else {}

            found = wait_for(recorded)
    assert "login-1" in found.values() and "add-1" in found.values(), found


def test_json_log_lines_are_objects_with_the_request_id_and_no_credentials(tmp_path):
    fake = FakeUpstream()
    token = signed(sub="x", orderid="secret-order")
    with running(fake) as upstream:
        env = {
            "OCGW_UPSTREAM_URL": upstream,
            "OCGW_STORE": str(tmp_path / "gw.db"),
            "OCGW_TRACKING": "false",
            "OCGW_ACCESS_LOG": "true",
            "OCGW_LOG_FORMAT": "json",
        }
        with gateway_process(env) as (gateway, process):
            httpx.put(
                gateway + f"/v1/me/orders?anonUserToken={token}",
                headers={"Authorization": f"Bearer {token}", "X-Request-Id": "json-1"},
            )
            process.terminate()
            output = process.communicate(timeout=20)[0].decode()
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    [access] = [x for x in lines if x["logger"] == "ocgateway.access"]
    assert access["request_id"] == "json-1"
    assert access["path"] == "/v1/me/orders?anonUserToken=REDACTED" and access["status"] == 200
    assert token not in output
