"""One backfill run: read orders into the batch file, upload it, wait for CDP to load it.

Each step records its result in the state file before the next starts, so a run that was
killed continues from the last finished step: pages already read are not read again, a written
file is not rewritten, and an allocated upload location is reused while it is valid.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from tracking.backfill import batchfile, records
from tracking.backfill.cdpbatch import BatchClient, BatchError, BatchStatus, Location
from tracking.backfill.ordercloud import OrderSource
from tracking.backfill.progress import Progress
from tracking.backfill.state import BackfillState, load, save, state_path

_NAMESPACE = uuid.UUID("9b7e2c14-0d3a-4f61-8a2e-5c9f1b7d3e08")
_LOCATION_MARGIN = timedelta(minutes=5)  # do not start an upload this close to the expiry


@dataclass(frozen=True, slots=True)
class BackfillJob:
    out: Path
    since: str  # ISO 8601 UTC, inclusive
    until: str | None  # exclusive; None: now, fixed when the run starts
    dry_run: bool = False
    poll_interval: float = 5.0
    poll_timeout: float = 3600.0


@dataclass(slots=True)
class Summary:
    orders_read: int = 0
    records_written: int = 0
    bytes: int = 0
    batch_id: str = ""
    status: str = ""
    resumed: bool = False
    errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"orders read      {self.orders_read}",
            f"records written  {self.records_written}",
            f"bytes (gzip)     {self.bytes}",
            f"batch id         {self.batch_id}",
            f"status           {self.status}{' (resumed)' if self.resumed else ''}",
        ]
        out += [f"error            {error}" for error in self.errors]
        return out


def batch_id(source_url: str, since: str, until: str) -> str:
    """The batch UUID for one OrderCloud marketplace and window: a rerun reuses it."""
    return str(uuid.uuid5(_NAMESPACE, f"{source_url}|{since}|{until}"))


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Backfill:
    def __init__(
        self,
        job: BackfillJob,
        source: OrderSource,
        batch: BatchClient | None,
        config: records.RecordConfig,
        stream: TextIO,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`batch` may be None only for a dry run."""
        self.job = job
        self.source = source
        self.batch = batch
        self.config = config
        self.stream = stream
        self.sleep = sleep
        self.state_file = state_path(job.out)
        self.part = batchfile.part_path(job.out)

    def run(self) -> Summary:
        state, resumed = self._start()
        summary = Summary(batch_id=state.batch_id, resumed=resumed)
        if not state.file_written:
            self._read(state)
        summary.orders_read, summary.records_written = state.orders_read, state.records_written
        summary.bytes = state.size or 0
        if self.job.dry_run:
            self.state_file.unlink(missing_ok=True)
            summary.status = "dry run: file written, nothing uploaded"
            return summary
        assert self.batch is not None, "a batch client is needed unless it is a dry run"
        if not state.uploaded:
            self._upload(state)
        status = self._wait(state.batch_id)
        summary.status = status.code
        if status.finished:
            self.state_file.unlink(missing_ok=True)
        else:
            summary.errors.append(
                f"still {status.code} after {self.job.poll_timeout:.0f} s; run again to keep waiting"
            )
        if status.finished and not status.succeeded:
            log = self.batch.error_log(status).strip()
            summary.errors.extend(log.splitlines()[:20] or ["the batch failed without a log"])
        return summary

    def _start(self) -> tuple[BackfillState, bool]:
        """The saved state if it is for this window and its files are intact, else a new one."""
        saved = load(self.state_file)
        if (
            saved is not None
            and saved.since == self.job.since
            and self.job.until in (None, saved.until)
            and self._intact(saved)
        ):
            return saved, True
        until = self.job.until or iso_utc(datetime.now(UTC))
        state = BackfillState(
            since=self.job.since,
            until=until,
            batch_id=batch_id(self.source.config.base_url, self.job.since, until),
        )
        self.part.unlink(missing_ok=True)
        save(self.state_file, state)
        return state, False

    def _intact(self, state: BackfillState) -> bool:
        if state.file_written:
            out = self.job.out
            return out.exists() and batchfile.checksum(out) == state.checksum
        size = self.part.stat().st_size if self.part.exists() else 0
        return size >= state.part_bytes

    def _read(self, state: BackfillState) -> None:
        progress = Progress(self.stream, "orders", self.source.config.page_size)
        page = state.pages_done
        while True:
            page += 1
            listed = self.source.orders(state.since, state.until, page)
            lines = []
            for number, order in enumerate(listed.orders, start=1):
                record = records.order_record(order, self.source.lines(order["ID"]), self.config)
                lines.append(records.encode(record))
                progress.update(state.orders_read + number, listed.total_count)
            state.part_bytes = batchfile.append(self.part, lines, state.part_bytes)
            state.pages_done = page
            state.orders_read += len(listed.orders)
            state.records_written += len(lines)
            save(self.state_file, state)
            if page >= listed.total_pages:
                break
        progress.close()
        state.checksum, state.size = batchfile.compress(self.part, self.job.out)
        state.file_written = True
        save(self.state_file, state)
        self.part.unlink(missing_ok=True)

    def _upload(self, state: BackfillState) -> None:
        assert self.batch is not None and state.checksum is not None and state.size is not None
        location = Location(state.upload_href or "", state.upload_expiry)
        if not state.upload_href or not _still_valid(state.upload_expiry):
            location = self.batch.allocate(state.batch_id, state.checksum, state.size)
            state.upload_href, state.upload_expiry = location.href, location.expiry
            save(self.state_file, state)
        try:
            self.batch.upload(location, self.job.out.read_bytes(), state.checksum)
        except BatchError:
            state.upload_href = state.upload_expiry = None  # a rerun asks for a fresh location
            save(self.state_file, state)
            raise
        state.uploaded = True
        save(self.state_file, state)

    def _wait(self, batch_id: str) -> BatchStatus:
        assert self.batch is not None
        deadline = time.monotonic() + self.job.poll_timeout
        while True:
            status = self.batch.status(batch_id)
            if status.finished or time.monotonic() >= deadline:
                return status
            self.stream.write(f"batch {batch_id}: {status.code}\n")
            self.stream.flush()
            self.sleep(self.job.poll_interval)


def _still_valid(expiry: str | None) -> bool:
    if not expiry:
        return True  # none given: try it (a refused upload clears it, so a rerun reallocates)
    try:
        moment = datetime.fromisoformat(expiry.replace("Z", "+00:00"))
    except ValueError:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment - _LOCATION_MARGIN > datetime.now(UTC)
