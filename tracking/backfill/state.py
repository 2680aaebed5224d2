"""The small JSON file beside the output that makes a killed backfill resumable.

It is rewritten atomically (temporary file, fsync, rename) after every finished step, so after a
crash it names the last step that completed and never one that only half happened.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(slots=True)
class BackfillState:
    since: str
    until: str
    batch_id: str
    pages_done: int = 0
    orders_read: int = 0
    records_written: int = 0
    part_bytes: int = 0  # the records file's length after the last finished page
    file_written: bool = False
    checksum: str | None = None  # hex MD5 of the gzip file
    size: int | None = None
    upload_href: str | None = None
    upload_expiry: str | None = None
    uploaded: bool = False


def state_path(out: Path) -> Path:
    return out.with_name(out.name + ".state.json")


def load(path: Path) -> BackfillState | None:
    """The saved state, or None when there is none (or it is unreadable: then start over)."""
    try:
        return BackfillState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def save(path: Path, state: BackfillState) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w") as file:
        json.dump(asdict(state), file, indent=1)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
