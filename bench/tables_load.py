"""Large-table benchmark: how a 100,000-rule document goes live, and what it costs the event loop.

For each way a document goes live (the tables file read at start, an admin publish), a fresh
Python process measures: seconds until the version is live, the longest event-loop stall seen by
a ticker coroutine meanwhile, and peak RSS (`resource.getrusage`). Then one evaluation figure: a
request that only sets query parameters against a table whose rules are mostly param-only.

    .venv/bin/python bench/tables_load.py [--rules 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml
from tracking.profiles import Profile

from decisions.compile import request_for
from decisions.evaluate import evaluate
from decisions.service import DecisionService
from gateway.settings import Settings

TICK = 0.005


def document(rules: int) -> str:
    """`rules` rules in one table: 60% need a segment, 30% only a query parameter, 10% both."""
    segments = max(1, rules // 100)
    table_rules = []
    for i in range(rules):
        kind = i % 10
        when: dict = {}
        if kind < 6 or kind == 9:
            when["segment"] = f"s{i % segments}"
        if kind >= 6:
            when["param"] = f"p{i % 1000}"
        if kind % 2:
            when["equals"] = {"depth": "never"}
        table_rules.append({"id": f"r{i}", "when": when, "then": {"filters": {"xp.rank": str(i)}}})
    doc = {
        "segments": {f"s{i}": {"viewed_category": f"cat-{i}"} for i in range(segments)},
        "tables": [{"id": "big", "applies_to": "me/products", "rules": table_rules}],
    }
    return yaml.safe_dump(doc, sort_keys=False, width=200)


class NoProfiles:
    async def get(self, visitor_id: str) -> Profile | None:
        return None

    async def put(self, profile: Profile) -> None:
        return None


async def discard(event: dict) -> None:
    return None


async def go_live(path: Path, mode: str) -> dict[str, float]:
    """Start a service (file mode: it imports the file) or publish the text; watch the loop."""
    stall = 0.0

    async def ticker() -> None:
        nonlocal stall
        last = time.perf_counter()
        while True:
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            stall = max(stall, now - last - TICK)
            last = now

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(store=Path(tmp) / "gw.db", decisions=path if mode == "file" else None)
        service = DecisionService(
            settings, NoProfiles(), discard, watch_interval=3600, flush_interval=3600
        )
        text = path.read_text(encoding="utf-8")
        tick = asyncio.create_task(ticker())
        await asyncio.sleep(TICK * 2)
        started = time.perf_counter()
        await service.start()
        if mode == "publish":
            await service.publish(text, "bench")
        live = time.perf_counter() - started
        assert service.version == 1
        tables = service.live.by_route["me/products"]  # type: ignore[union-attr]
        request = request_for(frozenset(), "p7=x&depth=all", time.time(), "v-1")
        hits = evaluate(tables, request)
        n = 200
        t = time.perf_counter()
        for _ in range(n):
            evaluate(tables, request)
        per_call = (time.perf_counter() - t) / n
        tick.cancel()
        await service.stop()
    return {
        "live_s": live,
        "stall_ms": stall * 1000,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "param_eval_us": per_call * 1e6,
        "hit": hits[0].rule.id if hits else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=100_000)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, path = args.child
        print(json.dumps(asyncio.run(go_live(Path(path), mode))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tables.yaml"
        path.write_text(document(args.rules), encoding="utf-8")
        size = path.stat().st_size
        print(f"python {sys.version.split()[0]}, {args.rules} rules, {size / 2**20:.1f} MiB YAML")
        print(
            f"{'mode':>8} {'live s':>7} {'stall ms':>9} {'peak RSS MB':>12} {'param eval µs':>14}"
        )
        for mode in ("file", "publish"):
            done = subprocess.run(
                [sys.executable, __file__, "--child", mode, str(path)],
                capture_output=True,
                text=True,
            )
            if done.returncode:
                print(f"{mode:>8} failed: {done.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(done.stdout)
            print(
                f"{mode:>8} {r['live_s']:>7.1f} {r['stall_ms']:>9.0f} {r['peak_rss_mb']:>12.0f} "
                f"{r['param_eval_us']:>14.1f}"
            )


if __name__ == "__main__":
    main()
