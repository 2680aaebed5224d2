"""A bounded soak: mixed storefront traffic through a real `ocgateway serve`, with faults injected.

Everything runs on loopback: the OrderCloud sandbox, a fault-injecting proxy in front of it (the
gateway's upstream), a webhook receiver, and the gateway as its own process. Shoppers, anonymous
and registered, list, search, view, add, update and remove line items and submit orders. On a
schedule the soak injects upstream 5xx answers and timeouts (only on proxied calls, never on the
gateway's own identity and hydration calls), takes the webhook down (503) for a while, and pauses
the store (SQLite: another connection holds the write lock; Redis: CLIENT PAUSE).

It reports:
- storefront errors the gateway caused: a 5xx that is not an injected one passed through (or the
  502/504 the gateway rightly answers for an injected timeout), and connection errors. Goal 0.
- events lost: every tracked call answered 2xx carries a unique User-Agent tag; each must arrive
  at the webhook (the tag is in the event's context). Goal 0.
- p99 latency and the gateway's RSS over time, as an SVG plot.

`python bench/soak.py --duration 180 --backend sqlite --plot docs/soak-sqlite.svg`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.sandbox import create_app as create_sandbox
from gateway.sandbox.catalog import CLIENT_ID
from gateway.serving import serve_in_thread

SHOPPERS = ("jane", "joe", "gina", "gus")
PRODUCTS = [f"p-{n:03d}" for n in range(1, 41)]
UPSTREAM_TIMEOUT = 1.0  # the gateway's OCGW_UPSTREAM_TIMEOUT: an injected delay exceeds it
WINDOW = 5.0  # seconds per point of the p99 and RSS series
DRAIN = 45.0  # seconds to wait for the outbox to deliver everything after the load stops


# Fault schedule, as fractions of the run: (start, end, fault).
SCHEDULE = (
    (0.10, 0.25, "upstream_5xx"),
    (0.30, 0.42, "upstream_timeout"),
    (0.45, 0.65, "webhook_down"),
    (0.70, 0.72, "store_paused"),
)


@dataclass
class Faults:
    """What is being injected now; read by the proxy and the webhook on their own threads."""

    active: set[str] = field(default_factory=set)
    rate: float = 0.2  # share of proxied calls a 5xx or timeout fault hits
    delayed: set[str] = field(default_factory=set)  # X-Soak-Call of calls held past the timeout
    lock: threading.Lock = field(default_factory=threading.Lock)


class FaultProxy:
    """The gateway's upstream: forwards to the sandbox, injecting faults on proxied calls (the
    gateway sets X-Forwarded-For on those; its own identity and hydration calls carry none)."""

    def __init__(self, target: str, faults: Faults) -> None:
        self.target = target
        self.faults = faults
        self.client: httpx.AsyncClient | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if self.client is None:
            self.client = httpx.AsyncClient(base_url=self.target, timeout=30)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        proxied = "x-forwarded-for" in headers
        active = self.faults.active
        if proxied and random.random() < self.faults.rate:
            if "upstream_5xx" in active:
                await _reply(send, 503, b'{"Errors": []}', [(b"x-soak-fault", b"injected")])
                return
            if "upstream_timeout" in active:
                with self.faults.lock:
                    self.faults.delayed.add(headers.get("x-soak-call", ""))
                await asyncio.sleep(UPSTREAM_TIMEOUT * 1.5)
        path = scope["raw_path"].decode("latin-1")
        query = scope["query_string"].decode("latin-1")
        headers.pop("host", None)
        headers.pop("content-length", None)
        answer = await self.client.request(
            scope["method"], path + (f"?{query}" if query else ""), headers=headers, content=body
        )
        keep = [
            (k.encode(), v.encode())
            for k, v in answer.headers.items()
            if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")
        ]
        await _reply(send, answer.status_code, answer.content, keep)


class Webhook:
    """Records the soak tag of every delivered event; answers 503 while `webhook_down`."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.tags: set[str] = set()
        self.deliveries = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if "webhook_down" in self.faults.active:
            await _reply(send, 503, b"{}", [])
            return
        self.deliveries += 1
        event = json.loads(body)
        agent = (event.get("context") or {}).get("user_agent", "")
        if "soak-" in agent:
            self.tags.add(agent.rsplit("soak-", 1)[1])
        await _reply(send, 200, b"{}", [])


