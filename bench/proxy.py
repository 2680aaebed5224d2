"""Proxy benchmark: the gateway against the upstream and two minimal Python proxies, in one run.

On loopback it starts a static OrderCloud-like upstream (nginx, or bench/upstream.py), then measures
each target in turn as its own process (one uvicorn worker, uvloop + httptools):

  direct      the upstream itself (the ceiling)
  httpx       a minimal Starlette + httpx pass-through proxy (defined below)
  aiohttp     the same with aiohttp's client (defined below): the floor to beat
  gateway     `ocgateway serve --workers 1`, tracking off (identity runs when decisions need it)
  gateway-w2  `ocgateway serve --workers 2` (scaling with cores)
  gateway-redis, gateway-redis-w2
              the same two with their state on Redis (`--redis URL`; each worker a replica),
              so both backends are measured against the same floor in the same rounds

with wrk (or bench/load.py when wrk is absent) at 1 and 64 connections, carrying a real RS256 buyer
token, and prints a table plus the ratios the project's targets are stated in. See bench/README.md.

    .venv/bin/python bench/proxy.py [--duration 5] [--rounds 3] [--routes products,product]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

from loadgen import Measurement, measure  # noqa: E402
from processes import (  # noqa: E402
    Processes,
    Skip,
    fetch,
    free_port,
    start_upstream,
    wait_quiet,
    wait_ready,
)
from signing import buyer_token, public_jwk, signing_key  # noqa: E402

from tests.redisserver import drop  # noqa: E402

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
TARGETS = (
    "direct",
    "httpx",
    "aiohttp",
    "gateway",
    "gateway-w2",
    "gateway-redis",
    "gateway-redis-w2",
)
DEFAULT_TARGETS = TARGETS[:5]
LABELS = {
    "direct": "upstream directly",
    "httpx": "Starlette + httpx",
    "aiohttp": "Starlette + aiohttp",
    "gateway": "gateway (1 worker)",
    "gateway-w2": "gateway (2 workers)",
    "gateway-redis": "gateway, Redis (1)",
    "gateway-redis-w2": "gateway, Redis (2)",
}
REDIS_PREFIX = f"ocgw-bench-{os.getpid()}:"  # every Redis target's keys, deleted afterwards


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
    redis: str | None = None,
) -> tuple[subprocess.Popen, int]:
    """Start one target's server on a free port."""
    port = free_port()
    if name in ("httpx", "aiohttp"):
        floors = str(Path(__file__).resolve().parent / "floors.py")
        command = [sys.executable, floors, name, "--port", str(port), "--upstream-url", upstream]
        return processes.start(name, command), port
    if gateway is None:
        raise Skip("`ocgateway` not found in the venv or on PATH (pass --gateway-cmd)")
    workers = "2" if name.endswith("-w2") else "1"
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
    if name.startswith("gateway-redis"):
        if redis is None:
            raise Skip("needs --redis URL")
        env.update({"OCGW_STORE": redis, "OCGW_REDIS_PREFIX": f"{REDIS_PREFIX}{name}:"})
    command = [*gateway, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", workers]
    return processes.start(name, command, env), port


def _medians(rounds: list[list[Measurement]]) -> list[Measurement]:
    """One Measurement per target, route and concurrency: the median of each figure over the
    rounds (errors summed)."""
    grouped: dict[tuple[str, str, int], list[Measurement]] = {}
    for measured in rounds:
        for m in measured:
            grouped.setdefault((m.target, m.route, m.connections), []).append(m)
    return [
        Measurement(
            *key,
            statistics.median(m.rps for m in ms),
            statistics.median(m.p50_ms for m in ms),
            statistics.median(m.p99_ms for m in ms),
            sum(m.errors for m in ms),
            sum(m.non_2xx for m in ms),
        )
        for key, ms in grouped.items()
    ]


def _median_rows(per_round: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The ratio rows, each the median of its value over the rounds (a ratio taken within one
    round compares targets measured minutes apart at most)."""
    if not per_round:
        return []
    rows = []
    for i, row in enumerate(per_round[0]):
        values = [r[i]["value"] for r in per_round if r[i]["value"] is not None]
        value = statistics.median(values) if values else None
        met = None if value is None else _meets(row["target"], value)
        rows.append({**row, "value": value, "met": met})
    return rows


def _meets(target: str, value: float) -> bool | None:
    """Whether `value` meets a stated target such as '>= 1.0' or '<= 1.0 ms'."""
    if not target:
        return None
    op, number = target.split()[:2]
    return value >= float(number) if op == ">=" else value <= float(number)


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

    def compare(top: str, bottom: str, what: str, route: str, conns: int, least: str = "") -> None:
        """A req/s ratio row; `least` is the target (">= 1.0") if it has one."""
        value = _ratio(rps(top, route, conns), rps(bottom, route, conns))
        met = None if value is None else _meets(least, value)
        rows.append(_row(f"{what} req/s, {route}, {conns} conn", value, least, met))

    widest = max(connections)  # one connection cannot use a second worker
    for route in routes:
        for conns in connections:
            compare("gateway", "aiohttp", "gateway / aiohttp floor", route, conns, ">= 1.0")
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
            compare("httpx", "aiohttp", "httpx floor / aiohttp floor", route, conns)
        for conns in connections:
            # Below 1.1, noise could pass for scaling.
            least = ">= 1.1 (scales)" if conns == widest else ""
            compare("gateway-w2", "gateway", "gateway 2 workers / 1 worker", route, conns, least)
        for conns in connections:
            compare(
                "gateway-redis",
                "aiohttp",
                "gateway on Redis / aiohttp floor",
                route,
                conns,
                ">= 1.0",
            )
        for conns in connections:
            least = ">= 1.6" if conns == widest else ""  # two replicas on one Redis
            compare(
                "gateway-redis-w2", "gateway-redis", "Redis: 2 replicas / 1", route, conns, least
            )
    return rows


def report(document: dict[str, Any], out: Any) -> None:
    """The human-readable table and ratios."""
    print(
        f"\nupstream: {document['upstream']}; load: {document['loader']}, "
        f"{document['duration_s']} s per point after {document['warmup_s']} s warm-up, "
        f"median of {document['rounds']} interleaved round(s); "
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
        "--rounds",
        type=int,
        default=1,
        help="interleaved rounds over every target; figures are medians (default 1)",
    )
    parser.add_argument(
        "--routes",
        default="products",
        help=f"comma-separated, from {','.join(ROUTES)} (default products)",
    )
    parser.add_argument(
        "--targets",
        default=",".join(DEFAULT_TARGETS),
        help=f"comma-separated subset of {','.join(TARGETS)} (default {','.join(DEFAULT_TARGETS)})",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="Redis for the gateway-redis targets (e.g. redis://127.0.0.1:6379/0); their keys go "
        "under a prefix of their own, deleted afterwards",
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
    args = parser.parse_args(argv)
    args.connections = [int(n) for n in args.connections.split(",") if n.strip()]
    args.routes = [r.strip() for r in args.routes.split(",") if r.strip()]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if any("=" not in pair for pair in args.gateway_env):
        parser.error("--gateway-env takes NAME=VALUE")
    args.gateway_env = dict(pair.split("=", 1) for pair in args.gateway_env)
    if {"OCGW_STORE", "OCGW_REDIS_PREFIX"} & args.gateway_env.keys():
        # One store for several targets would make them replicas of one another.
        parser.error("each target has a store of its own: for Redis, use --redis URL")
    unknown = [r for r in args.routes if r not in ROUTES] + [
        t for t in args.targets if t not in TARGETS
    ]
    if unknown:
        parser.error(f"unknown route or target: {', '.join(unknown)}")
    if args.duration < 1 or args.warmup < 0 or args.rounds < 1:
        parser.error("--duration and --rounds must be >= 1 and --warmup >= 0 (whole seconds)")
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
    skipped: dict[str, str] = {}
    running: dict[str, tuple[subprocess.Popen | None, str]] = {}
    for name in args.targets:
        process, base = None, upstream
        try:
            if name != "direct":
                process, port = start_target(
                    processes,
                    name,
                    upstream,
                    run,
                    gateway,
                    args.gateway_env,
                    args.redis,
                )
                base = f"http://127.0.0.1:{port}"
            for route in args.routes:
                body = wait_ready(processes, name, process, base + ROUTES[route], auth)
                if body != expected[route]:
                    notes.append(
                        f"{LABELS[name]} answered {route} with a body different from the upstream's"
                    )
            running[name] = (process, base)
        except Skip as exc:
            skipped[name] = str(exc)
            print(f"[bench] {LABELS[name]}: skipped: {exc}", file=log)
            if process is not None:
                processes.stop(process)
    # Interleaved rounds: every target is measured once per round, so a noisy minute on the
    # machine hits all of them alike; each figure is the median over the rounds.
    rounds: list[list[Measurement]] = []
    for number in range(args.rounds):
        measured: list[Measurement] = []
        for name, (process, base) in list(running.items()):
            try:
                for route in args.routes:
                    for conns in args.connections:
                        wait_quiet()  # the previous target may still be delivering events
                        numbers = measure(
                            loader, base + ROUTES[route], token, conns, args.duration, args.warmup
                        )
                        if process is not None and process.poll() is not None:
                            raise Skip(f"died during the run: {processes.log_tail(name)}")
                        m = Measurement(name, route, conns, *numbers)
                        measured.append(m)
                        print(
                            f"[bench] round {number + 1} {LABELS[name]:<20} {route:<9} "
                            f"c={conns:<3} {m.rps:>9,.0f} req/s  p50 {m.p50_ms:7.2f} ms  "
                            f"p99 {m.p99_ms:7.2f} ms",
                            file=log,
                        )
            except Skip as exc:
                skipped[name] = str(exc)
                print(f"[bench] {LABELS[name]}: skipped: {exc}", file=log)
                del running[name]
                if process is not None:
                    processes.stop(process)
        rounds.append(measured)
    for process, _ in running.values():
        if process is not None:
            processes.stop(process)
    rounds = [[m for m in measured if m.target in running] for measured in rounds]
    results = _medians(rounds)
    return {
        "upstream": upstream_kind,
        "loader": "wrk -t1" if loader == "wrk" else "bench/load.py (Python, aiohttp)",
        "cpus": os.cpu_count(),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "results": [asdict(m) for m in results],
        "ratios": _median_rows([ratios(r, args.routes, args.connections) for r in rounds]),
        "skipped": skipped,
        "notes": notes,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
        if args.redis:
            drop(args.redis, REDIS_PREFIX)
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
