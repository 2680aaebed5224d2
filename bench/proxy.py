"""Proxy benchmark: the gateway against the upstream and two minimal Python proxies, in one run.

On loopback it starts a static OrderCloud-like upstream (nginx, or bench/upstream.py), then measures
each target in turn as its own process (one uvicorn worker, uvloop + httptools):

  direct      the upstream itself (the ceiling)
  httpx       a minimal Starlette + httpx pass-through proxy (defined below)
  aiohttp     the same with aiohttp's client (defined below): the floor to beat
  gateway     `ocgateway serve --workers 1`, tracking off (identity runs when decisions need it)
  gateway-w2  `ocgateway serve --workers 2` (scaling with cores)

with wrk (or bench/load.py when wrk is absent) at 1 and 64 connections, carrying a real RS256 buyer
token, and prints a table plus the ratios the project's targets are stated in. See bench/README.md.

    .venv/bin/python bench/proxy.py [--duration 5] [--routes products,product] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import upstream as static_upstream

ROUTES = {"products": "/v1/me/products", "product": "/v1/me/products/prod-007"}
IDENTITY_ON_TABLES = """
segments:
  nobody: { buyer: no-such-buyer }
tables:
  - id: identity-on
    applies_to: me/products
    rules:
      - id: never
        when: { segment: nobody }
        then: { sortBy: Name }
"""
TARGETS = ("direct", "httpx", "aiohttp", "gateway", "gateway-w2")
LABELS = {
    "direct": "upstream directly",
    "httpx": "Starlette + httpx",
    "aiohttp": "Starlette + aiohttp",
    "gateway": "gateway (1 worker)",
    "gateway-w2": "gateway (2 workers)",
}
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
READY_TIMEOUT = 30.0


# --- the token ---


def signing_key() -> Any:
    """A fresh RSA key standing in for OrderCloud's token-signing key."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: Any, kid: str = "k1") -> dict[str, Any]:
    """The JWK `/oauth/certs/{kid}` serves for `key`."""
    import jwt

    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
    return jwk


def buyer_token(key: Any, audience: str, kid: str = "k1") -> str:
    """A registered buyer's RS256 token with OrderCloud's claims; `aud` is the API base URL."""
    import jwt

    now = int(time.time())
    claims = {
        "usr": "jane@example.com",
        "cid": "bench-storefront-client",
        "u": "1920563",
        "usrtype": "buyer",
        "role": ["Shopper", "MeAdmin"],
        "iss": "https://auth.ordercloud.io",
        "aud": audience,
        "exp": now + 7 * 24 * 3600,
        "nbf": now - 60,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


# --- the two minimal pass-through proxies ---


def _hop_by_hop(headers: Iterable[tuple[str, str]]) -> set[str]:
    """RFC 9110 §7.6.1 hop-by-hop names, plus any named in Connection (all lower case)."""
    names = set(HOP_BY_HOP)
    for name, value in headers:
        if name.lower() == "connection":
            names.update(token.strip().lower() for token in value.split(","))
    return names


def _forward_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    pairs = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw]
    drop = _hop_by_hop(pairs) | {"host"}
    return [(name, value) for name, value in pairs if name.lower() not in drop]


def _back_headers(pairs: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    drop = _hop_by_hop(pairs)
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in pairs
        if name.lower() not in drop
    ]


def _has_body(headers: list[tuple[str, str]], raw: list[tuple[bytes, bytes]]) -> bool:
    return any(name.lower() == b"transfer-encoding" for name, _ in raw) or any(
        name.lower() == "content-length" and value.strip() != "0" for name, value in headers
    )


def _target(scope: dict[str, Any]) -> str:
    """The raw path and query exactly as received."""
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    return (path + (b"?" + query if query else b"")).decode("latin-1")


def httpx_app(upstream: str) -> Any:
    """Starlette + httpx: stream the request up and the response back, nothing else."""
    import httpx
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    clients: list[httpx.AsyncClient] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
            clients.append(client)
            yield

    async def forward(request: Request) -> StreamingResponse:
        raw = request.scope["headers"]
        headers = _forward_headers(raw)
        body = request.stream() if _has_body(headers, raw) else None
        outbound = clients[0].build_request(
            request.method, upstream + _target(request.scope), headers=headers, content=body
        )
        answer = await clients[0].send(outbound, stream=True)
        response = StreamingResponse(
            answer.aiter_raw(),
            status_code=answer.status_code,
            background=BackgroundTask(answer.aclose),
        )
        response.raw_headers = _back_headers(answer.headers.multi_items())
        return response

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)


