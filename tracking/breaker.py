"""Per-destination circuit breaker: stop hammering a destination that keeps failing.

After `threshold` consecutive retryable failures the circuit opens for `cooldown` seconds (doubling
on each failed probe, up to `max_cooldown`); then one probe delivery is let through. A 429 or
Retry-After pauses the destination for as long as it asked.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Breaker:
    threshold: int = 5
    cooldown: float = 5.0
    max_cooldown: float = 300.0
    failures: int = 0
    open_until: float = 0.0
    _current: float = 0.0

    def blocked_until(self, now: float) -> float | None:
        """When the destination may be tried again, or None if it may be tried now."""
        return self.open_until if now < self.open_until else None

    def probing(self) -> bool:
        """Half-open: the circuit tripped and its cooldown is over; send one delivery to test it."""
        return self.failures >= self.threshold

    def success(self) -> None:
        self.failures = 0
        self._current = 0.0

    def failure(self, now: float) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            self._current = min(self.max_cooldown, self._current * 2 or self.cooldown)
            self.open_until = max(self.open_until, now + self._current)

    def pause(self, now: float, seconds: float) -> None:
        self.open_until = max(self.open_until, now + seconds)

    @property
    def state(self) -> str:
        return "open" if self.failures >= self.threshold else "closed"
