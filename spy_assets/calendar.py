"""NYSE trading sessions, opens and closes (early closes included) from exchange_calendars.

Every date in the project is a *session* (a ``datetime.date``); every timestamp is UTC.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from spy_assets.errors import FutureSessionError, NotASessionError

EXCHANGE = "XNYS"
MARKET_TZ = "America/New_York"
#: The calendar is loaded from here: well before any history a vendor plan offers, so the first
#: session of history always has a previous session (its news window starts at that close).
CALENDAR_START = dt.date(2003, 1, 2)
MINUTES_PER_YEAR = 365.0 * 24.0 * 60.0


@lru_cache(maxsize=1)
def nyse() -> xcals.ExchangeCalendar:
    """The XNYS calendar, loaded once per process."""
    return xcals.get_calendar(EXCHANGE, start=CALENDAR_START.isoformat())


def parse_session(value: str | dt.date | pd.Timestamp) -> dt.date:
    """A session date from ``YYYY-MM-DD`` (or a date); raises NotASessionError with the reason."""
    if isinstance(value, str):
        try:
            day = dt.date.fromisoformat(value.strip())
        except ValueError:
            raise NotASessionError(
                f"{value!r} is not a date: expected a session as YYYY-MM-DD, e.g. 2025-11-21"
            ) from None
    elif isinstance(value, pd.Timestamp):
        day = value.date()
    elif isinstance(value, dt.datetime):
        day = value.date()
    elif isinstance(value, dt.date):
        day = value
    else:
        raise NotASessionError(f"{value!r} is not a date")
    cal = nyse()
    if day < cal.first_session.date() or day > cal.last_session.date():
        raise NotASessionError(
            f"{day} is outside the calendar's range "
            f"({cal.first_session.date()} to {cal.last_session.date()})"
        )
    if not cal.is_session(pd.Timestamp(day)):
        reason = "a weekend" if day.weekday() >= 5 else "an NYSE holiday or closure"
        prev_s = cal.date_to_session(pd.Timestamp(day), direction="previous").date()
        next_s = cal.date_to_session(pd.Timestamp(day), direction="next").date()
        raise NotASessionError(
            f"{day} is not an NYSE trading session ({reason}); "
            f"the sessions around it are {prev_s} and {next_s}"
        )
    return day


def current_session(now: pd.Timestamp | None = None) -> dt.date:
    """The session trading today, or the last one before today (New York time)."""
    stamp = pd.Timestamp.now(tz=MARKET_TZ) if now is None else pd.Timestamp(now)
    today = (stamp.tz_convert(MARKET_TZ) if stamp.tzinfo else stamp).date()
    return session_on_or_before(today)


def check_not_future(session: dt.date, now: pd.Timestamp | None = None) -> dt.date:
    """``session`` itself, or FutureSessionError when it has not traded yet."""
    current = current_session(now)
    if session > current:
        raise FutureSessionError(
            f"{session} has not traded yet (the current session is {current}): "
            "sessions after the current one are never made up"
        )
    return session


def is_session(day: dt.date) -> bool:
    try:
        parse_session(day)
    except NotASessionError:
        return False
    return True


def sessions_between(start: dt.date | str, end: dt.date | str) -> list[dt.date]:
    """Every session in the closed interval [start, end] (the ends need not be sessions)."""
    start_d = dt.date.fromisoformat(start) if isinstance(start, str) else start
    end_d = dt.date.fromisoformat(end) if isinstance(end, str) else end
    cal = nyse()
    lo = max(start_d, cal.first_session.date())
    hi = min(end_d, cal.last_session.date())
    if lo > hi:
        return []
    return [ts.date() for ts in cal.sessions_in_range(pd.Timestamp(lo), pd.Timestamp(hi))]


def last_sessions(n: int, on_or_before: dt.date) -> list[dt.date]:
    """The last ``n`` sessions on or before a date, oldest first."""
    cal = nyse()
    last = cal.date_to_session(pd.Timestamp(on_or_before), direction="previous")
    idx = cal.sessions.get_loc(last)
    return [ts.date() for ts in cal.sessions[max(0, idx - n + 1) : idx + 1]]


def non_session_weekdays(start: dt.date, end: dt.date) -> list[dt.date]:
    """Weekdays in [start, end] on which NYSE does not trade (holidays and ad-hoc closures)."""
    sessions = set(sessions_between(start, end))
    days = pd.bdate_range(start, end)
    return [d.date() for d in days if d.date() not in sessions]


def session_open(session: dt.date) -> pd.Timestamp:
    """The regular-session open (UTC)."""
    return nyse().session_open(pd.Timestamp(parse_session(session)))


def session_close(session: dt.date) -> pd.Timestamp:
    """The regular-session close (UTC): 16:00 ET, or 13:00 ET on early closes."""
    return nyse().session_close(pd.Timestamp(parse_session(session)))


def is_early_close(session: dt.date) -> bool:
    close_et = session_close(session).tz_convert(MARKET_TZ)
    return (close_et.hour, close_et.minute) != (16, 0)


def session_minutes(session: dt.date) -> pd.DatetimeIndex:
    """Start times (UTC) of every regular-session minute bar: 390, or 210 on early closes."""
    return pd.date_range(
        session_open(session), session_close(session), freq="1min", inclusive="left"
    ).as_unit("ms")


def previous_session(session: dt.date) -> dt.date:
    return nyse().previous_session(pd.Timestamp(parse_session(session))).date()


def session_on_or_before(day: dt.date) -> dt.date:
    """The last session on or before any date (the date itself when it is a session)."""
    return nyse().date_to_session(pd.Timestamp(day), direction="previous").date()


def next_session(session: dt.date) -> dt.date:
    return nyse().next_session(pd.Timestamp(parse_session(session))).date()


def years_to_expiry(bar_start: pd.Series | pd.DatetimeIndex, expiry: dt.date) -> np.ndarray:
    """Time to expiry in years, from each bar's *end* (start + 1 minute) to the real close of
    the expiry session (early closes included), over a 365-day year of minutes."""
    close = session_close(expiry)
    starts = pd.DatetimeIndex(bar_start)
    minutes = (close - starts).total_seconds().to_numpy() / 60.0 - 1.0
    return minutes / MINUTES_PER_YEAR


def window_utc(session: dt.date, extended: bool = False) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) of the bars that belong to a session: the regular hours, or 04:00–20:00 ET."""
    if not extended:
        return session_open(session), session_close(session)
    day = pd.Timestamp(parse_session(session)).tz_localize(MARKET_TZ)
    return (
        (day + pd.Timedelta(hours=4)).tz_convert("UTC"),
        (day + pd.Timedelta(hours=20)).tz_convert("UTC"),
    )
