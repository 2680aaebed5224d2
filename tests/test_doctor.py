"""`ocgateway doctor` against real services on loopback: the sandbox as the upstream, the fake
Sitecore as CDP, Send, Discover and the webhook, real Redis servers; and against a closed port,
a locked SQLite file, a broken tables file, a refused CDP client key and an upstream that is not
OrderCloud."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import cli
from gateway.doctor import Finding, diagnose, exit_status
from gateway.sandbox import create_app as create_sandbox
from gateway.serving import serve_in_thread as running
from gateway.settings import Settings
from tests.fake_sitecore import FakeSitecore
from tests.redisserver import own_redis
from tests.servers import free_port
from tests.shoppers import login

EXAMPLE = Path(__file__).parent.parent / "examples" / "decisions.yaml"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    with running(create_sandbox()) as url:
        yield url


@pytest.fixture
def sitecore() -> Iterator[tuple[str, FakeSitecore]]:
    fake = FakeSitecore()
    with running(fake) as url:
        yield url, fake


def buyer_token(sandbox: str) -> str:
    return login(sandbox, "jane")


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def test_a_healthy_configuration_is_all_ok(
    tmp_path: Path, sandbox: str, sitecore: tuple[str, FakeSitecore]
) -> None:
    sink, fake = sitecore
    settings = Settings(
        upstream_url=sandbox,
        store=str(tmp_path / "gw.db"),
        cdp_url=f"{sink}/cdp",
        cdp_client_key="key",
        send_url=f"{sink}/send",
        send_site_id="site",
        discover_url=f"{sink}/discover",
        webhook_url=f"{sink}/hook",
        events_file=tmp_path / "events.jsonl",
        decisions=EXAMPLE,
    )
    sqlite3.connect(tmp_path / "gw.db").close()
    findings = asyncio.run(diagnose(settings, token=buyer_token(sandbox)))
    checks = by_check(findings)
    assert all(f.status == "ok" for f in findings), [f.line() for f in findings]
    assert set(checks) == {
        "upstream",
        "upstream.certs",
        "store",
        "cdp",
        "cdp.client_key",
        "send",
        "discover",
        "webhook",
        "events_file",
        "tables",
    }
    assert "signing key" in checks["upstream.certs"].detail
    assert "3 tables" in checks["tables"].detail
    assert exit_status(findings) == 0
    # Nothing was sent but the browser-create call: no event reached any destination.
    assert [r["path"] for r in fake.requests if r["path"] != "/cdp"] == [
        "/cdp/v1.2/browser/create.json"
    ]
    assert (
        sqlite3.connect(tmp_path / "gw.db")
        .execute("SELECT name FROM sqlite_master WHERE name = 'ocgw_doctor'")
        .fetchall()
        == []
    )  # the write was rolled back


def test_without_a_token_the_certs_route_must_answer_json_404(tmp_path: Path, sandbox: str) -> None:
    findings = asyncio.run(diagnose(Settings(upstream_url=sandbox, store=str(tmp_path / "s.db"))))
    certs = by_check(findings)["upstream.certs"]
    assert certs.status == "ok" and "JSON 404" in certs.detail
    assert by_check(findings)["events_file"].status == "ok"  # the default destination


def test_failures_name_the_check_and_a_fix(
    tmp_path: Path, sitecore: tuple[str, FakeSitecore]
) -> None:
    sink, fake = sitecore
    fake.failures["/cdp/v1.2/browser"] = [403]
    closed = f"http://127.0.0.1:{free_port()}"
    bad_tables = tmp_path / "tables.yaml"
    bad_tables.write_text("tables:\n  - id: t\n    applies_to: me/nothing\n    rules: []\n")
    store = tmp_path / "gw.db"
    holder = sqlite3.connect(store, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        findings = asyncio.run(
            diagnose(
                Settings(
                    upstream_url=closed,
                    store=str(store),
                    cdp_url=f"{sink}/cdp",
                    cdp_client_key="wrong",
                    webhook_url=f"{closed}/hook",
                    send_url=f"{sink}/send",  # no site id
                    decisions=bad_tables,
                ),
                timeout=2.0,
            )
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    checks = by_check(findings)
    for name in ("upstream", "store", "cdp.client_key", "webhook", "send", "tables"):
        assert checks[name].status == "fail", checks[name]
        assert checks[name].fix, name
    assert "upstream.certs" not in checks  # nothing to ask an upstream that does not answer
    assert "locked" in checks["store"].detail
    assert "403" in checks["cdp.client_key"].detail
    assert "applies_to" in checks["tables"].detail
    assert exit_status(findings) == 1
    assert checks["upstream"].line().startswith("fail  upstream  http://127.0.0.1:")
    assert "  fix: check OCGW_UPSTREAM_URL" in checks["upstream"].line()


def test_an_upstream_that_is_not_ordercloud_fails_the_certs_check(
    tmp_path: Path, sitecore: tuple[str, FakeSitecore]
) -> None:
    sink, _ = sitecore
    findings = asyncio.run(diagnose(Settings(upstream_url=sink, store=str(tmp_path / "s.db"))))
    checks = by_check(findings)
    assert checks["upstream"].status == "ok" and checks["upstream.certs"].status == "fail"


@pytest.mark.parametrize(
    ("options", "status", "said"),
    [
        (("--appendonly", "yes", "--appendfsync", "always", "--save", ""), "ok", "survive"),
        (("--appendonly", "yes", "--appendfsync", "everysec", "--save", ""), "warn", "second"),
        (("--appendonly", "no", "--save", "60 1"), "warn", "snapshot"),
        (("--appendonly", "no", "--save", ""), "fail", "no persistence"),
    ],
)
def test_redis_persistence_is_reported_with_its_risk(
    tmp_path: Path, options: tuple[str, ...], status: str, said: str
) -> None:
    with own_redis(tmp_path / "redis", *options) as server:
        upstream = f"http://127.0.0.1:{free_port()}"
        findings = asyncio.run(
            diagnose(Settings(upstream_url=upstream, store=server.url), timeout=2)
        )
    checks = by_check(findings)
    assert checks["store"].status == "ok" and "writable" in checks["store"].detail
    assert checks["store.persistence"].status == status
    assert said in checks["store.persistence"].detail


def test_redis_down_fails(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    findings = asyncio.run(diagnose(Settings(upstream_url=url.replace("redis", "http"), store=url)))
    assert by_check(findings)["store"].status == "fail"


def test_the_command_prints_lines_or_json_and_exits_1_on_a_failure(
    tmp_path: Path,
    sandbox: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OCGW_UPSTREAM_URL", sandbox)
    monkeypatch.setenv("OCGW_STORE", str(tmp_path / "gw.db"))
    assert cli.main(["doctor"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ok    upstream  ")
    monkeypatch.setenv("OCGW_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/hook")
    assert cli.main(["doctor", "--json", "--timeout", "2"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert {"status": "fail", "check": "webhook"}.items() <= next(
        r for r in report if r["check"] == "webhook"
    ).items()
