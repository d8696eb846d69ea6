"""The one partitions definition every asset shares: NYSE trading sessions."""

import datetime as dt

from dagster import DailyPartitionsDefinition

from spy_assets import calendar


def _closures() -> list[dt.datetime]:
    last = calendar.nyse().last_session.date()
    return [
        dt.datetime.combine(day, dt.time())
        for day in calendar.non_session_weekdays(calendar.FIRST_SESSION, last)
    ]


#: One partition per NYSE session. Weekends are a cron exclusion, holidays and ad-hoc closures
#: (2025-01-09) datetimes. ``end_offset=1`` makes today's partition exist during the day, so the
#: live path and a Friday-evening run can target the session that just traded.
sessions_partitions = DailyPartitionsDefinition(
    start_date=calendar.FIRST_SESSION.isoformat(),
    timezone=calendar.MARKET_TZ,
    end_offset=1,
    exclusions=["0 0 * * 6", "0 0 * * 0", *_closures()],
)
