"""What tracking and decisions add to a proxied call, measured through real gateway processes.

    .venv/bin/python bench/hooks.py [--rounds 3] [--seconds 3]

Four `ocgateway serve` processes sit in front of the same static upstream (bench/proxy.py's):
plain (tracking off, no tables), tracked (tracking on, JSON lines destination), decided (a table
rewrites every me/products query) and pinned (a table pins and re-orders IDs). One client
connection (wrk when installed, else bench/load.py) loads each target in turn, in interleaved
rounds so machine noise hits every target alike; the median p50 of each is compared with the plain
gateway's for the same call:
- tracking: `GET /v1/me/products/prod-001` (a tracked product view) on tracked vs plain;
- decisions: `GET /v1/me/products` on decided / pinned vs plain.
Targets (issues 3 and 4): each adds at most 0.5 ms p50.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen  # noqa: E402
from processes import Processes, start_upstream, wait_ready  # noqa: E402
from proxy import gateway_command, start_target  # noqa: E402
from signing import buyer_token, public_jwk, signing_key  # noqa: E402

TABLES = {
    "decided": """
segments:
  registered: { anonymous: false }
tables:
  - id: bench
    applies_to: me/products
    rules:
      - id: popular-first
        when: { segment: registered }
        then: { sortBy: "!xp.popularity", filters: { xp.sale: "true|false" } }
""",
    "pinned": """
segments:
  registered: { anonymous: false }
tables:
  - id: bench
    applies_to: me/products
    rules:
      - id: pins
        when: { segment: registered }
        then: { pin: [prod-005, prod-003, prod-001, prod-009] }
""",
}


def measure(
    targets: dict[str, str],
    calls: dict[str, str],
    token: str,
    loader: str,
    rounds: int,
    seconds: int,
) -> dict[str, list[tuple[float, float]]]:
    """(p50, p99) per round for every target × call; rounds interleave the targets."""
    keys = [(t, c) for t in targets for c in calls]
    results: dict[str, list[tuple[float, float]]] = {f"{t}:{c}": [] for t, c in keys}
    for number in range(rounds):
        for target, call in keys:
            _, p50, p99, errors, non_2xx = loadgen.measure(
                loader, targets[target] + calls[call], token, 1, seconds, 1 if number == 0 else 0
            )
            if errors or non_2xx:
                raise RuntimeError(f"{target} {calls[call]}: {errors} errors, {non_2xx} non-2xx")
            results[f"{target}:{call}"].append((p50, p99))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median taken)")
    parser.add_argument("--seconds", type=int, default=3, help="load per target, call and round")
    parser.add_argument("--loader", choices=["auto", "wrk", "python"], default="auto")
    args = parser.parse_args(argv)
    gateway = gateway_command(None)
    if gateway is None:
        print("ocgateway not found next to this Python or on PATH", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="ocgw-hooks-") as tmp:
        run = Path(tmp)
        run.chmod(0o755)  # nginx workers run unprivileged
        processes = Processes(run)
        try:
            key = signing_key()
            upstream, kind = start_upstream(processes, run, public_jwk(key), False)
            token = buyer_token(key, upstream)
            settings = {
                "plain": {},
                "tracked": {"OCGW_TRACKING": "true", "OCGW_EVENTS_FILE": str(run / "events.jsonl")},
            }
            for name, text in TABLES.items():
                (run / f"{name}.yaml").write_text(text)
                settings[name] = {"OCGW_DECISIONS": str(run / f"{name}.yaml")}
            targets = {}
            for name, env in settings.items():
                process, port = start_target(processes, name, upstream, run, gateway, env)
                base = f"http://127.0.0.1:{port}"
                wait_ready(processes, name, process, base + "/healthz", {})
                targets[name] = base
            calls = {"view": "/v1/me/products/prod-001", "list": "/v1/me/products"}
            loader = (
                args.loader
                if args.loader != "auto"
                else ("wrk" if shutil.which("wrk") else "python")
            )
            results = measure(targets, calls, token, loader, args.rounds, args.seconds)
        finally:
            processes.stop_all()
    p50 = {key: statistics.median(v[0] for v in values) for key, values in results.items()}
    p99 = {key: statistics.median(v[1] for v in values) for key, values in results.items()}
    print(
        f"upstream: {kind}; load: {loader}, one connection, {args.rounds} interleaved rounds of "
        f"{args.seconds} s per row (median shown); {os.cpu_count()} CPUs\n"
    )
    print(f"{'gateway':<10} {'call':<28} {'p50 ms':>8} {'p99 ms':>8}")
    for key in results:
        target, call = key.split(":")
        print(f"{target:<10} {calls[call]:<28} {p50[key]:>8.3f} {p99[key]:>8.3f}")
    print("\nadded p50 latency over the plain gateway (target <= 0.5 ms):")
    rows = [
        ("tracking", "tracked:view", "plain:view"),
        ("decision (rewrite)", "decided:list", "plain:list"),
        ("decision (pin + re-order)", "pinned:list", "plain:list"),
    ]
    for label, measured, baseline in rows:
        added = p50[measured] - p50[baseline]
        verdict = "met" if added <= 0.5 else "NOT met"
        print(f"  {label:<26} {added:+.3f} ms  ({p50[measured] / p50[baseline]:.2f}x)  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
