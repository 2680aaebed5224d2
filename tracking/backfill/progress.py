"""A progress bar on a terminal, plain lines anywhere else (logs and pipes stay readable)."""

from __future__ import annotations

from typing import TextIO

_WIDTH = 30


class Progress:
    def __init__(self, stream: TextIO, label: str, plain_every: int) -> None:
        self.stream = stream
        self.label = label
        self.plain_every = max(plain_every, 1)
        self.tty = stream.isatty()
        self._drawn = False

    def update(self, done: int, total: int) -> None:
        if self.tty:
            filled = _WIDTH * done // total if total else _WIDTH
            bar = "#" * filled + "." * (_WIDTH - filled)
            self.stream.write(f"\r{self.label} [{bar}] {done}/{total}")
            self._drawn = True
        elif done == total or done % self.plain_every == 0:
            self.stream.write(f"{self.label}: {done}/{total}\n")
        self.stream.flush()

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
