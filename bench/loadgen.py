"""Load for a benchmark: wrk when installed, else bench/load.py; both read back as one
Measurement."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass

from processes import BENCH, Skip


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
