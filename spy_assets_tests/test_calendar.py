import datetime as dt
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from dagster import partition_loading_context

from spy_assets import calendar
from spy_assets.defs.partitions import sessions_partitions
from spy_assets.errors import NotASessionError

ET = ZoneInfo("America/New_York")


def _keys_at(when: dt.datetime) -> list[str]:
    with partition_loading_context(effective_dt=when):
        return sessions_partitions.get_partition_keys()


def test_2025_has_250_partitions_and_skips_the_closures():
    keys = [k for k in _keys_at(dt.datetime(2026, 1, 15, tzinfo=ET)) if k.startswith("2025")]
    assert len(keys) == 250
    assert "2025-01-09" not in keys  # national day of mourning
    assert "2025-07-04" not in keys and "2025-12-25" not in keys
    assert "2025-11-22" not in keys  # a Saturday
    assert keys == [s.isoformat() for s in calendar.sessions_between("2025-01-01", "2025-12-31")]


def test_friday_partition_exists_on_friday_evening():
    with partition_loading_context(effective_dt=dt.datetime(2025, 11, 21, 18, 0, tzinfo=ET)):
        assert sessions_partitions.get_last_partition_key() == "2025-11-21"


def test_early_close():
    close = calendar.session_close(dt.date(2025, 11, 28)).tz_convert("America/New_York")
    assert (close.hour, close.minute) == (13, 0)
    assert calendar.is_early_close(dt.date(2025, 11, 28))
    assert not calendar.is_early_close(dt.date(2025, 11, 26))
    assert len(calendar.session_minutes(dt.date(2025, 11, 28))) == 210
    assert len(calendar.session_minutes(dt.date(2025, 11, 26))) == 390


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("2025-11-27", "holiday"),
        ("2025-11-22", "weekend"),
        ("2025-01-09", "holiday"),
        ("2025-13-01", "not a date"),
        ("yesterday", "not a date"),
        ("1999-01-04", "outside the calendar"),
    ],
)
def test_bad_sessions_are_explained(value, fragment):
    with pytest.raises(NotASessionError, match=fragment):
        calendar.parse_session(value)


def test_years_to_expiry_runs_to_the_real_close():
    session = dt.date(2025, 11, 28)
    starts = pd.DatetimeIndex([calendar.session_open(session)])
    minutes_left = 210 - 1  # from the first bar's end to 13:00 ET
    assert calendar.years_to_expiry(starts, session)[0] == pytest.approx(
        minutes_left / (365 * 24 * 60)
    )
    last_bar = calendar.session_minutes(session)[-1:]
    assert calendar.years_to_expiry(last_bar, session)[0] == 0.0


def test_last_sessions_and_neighbours():
    assert calendar.last_sessions(3, dt.date(2025, 11, 30)) == [
        dt.date(2025, 11, 25),
        dt.date(2025, 11, 26),
        dt.date(2025, 11, 28),
    ]
    assert calendar.next_session(dt.date(2025, 11, 26)) == dt.date(2025, 11, 28)
    assert calendar.previous_session(dt.date(2025, 1, 10)) == dt.date(2025, 1, 8)
