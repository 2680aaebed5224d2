"""What Prometheus metrics add to a proxied call.

1. `RequestMetrics.observe()` alone, per call: in one process and in multiprocess mode (the
   memory-mapped files `--workers N` uses).
2. The same call through `ocgateway serve` with `OCGW_METRICS=true` and `false`: wrk (or
   bench/load.py) at 1 connection, interleaved rounds, p50 and requests/s.

`python bench/metrics_cost.py [--rounds 3] [--duration 5]`
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.serving import serve_in_thread
from tests.fake_upstream import FakeUpstream
from tests.servers import gateway_process

MICRO = """
import timeit
from gateway.metrics import RequestMetrics
m = RequestMetrics()
n = 200_000
t = min(timeit.repeat(lambda: m.observe("GET", "/v1/me/products/{product}", 200, 0.0012),
        number=n, repeat=3))
print(t / n * 1e6)
"""


def micro(multiprocess: bool) -> float:
    """Microseconds per observe()."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    folder = tempfile.mkdtemp() if multiprocess else None
    if folder:
        env["PROMETHEUS_MULTIPROC_DIR"] = folder
    try:
        out = subprocess.run(
            [sys.executable, "-c", MICRO], env=env, capture_output=True, text=True, check=True
        )
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
    return float(out.stdout.strip())


def load(url: str, duration: float) -> dict[str, float]:
    if shutil.which("wrk"):
        out = subprocess.run(
            ["wrk", "-t1", "-c1", f"-d{max(1, round(duration))}s", "--latency", url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
        assert p50, out
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p50.group(2)]
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        return {"p50_ms": float(p50.group(1)) * scale, "rps": rps}
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench/load.py"), "--url", url, "--duration", str(duration)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(out)
    return {"p50_ms": result["p50_ms"], "rps": result["rps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    print(json.dumps({"observe_us": {"one_process": micro(False), "multiprocess": micro(True)}}))
    results: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    with serve_in_thread(FakeUpstream()) as upstream, tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for mode in ("off", "on"):
                env = {
                    "OCGW_UPSTREAM_URL": upstream,
                    "OCGW_STORE": str(Path(tmp) / f"{mode}{round_}.db"),
                    "OCGW_TRACKING": "false",
                    "OCGW_METRICS": "true" if mode == "on" else "false",
                    "OCGW_LOG_LEVEL": "warning",
                }
                with gateway_process(env) as (gateway, _):
                    url = gateway + "/v1/me/products/p-001"
                    load(url, 1.0)  # warm up
                    results[mode].append(load(url, args.duration))
    summary = {
        mode: {
            "p50_ms": sorted(r["p50_ms"] for r in rows)[len(rows) // 2],
            "rps": sorted(r["rps"] for r in rows)[len(rows) // 2],
        }
        for mode, rows in results.items()
    }
    summary["added_p50_ms"] = round(summary["on"]["p50_ms"] - summary["off"]["p50_ms"], 3)
    print(json.dumps({"rounds": results, "median": summary}, indent=1))


if __name__ == "__main__":
    main()
