"""The daily schedule's tick decisions for the calendar cases, and the end_offset trap it avoids."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from dagster import Failure, RunRequest, SkipReason, build_schedule_context

from spy_assets import calendar
from spy_assets.defs.automation import VENDOR_RETRY_POLICY, retry_only_transient_errors
from spy_assets.defs.partitions import sessions_partitions
from spy_assets.defs.schedules import after_close_schedule
from spy_assets.errors import AuthError
from spy_assets.sources.vendor import VendorUnavailableError

ET = ZoneInfo(calendar.MARKET_TZ)
PARTITIONS = sessions_partitions(dt.date(2025, 10, 1))


def _tick(day: str, time: str = "16:30", partitions=PARTITIONS):
    """The schedule's decision for a tick at ``day`` ``time`` ET (a RunRequest or SkipReason)."""
    when = dt.datetime.fromisoformat(f"{day}T{time}").replace(tzinfo=ET)
    return after_close_schedule(partitions)(build_schedule_context(scheduled_execution_time=when))


@pytest.mark.parametrize(
    ("case", "day", "builds"),
    [
        ("a normal day", "2025-11-25", "2025-11-25"),
        ("Thanksgiving, a holiday", "2025-11-27", None),
        ("the day after the holiday, an early close (13:00)", "2025-11-28", "2025-11-28"),
        ("the Monday after, after a weekend", "2025-12-01", "2025-12-01"),
        ("Christmas Eve, an early close", "2025-12-24", "2025-12-24"),
        ("the day after Christmas", "2025-12-26", "2025-12-26"),
        ("a Saturday", "2025-11-29", None),
        ("a Sunday", "2025-11-30", None),
    ],
)
def test_tick_decisions(case, day, builds):
    result = _tick(day)
    if builds is None:
        assert isinstance(result, SkipReason), case
        assert "not an NYSE session" in result.skip_message, case
    else:
        assert isinstance(result, RunRequest), case
        assert (result.partition_key, result.run_key) == (builds, builds), case


def test_dagster_end_offset_yields_the_next_session_on_an_excluded_day():
    # Dagster's open bug: with end_offset=1 and exclusions, on an excluded day the "last
    # partition" is the next session, which has not traded. If Dagster fixes it, this first
    # assertion fails and can go; the schedule does not depend on it either way.
    thanksgiving = dt.datetime(2025, 11, 27, 16, 30, tzinfo=ET)
    assert PARTITIONS.get_partition_keys(current_time=thanksgiving)[-1] == "2025-11-28"
    saturday = dt.datetime(2025, 11, 29, 16, 30, tzinfo=ET)
    assert PARTITIONS.get_partition_keys(current_time=saturday)[-1] == "2025-12-01"
    # the schedule takes its key from the calendar: nothing to build on either day
    assert isinstance(_tick("2025-11-27"), SkipReason)
    assert isinstance(_tick("2025-11-29"), SkipReason)


def test_a_tick_before_the_close_or_before_history_builds_nothing():
    assert "has not closed yet" in _tick("2025-11-25", "15:59").skip_message
    early = _tick("2025-11-28", "13:05")  # the early close is over: that session can build
    assert isinstance(early, RunRequest) and early.partition_key == "2025-11-28"
    before_history = _tick("2025-11-25", partitions=sessions_partitions(dt.date(2025, 12, 1)))
    assert "is not a partition" in before_history.skip_message


def test_vendor_steps_retry_with_exponential_backoff_and_jitter():
    delays = [VENDOR_RETRY_POLICY.calculate_delay(n) for n in (1, 2) for _ in range(50)]
    first, second = delays[:50], delays[50:]
    assert VENDOR_RETRY_POLICY.max_retries == 2
    assert all(0 <= d <= 60 for d in first) and all(60 <= d <= 120 for d in second)
    assert len(set(first)) > 1  # jittered


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (VendorUnavailableError("GET /v2/aggs: gave up after 6 attempts"), True),
        (AuthError("GET /v2/aggs: HTTP 401"), False),
        (NotADirectoryError("data/parquet/vix"), False),
        (KeyboardInterrupt(), False),
    ],
)
def test_only_a_vendor_still_unavailable_uses_the_retry_policy(error, retried):
    with pytest.raises(BaseException) as raised, retry_only_transient_errors():
        raise error
    if retried:
        assert raised.value is error
    else:
        assert isinstance(raised.value, Failure) and not raised.value.allow_retries
        assert raised.value.__cause__ is error
