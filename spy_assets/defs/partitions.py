"""The one partitions definition every asset shares: NYSE trading sessions."""

import datetime as dt
from functools import cache

from dagster import DailyPartitionsDefinition

from spy_assets import calendar


@cache
def sessions_partitions(first_session: dt.date) -> DailyPartitionsDefinition:
    """One partition per NYSE session from ``first_session`` (configuration) on.

    Weekends are a cron exclusion, holidays and ad-hoc closures (2025-01-09) datetimes.
    ``end_offset=1`` makes today's partition exist during the day, so the live path and a
    Friday-evening run can target the session that just traded. Cached, so every asset of a
    configuration holds the same object.
    """
    last = calendar.nyse().last_session.date()
    closures = [
        dt.datetime.combine(day, dt.time())
        for day in calendar.non_session_weekdays(first_session, last)
    ]
    return DailyPartitionsDefinition(
        start_date=first_session.isoformat(),
        timezone=calendar.MARKET_TZ,
        end_offset=1,
        exclusions=["0 0 * * 6", "0 0 * * 0", *closures],
    )
