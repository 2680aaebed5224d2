"""The batch file: records appended to a plain part file page by page, then gzipped once.

The gzip is deterministic (no name, no timestamp), so the same records always give the same
bytes and MD5, and a rerun re-uploads an identical file under the same batch id.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path


def part_path(out: Path) -> Path:
    return out.with_name(out.name + ".part")


def append(part: Path, lines: list[bytes], keep: int) -> int:
    """Cut the part file back to `keep` bytes (dropping a half-written page), append `lines`
    durably, and return the new length."""
    with open(part, "ab") as file:
        file.truncate(keep)
        file.seek(keep)
        file.writelines(lines)
        file.flush()
        os.fsync(file.fileno())
        return file.tell()


def compress(part: Path, out: Path) -> tuple[str, int]:
    """Gzip the part file into `out`; return its hex MD5 and size."""
    with open(part, "rb") as source, open(out, "wb") as target:
        with gzip.GzipFile(filename="", mode="wb", fileobj=target, mtime=0) as zipped:
            shutil.copyfileobj(source, zipped)
        target.flush()
        os.fsync(target.fileno())
    return checksum(out), out.stat().st_size


def checksum(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
