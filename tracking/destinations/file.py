"""JSON lines file: the default destination, and the simplest way to see what is tracked."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

from state.events import ALL_TYPES, Event

_SLICE = 32  # events serialized per turn of the loop


def line(event: Event) -> str:
    return event.to_json() + "\n"


class FileDestination:
    name = "file"
    accepts = ALL_TYPES
    max_batch = 500

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    async def send(self, events: Sequence[Event]) -> None:
        lines = []
        for start in range(0, len(events), _SLICE):
            if start:
                await asyncio.sleep(0)  # a batch is up to 500 events: let shoppers' calls in
            lines += [line(e) for e in events[start : start + _SLICE]]
        await asyncio.to_thread(self._append, "".join(lines))

    def _append(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as handle:
            if handle.tell() > 0:  # a kill mid-write leaves a partial line: never glue onto it
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    text = "\n" + text
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
