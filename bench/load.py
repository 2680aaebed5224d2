"""Fallback load generator for the proxy benchmark, used only when wrk is not installed.

N keep-alive connections (aiohttp client, one task per connection) hammer one URL for a fixed
time and print one JSON line: requests/s and p50/p99 latency. It runs in its own process, so it
competes with the target for the machine's cores: absolute numbers come out lower than wrk's, but
every target pays the same tax, so the ratios between targets still stand.

`python bench/load.py --url http://127.0.0.1:8000/v1/me/products --connections 64 --duration 5`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


async def _connection(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], until: float, stats: dict
) -> None:
    clock = time.perf_counter
    while (started := clock()) < until:
        try:
            async with session.get(url, headers=headers, allow_redirects=False) as response:
                await response.read()
                if response.status >= 400:
                    stats["non_2xx"] += 1
        except (TimeoutError, aiohttp.ClientError):
            stats["errors"] += 1
            continue
        stats["latencies"].append(clock() - started)


async def run(
    url: str, headers: dict[str, str], connections: int, duration: float, warmup: float
) -> dict:
    """Load `url` for `warmup` (discarded) then `duration` seconds; return the measurement."""
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:
        for seconds in (warmup, duration):  # the warm-up round is discarded
            stats: dict = {"latencies": [], "errors": 0, "non_2xx": 0}
            started = time.perf_counter()
            until = started + seconds
            await asyncio.gather(
                *(_connection(session, url, headers, until, stats) for _ in range(connections))
            )
            elapsed = time.perf_counter() - started
    latencies = sorted(stats["latencies"])
    return {
        "requests": len(latencies),
        "errors": stats["errors"],
        "non_2xx": stats["non_2xx"],
        "rps": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    args = parser.parse_args()
    headers = dict(line.split(":", 1) for line in args.header)
    headers = {name.strip(): value.strip() for name, value in headers.items()}
    try:
        from uvloop import run as run_loop
    except ImportError:
        from asyncio import run as run_loop
    result = run_loop(run(args.url, headers, args.connections, args.duration, args.warmup))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
