"""Reading table documents from YAML text, a file or a folder, keeping where every value came from.

Errors must name the file line, so each document is also composed into YAML nodes whose marks
map a validation path (("tables", 0, "rules", 2, "then")) back to a line. A folder is merged into
one document: `segments` maps are joined (a name defined twice is an error), `tables` are appended
in file-name order.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from decisions.errors import TableError, ValidationFailed

log = logging.getLogger(__name__)

Locator = Callable[[Sequence[object]], tuple[str | None, int | None]]


@dataclass(slots=True)
class Parsed:
    """Plain data from YAML plus a way back from a path in it to (file, line)."""

    data: dict[str, Any]
    locate: Locator = field(default=lambda path: (None, None))


class Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. A marketer's `search: on` or `id: off` stays a string."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _line(node: yaml.Node | None, path: Sequence[object]) -> int | None:
    """Walk the node tree along `path`; parts that are not in the tree (union tags) are skipped."""
    if node is None:
        return None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    node = value
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            node = node.value[part]
    return node.start_mark.line + 1


def parse_text(text: str, name: str | None = None) -> Parsed:
    """Parse one YAML (or JSON) document; a syntax error is reported with its line."""
    try:
        node = yaml.compose(text, Loader=Loader)
        data = yaml.load(text, Loader=Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValidationFailed([TableError(f"YAML: {problem}", file=name, line=line)]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValidationFailed([TableError("the document must be a mapping", file=name, line=1)])
    return Parsed(data, lambda path: (name, _line(node, path)))


def merge(parts: list[tuple[str, Parsed]]) -> Parsed:
    """Join several documents (a folder) into one, remembering which file each piece came from."""
    if len(parts) == 1:
        return parts[0][1]
    merged: dict[str, Any] = {"segments": {}, "tables": []}
    segment_home: dict[str, Parsed] = {}
    table_home: list[tuple[Parsed, int]] = []
    errors: list[TableError] = []
    for name, parsed in parts:
        for key in parsed.data:
            if key not in ("segments", "tables"):
                errors.append(
                    TableError(f"unknown section {key!r}", file=name, line=parsed.locate((key,))[1])
                )
        segments = parsed.data.get("segments") or {}
        tables = parsed.data.get("tables") or []
        if not isinstance(segments, dict) or not isinstance(tables, list):
            errors.append(
                TableError("segments must be a mapping and tables a list", file=name, line=1)
            )
            continue
        for seg_name, definition in segments.items():
            if seg_name in merged["segments"]:
                errors.append(
                    TableError(
                        "segment defined in two files",
                        segment=str(seg_name),
                        file=name,
                        line=parsed.locate(("segments", seg_name))[1],
                    )
                )
            merged["segments"][seg_name] = definition
            segment_home[str(seg_name)] = parsed
        for index, table in enumerate(tables):
            merged["tables"].append(table)
            table_home.append((parsed, index))
    if errors:
        raise ValidationFailed(errors)

    def locate(path: Sequence[object]) -> tuple[str | None, int | None]:
        if len(path) >= 2 and path[0] == "segments" and str(path[1]) in segment_home:
            return segment_home[str(path[1])].locate(path)
        if (
            len(path) >= 2
            and path[0] == "tables"
            and isinstance(path[1], int)
            and path[1] < len(table_home)
        ):
            home, index = table_home[path[1]]
            return home.locate(("tables", index, *path[2:]))
        return (None, None)

    return Parsed(merged, locate)


def files_of(path: Path) -> list[Path]:
    """The YAML files a settings path stands for, in a stable order."""
    if path.is_dir():
        return sorted(
            p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json") and p.is_file()
        )
    return [path]


def read_source(path: Path) -> tuple[str, Parsed]:
    """Read a file or folder: (the text to store as a version, the parsed document)."""
    files = files_of(path)
    parts = [(str(p), parse_text(p.read_text(encoding="utf-8"), str(p))) for p in files]
    if not path.is_dir():
        return files[0].read_text(encoding="utf-8"), parts[0][1]
    merged = merge(parts) if parts else Parsed({"segments": {}, "tables": []})
    return yaml.safe_dump(merged.data, sort_keys=False, allow_unicode=True), merged


def signature(path: Path) -> tuple[tuple[str, int, int], ...]:
    """What changes when an editor saves: names, mtimes and sizes."""
    try:
        return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files_of(path))
    except OSError:
        return ()


async def watch(
    path: Path,
    on_change: Callable[[], Awaitable[object]],
    interval: float = 1.0,
    seen: tuple[tuple[str, int, int], ...] | None = None,
) -> None:
    """Poll `path` and call `on_change` after each change; runs until cancelled.

    `seen` is the signature taken before the caller's own first read, so an edit made between
    that read and this task's first poll is not missed."""
    if seen is None:
        seen = await asyncio.to_thread(signature, path)
    while True:
        await asyncio.sleep(interval)
        current = await asyncio.to_thread(signature, path)
        if current != seen:
            seen = current
            try:
                await on_change()
            except Exception:  # the watcher must outlive a bad edit
                log.exception("decision tables: reload of %s failed", path)
