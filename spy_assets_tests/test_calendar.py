import datetime as dt
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from dagster import partition_loading_context

from spy_assets import calendar, config
from spy_assets.defs.partitions import sessions_partitions as partitions_from
from spy_assets.errors import NotASessionError

ET = ZoneInfo("America/New_York")
sessions_partitions = partitions_from(config.DEFAULT_FIRST_SESSION)


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


def test_history_start_is_configuration_and_its_first_session_has_a_news_window():
    early = partitions_from(dt.date(2021, 1, 4))
    with partition_loading_context(effective_dt=dt.datetime(2021, 1, 6, 18, 0, tzinfo=ET)):
        assert early.get_partition_keys() == ["2021-01-04", "2021-01-05", "2021-01-06"]
    assert partitions_from(dt.date(2021, 1, 4)) is early  # one object per configuration
    # The first partition's news window needs the session before it.
    assert calendar.previous_session(dt.date(2023, 1, 3)) == dt.date(2022, 12, 30)


def test_future_sessions_are_refused():
    now = pd.Timestamp("2025-11-26 10:00", tz="America/New_York")
    assert calendar.current_session(now) == dt.date(2025, 11, 26)
    assert calendar.check_not_future(dt.date(2025, 11, 26), now) == dt.date(2025, 11, 26)
    with pytest.raises(NotASessionError, match="has not traded yet"):
        calendar.check_not_future(dt.date(2025, 11, 28), now)
    holiday = pd.Timestamp("2025-11-27 12:00", tz="America/New_York")
    assert calendar.current_session(holiday) == dt.date(2025, 11, 26)
