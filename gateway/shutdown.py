"""Graceful shutdown: a load balancer learns first, then the server stops, then the services.

On the first SIGTERM the gateway only starts draining: `/readyz` answers 503 `draining` while
every call (new or in flight) is still served, for `drain_seconds`, long enough for a load
balancer's health checks to take it out of rotation. Then the signal goes on to the server
(uvicorn), which stops accepting, lets in-flight calls finish and runs the lifespan stop. The
whole shutdown is bounded by `timeout` seconds from SIGTERM: uvicorn waits for in-flight calls at
most `timeout - drain_seconds`, and the lifespan stop gets what is left (`remaining`). A second
SIGTERM skips the drain; SIGINT (Ctrl-C) is uvicorn's as before.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger("ocgateway")

_MIN_STOP = 1.0  # the lifespan stop always gets this long: closing the store commits its writes


def in_flight_timeout(drain_seconds: float, timeout: float) -> float:
    """How long the server may wait for in-flight calls (uvicorn's graceful timeout)."""
    return max(_MIN_STOP, timeout - drain_seconds)


class Drain:
    def __init__(
        self, drain_seconds: float, timeout: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.drain_seconds = drain_seconds
        self.timeout = timeout
        self.clock = clock
        self.draining = False
        self._deadline: float | None = None
        self._passed = False

    def install(self) -> None:
        """Take SIGTERM over from the server (only the main thread can: `ocgateway serve`);
        the server's own handler is called once the drain is over."""
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._terminate, loop, previous)

    def _terminate(self, loop: asyncio.AbstractEventLoop, previous: Callable[..., Any]) -> None:
        if self.draining:  # asked again: stop now
            self._pass_on(previous)
            return
        self.begin()
        log.info("SIGTERM: draining for %.1fs, then stopping", self.drain_seconds)
        loop.call_later(self.drain_seconds, self._pass_on, previous)

    def begin(self) -> None:
        """Report not ready from now on; the shutdown deadline starts counting."""
        self.draining = True
        self._deadline = self.clock() + self.timeout

    def _pass_on(self, previous: Callable[[int, FrameType | None], Any]) -> None:
        if not self._passed:
            self._passed = True
            previous(signal.SIGTERM, None)

    def remaining(self) -> float:
        """Seconds the lifespan stop may take: to the deadline, or the whole timeout when the
        stop did not come from SIGTERM."""
        if self._deadline is None:
            return self.timeout
        return max(_MIN_STOP, self._deadline - self.clock())
