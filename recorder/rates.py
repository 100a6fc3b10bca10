"""How fast something arrives (camera frames, loop ticks), measured from arrival times. Qt-free, so the
Record tab, the Rollout tab and the demo window share one meter."""

from __future__ import annotations

import time
from collections import deque

__all__ = ["RateMeter"]


class RateMeter:
    """Arrivals per second over a sliding window: the times of the last ``window_s`` seconds, and at most
    the last ``last`` intervals when ``last`` is given (``window_s=None``: only the count limit)."""

    def __init__(self, window_s: float | None = 1.0, last: int | None = None) -> None:
        self.window_s = window_s
        self._t: deque[float] = deque(maxlen=None if last is None else last + 1)

    def tick(self, t: float | None = None) -> None:
        t = time.monotonic() if t is None else t
        self._t.append(t)
        if self.window_s is not None:
            while self._t and t - self._t[0] > self.window_s:
                self._t.popleft()

    def rate(self) -> float:
        """The rate, 0.0 before two arrivals."""
        r = self._measured()
        return 0.0 if r is None else r

    def add(self, t: float) -> float | None:
        """``tick(t)`` and return the rate, None before two arrivals with time between them."""
        self.tick(t)
        return self._measured()

    def reset(self) -> None:
        self._t.clear()

    def _measured(self) -> float | None:
        if len(self._t) < 2 or self._t[-1] <= self._t[0]:
            return None
        return (len(self._t) - 1) / (self._t[-1] - self._t[0])
