"""`ocgateway backfill` end to end: the sandbox's order history into a fake CDP Batch API."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.cli import main
from gateway.sandbox import create_app
from gateway.sandbox.catalog import ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET
from gateway.serving import serve_in_thread
from tests.fake_cdp_batch import FakeCdpBatch
from tracking.backfill.cdpbatch import BatchClient
from tracking.backfill.ordercloud import OrderSource

WINDOW = ["--since", "2000-01-01", "--until", "2100-01-01"]
# Oldest first, as the backfill reads them; jane has three past orders, gina one.
HISTORY = ["jane-0001", "jane-0002", "gina-0001", "jane-0003"]


class Recorded:
    """The sandbox, remembering each request's path and query."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.calls: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.calls.append(f"{scope['path']}?{scope['query_string'].decode()}")
        await self.app(scope, receive, send)

    def count(self, fragment: str) -> int:
        return sum(fragment in call for call in self.calls)

    def order_pages(self) -> list[str]:
        """The order list calls: one per page read."""
        return [call for call in self.calls if call.startswith("/v1/orders/Incoming?")]


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in the command catches it, so no cleanup runs."""


@pytest.fixture
def sandbox() -> Iterator[tuple[str, Recorded]]:
    recorded = Recorded(create_app())
    with serve_in_thread(recorded) as url:
        yield url, recorded


@pytest.fixture
def cdp() -> Iterator[tuple[str, FakeCdpBatch]]:
    fake = FakeCdpBatch("ck-1", "token-1")
    with serve_in_thread(fake) as url:
        yield url, fake


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch,
    sandbox: tuple[str, Recorded],
    cdp: tuple[str, FakeCdpBatch],
) -> None:
    for name, value in {
        "OCGW_UPSTREAM_URL": sandbox[0],
        "OCGW_ADMIN_CLIENT_ID": ADMIN_CLIENT_ID,
        "OCGW_ADMIN_CLIENT_SECRET": ADMIN_CLIENT_SECRET,
        "OCGW_CDP_URL": cdp[0],
        "OCGW_CDP_CLIENT_KEY": "ck-1",
        "OCGW_CDP_API_TOKEN": "token-1",
        "OCGW_CDP_POS": "shop.example",
        "OCGW_BACKFILL_PAGE_SIZE": "2",
        "OCGW_BACKFILL_POLL_INTERVAL": "0.01",
    }.items():
        monkeypatch.setenv(name, value)


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]


def backfill(out: Path, *extra: str) -> int:
    return main(["backfill", *WINDOW, "--out", str(out), *extra])


@pytest.mark.e2e
def test_backfill_loads_the_order_history_as_one_gzip_batch(
    env: None, cdp: tuple[str, FakeCdpBatch], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = cdp[1]
    out = tmp_path / "orders.jsonl.gz"
    assert backfill(out) == 0
    [(batch_id, batch)] = fake.batches.items()
    assert (batch["allocations"], batch["uploads"], batch["code"]) == (1, 1, "success")
    assert gzip.decompress(batch["file"]) == gzip.decompress(out.read_bytes())
    records = lines_of(out)
    assert [r["value"]["referenceId"] for r in records] == HISTORY
    assert len({r["ref"] for r in records}) == 4 and set(fake.records) == {
        r["ref"] for r in records
    }
    jane = records[0]["value"]
    assert jane["contact"]["identifiers"] == [
        {"provider": "ordercloud", "id": "acme-jane"},
        {"provider": "email", "id": "jane@acme.example"},
    ]
    assert (jane["status"], jane["currencyCode"], jane["pointOfSale"]) == (
        "PURCHASED",
        "USD",
        "shop.example",
    )
    assert jane["orderedAt"].endswith("Z")
    items = [(i["productId"], i["quantity"]) for i in jane["orderItems"]]
    assert items == [("p-001", 1), ("p-016", 2)]
    assert jane["price"] == pytest.approx(
        sum(i["price"] * i["quantity"] for i in jane["orderItems"])
    )
    assert all(i["name"] and i["currencyCode"] == "USD" for i in jane["orderItems"])
    assert records[2]["value"]["currencyCode"] == "EUR"
    printed = capsys.readouterr().out
    assert f"batch id         {batch_id}" in printed and "status           success" in printed
    assert "orders: 4/4" in printed  # plain progress lines: stdout is not a terminal here
    assert not out.with_name(out.name + ".state.json").exists()


@pytest.mark.e2e
def test_a_rerun_upserts_the_same_records_under_the_same_batch_id(
    env: None, cdp: tuple[str, FakeCdpBatch], tmp_path: Path
) -> None:
    fake = cdp[1]
    assert backfill(tmp_path / "first.jsonl.gz") == 0
    first = fake.records.copy()
    assert backfill(tmp_path / "second.jsonl.gz") == 0
    [batch] = fake.batches.values()
    assert (batch["allocations"], batch["uploads"]) == (2, 2)
    assert fake.records.keys() == first.keys() and len(fake.records) == 4
    assert (tmp_path / "first.jsonl.gz").read_bytes() == (tmp_path / "second.jsonl.gz").read_bytes()


@pytest.mark.e2e
def test_a_run_killed_after_allocating_resumes_with_the_same_location(
    env: None,
    sandbox: tuple[str, Recorded],
    cdp: tuple[str, FakeCdpBatch],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, recorded = cdp[1], sandbox[1]
    out = tmp_path / "orders.jsonl.gz"

    def killed(*args: object) -> None:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(BatchClient, "upload", killed)
        with pytest.raises(Killed):
            backfill(out)
    state = json.loads(out.with_name(out.name + ".state.json").read_text())
    assert state["file_written"] and state["upload_href"] and not state["uploaded"]
    reads = len(recorded.calls)
    assert backfill(out) == 0
    assert len(recorded.calls) == reads  # nothing read from OrderCloud again
    [batch] = fake.batches.values()
    assert (batch["allocations"], batch["uploads"], batch["code"]) == (1, 1, "success")
    assert len(fake.records) == 4


@pytest.mark.e2e
def test_a_run_killed_while_reading_continues_at_the_next_page(
    env: None,
    sandbox: tuple[str, Recorded],
    cdp: tuple[str, FakeCdpBatch],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorded = sandbox[1]
    out = tmp_path / "orders.jsonl.gz"
    real_lines = OrderSource.lines

    def dies_on_the_last_order(self: OrderSource, order_id: str) -> list[dict[str, Any]]:
        if order_id == HISTORY[3]:
            raise Killed
        return real_lines(self, order_id)

    with monkeypatch.context() as patch:
        patch.setattr(OrderSource, "lines", dies_on_the_last_order)
        with pytest.raises(Killed):
            backfill(out)
    assert [("page=2&" in call) for call in recorded.order_pages()] == [False, True]
    recorded.calls.clear()
    assert backfill(out) == 0
    [listed] = recorded.order_pages()
    assert "page=2&" in listed  # page 1 was finished before the kill: not read again
    assert recorded.count(f"/{HISTORY[0]}/lineitems") == 0
    assert [r["value"]["referenceId"] for r in lines_of(out)] == HISTORY
    assert len(cdp[1].records) == 4


@pytest.mark.e2e
def test_dry_run_writes_the_file_and_calls_no_batch_endpoint(
    env: None, cdp: tuple[str, FakeCdpBatch], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "orders.jsonl.gz"
    assert backfill(out, "--dry-run") == 0
    assert cdp[1].requests == []
    assert [r["value"]["referenceId"] for r in lines_of(out)] == HISTORY
    assert not out.with_name(out.name + ".state.json").exists()
    assert "dry run" in capsys.readouterr().out


@pytest.mark.e2e
def test_a_failed_batch_reports_its_error_log(
    env: None, cdp: tuple[str, FakeCdpBatch], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cdp[1].fail_next = True
    assert backfill(tmp_path / "orders.jsonl.gz") == 1
    printed = capsys.readouterr().out
    assert "status           error" in printed and "pointOfSale is not valid" in printed


def test_backfill_names_the_missing_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("OCGW_ADMIN_CLIENT_ID", "OCGW_CDP_URL", "OCGW_CDP_BATCH_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["backfill", *WINDOW, "--out", str(tmp_path / "x.gz")]) == 2
    error = capsys.readouterr().err
    assert "OCGW_ADMIN_CLIENT_ID" in error and "OCGW_CDP_BATCH_URL" in error