async def _reply(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


# the gateway and its store ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _process(command: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(
        command,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _wait_until(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up")
        time.sleep(0.05)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


@contextmanager
def _redis(folder: Path) -> Iterator[str]:
    """A redis-server of the soak's own, persisting every write (as production should)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("--backend redis needs redis-server")
    port = _free_port()
    options = ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), *options]
    with _process(command):
        url = f"redis://127.0.0.1:{port}/0"
        _wait_until(lambda: _redis_ping(url), 10, "redis-server")
        yield url


def _redis_ping(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def _rss_mb(pid: int) -> float:
    """Resident memory of the gateway process (Linux /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _pause_store(store: str, seconds: float) -> None:
    """Hold the store's writes for `seconds`, as a stuck disk or a busy Redis would."""
    if store.startswith("redis://"):
        import redis

        redis.Redis.from_url(store).execute_command("CLIENT", "PAUSE", int(seconds * 1000), "WRITE")
        return
    holder = sqlite3.connect(store, isolation_level=None, timeout=10)
    holder.execute("BEGIN IMMEDIATE")
    time.sleep(seconds)
    holder.execute("ROLLBACK")
    holder.close()


# the storefront -------------------------------------------------------------------------------


@dataclass
class Tally:
    started: float
    calls: int = 0
    ok: int = 0
    injected: int = 0  # 5xx from an injected fault (passed through or 502/504 for a timeout)
    caused: list[str] = field(default_factory=list)  # what the gateway got wrong
    expected: set[str] = field(default_factory=set)  # tags of acknowledged tracked calls
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (at, ms)


class Shopper:
    def __init__(self, http: httpx.AsyncClient, tally: Tally, faults: Faults, user: str | None):
        self.http = http
        self.tally = tally
        self.faults = faults
        self.user = user
        self.token = ""

    async def call(
        self, method: str, path: str, tracked: bool = False, **kwargs: Any
    ) -> httpx.Response | None:
        tag = uuid.uuid4().hex
        headers = {
            "X-Soak-Call": tag,
            "User-Agent": f"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0 soak-{tag}",
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        started = time.perf_counter()
        self.tally.calls += 1
        try:
            answer = await self.http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            self.tally.caused.append(f"{method} {path}: {type(exc).__name__}")
            return None
        elapsed = (time.perf_counter() - started) * 1000
        self.tally.latencies.append((time.monotonic() - self.tally.started, elapsed))
        if answer.status_code >= 500:
            injected = answer.headers.get("x-soak-fault") == "injected" or (
                answer.status_code in (502, 504) and tag in self.faults.delayed
            )
            if injected:
                self.tally.injected += 1
            else:
                self.tally.caused.append(
                    f"{method} {path}: {answer.status_code} {answer.text[:120]}"
                )
            return None
        if answer.status_code < 300:
            self.tally.ok += 1
            if tracked:
                self.tally.expected.add(tag)
            return answer
        return None

    async def sign_in(self) -> bool:
        form = {"client_id": CLIENT_ID, "scope": "Shopper"}
        if self.user:
            form |= {
                "grant_type": "password",
                "username": self.user,
                "password": f"{self.user}-pass",
            }
        else:
            form |= {"grant_type": "client_credentials"}
        self.token = ""
        answer = await self.call("POST", "/oauth/token", tracked=bool(self.user), data=form)
        if answer is None:
            return False
        self.token = answer.json()["access_token"]
        return True

    async def journey(self) -> None:
        if not await self.sign_in():
            return
        await self.call("GET", "/v1/me/products?pageSize=8")
        await self.call("GET", "/v1/me/promotions")
        await self.call("GET", "/v1/me/products?search=watch&pageSize=4", tracked=True)
        product = random.choice(PRODUCTS)
        await self.call("GET", f"/v1/me/products/{product}", tracked=True)
        line = await self.call(
            "POST",
            "/v1/cart/lineitems",
            tracked=True,
            json={"ProductID": product, "Quantity": 1},
        )
        if line is None:
            return
        line_id = line.json()["ID"]
        await self.call(
            "PATCH", f"/v1/cart/lineitems/{line_id}", tracked=True, json={"Quantity": 2}
        )
        if random.random() < 0.3:
            await self.call("DELETE", f"/v1/cart/lineitems/{line_id}", tracked=True)
        elif self.user:
            await self.call("POST", "/v1/cart/submit", tracked=True)


async def _shop(gateway: str, tally: Tally, faults: Faults, until: float, index: int) -> None:
    user = SHOPPERS[index % len(SHOPPERS)] if index % 2 else None
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as http:
        shopper = Shopper(http, tally, faults, user)
        while time.monotonic() < until:
            await shopper.journey()


async def _schedule(faults: Faults, store: str, started: float, duration: float) -> None:
    for start, end, fault in SCHEDULE:
        await asyncio.sleep(max(0.0, started + start * duration - time.monotonic()))
        if fault == "store_paused":
            await asyncio.to_thread(_pause_store, store, min(3.0, max(1.0, duration * 0.02)))
            continue
        faults.active.add(fault)
        await asyncio.sleep(max(0.0, started + end * duration - time.monotonic()))
        faults.active.discard(fault)


async def _sample_rss(pid: int, started: float, until: float, into: list[tuple[float, float]]):
    while time.monotonic() < until:
        into.append((time.monotonic() - started, _rss_mb(pid)))
        await asyncio.sleep(1.0)


# the report -----------------------------------------------------------------------------------


def _p99_series(latencies: list[tuple[float, float]]) -> list[tuple[float, float]]:
    windows: dict[int, list[float]] = {}
    for at, ms in latencies:
        windows.setdefault(int(at // WINDOW), []).append(ms)
    series = []
    for window, values in sorted(windows.items()):
        values.sort()
        series.append(
            ((window + 0.5) * WINDOW, values[min(len(values) - 1, int(len(values) * 0.99))])
        )
    return series


def svg(
    p99: list[tuple[float, float]], rss: list[tuple[float, float]], duration: float, title: str
) -> str:
    """Two panels, p99 latency and RSS against time, with the fault windows shaded."""
    width, height, left, panel = 720, 420, 60, 150

    def panel_svg(series: list[tuple[float, float]], top: int, label: str, colour: str) -> str:
        peak = max((v for _, v in series), default=1.0) * 1.15 or 1.0
        x = lambda t: left + (width - left - 20) * t / duration  # noqa: E731
        y = lambda v: top + panel - panel * v / peak  # noqa: E731
        parts = [
            f'<rect x="{x(s * duration):.1f}" y="{top}" width="{x(e * duration) - x(s * duration):.1f}" '
            f'height="{panel}" fill="#f3d9d9"><title>{name}</title></rect>'
            for s, e, name in SCHEDULE
        ]
        parts.append(
            f'<text x="{x(SCHEDULE[0][0] * duration) + 2:.1f}" y="{top + 12}" font-size="9">5xx</text>'
            f'<text x="{x(SCHEDULE[1][0] * duration) + 2:.1f}" y="{top + 12}" font-size="9">timeouts</text>'
            f'<text x="{x(SCHEDULE[2][0] * duration) + 2:.1f}" y="{top + 12}" font-size="9">webhook down</text>'
            f'<text x="{x(SCHEDULE[3][0] * duration) + 2:.1f}" y="{top + 24}" font-size="9">store paused</text>'
        )
        points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in series)
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.5"/>'
        )
        parts.append(
            f'<line x1="{left}" y1="{top + panel}" x2="{width - 20}" y2="{top + panel}" stroke="#333"/>'
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + panel}" stroke="#333"/>'
            f'<text x="{left - 6}" y="{top + 10}" font-size="10" text-anchor="end">{peak:.0f}</text>'
            f'<text x="{left - 6}" y="{top + panel}" font-size="10" text-anchor="end">0</text>'
            f'<text x="{left + 4}" y="{top - 4}" font-size="11">{label}</text>'
        )
        return "".join(parts)

    ticks = "".join(
        f'<text x="{left + (width - left - 20) * t / duration:.1f}" y="{height - 8}" '
        f'font-size="10" text-anchor="middle">{t:.0f}s</text>'
        for t in range(0, int(duration) + 1, max(10, int(duration // 6) // 10 * 10 or 10))
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>'
        f'<text x="{left}" y="16" font-size="13">{title}</text>'
        + panel_svg(p99, 40, f"p99 latency per {WINDOW:g} s window (ms)", "#1f5fbf")
        + panel_svg(rss, 230, "gateway RSS (MB)", "#2b8a3e")
        + ticks
        + "</svg>\n"
    )


async def soak(duration: float, backend: str, shoppers: int, plot: Path | None) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="ocgw-soak-"))
    faults = Faults()
    webhook = Webhook(faults)
    try:
        with (
            serve_in_thread(create_sandbox()) as sandbox,
            serve_in_thread(FaultProxy(sandbox, faults)) as upstream,
            serve_in_thread(webhook) as hooks,
            _redis(folder) if backend == "redis" else _nothing() as redis_url,
        ):
            store = redis_url or str(folder / "gw.db")
            port = _free_port()
            env = {
                "OCGW_UPSTREAM_URL": upstream,
                "OCGW_UPSTREAM_TIMEOUT": str(UPSTREAM_TIMEOUT),
                "OCGW_STORE": store,
                "OCGW_SPOOL": str(folder / "spool.db"),
                "OCGW_WEBHOOK_URL": f"{hooks}/hook",
                "OCGW_WEBHOOK_SECRET": "soak",
                "OCGW_MAX_ATTEMPTS": "1000",
                "OCGW_PERSONALIZE_TIMEOUT_MS": "2000",
                "OCGW_DECISIONS": str(ROOT / "examples" / "decisions.yaml"),
                "OCGW_LOG_LEVEL": "error",
            }
            command = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)]
            with _process(command, env) as gateway:
                base = f"http://127.0.0.1:{port}"
                _wait_until(lambda: _answers(f"{base}/healthz"), 20, "the gateway")
                started = time.monotonic()
                until = started + duration
                tally = Tally(started)
                rss: list[tuple[float, float]] = []
                await asyncio.gather(
                    _schedule(faults, store, started, duration),
                    _sample_rss(gateway.pid, started, until, rss),
                    *(_shop(base, tally, faults, until, i) for i in range(shoppers)),
                )
                drained_at = time.monotonic()
                while tally.expected - webhook.tags and time.monotonic() - drained_at < DRAIN:
                    await asyncio.sleep(0.25)
                drain = time.monotonic() - drained_at
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    lost = tally.expected - webhook.tags
    p99 = _p99_series(tally.latencies)
    everything = sorted(ms for _, ms in tally.latencies)
    report = {
        "backend": backend,
        "duration_s": duration,
        "calls": tally.calls,
        "ok": tally.ok,
        "calls_per_s": round(tally.calls / duration, 1),
        "injected_5xx_seen": tally.injected,
        "gateway_caused_errors": len(tally.caused),
        "errors": tally.caused[:10],
        "tracked_acknowledged": len(tally.expected),
        "events_lost": len(lost),
        "drain_s": round(drain, 1),
        "p50_ms": round(everything[len(everything) // 2], 1) if everything else 0,
        "p99_ms": round(everything[int(len(everything) * 0.99)], 1) if everything else 0,
        "p99_ms_worst_window": round(max((v for _, v in p99), default=0), 1),
        "rss_mb_start_end_max": [
            round(rss[0][1], 1) if rss else 0,
            round(rss[-1][1], 1) if rss else 0,
            round(max((v for _, v in rss), default=0), 1),
        ],
    }
    if plot is not None:
        title = (
            f"ocgateway soak, {backend}, {duration:g} s: {tally.calls} calls, "
            f"{len(tally.caused)} gateway errors, {len(lost)} events lost"
        )
        plot.write_text(svg(p99, rss, duration, title))
    return report


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load")
    parser.add_argument("--backend", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--shoppers", type=int, default=8, help="concurrent shoppers")
    parser.add_argument("--plot", type=Path, help="write the p99/RSS plot here (SVG)")
    args = parser.parse_args()
    report = asyncio.run(soak(args.duration, args.backend, args.shoppers, args.plot))
    print(json.dumps(report))
    return 0 if report["gateway_caused_errors"] == 0 and report["events_lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