def aiohttp_app(upstream: str) -> Any:
    """Starlette + aiohttp's client: stream the request up and the response back, nothing else."""
    import aiohttp
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route
    from yarl import URL

    sessions: list[aiohttp.ClientSession] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=256)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False
        ) as session:
            sessions.append(session)
            yield

    async def forward(request: Request) -> StreamingResponse:
        raw = request.scope["headers"]
        headers = _forward_headers(raw)
        body = request.stream() if _has_body(headers, raw) else None
        answer = await sessions[0].request(
            request.method,
            URL(upstream + _target(request.scope), encoded=True),
            headers=headers,
            data=body,
            allow_redirects=False,
        )
        response = StreamingResponse(
            answer.content.iter_any(),
            status_code=answer.status,
            background=BackgroundTask(answer.release),
        )
        response.raw_headers = _back_headers(
            [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in answer.raw_headers
            ]
        )
        return response

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)


def serve_floor(kind: str, port: int, upstream: str) -> None:
    """Run one minimal proxy as a single uvicorn worker (this is the child process's whole job)."""
    import uvicorn

    app = httpx_app(upstream) if kind == "httpx" else aiohttp_app(upstream)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        server_header=False,  # the upstream's Server and Date headers pass through instead
        date_header=False,
    )


# --- processes ---


class Skip(Exception):
    """A target could not be measured; the message says why."""


@dataclass
class Processes:
    """Every process the benchmark starts, each in its own process group, all stopped on exit."""

    logs: Path
    running: list[subprocess.Popen] = field(default_factory=list)

    def start(
        self, name: str, command: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise Skip(f"cannot start {command[0]}: {exc}") from None
        finally:
            log.close()
        self.running.append(process)
        return process

    def log_tail(self, name: str, lines: int = 8) -> str:
        """What the process printed last: the final line (usually the reason), then the tail."""
        path = self.logs / f"{name}.log"
        tail = (
            (path.read_text(errors="replace") if path.exists() else "")
            .strip()
            .splitlines()[-lines:]
        )
        if not tail:
            return "(it printed nothing)"
        return tail[-1] + "".join("\n    " + line for line in tail)

    def stop(self, process: subprocess.Popen) -> None:
        """SIGTERM the process group, SIGKILL it after 5 s."""
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            if process.poll() is not None:
                break
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
        try:  # workers may outlive a master that exited on its own
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if process in self.running:
            self.running.remove(process)

    def stop_all(self) -> None:
        for process in reversed(list(self.running)):
            self.stop(process)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str, headers: dict[str, str], timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(
    processes: Processes,
    name: str,
    process: subprocess.Popen | None,
    url: str,
    headers: dict[str, str],
) -> bytes:
    """Poll `url` until it answers 200 and return the body; Skip if the process dies or hangs."""
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise Skip(f"exited with status {process.returncode}: {processes.log_tail(name)}")
        try:
            status, body = fetch(url, headers)
            if status == 200:
                return body
            last = f"HTTP {status}: {body[:200]!r}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise Skip(
        f"not ready after {READY_TIMEOUT:.0f} s ({last}); it printed: {processes.log_tail(name)}"
    )


def start_upstream(
    processes: Processes, run: Path, token_jwk: dict[str, Any], force_python: bool
) -> tuple[str, str]:
    """Start the static upstream; return (base URL, what serves it)."""
    docs_root = run / "docs"
    docs_root.mkdir()
    static_upstream.write_documents(docs_root, static_upstream.documents(token_jwk))
    port = free_port()
    nginx = None if force_python else shutil.which("nginx")
    if nginx:
        config = run / "nginx.conf"
        config.write_text(static_upstream.nginx_config(docs_root, port))
        command = [nginx, "-p", str(run), "-e", str(run / "nginx-error.log"), "-c", str(config)]
        kind = "nginx (static files, 1 worker)"
    else:
        command = [
            sys.executable,
            str(BENCH / "upstream.py"),
            "--port",
            str(port),
            "--docs",
            str(docs_root),
        ]
        kind = "bench/upstream.py (uvloop + httptools responder)"
    process = processes.start("upstream", command)
    base = f"http://127.0.0.1:{port}"
    wait_ready(processes, "upstream", process, base + "/v1/me", {})
    return base, kind


# --- load ---


