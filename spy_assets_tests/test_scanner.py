"""Scan events and the scan report (SPEC §5) on hand-made closes."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from spy_assets import calendar
from spy_assets.analytics.scanner import EVENT_COLUMNS, ScanReport, scan_events, scan_report

WINTER = dt.date(2025, 12, 1)  # EST: 09:30 ET = 14:30 UTC
SUMMER = dt.date(2025, 7, 1)  # EDT: 09:30 ET = 13:30 UTC


def _bars(
    closes: list[float],
    minutes: list[int] | None = None,
    contract: str = "O:SPY251201C00680000",
    session: dt.date = WINTER,
) -> pd.DataFrame:
    grid = calendar.session_minutes(session)
    minutes = list(range(len(closes))) if minutes is None else minutes
    return pd.DataFrame(
        {"contract": contract, "session": session, "timestamp": grid[minutes], "close": closes}
    )


def _minute(session: dt.date, i: int) -> pd.Timestamp:
    return calendar.session_minutes(session)[i]


def test_first_bar_has_no_reference():
    # A high first bar followed by nothing lower is never an event...
    assert scan_events(_bars([5.0])).empty
    assert scan_events(_bars([5.0, 5.5])).empty
    # ...and the first bar is the reference of the second.
    ev = scan_events(_bars([1.0, 5.0]))
    assert len(ev) == 1
    assert ev["trigger_time"].iloc[0] == _minute(WINTER, 1)
    assert ev["reference_price"].iloc[0] == 1.0


def test_reference_is_lowest_strictly_earlier_close():
    ev = scan_events(_bars([2.0, 1.0, 1.1, 1.3, 0.9, 1.0]), threshold=0.25)
    assert len(ev) == 1
    assert ev["trigger_price"].iloc[0] == 1.3
    assert ev["reference_price"].iloc[0] == 1.0


def test_run_to_the_close():
    ev = scan_events(_bars([1.0, 1.1, 1.3, 1.4]))
    assert list(ev.columns) == EVENT_COLUMNS
    e = ev.iloc[0]
    assert e["ran_to_close"]
    assert e["run_bars"] == 2
    assert e["run_minutes"] == 2.0  # 3rd bar to the last bar + 1 minute
    assert e["peak_price"] == 1.4 and e["peak_time"] == _minute(WINTER, 3)


def test_several_runs_in_a_day():
    ev = scan_events(_bars([1.0, 1.3, 1.0, 1.0, 1.5, 1.6, 1.6, 1.1]))
    assert len(ev) == 2
    first, second = ev.iloc[0], ev.iloc[1]
    assert (first["run_bars"], first["run_minutes"], first["ran_to_close"]) == (1, 1.0, False)
    assert second["trigger_time"] == _minute(WINTER, 4)
    assert (second["run_bars"], second["run_minutes"], second["ran_to_close"]) == (3, 3.0, False)
    assert second["peak_price"] == 1.6
    assert second["peak_time"] == _minute(WINTER, 5)  # the first bar at the peak


def test_threshold_exactly_met():
    assert len(scan_events(_bars([1.0, 1.25]), threshold=0.25)) == 1  # exact in binary
    assert len(scan_events(_bars([0.35, 0.42]), threshold=0.20)) == 1  # exact in decimal only
    assert len(scan_events(_bars([1.0, 1.2]), threshold=0.20)) == 1
    assert scan_events(_bars([1.0, 1.2499]), threshold=0.25).empty
    assert scan_events(_bars([0.35, 0.4199]), threshold=0.20).empty


def test_missing_minutes_inside_a_run_do_not_break_it():
    ev = scan_events(_bars([1.0, 1.5, 1.6, 1.7, 1.0], minutes=[0, 1, 2, 6, 9]))
    assert len(ev) == 1
    e = ev.iloc[0]
    assert e["run_bars"] == 3
    assert e["run_minutes"] == 8.0  # minute 1 to minute 9, the first bar back below
    assert e["peak_time"] == _minute(WINTER, 6)


def test_run_to_close_uses_the_contracts_last_bar():
    ev = scan_events(_bars([1.0, 1.5, 1.6], minutes=[0, 10, 40]))
    assert ev["ran_to_close"].iloc[0]
    assert ev["run_minutes"].iloc[0] == 31.0  # minute 10 to minute 40 + 1


def test_reference_resets_each_session_and_contracts_are_separate():
    day2 = dt.date(2025, 12, 2)
    bars = pd.concat(
        [
            _bars([1.0, 1.0]),
            _bars([1.5, 1.5, 2.0], session=day2),  # above day 1's low, not day 2's
            _bars([3.0, 1.0], contract="O:SPY251201P00670000"),
        ],
        ignore_index=True,
    ).sample(frac=1.0, random_state=0)  # input order must not matter
    ev = scan_events(bars)
    assert len(ev) == 1
    assert ev["session"].iloc[0] == day2
    assert ev["trigger_time"].iloc[0] == _minute(day2, 2)


def test_report_counts_zero_event_days_in_the_median():
    c1, c2, c3 = "O:A", "O:B", "O:C"
    bars = pd.concat(
        [
            _bars([1.0, 1.0, 1.0, 1.0], contract=c1),
            _bars([2.0, 2.0, 2.0, 2.0], contract=c2),
            # Three events: 1 bar (2 wall minutes, a gap), 1 bar, 2 bars to the close.
            _bars([1.0, 1.3, 1.0, 1.3, 1.0, 1.3, 1.4], minutes=[0, 1, 3, 4, 5, 6, 7], contract=c3),
        ],
        ignore_index=True,
    )
    ev = scan_events(bars)
    assert list(ev["run_minutes"]) == [2.0, 1.0, 2.0]
    rep = scan_report(bars, ev)
    assert isinstance(rep, ScanReport)
    assert rep.contract_days == 3
    assert rep.bars == 15
    assert rep.events == 3
    assert (
        rep.events_per_contract_day_min,
        rep.events_per_contract_day_median,
        rep.events_per_contract_day_max,
    ) == (0.0, 0.0, 3.0)
    assert rep.minutes_above == 4
    assert rep.positive_minute_rate == pytest.approx(4 / 15)
    assert rep.duration_median_min == 2.0
    assert rep.duration_mean_min == pytest.approx(5 / 3)
    assert rep.trigger_hours_et == {9: 3}
    assert rep.first_session == rep.last_session == WINTER


def test_report_hours_are_eastern_time_across_dst():
    winter = _bars([1.0] * 91 + [2.0], contract="O:W")  # trigger 11:01 ET = 16:01 UTC
    summer = _bars([1.0] * 91 + [2.0], contract="O:S", session=SUMMER)  # 11:01 ET = 15:01 UTC
    bars = pd.concat([winter, summer], ignore_index=True)
    ev = scan_events(bars)
    assert sorted(ev["trigger_time"].dt.hour) == [15, 16]  # UTC hours differ
    rep = scan_report(bars, ev)
    assert rep.trigger_hours_et == {11: 2}
    assert (rep.first_session, rep.last_session) == (SUMMER, WINTER)
    assert rep.to_dict()["trigger_hours_et"] == {"11": 2}


def test_renderings_show_the_figures():
    bars = _bars([1.0, 1.3, 1.0, 1.0])
    rep = scan_report(bars, scan_events(bars))
    md, txt = rep.to_markdown(), rep.to_text()
    assert "| Contract-days (zero-event days included) | 1 |" in md
    assert "25.00%" in md and "25.00%" in txt
    assert "| 09:00 | 1 | 100.0% |" in md
    d = rep.to_dict()
    assert d["bars"] == 4 and d["minutes_above"] == 1 and d["first_session"] == "2025-12-01"


def test_empty_input():
    empty = pd.DataFrame(
        {
            "contract": pd.Series(dtype="str"),
            "session": pd.Series(dtype="object"),
            "timestamp": pd.Series(dtype="datetime64[ms, UTC]"),
            "close": pd.Series(dtype="float64"),
        }
    )
    ev = scan_events(empty)
    assert ev.empty and list(ev.columns) == EVENT_COLUMNS
    rep = scan_report(empty, ev)
    assert (rep.contract_days, rep.bars, rep.events, rep.minutes_above) == (0, 0, 0, 0)
    assert math.isnan(rep.positive_minute_rate) and math.isnan(rep.duration_median_min)
    assert math.isnan(rep.events_per_contract_day_median)
    assert rep.trigger_hours_et == {}
    assert "n/a" in rep.to_markdown() and "no events" in rep.to_markdown()
    assert "n/a" in rep.to_text() and "no events" in rep.to_text()
    d = rep.to_dict()
    assert d["positive_minute_rate"] is None and d["first_session"] is None


def test_days_without_events_only():
    bars = _bars([1.0, 1.1, 1.0])
    rep = scan_report(bars, scan_events(bars))
    assert (rep.contract_days, rep.events, rep.minutes_above) == (1, 0, 0)
    assert rep.events_per_contract_day_median == 0.0
    assert rep.positive_minute_rate == 0.0
    assert math.isnan(rep.duration_mean_min)


def test_missing_close_rows_are_ignored():
    bars = _bars([1.0, np.nan, 1.3])
    ev = scan_events(bars)
    assert len(ev) == 1 and ev["reference_price"].iloc[0] == 1.0
