"""`ocgateway backfill --since DATE [--until DATE] [--dry-run] [--out FILE]`."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from gateway.settings import Settings
from tracking.backfill.cdpbatch import BatchClient, BatchConfig, BatchError
from tracking.backfill.ordercloud import OrderCloudConfig, OrderCloudError, OrderSource
from tracking.backfill.records import RecordConfig
from tracking.backfill.run import Backfill, BackfillJob, iso_utc


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "backfill", help="load submitted OrderCloud orders into CDP with the Batch API"
    )
    parser.add_argument("--since", required=True, type=_date, help="first day (or ISO time), UTC")
    parser.add_argument("--until", type=_date, help="end, exclusive (default: now)")
    parser.add_argument("--dry-run", action="store_true", help="write the gzip file only")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("cdp-orders.jsonl.gz"),
        help="the batch file; its resume state sits beside it (default cdp-orders.jsonl.gz)",
    )
    parser.set_defaults(func=run_command)


def _date(text: str) -> str:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use YYYY-MM-DD)") from None
    return iso_utc(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _missing(settings: Settings, dry_run: bool) -> list[str]:
    needed = {"admin_client_id": settings.admin_client_id}
    needed["admin_client_secret"] = settings.admin_client_secret
    if not dry_run:
        needed["cdp_client_key"] = settings.cdp_client_key
        needed["cdp_api_token"] = settings.cdp_api_token
        needed["cdp_batch_url"] = settings.cdp_batch_url or settings.cdp_url
    return ["OCGW_" + name.upper() for name, value in needed.items() if not value]


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    missing = _missing(settings, args.dry_run)
    if missing:
        print(f"ocgateway backfill: set {', '.join(missing)}", file=sys.stderr)
        return 2
    config = RecordConfig(
        channel=settings.cdp_channel,
        pos=settings.point_of_sale,
        product_fields=settings.product_fields,
    )
    job = BackfillJob(
        out=args.out,
        since=args.since,
        until=args.until,
        dry_run=args.dry_run,
        poll_interval=settings.backfill_poll_interval,
        poll_timeout=settings.backfill_poll_timeout,
    )
    with httpx.Client() as http:
        source = OrderSource(
            OrderCloudConfig(
                base_url=settings.upstream,
                client_id=str(settings.admin_client_id),
                client_secret=str(settings.admin_client_secret),
                page_size=settings.backfill_page_size,
            ),
            http,
        )
        batch = None
        if not args.dry_run:
            base = str(settings.cdp_batch_url or settings.cdp_url).rstrip("/")
            batch = BatchClient(
                BatchConfig(base, str(settings.cdp_client_key), str(settings.cdp_api_token)), http
            )
        try:
            summary = Backfill(job, source, batch, config, sys.stdout).run()
        except (OrderCloudError, BatchError, httpx.HTTPError) as exc:
            print(f"ocgateway backfill: {exc} (run again to resume)", file=sys.stderr)
            return 1
    print("\n".join(summary.lines()))
    return 1 if summary.errors else 0
