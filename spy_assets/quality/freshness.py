"""Freshness: each dataset's latest session is due by a deadline after that session's close.

The deadline is ``N`` minutes after the close or a New York time of day (never before the
close), so an early close (13:00) is due earlier, and a holiday or a weekend expects nothing
new: the session expected at any moment is the latest one whose deadline has passed, from the
NYSE calendar, not a cron (Dagster's time-partition freshness checks take a cron deadline, which
would call a holiday stale).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from spy_assets import calendar
from spy_assets.calendar import MARKET_TZ


@dataclass(frozen=True)
class Deadline:
    """``minutes`` after the close, or a fixed New York ``time`` of the session's day."""

    minutes: int | None = 60
    time: dt.time | None = None

    @classmethod
    def parse(cls, text: str) -> Deadline:
        """From the validated configuration value (``60`` or ``17:30``)."""
        if ":" in text:
            hours, minutes = text.split(":")
            return cls(minutes=None, time=dt.time(int(hours), int(minutes)))
        return cls(minutes=int(text))

    def due(self, session: dt.date) -> pd.Timestamp:
        """When ``session``'s data is due (UTC)."""
        close = calendar.session_close(session)
        if self.time is None:
            return close + pd.Timedelta(minutes=self.minutes or 0)
        fixed = pd.Timestamp(dt.datetime.combine(session, self.time)).tz_localize(MARKET_TZ)
        return max(close, fixed.tz_convert("UTC"))

    def __str__(self) -> str:
        if self.time is None:
            return f"{self.minutes} min after the close"
        return f"{self.time:%H:%M} New York time"


def expected_session(now: pd.Timestamp, deadline: Deadline) -> dt.date:
    """The latest session whose deadline has passed at ``now``."""
    now = _utc(now)
    session = calendar.session_on_or_before(now.tz_convert(MARKET_TZ).date())
    while deadline.due(session) > now:
        session = calendar.previous_session(session)
    return session


@dataclass(frozen=True)
class Freshness:
    """One dataset's freshness at one moment."""

    dataset: str
    fresh: bool
    expected: dt.date | None
    due: pd.Timestamp | None
    latest: dt.date | None

    @property
    def description(self) -> str:
        if self.expected is None:
            return f"{self.dataset}: no session is due yet"
        due = self.due.tz_convert(MARKET_TZ).strftime("%Y-%m-%d %H:%M %Z") if self.due else "?"
        if self.fresh:
            return f"{self.dataset}: fresh, session {self.expected} (due {due}) is stored"
        built = f"the latest stored session is {self.latest}" if self.latest else "nothing built"
        return f"{self.dataset}: stale, session {self.expected} was due {due}; {built}"


def evaluate(
    dataset: str,
    now: pd.Timestamp,
    deadline: Deadline,
    first_session: dt.date,
    is_stored: Callable[[dt.date], bool],
    latest_stored: Callable[[], dt.date | None],
) -> Freshness:
    """Freshness of a dataset at ``now``: is the expected session stored (``is_stored`` asks
    whoever knows: the Dagster instance)?"""
    expected = expected_session(now, deadline)
    if expected < first_session:
        return Freshness(dataset, True, None, None, None)
    fresh = is_stored(expected)
    return Freshness(
        dataset, fresh, expected, deadline.due(expected), expected if fresh else latest_stored()
    )


def _utc(value: pd.Timestamp | dt.datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
