"""`ocgateway events ...`: look at and repair the outbox from the command line.

They open the configured state (`OCGW_STORE`, or `--store`): the SQLite file next to a live
gateway (WAL lets them), or the Redis every replica shares.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.settings import Settings
from state import State
from state.events import Event

OpenStore = Callable[[Settings], Awaitable[State]]


def register(subparsers: Any, open_store: OpenStore) -> None:
    """Add the `events` command group; each sets `func(args, settings)`."""
    events = subparsers.add_parser("events", help="tracking outbox: stats, tail, replay")
    commands = events.add_subparsers(dest="events_command", required=True)

    stats = commands.add_parser(
        "stats", help="pending, delivered and dead deliveries per destination"
    )
    _store_option(stats)
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    stats.set_defaults(func=_runner(run_stats, open_store))

    tail = commands.add_parser("tail", help="show recent events (and follow with -f)")
    _store_option(tail)
    tail.add_argument("-n", type=int, default=10, help="how many recent events (default 10)")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    tail.set_defaults(func=_runner(run_tail, open_store))

    replay = commands.add_parser("replay", help="requeue dead deliveries (same event ids)")
    _store_option(replay)
    replay.add_argument(
        "--dead", action="store_true", required=True, help="requeue dead deliveries"
    )
    replay.add_argument(
        "--destination", help="only this destination (cdp, send, discover, webhook, file)"
    )
    replay.set_defaults(func=_runner(run_replay, open_store))


def _store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default=None, help="SQLite file or redis:// URL (OCGW_STORE)")


def _runner(
    command: Callable[[argparse.Namespace, State], Awaitable[int]], open_store: OpenStore
) -> Callable[[argparse.Namespace, Settings], int]:
    def run(args: argparse.Namespace, settings: Settings) -> int:
        if args.store is not None:
            settings = settings.model_copy(update={"store": str(args.store)})

        async def main() -> int:
            state = await open_store(settings)
            try:
                return await command(args, state)
            finally:
                await state.close()

        try:
            return asyncio.run(main())
        except KeyboardInterrupt:
            return 0

    return run


async def run_stats(args: argparse.Namespace, state: State) -> int:
    table = await state.outbox.stats()
    if args.json:
        print(json.dumps(table, sort_keys=True))
        return 0
    print(f"{'destination':<12} {'pending':>10} {'delivered':>10} {'dead':>8}")
    for dest in sorted(table):
        row = table[dest]
        print(f"{dest:<12} {row['pending']:>10} {row['delivered']:>10} {row['dead']:>8}")
    return 0


async def run_tail(args: argparse.Namespace, state: State) -> int:
    last: str | None = None
    for cursor, event in await state.outbox.recent(args.n):
        _print(event)
        last = cursor
    while args.follow:
        await asyncio.sleep(0.5)
        for cursor, event in await state.outbox.recent(1000, after=last):
            _print(event)
            last = cursor
    return 0


async def run_replay(args: argparse.Namespace, state: State) -> int:
    count = await state.outbox.replay_dead(args.destination)
    print(f"requeued {count} dead deliveries")
    return 0


def _print(event: Event) -> None:
    print(f"{event.time} {event.type:<22} {event.visitor or '-':<28} {event.id}")
    sys.stdout.flush()
