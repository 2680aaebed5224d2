"""`ocgateway tables …` and `ocgateway experiments report`: offline tools over tables and the store.

Each subcommand sets `func(args, settings=None) -> int` (the exit code) on its parser; the gateway
CLI calls it with the settings it loaded, and a standalone caller may leave them out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from decisions.compile import compile_document, validate
from decisions.errors import ValidationFailed
from decisions.experiments import format_report, report
from decisions.loader import parse_text, read_source
from decisions.models import json_schema
from decisions.service import DecisionService
from decisions.store import Version, VersionStore
from gateway.settings import ConfigError, Settings, load_settings
from tracking.profiles import Profile, ProfileStore

ProfilesFactory = Callable[[Settings], ProfileStore]


class _NoProfiles:
    """Stand-in when the CLI has no profile store: every visitor is unknown."""

    async def get(self, visitor_id: str) -> Profile | None:
        return None

    async def put(self, profile: Profile) -> None:
        return None


def register(subparsers: Any, profiles_factory: ProfilesFactory | None = None) -> None:
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
    explain.set_defaults(
        func=lambda args, settings=None: explain_command(args, settings, profiles_factory)
    )

    schema = sub.add_parser("schema", help="print the JSON Schema of a tables document")
    schema.set_defaults(func=schema_command)

    experiments = subparsers.add_parser("experiments", help="experiment exposures and conversions")
    esub = experiments.add_subparsers(dest="experiments_command", required=True)
    rep = esub.add_parser("report", help="exposures, conversions and revenue per variant")
    rep.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rep.set_defaults(func=report_command)


def schema_command(args: argparse.Namespace, settings: Settings | None = None) -> int:
    print(json_schema(), end="")
    return 0


def _settings() -> Settings | None:
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


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


def explain_command(
    args: argparse.Namespace,
    settings: Settings | None = None,
    profiles_factory: ProfilesFactory | None = None,
) -> int:
    settings = settings or _settings()
    if settings is None:
        return 2
    headers = dict(h.split(":", 1) for h in args.header if ":" in h)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    now = datetime.fromisoformat(args.at).timestamp() if args.at else None
    segments = [s.strip() for s in args.segments.split(",") if s.strip()]
    profiles = profiles_factory(settings) if profiles_factory else _NoProfiles()

    async def run() -> dict[str, Any]:
        service = DecisionService(settings, profiles, _discard)
        try:
            # The live version is the newest stored one; without a store, the tables file.
            latest = None if args.tables else await asyncio.to_thread(_latest, settings.store)
            if latest is not None:
                document = validate(parse_text(latest.source))
                service.live = compile_document(document, latest.version)
            elif args.tables or settings.decisions:
                _, parsed = read_source(args.tables or settings.decisions)
                service.live = compile_document(validate(parsed), 0)
            return await service.explain(args.visitor, args.url, segments, headers, now)
        finally:
            await service.stop()

    try:
        result = asyncio.run(run())
    except ValidationFailed as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 1 if "error" in result else 0


def _latest(path: Path) -> Version | None:
    """The newest stored version, without creating a store that is not there."""
    if not path.exists():
        return None
    try:
        return VersionStore(path).latest()
    except sqlite3.Error:  # a store the gateway has not initialised yet
        return None


async def _discard(event: dict[str, Any]) -> None:
    return None


def report_command(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or _settings()
    if settings is None:
        return 2
    store = VersionStore(settings.store)
    store.open()
    rows = report(store)
    print(json.dumps(rows, indent=2) if args.json else format_report(rows))
    return 0