@dataclass
class Measurement:
    target: str
    route: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    non_2xx: int = 0


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_wrk(output: str) -> tuple[float, float, float, int, int]:
    """(req/s, p50 ms, p99 ms, socket errors, non-2xx/3xx responses) from `wrk --latency` output."""

    def latency(percent: str) -> float:
        match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
        if not match:
            raise ValueError(f"no {percent}% latency in wrk output")
        return float(match.group(1)) * _UNITS_MS[match.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not rps:
        raise ValueError("no Requests/sec in wrk output")
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return (
        float(rps.group(1)),
        latency("50"),
        latency("99"),
        sum(int(n) for n in errors.groups()) if errors else 0,
        int(non_2xx.group(1)) if non_2xx else 0,
    )


def measure(
    loader: str, url: str, token: str, connections: int, duration: int, warmup: int
) -> tuple[float, float, float, int, int]:
    """Warm up, then load `url` for `duration` seconds; (req/s, p50, p99, errors, non-2xx)."""
    try:
        return _load(loader, url, token, connections, duration, warmup)
    except subprocess.TimeoutExpired:
        raise Skip(f"the load generator did not finish within {duration + warmup + 30} s") from None
    except (ValueError, KeyError, IndexError) as exc:
        raise Skip(f"unreadable load generator output: {exc}") from None


def _load(
    loader: str, url: str, token: str, connections: int, duration: int, warmup: int
) -> tuple[float, float, float, int, int]:
    header = f"Authorization: Bearer {token}"
    limit = duration + warmup + 30
    if loader == "wrk":
        base = ["wrk", "-t1", f"-c{connections}", "--timeout", "10s", "-H", header]
        if warmup:
            subprocess.run(
                [*base, f"-d{warmup}s", url], capture_output=True, timeout=limit, check=False
            )
        done = subprocess.run(
            [*base, f"-d{duration}s", "--latency", url],
            capture_output=True,
            text=True,
            timeout=limit,
            check=False,
        )
        if done.returncode != 0:
            raise Skip(f"wrk failed: {done.stderr.strip() or done.stdout.strip()}")
        return parse_wrk(done.stdout)
    command = [
        sys.executable,
        str(BENCH / "load.py"),
        "--url",
        url,
        "--connections",
        str(connections),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
        "--header",
        header,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=limit, check=False)
    if done.returncode != 0:
        raise Skip(f"bench/load.py failed: {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["rps"], result["p50_ms"], result["p99_ms"], result["errors"], result["non_2xx"]


# --- targets ---


def gateway_command(override: str | None) -> list[str] | None:
    """The gateway's executable: --gateway-cmd, else the venv's `ocgateway`, else one on PATH."""
    if override:
        return shlex.split(override)
    beside = Path(sys.executable).parent / "ocgateway"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("ocgateway")
    return [found] if found else None


def start_target(
    processes: Processes,
    name: str,
    upstream: str,
    run: Path,
    gateway: list[str] | None,
    gateway_env: dict[str, str],
) -> tuple[subprocess.Popen, int]:
    """Start one target's server on a free port."""
    port = free_port()
    if name in ("httpx", "aiohttp"):
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve-floor",
            name,
            "--port",
            str(port),
            "--upstream-url",
            upstream,
        ]
        return processes.start(name, command), port
    if gateway is None:
        raise Skip("`ocgateway` not found in the venv or on PATH (pass --gateway-cmd)")
    workers = "2" if name == "gateway-w2" else "1"
    # Identity on: a table applies to me/products but never matches, so every call verifies the
    # token, resolves the shopper and evaluates the table, and the query goes up unchanged.
    tables = run / "identity-on.yaml"
    tables.write_text(IDENTITY_ON_TABLES)
    env = dict(os.environ)
    env.update(
        {
            "OCGW_UPSTREAM_URL": upstream,
            "OCGW_TRACKING": "false",
            "OCGW_STORE": str(run / f"{name}.db"),
            "OCGW_DECISIONS": str(tables),
            **gateway_env,
        }
    )
    command = [*gateway, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", workers]
    return processes.start(name, command, env), port


# --- report ---


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def _row(
    name: str, value: float | None, target: str = "", met: bool | None = None
) -> dict[str, Any]:
    return {"name": name, "value": value, "target": target, "met": None if value is None else met}


def ratios(
    results: list[Measurement], routes: list[str], connections: list[int]
) -> list[dict[str, Any]]:
    """The comparisons the project's targets are stated in (value None: not measured)."""
    index = {(m.target, m.route, m.connections): m for m in results}

    def rps(target: str, route: str, conns: int) -> float | None:
        found = index.get((target, route, conns))
        return found.rps if found else None

    rows = []
    for route in routes:
        for conns in connections:
            value = _ratio(rps("gateway", route, conns), rps("aiohttp", route, conns))
            rows.append(
                _row(
                    f"gateway / aiohttp floor req/s, {route}, {conns} conn",
                    value,
                    ">= 1.0",
                    value is not None and value >= 1.0,
                )
            )
        gateway, direct = index.get(("gateway", route, 1)), index.get(("direct", route, 1))
        if 1 in connections:
            value = gateway.p50_ms - direct.p50_ms if gateway and direct else None
            rows.append(
                _row(
                    f"gateway p50 overhead over direct, {route}, 1 conn (ms)",
                    value,
                    "<= 1.0 ms",
                    value is not None and value <= 1.0,
                )
            )
        for conns in connections:
            value = _ratio(rps("httpx", route, conns), rps("aiohttp", route, conns))
            rows.append(_row(f"httpx floor / aiohttp floor req/s, {route}, {conns} conn", value))
        for conns in connections:
            value = _ratio(rps("gateway-w2", route, conns), rps("gateway", route, conns))
            if conns == max(connections):  # one connection cannot use a second worker
                rows.append(
                    _row(
                        f"gateway 2 workers / 1 worker req/s, {route}, {conns} conn",
                        value,
                        ">= 1.1 (scales)",  # below that, noise could pass for scaling
                        value is not None and value >= 1.1,
                    )
                )
            else:
                rows.append(
                    _row(f"gateway 2 workers / 1 worker req/s, {route}, {conns} conn", value)
                )
    return rows


def report(document: dict[str, Any], out: Any) -> None:
    """The human-readable table and ratios."""
    print(
        f"\nupstream: {document['upstream']}; load: {document['loader']}, "
        f"{document['duration_s']} s per point after {document['warmup_s']} s warm-up; "
        f"{document['cpus']} CPUs\n",
        file=out,
    )
    print(
        f"{'target':<22} {'route':<9} {'conns':>5} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9}"
        "  errors",
        file=out,
    )
    print("-" * 76, file=out)
    for m in document["results"]:
        bad = m["errors"] + m["non_2xx"]
        flag = f"{m['errors']} socket / {m['non_2xx']} non-2xx" if bad else ""
        print(
            f"{LABELS[m['target']]:<22} {m['route']:<9} {m['connections']:>5} {m['rps']:>10,.0f} "
            f"{m['p50_ms']:>9.2f} {m['p99_ms']:>9.2f}  {flag}",
            file=out,
        )
    for name, reason in document["skipped"].items():
        print(f"{LABELS[name]:<22} skipped: {reason.splitlines()[0]}", file=out)
    print("\nratios", file=out)
    if all(row["value"] is None for row in document["ratios"]):
        print("  (none: the targets they compare were not all measured)", file=out)
    for row in document["ratios"]:
        if row["value"] is None:  # a target not measured (skipped, or not asked for)
            continue
        shown = f"{row['value']:.2f}"
        verdict = {True: "met", False: "NOT met", None: ""}[row["met"]]
        target = f"(target {row['target']}) {verdict}" if row["target"] else ""
        print(f"  {row['name']:<58} {shown:>7}  {target}", file=out)
    for note in document["notes"]:
        print(f"note: {note}", file=out)


# --- main ---


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the gateway against the upstream and minimal httpx/aiohttp proxies"
        " on loopback.",
        epilog="Reading the ratios: see bench/README.md.",
    )
    parser.add_argument(
        "--duration",
        type=int,
        default=5,
        help="measured seconds per target and concurrency (default 5)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="discarded warm-up seconds before each measurement (default 1)",
    )
    parser.add_argument(
        "--connections", default="1,64", help="comma-separated concurrencies (default 1,64)"
    )
    parser.add_argument(
        "--routes",
        default="products",
        help=f"comma-separated, from {','.join(ROUTES)} (default products)",
    )
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help=f"comma-separated subset of {','.join(TARGETS)}",
    )
    parser.add_argument(
        "--gateway-cmd",
        help="command that runs the gateway CLI (default: the venv's ocgateway); "
        "`serve --host --port --workers` are appended",
    )
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the gateway, repeatable (e.g. OCGW_TRACKING=true)",
    )
    parser.add_argument(
        "--loader",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator (default: wrk if installed)",
    )
    parser.add_argument(
        "--upstream",
        choices=["auto", "nginx", "python"],
        default="auto",
        help="static upstream (default: nginx if installed)",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help="write results as JSON to PATH (or stdout with no PATH)",
    )
    parser.add_argument("--serve-floor", choices=["httpx", "aiohttp"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.connections = [int(n) for n in args.connections.split(",") if n.strip()]
    args.routes = [r.strip() for r in args.routes.split(",") if r.strip()]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if any("=" not in pair for pair in args.gateway_env):
        parser.error("--gateway-env takes NAME=VALUE")
    args.gateway_env = dict(pair.split("=", 1) for pair in args.gateway_env)
    unknown = [r for r in args.routes if r not in ROUTES] + [
        t for t in args.targets if t not in TARGETS
    ]
    if unknown:
        parser.error(f"unknown route or target: {', '.join(unknown)}")
    if args.duration < 1 or args.warmup < 0:
        parser.error("--duration must be >= 1 and --warmup >= 0 (whole seconds)")
    if args.loader == "wrk" and not shutil.which("wrk"):
        parser.error("--loader wrk: wrk is not installed (apt-get install -y wrk)")
    if args.upstream == "nginx" and not shutil.which("nginx"):
        parser.error("--upstream nginx: nginx is not installed (apt-get install -y nginx-light)")
    return args


def bench(args: argparse.Namespace, processes: Processes, run: Path, log: Any) -> dict[str, Any]:
    """Run every target at every route and concurrency; return the results document."""
    loader = (
        "wrk"
        if args.loader == "wrk" or (args.loader == "auto" and shutil.which("wrk"))
        else "python"
    )
    notes = [f"{os.cpu_count()} CPUs shared by the upstream, the target and the load generator"]
    busy = os.getloadavg()[0]
    if busy > 0.5:
        notes.append(
            f"load average {busy:.1f} at start: other work on this machine skews the numbers"
        )
    if loader == "python":
        notes.append(
            "load from bench/load.py, not wrk: it competes with the target for the "
            "cores, so absolute numbers are lower than wrk's; the ratios still stand"
        )
    key = signing_key()
    upstream, upstream_kind = start_upstream(
        processes, run, public_jwk(key), args.upstream == "python"
    )
    token = buyer_token(key, upstream)
    print(f"[bench] upstream: {upstream_kind} at {upstream}; load: {loader}", file=log)
    auth = {"Authorization": f"Bearer {token}"}
    expected = {route: fetch(upstream + path, auth)[1] for route, path in ROUTES.items()}
    gateway = gateway_command(args.gateway_cmd)
    results: list[Measurement] = []
    skipped: dict[str, str] = {}
    for name in args.targets:
        process, base = None, upstream
        try:
            if name != "direct":
                process, port = start_target(
                    processes, name, upstream, run, gateway, args.gateway_env
                )
                base = f"http://127.0.0.1:{port}"
            for route in args.routes:
                body = wait_ready(processes, name, process, base + ROUTES[route], auth)
                if body != expected[route]:
                    notes.append(
                        f"{LABELS[name]} answered {route} with a body different from the upstream's"
                    )
                for conns in args.connections:
                    numbers = measure(
                        loader, base + ROUTES[route], token, conns, args.duration, args.warmup
                    )
                    if process is not None and process.poll() is not None:
                        raise Skip(f"died during the run: {processes.log_tail(name)}")
                    m = Measurement(name, route, conns, *numbers)
                    results.append(m)
                    print(
                        f"[bench] {LABELS[name]:<20} {route:<9} c={conns:<3} {m.rps:>9,.0f} req/s  "
                        f"p50 {m.p50_ms:7.2f} ms  p99 {m.p99_ms:7.2f} ms",
                        file=log,
                    )
        except Skip as exc:
            skipped[name] = str(exc)
            print(f"[bench] {LABELS[name]}: skipped: {exc}", file=log)
        finally:
            if process is not None:
                processes.stop(process)
    return {
        "upstream": upstream_kind,
        "loader": "wrk -t1" if loader == "wrk" else "bench/load.py (Python, aiohttp)",
        "cpus": os.cpu_count(),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "results": [asdict(m) for m in results],
        "ratios": ratios(results, args.routes, args.connections),
        "skipped": skipped,
        "notes": notes,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_floor:
        serve_floor(args.serve_floor, args.port, args.upstream_url)
        return 0
    out = sys.stderr if args.json == "-" else sys.stdout
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # all end in the cleanup below
        signal.signal(signum, _interrupt)
    run = Path(tempfile.mkdtemp(prefix="ocgw-bench-"))
    run.chmod(0o755)  # nginx workers run unprivileged and must reach the documents
    processes = Processes(run)
    try:
        document = bench(args, processes, run, sys.stderr)
    except Skip as exc:
        print(f"[bench] the static upstream did not start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\n[bench] interrupted; stopping everything it started", file=sys.stderr)
        return 130
    finally:
        processes.stop_all()
        shutil.rmtree(run, ignore_errors=True)
    report(document, out)
    if args.json == "-":
        print(json.dumps(document, indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
        print(f"results written to {args.json}", file=out)
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
