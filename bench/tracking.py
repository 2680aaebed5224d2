"""Tracking benchmark: outbox ingest, record() latency, delivery rate, memory with a big backlog.

    .venv/bin/python bench/tracking.py [--backlog 1000000] [--events 20000]

Every figure is printed next to a baseline measured in the same run:
- ingest: group commit (one writer thread, one transaction per queue drain) vs one commit per event;
- record(): p50/p99 of the time the proxy waits (the latency tracking adds to a call);
- delivery: events/s to a JSON-lines file (batched) and to a webhook on 127.0.0.1 (one POST each);
- memory: RSS while the dispatcher works through a backlog of N events on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from tracking.outbox import Outbox
from tracking.store import Store, connect

from gateway.settings import Settings
from state.events import Event
from tests.fakes_destinations import answer, make_call
from tracking import outbox
from tracking.destinations.file import FileDestination
from tracking.destinations.webhook import WebhookDestination
from tracking.dispatcher import Dispatcher, Policy
from tracking.service import TrackingService


def rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def sample(i: int) -> Event:
    return Event(
        type="products.viewed",
        visitor=f"anon-{i % 5000}",
        occurred_at=time.time(),
        browser_id=str(uuid.uuid4()),
        context={"ip": "203.0.113.5", "user_agent": "Firefox"},
        data={"product": {"ID": f"p{i}", "Name": "A product name", "xp": {"Color": "red"}}},
    )


async def ingest(path: Path, events: int, max_batch: int, writers: int = 200) -> float:
    store = Store(path, outbox.SCHEMA, max_batch=max_batch)
    store.open()
    box = Outbox(store)
    per = events // writers

    async def writer(w: int) -> None:
        for i in range(per):
            await box.append([(sample(w * per + i), ["file"])], time.time(), ready=True)

    start = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.perf_counter() - start
    store.close()
    return per * writers / elapsed


async def record_latency(tmp: Path, calls: int, concurrency: int) -> tuple[float, float]:
    settings = Settings(
        store=tmp / f"rec{concurrency}.db", events_file=tmp / f"rec{concurrency}.jsonl"
    )
    service = TrackingService(settings, None, _NoUpstream())
    await service.start()
    samples: list[float] = []

    async def shopper(n: int) -> None:
        for i in range(calls // concurrency):
            call = make_call("GET", f"/v1/me/products/p{n}-{i}")
            body = answer({"ID": f"p{n}-{i}", "Name": "Bike"})
            start = time.perf_counter()
            await service.record(call, 200, body)
            samples.append(time.perf_counter() - start)

    await asyncio.gather(*(shopper(n) for n in range(concurrency)))
    await service.stop(10)
    samples.sort()
    return statistics.median(samples) * 1000, samples[int(len(samples) * 0.99)] * 1000


class _NoUpstream:
    async def get_json(
        self, path: str, token: str | None, timeout: float | None = None
    ) -> tuple[int, None]:
        return 404, None


def fill(path: Path, count: int, dest: str, ready: int = 1) -> None:
    """Insert a backlog fast (executemany, one transaction)."""
    conn = connect(path)
    conn.executescript(outbox.SCHEMA)
    body = sample(0).to_json()
    now = time.time()
    start = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
    conn.execute("BEGIN")
    chunk = 50_000
    for base in range(0, count, chunk):
        rows = range(start + base + 1, start + min(base + chunk, count) + 1)
        conn.executemany(
            "INSERT INTO events (seq, id, type, visitor, occurred_at, ready, body) VALUES (?,?,?,?,?,?,?)",
            (
                (s, uuid.uuid4().hex, "products.viewed", f"anon-{s % 5000}", now, ready, body)
                for s in rows
            ),
        )
        conn.executemany(
            "INSERT INTO deliveries (dest, seq, okey, ready, queued_at) VALUES (?,?,?,?,?)",
            ((dest, s, f"anon-{s % 5000}", ready, now) for s in rows),
        )
    conn.execute("COMMIT")
    conn.close()


async def deliver(path: Path, destination: object, count: int, limit_s: float) -> tuple[float, int]:
    store = Store(path, outbox.SCHEMA)
    store.open()
    box = Outbox(store)
    dispatcher = Dispatcher(box, destination, Policy(poll=0.05))  # type: ignore[arg-type]
    start = time.perf_counter()
    dispatcher.start()
    while dispatcher.delivered < count and time.perf_counter() - start < limit_s:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - start
    done = dispatcher.delivered
    await dispatcher.stop(5)
    store.close()
    return done / elapsed, done


SINK = """
import uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
uvicorn.run(app, host="127.0.0.1", port=%d, log_level="warning", access_log=False)
"""


def serve_sink(port: int) -> subprocess.Popen[bytes]:
    """A webhook receiver in its own process (in-process it would share our GIL)."""
    proc = subprocess.Popen([sys.executable, "-c", SINK % port])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/in", content=b"{}")
            return proc
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("sink did not start")


async def memory(path: Path, backlog: int, seconds: float) -> list[tuple[int, float]]:
    """RSS while the file dispatcher works through `backlog` events (none held in memory)."""
    fill(path, backlog, "file")
    store = Store(path, outbox.SCHEMA)
    store.open()
    box = Outbox(store)
    dispatcher = Dispatcher(box, FileDestination(path.with_suffix(".jsonl")), Policy(poll=0.05))
    points = [(0, rss_mb())]
    dispatcher.start()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        await asyncio.sleep(seconds / 5)
        points.append((dispatcher.delivered, rss_mb()))
    await dispatcher.stop(5)
    store.close()
    return points


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--backlog", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        grouped = await ingest(tmp / "g.db", args.events, max_batch=10_000)
        single = await ingest(tmp / "s.db", args.events // 4, max_batch=1)
        print(
            f"ingest   group commit {grouped:10.0f} ev/s | one commit per event {single:8.0f} ev/s"
            f" | ratio {grouped / single:.1f}x"
        )

        p50, p99 = await record_latency(tmp, 2000, 1)
        c50, c99 = await record_latency(tmp, 10_000, 50)
        print(
            f"record() sequential p50 {p50:.3f} ms p99 {p99:.3f} ms"
            f" | 50 concurrent p50 {c50:.3f} ms p99 {c99:.3f} ms (added to a tracked call)"
        )

        n = 50_000
        fill(tmp / "f.db", n, "file")
        file_rate, _ = await deliver(tmp / "f.db", FileDestination(tmp / "f.jsonl"), n, 30)
        server = serve_sink(18777)
        fill(tmp / "w.db", 20_000, "webhook")
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64)) as client:
            hook = WebhookDestination(client, "http://127.0.0.1:18777/in", "secret")
            hook_rate, _ = await deliver(tmp / "w.db", hook, 20_000, 30)
        server.kill()
        server.wait()
        print(
            f"delivery file (batched) {file_rate:8.0f} ev/s | webhook on 127.0.0.1 {hook_rate:6.0f} ev/s"
            f" | ratio {file_rate / hook_rate:.1f}x"
        )

        base = rss_mb()
        points = await memory(tmp / "m.db", args.backlog, 10.0)
        size = os.path.getsize(tmp / "m.db") / 1e6
        print(
            f"memory   backlog {args.backlog} events ({size:.0f} MB on disk); RSS before fill {base:.0f} MB"
        )
        for delivered, rss in points:
            print(f"         delivered {delivered:8d}  RSS {rss:6.0f} MB")
        growth = points[-1][1] - points[0][1]
        print(
            f"         RSS growth while draining: {growth:+.0f} MB"
            f" ({growth * 1e6 / max(points[-1][0], 1):.1f} bytes per delivered event)"
        )


if __name__ == "__main__":
    asyncio.run(main())
