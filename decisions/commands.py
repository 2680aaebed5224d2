"""`ocgateway tables …` and `ocgateway experiments report`: offline tools over tables and the store.

Each subcommand sets `func(args, settings) -> int` (the exit code) on its parser; the gateway CLI
calls it with the settings it loaded and opens the state through the function it registered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from decisions.compile import compile_document, validate
from decisions.errors import ValidationFailed
from decisions.experiments import format_report
from decisions.loader import parse_text, read_source
from decisions.models import json_schema
from decisions.service import DecisionsConfig, DecisionService
from gateway.settings import Settings
from state import State

OpenStore = Callable[[Settings], Awaitable[State]]


def register(subparsers: Any, open_store: OpenStore) -> None:
    """Add `tables` and `experiments` to the gateway CLI's subparsers."""
    tables = subparsers.add_parser("tables", help="decision tables: validate, explain, schema")
    sub = tables.add_subparsers(dest="tables_command", required=True)

    check = sub.add_parser("validate", help="check a tables file or folder offline")
    check.add_argument("file", type=Path)
    check.set_defaults(func=validate_command)

    explain = sub.add_parser("explain", help="what would this shopper get for this call, and why")
    explain.add_argument("url", help="e.g. '/v1/me/products?search=watch'")
    explain.add_argument("--visitor", help="visitor id (anon-{orderid} or {buyer}-{user})")
    explain.add_argument("--segments", default="", help="comma-separated segments to add")
    explain.add_argument(
        "--header", action="append", default=[], help="'Name: value' request header"
    )
    explain.add_argument("--at", help="evaluate at this ISO time (default: now)")
    explain.add_argument(
        "--tables", type=Path, help="evaluate this file instead of the live version"
    )
    explain.set_defaults(func=lambda args, settings: explain_command(args, settings, open_store))

    schema = sub.add_parser("schema", help="print the JSON Schema of a tables document")
    schema.set_defaults(func=schema_command)

    experiments = subparsers.add_parser("experiments", help="experiment exposures and conversions")
    esub = experiments.add_subparsers(dest="experiments_command", required=True)
    rep = esub.add_parser("report", help="exposures, conversions and revenue per variant")
    rep.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rep.set_defaults(func=lambda args, settings: report_command(args, settings, open_store))


def schema_command(args: argparse.Namespace, settings: Settings | None = None) -> int:
    print(json_schema(), end="")
    return 0


def validate_command(args: argparse.Namespace, settings: Settings | None = None) -> int:
    try:
        _, parsed = read_source(args.file)
        document = validate(parsed)
    except ValidationFailed as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        print(f"{len(exc.errors)} error(s): not valid", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    rules = sum(len(t.rules) for t in document.tables)
    print(
        f"ok: {len(document.tables)} table(s), {rules} rule(s), {len(document.segments)} segment(s)"
    )
    return 0


def explain_command(args: argparse.Namespace, settings: Settings, open_store: OpenStore) -> int:
    headers = dict(h.split(":", 1) for h in args.header if ":" in h)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    now = datetime.fromisoformat(args.at).timestamp() if args.at else None
    segments = [s.strip() for s in args.segments.split(",") if s.strip()]

    async def run() -> dict[str, Any]:
        state = await open_store(settings)
        service = DecisionService(
            DecisionsConfig(client_key=settings.cdp_client_key),
            profiles=state.profiles,
            versions=state.versions,
        )
        try:
            # The live version is the newest stored one; without one, the tables file.
            number = None if args.tables else await state.versions.latest_number()
            latest = await state.versions.get(number) if number else None
            if latest is not None:
                document = validate(parse_text(latest.source))
                service.live = compile_document(document, latest.version)
            elif args.tables or settings.decisions:
                _, parsed = read_source(args.tables or settings.decisions)
                service.live = compile_document(validate(parsed), 0)
            return await service.explain(args.visitor, args.url, segments, headers, now)
        finally:
            await state.close()

    try:
        result = asyncio.run(run())
    except ValidationFailed as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 1 if "error" in result else 0


def report_command(args: argparse.Namespace, settings: Settings, open_store: OpenStore) -> int:
    async def run() -> list[dict[str, Any]]:
        state = await open_store(settings)
        try:
            return await state.exposures.report()
        finally:
            await state.close()

    rows = asyncio.run(run())
    print(json.dumps(rows, indent=2) if args.json else format_report(rows))
    return 0
