"""A cycle timer for fixed-rate loops: sleep to absolute deadlines, never a fixed sleep.

A fixed ``sleep(period)`` after each tick drifts by the time the tick itself took. Sleeping to
``t0 + k * period`` keeps the rate exact on average; a tick that overruns its deadline is counted
as late and the schedule re-anchors (no burst of catch-up ticks) when a whole period was lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


class CycleTimer:
    """Paces a loop at ``1 / period`` Hz.

    ``start()`` once, then ``wait()`` at the end of each tick. ``jitter`` of a tick is how late it
    started against its scheduled deadline (>= 0 s); ``late_ticks`` counts ticks whose work ran
    past the next deadline.
    """

    def __init__(
        self,
        period: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if period <= 0:
            raise ValueError(f"period must be > 0, got {period}")
        self.period = float(period)
        self._clock = clock
        self._sleep = sleep
        self._deadline = 0.0
        self._jitter: list[float] = []
        self.late_ticks = 0
        self.skipped_deadlines = 0

    def start(self, t0: float | None = None) -> float:
        """Anchor the schedule at ``t0`` (now by default); the first tick starts at ``t0``."""
        now = self._clock() if t0 is None else t0
        self._deadline = now + self.period
        return now

    def wait(self) -> float:
        """Sleep until the next deadline. Returns the start time of the next tick."""
        now = self._clock()
        remaining = self._deadline - now
        if remaining <= 0:
            # The tick overran its slot: late. If more than a whole period was lost, re-anchor to
            # now instead of firing a burst of catch-up ticks.
            self.late_ticks += 1
            lost = int(-remaining // self.period)
            if lost >= 1:
                self.skipped_deadlines += lost
                self._deadline += lost * self.period
            start = now
        else:
            self._sleep(remaining)
            start = self._clock()
        self._jitter.append(max(0.0, start - self._deadline))
        self._deadline += self.period
        return start

    @property
    def ticks(self) -> int:
        return len(self._jitter)

    def jitter_percentile_ms(self, q: float = 99.0) -> float:
        """The ``q``-th percentile of tick start jitter in milliseconds (0 before any tick)."""
        if not self._jitter:
            return 0.0
        return float(np.percentile(np.asarray(self._jitter), q) * 1000.0)

    def jitter_max_ms(self) -> float:
        return float(max(self._jitter) * 1000.0) if self._jitter else 0.0
