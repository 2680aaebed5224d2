"""Tracking benchmark on each backend: outbox ingest, record() latency, delivery rate, and memory
while a big backlog drains.

    .venv/bin/python bench/tracking.py [--backend sqlite|redis|both] [--redis URL]
                                       [--events 20000] [--backlog 1000000]

Every figure is printed next to a baseline measured in the same run:
- ingest: SQLite group commit vs one commit per event; Redis appends beside SQLite's;
- record(): p50/p99 of the time the proxy waits for a tracked call's events to be durable;
- delivery: events/s to a JSON-lines file (batched) vs a webhook on 127.0.0.1 (one POST each);
- memory: this process's RSS while the dispatcher works through a backlog of N stored events.
Redis runs use a key prefix of their own and delete it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from gateway import compose
from gateway.settings import Settings
from state import State, StateConfig, open_state
from state.events import Event
from state.outbox import Outbox
from state.sqlite import SCHEMA
from state.sqlite.outbox import SqliteOutbox
from state.sqlite.store import Store
from tests.fakes_destinations import answer, make_call
from tests.redisserver import drop
from tracking.destinations.file import FileDestination
from tracking.destinations.webhook import WebhookDestination
from tracking.dispatcher import Dispatcher, Policy


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


def location(backend: str, tmp: Path, name: str, redis_url: str) -> StateConfig:
    if backend == "sqlite":
        return StateConfig(str(tmp / f"{name}.db"))
    return StateConfig(redis_url, prefix=f"ocgw-bench-{uuid.uuid4().hex[:8]}:", spool=tmp / name)


@asynccontextmanager
async def opened(config: StateConfig) -> AsyncIterator[State]:
    state = await open_state(config)
    try:
        yield state
    finally:
        await state.close()
        if config.is_redis:
            drop(config.location, config.prefix)


async def ingest(box: Outbox, events: int, writers: int = 200) -> float:
    """Events/s appended by `writers` concurrent callers, one event per call (as record does)."""
    per = events // writers

    async def writer(w: int) -> None:
        for i in range(per):
            await box.append([sample(w * per + i)], [["file"]], time.time(), 0)

    start = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return per * writers / (time.perf_counter() - start)


async def one_commit_per_event(path: Path, events: int) -> float:
    """The baseline group commit is measured against: a store that commits every write alone."""
    store = Store(path, SCHEMA, max_batch=1)
    store.open()
    try:
        return await ingest(SqliteOutbox(store, "bench", 30.0), events)
    finally:
        store.close()


class _NoUpstream:
    async def get_json(
        self, path: str, token: str | None, timeout: float | None = None
    ) -> tuple[int, None]:
        return 404, None


async def record_latency(
    config: StateConfig, tmp: Path, calls: int, concurrency: int
) -> tuple[float, float]:
    """p50/p99 ms of record() for product views, the way the proxy calls it."""
    settings = Settings(
        store=config.location, redis_prefix=config.prefix, events_file=tmp / "r.jsonl"
    )
    async with opened(config) as state, httpx.AsyncClient() as http:
        service = compose.tracker(settings, state, http, _NoUpstream(), None)
        await service.start()
        samples: list[float] = []

        async def shopper(n: int) -> None:
            for i in range(calls // concurrency):
                call = make_call("GET", f"/v1/me/products/p{n}-{i}")
                body = answer({"ID": f"p{n}-{i}", "Name": "Bike"})
                start = time.perf_counter()
                await service.record(call, 200, body)
                samples.append(time.perf_counter() - start)
                await asyncio.sleep(0)  # a proxied call gives the loop a turn between records

        await asyncio.gather(*(shopper(n) for n in range(concurrency)))
        await service.stop(10)
    samples.sort()
    return statistics.median(samples) * 1000, samples[int(len(samples) * 0.99)] * 1000


async def fill(box: Outbox, count: int, dest: str) -> None:
    """A backlog of ready events, appended in batches of 1,000."""
    now = time.time()
    for base in range(0, count, 1000):
        batch = [sample(i) for i in range(base, min(base + 1000, count))]
        await box.append(batch, [[dest]] * len(batch), now, 0)


async def deliver(box: Outbox, destination: object, count: int, limit_s: float) -> float:
    dispatcher = Dispatcher(box, destination, Policy(poll=0.05))  # type: ignore[arg-type]
    start = time.perf_counter()
    dispatcher.start()
    while dispatcher.delivered < count and time.perf_counter() - start < limit_s:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - start
    done = dispatcher.delivered
    await dispatcher.stop(5)
    return done / elapsed


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


async def memory(box: Outbox, out: Path, backlog: int, seconds: float) -> list[tuple[int, float]]:
    """RSS while the file dispatcher works through `backlog` stored events."""
    await fill(box, backlog, "file")
    dispatcher = Dispatcher(box, FileDestination(out), Policy(poll=0.05))
    points = [(0, rss_mb())]
    dispatcher.start()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        await asyncio.sleep(seconds / 5)
        points.append((dispatcher.delivered, rss_mb()))
    await dispatcher.stop(5)
    return points


async def run(backend: str, args: argparse.Namespace, tmp: Path) -> None:
    def config(name: str) -> StateConfig:
        return location(backend, tmp, name, args.redis)

    print(f"\n== {backend}")
    async with opened(config("ingest")) as state:
        rate = await ingest(state.outbox, args.events)
    line = f"ingest   {rate:10.0f} ev/s (200 callers, one event each)"
    if backend == "sqlite":
        single = await one_commit_per_event(tmp / "single.db", args.events // 4)
        line += f" | one commit per event {single:8.0f} ev/s | group commit {rate / single:.1f}x"
    print(line)

    p50, p99 = await record_latency(config("rec1"), tmp, 2000, 1)
    c50, c99 = await record_latency(config("rec50"), tmp, 10_000, 50)
    print(
        f"record() sequential p50 {p50:.3f} ms p99 {p99:.3f} ms"
        f" | 50 concurrent p50 {c50:.3f} ms p99 {c99:.3f} ms (what a tracked call waits)"
    )

    n = 50_000
    async with opened(config("file")) as state:
        await fill(state.outbox, n, "file")
        file_rate = await deliver(state.outbox, FileDestination(tmp / f"{backend}.jsonl"), n, 60)
    server = serve_sink(18777)
    try:
        async with (
            opened(config("hook")) as state,
            httpx.AsyncClient(limits=httpx.Limits(max_connections=64)) as client,
        ):
            await fill(state.outbox, 20_000, "webhook")
            hook = WebhookDestination(client, "http://127.0.0.1:18777/in", "secret")
            hook_rate = await deliver(state.outbox, hook, 20_000, 30)
    finally:
        server.kill()
        server.wait()
    print(
        f"delivery file (batched) {file_rate:8.0f} ev/s | webhook on 127.0.0.1 {hook_rate:6.0f}"
        f" ev/s | ratio {file_rate / hook_rate:.1f}x"
    )

    base = rss_mb()
    async with opened(config("memory")) as state:
        points = await memory(state.outbox, tmp / "m.jsonl", args.backlog, args.drain)
    print(f"memory   backlog {args.backlog} events; RSS before filling {base:.0f} MB")
    for delivered, rss in points:
        print(f"         delivered {delivered:8d}  RSS {rss:6.0f} MB")
    growth = points[-1][1] - points[0][1]
    print(
        f"         RSS growth while draining: {growth:+.0f} MB"
        f" ({growth * 1e6 / max(points[-1][0], 1):.1f} bytes per delivered event)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "redis", "both"), default="both")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--drain", type=float, default=10.0, help="seconds of draining to watch")
    args = parser.parse_args()
    backends = ("sqlite", "redis") if args.backend == "both" else (args.backend,)
    with tempfile.TemporaryDirectory() as name:
        for backend in backends:
            await run(backend, args, Path(name))


if __name__ == "__main__":
    asyncio.run(main())
