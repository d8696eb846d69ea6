"""Market time for the live day: the wall clock, or a replay clock that runs faster.

The stream consumer asks its clock what time it is in the market (to wait for the open, stop
after the close, measure lag); the feed simulator publishes bars on the same clock, so a replayed
session at 60× behaves like a live one, only sooner.
"""

from __future__ import annotations

import threading
import time


class WallClock:
    """The real market clock: epoch seconds, one market second per second."""

    speed = 1.0

    def now(self) -> float:
        return time.time()


class ReplayClock:
    """Market time that starts at ``origin`` (epoch seconds) and runs ``speed`` times faster
    than the wall clock. :meth:`skip` jumps ahead over a quiet stretch (the simulator's delay
    cap) and is seen by every reader at once."""

    def __init__(self, origin: float, speed: float, started: float | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"the replay speed must be positive, not {speed}")
        self.speed = float(speed)
        self._origin = float(origin)
        #: ``time.monotonic()`` at ``origin``: the system-wide clock, so another process can
        #: build the same replay clock from (origin, speed, started).
        self.started = time.monotonic() if started is None else started
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._origin + (time.monotonic() - self.started) * self.speed

    @property
    def origin(self) -> float:
        return self._origin

    def skip(self, market_seconds: float) -> None:
        if market_seconds > 0:
            with self._lock:
                self._origin += market_seconds
