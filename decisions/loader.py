"""Reading table documents from YAML text, a file or a folder, keeping where every value came from.

Errors must name the file line: when a document fails validation it is composed into YAML nodes
whose marks map a validation path (("tables", 0, "rules", 2, "then")) back to a line. A folder is
merged into one document: `segments` maps are joined (a name defined twice is an error), `tables`
are appended in file-name order.

Every document, from the tables file or the admin API, goes through `parse_text`, which enforces
the limits below before the YAML parser builds anything: libyaml composes nested collections by
recursing in C, and pydantic expands every alias, so neither may see an unbounded document.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from decisions.errors import TableError, ValidationFailed

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024  # UTF-8 bytes of one document (a folder: of all its files)
MAX_DEPTH = 64  # nested mappings and lists; a real document needs about 8
MAX_NODES = 5_000_000  # scalars and collections after expanding aliases (100,000 rules: ~3 M)

Locator = Callable[[Sequence[object]], tuple[str | None, int | None]]


@dataclass(slots=True)
class Parsed:
    """Plain data from YAML plus a way back from a path in it to (file, line)."""

    data: dict[str, Any]
    locate: Locator = field(default=lambda path: (None, None))


class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML 1.2 booleans: only true/false. A marketer's `search: on` or `id: off` stays a string.

    libyaml (CSafeLoader) when PyYAML was built with it: several times faster on large tables."""


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


def _refused(message: str, name: str | None, line: int | None = None) -> ValidationFailed:
    return ValidationFailed([TableError(message, file=name, line=line)])


def _check_shape(text: str, name: str | None) -> None:
    """Refuse too deep nesting and alias bombs from the parser's event stream.

    Events come one at a time and this loop keeps its own stack, so a document of a million `[`
    costs MAX_DEPTH events, not a deep recursion."""
    loader = Loader(text)
    open_at: list[tuple[str | None, int]] = []  # per open collection: its anchor, nodes before it
    sizes: dict[str, int] = {}  # anchor -> nodes it expands to
    nodes = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.CollectionStartEvent):
                if len(open_at) >= MAX_DEPTH:
                    line = event.start_mark.line + 1
                    raise _refused(f"nested deeper than {MAX_DEPTH} levels", name, line)
                open_at.append((event.anchor, nodes))
                nodes += 1
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, before = open_at.pop()
                if anchor is not None:
                    sizes[anchor] = nodes - before
            elif isinstance(event, yaml.ScalarEvent):
                nodes += 1
                if event.anchor is not None:
                    sizes[event.anchor] = 1
            elif isinstance(event, yaml.AliasEvent):
                nodes += sizes.get(event.anchor, 1)
            if nodes > MAX_NODES:
                line = event.start_mark.line + 1
                raise _refused(f"more than {MAX_NODES} values (aliases expanded)", name, line)
    finally:
        loader.dispose()


def _compose(text: str) -> yaml.Node | None:
    loader = Loader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def parse_text(text: str, name: str | None = None) -> Parsed:
    """Parse one YAML (or JSON) document within the limits; a syntax error is reported with its
    line. Lines are only looked up when an error needs one: keeping the node tree of a large
    document would cost more memory than the data itself."""
    if len(text) > MAX_DOCUMENT_BYTES or len(text.encode("utf-8")) > MAX_DOCUMENT_BYTES:
        raise _refused(f"document larger than {MAX_DOCUMENT_BYTES} bytes", name)
    if not text.strip():
        raise _refused("empty document", name)
    try:
        _check_shape(text, name)
        loader = Loader(text)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise _refused(f"YAML: {problem}", name, line) from None
    if data is None:
        raise _refused("empty document", name)
    if not isinstance(data, dict):
        raise _refused("the document must be a mapping", name, 1)
    node = functools.cache(lambda: _compose(text))
    return Parsed(data, lambda path: (name, _line(node(), path)))


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


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _refused(f"not UTF-8 (byte {exc.start})", str(path)) from None


def read_source(path: Path) -> tuple[str, Parsed]:
    """Read a file or folder: (the text to store as a version, the parsed document). The size
    limit is checked on the files' sizes first, so an oversized file is never read."""
    files = files_of(path)
    if sum(p.stat().st_size for p in files) > MAX_DOCUMENT_BYTES:
        raise _refused(f"document larger than {MAX_DOCUMENT_BYTES} bytes", str(path))
    texts = [(str(p), _read(p)) for p in files]
    parts = [(name, parse_text(text, name)) for name, text in texts]
    if not path.is_dir():
        return texts[0][1], parts[0][1]
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
