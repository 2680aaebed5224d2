"""Server-side render time of every admin UI page with a 1,000-rule document.

In process (httpx's ASGI transport, no sockets to the gateway), with the gateway in front of the
local sandbox: the preview page includes its real upstream call for each shopper's list. Each
page is rendered once to warm caches (a draft's compile is kept), then `--runs` times; the
median and the slowest are printed. The budget is 150 ms per page.

    .venv/bin/python bench/ui.py [--rules 1000] [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import yaml

from console.passwords import hash_password
from gateway.app import Gateway
from gateway.sandbox import create_app as create_sandbox
from gateway.sandbox.catalog import CLIENT_ID
from gateway.serving import serve_in_thread
from gateway.settings import Settings
from state.accounts import Account
from state.exposures import Exposure
from state.shoppers import SavedShopper

BUDGET_MS = 150.0
SEGMENTS = 50
PER_TABLE = 100


def document(rules: int) -> str:
    """`rules` rules over tables of 100, in the shapes marketers write (segments, params,
    schedules, pins, filters, splits)."""
    segments = {
        f"seg-{i}": {"orders": {"min": i % 7}, "spent": {"min": 10 * i}} for i in range(SEGMENTS)
    }
    tables = []
    for t in range(max(1, rules // PER_TABLE)):
        table_rules = []
        for r in range(min(PER_TABLE, rules - t * PER_TABLE)):
            rule: dict[str, object] = {"id": f"r{t}-{r}"}
            if r % 3 == 0:
                rule["when"] = {"segment": [f"seg-{r % SEGMENTS}", f"seg-{(r + 1) % SEGMENTS}"]}
            elif r % 3 == 1:
                rule["when"] = {"param": f"k{r}", "from": "2026-01-01", "until": "2027-01-01"}
            else:
                rule["when"] = {"segment": f"seg-{r % SEGMENTS}", "absent": ["search"]}
            if r % 2:
                rule["then"] = {"pin": [f"p-{(r % 60) + 1:03d}", f"p-{((r + 7) % 60) + 1:03d}"]}
            else:
                rule["then"] = {
                    "categoryID": "mens-watches",
                    "filters": {"xp.sale": True},
                    "pageSize": 12,
                }
            if r % 25 == 0:
                rule["split"] = {"treatment": 50, "control": 50}
            table_rules.append(rule)
        route = ("me/products", "me/promotions", "me/categories")[t % 3]
        tables.append({"id": f"table-{t}", "applies_to": route, "rules": table_rules})
    return yaml.safe_dump({"segments": segments, "tables": tables}, sort_keys=False)


async def measure(rules: int, runs: int) -> list[tuple[str, float, float]]:
    source = document(rules)
    with tempfile.TemporaryDirectory() as tmp, serve_in_thread(create_sandbox()) as sandbox:
        settings = Settings(
            upstream_url=sandbox,  # type: ignore[arg-type]
            store=str(Path(tmp) / "bench.db"),
            events_file=Path(tmp) / "events.jsonl",
            preview_username="joe",
            preview_password="joe-pass",
            preview_client_id=CLIENT_ID,
        )
        gateway = Gateway(settings)
        await gateway.start()
        state, service = gateway.state, gateway.decisions
        assert state is not None and service is not None
        await service.publish(source, "bench", "1,000 rules")
        await service.publish(source.replace("pageSize: 12", "pageSize: 24", 1), "bench", "v2")
        await state.console.accounts.put(
            Account("bench", "publisher", hash_password("bench-pass-1"), time.time())
        )
        await state.console.shoppers.put(SavedShopper("repeat", orders=5, spent=900.0))
        await state.console.shoppers.put(SavedShopper("newcomer"))
        now = time.time()
        await state.exposures.add(
            [
                Exposure(
                    f"v{i}",
                    f"table-{i % 10}",
                    f"r{i % 10}-{(i // 10) % 100}",
                    ("treatment", "control")[i % 2],
                    2,
                    "me/products",
                    now,
                )
                for i in range(20_000)
            ]
        )
        for i in range(0, 20_000, 13):
            await state.exposures.convert(f"v{i}", f"o{i}", 50.0, now + 1)
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            form = await client.get("/admin/signin")
            token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
            await client.post(
                "/admin/signin",
                data={"csrf": token, "username": "bench", "password": "bench-pass-1"},
            )
            csrf = re.search(
                r'name="csrf" value="([^"]+)"', (await client.get("/admin/")).text
            ).group(1)  # type: ignore[union-attr]
            created = await client.post("/admin/drafts", data={"csrf": csrf, "title": "bench"})
            draft = created.headers["location"].rsplit("/", 1)[-1]
            edited = source.replace("pageSize: 12", "pageSize: 36", 3)
            await client.post(
                f"/admin/drafts/{draft}/source", data={"csrf": csrf, "source": edited}
            )
            pages = {
                "overview": "/admin/",
                "drafts": "/admin/drafts",
                "draft (tables, segments, diff)": f"/admin/drafts/{draft}",
                "rule form": f"/admin/drafts/{draft}/rules/3/1",
                "segment form": f"/admin/drafts/{draft}/segments/seg-3",
                "source": f"/admin/drafts/{draft}/source",
                "history": "/admin/history",
                "version": "/admin/history/2",
                "compare": "/admin/compare?a=1&b=2",
                "preview, live, 2 shoppers": "/admin/preview?shopper=repeat&shopper=newcomer&call=me/products",
                "preview, draft, 2 shoppers": f"/admin/preview?shopper=repeat&shopper=newcomer&call=me/products&target={draft}",
                "experiments": "/admin/experiments",
                "audit log": "/admin/audit",
            }
            results = []
            for name, path in pages.items():
                answer = await client.get(path)
                assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
                times = []
                for _ in range(runs):
                    start = time.perf_counter()
                    answer = await client.get(path)
                    times.append((time.perf_counter() - start) * 1000)
                results.append((name, statistics.median(times), max(times)))
        await gateway.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    results = asyncio.run(measure(args.rules, args.runs))
    print(f"admin UI pages, {args.rules} rules, {args.runs} runs each (ms, server-side)")
    print(f"{'page':<32} {'median':>8} {'slowest':>8}")
    over = 0
    for name, median, slowest in results:
        flag = "" if median < BUDGET_MS else "  over budget"
        over += bool(flag)
        print(f"{name:<32} {median:>8.1f} {slowest:>8.1f}{flag}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
