"""`ocgateway events ...`: look at and repair the outbox from the command line.

They open the SQLite file directly (WAL lets them run next to a live gateway).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from gateway.settings import Settings, load_settings
from tracking import outbox
from tracking.store import connect


def register(subparsers: Any) -> None:
    """Add the `events` command group; each sets `func(args, settings=None)`."""
    events = subparsers.add_parser("events", help="tracking outbox: stats, tail, replay")
    commands = events.add_subparsers(dest="events_command", required=True)

    stats = commands.add_parser(
        "stats", help="pending, delivered and dead deliveries per destination"
    )
    _store_option(stats)
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    stats.set_defaults(func=run_stats)

    tail = commands.add_parser("tail", help="show recent events (and follow with -f)")
    _store_option(tail)
    tail.add_argument("-n", type=int, default=10, help="how many recent events (default 10)")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    tail.set_defaults(func=run_tail)

    replay = commands.add_parser("replay", help="requeue dead deliveries (same event ids)")
    _store_option(replay)
    replay.add_argument(
        "--dead", action="store_true", required=True, help="requeue dead deliveries"
    )
    replay.add_argument(
        "--destination", help="only this destination (cdp, send, discover, webhook, file)"
    )
    replay.set_defaults(func=run_replay)


def _store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store", type=Path, default=None, help="SQLite store (default OCGW_STORE)"
    )


def _store(args: argparse.Namespace, settings: Settings | None) -> Path:
    if args.store is not None:
        return Path(args.store)
    return (settings or load_settings()).store


def _open(args: argparse.Namespace, settings: Settings | None) -> Any:
    path = _store(args, settings)
    if not path.exists():
        raise SystemExit(f"no store at {path}")
    return connect(path)


def run_stats(args: argparse.Namespace, settings: Settings | None = None) -> int:
    conn = _open(args, settings)
    try:
        table = outbox.stats(conn)
    finally:
        conn.close()
    if args.json:
        print(json.dumps(table, sort_keys=True))
        return 0
    print(f"{'destination':<12} {'pending':>10} {'delivered':>10} {'dead':>8}")
    for dest in sorted(table):
        row = table[dest]
        print(f"{dest:<12} {row['pending']:>10} {row['delivered']:>10} {row['dead']:>8}")
    return 0


def run_tail(args: argparse.Namespace, settings: Settings | None = None) -> int:
    conn = _open(args, settings)
    try:
        last = 0
        for seq, event in outbox.recent(conn, args.n):
            _print(event)
            last = seq
        while args.follow:
            time.sleep(0.5)
            for seq, event in outbox.recent(conn, 1000, after=last):
                _print(event)
                last = seq
    except KeyboardInterrupt:
        pass
    finally:
        conn.close()
    return 0


def run_replay(args: argparse.Namespace, settings: Settings | None = None) -> int:
    conn = _open(args, settings)
    try:
        count = outbox.requeue_dead(conn, time.time(), args.destination)
    finally:
        conn.close()
    print(f"requeued {count} dead deliveries")
    return 0


def _print(event: Any) -> None:
    print(f"{event.time} {event.type:<22} {event.visitor or '-':<28} {event.id}")
    sys.stdout.flush()
