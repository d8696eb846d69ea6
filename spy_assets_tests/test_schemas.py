import datetime as dt

import pandas as pd
import pytest

from spy_assets import calendar, schemas
from spy_assets.ingest import contracts_frame
from spy_assets.sources.synthetic import SyntheticMarket

DAY = dt.date(2025, 11, 28)  # early close: 13:00 ET


@pytest.fixture
def bars():
    frame = SyntheticMarket().stock_bars("SPY", DAY, DAY)
    lo, hi = calendar.window_utc(DAY)
    frame = frame[(frame.timestamp >= lo) & (frame.timestamp < hi)].reset_index(drop=True)
    frame.insert(0, "ticker", "SPY")
    return frame


def test_clean_bars_pass(bars):
    result = schemas.validate(schemas.minute_bars_schema(DAY), bars)
    assert result.passed and result.rows == 210 and result.failing_rows == 0


@pytest.mark.parametrize(
    ("corrupt", "rule"),
    [
        (lambda f: f.loc.__setitem__((4, "high"), f.loc[4, "low"] - 1), "high < max(open, close)"),
        (lambda f: f.loc.__setitem__((4, "low"), f.loc[4, "high"] + 1), "low > min(open, close)"),
        (lambda f: f.loc.__setitem__((4, "open"), 0.0), "price must be positive"),
        (
            lambda f: f.loc.__setitem__((4, "timestamp"), pd.Timestamp("2025-11-28 18:30Z")),
            "timestamp outside the session",
        ),
    ],
)
def test_each_rule_names_the_row(bars, corrupt, rule):
    corrupt(bars)
    result = schemas.validate(schemas.minute_bars_schema(DAY), bars)
    assert not result.passed
    assert any(rule in r for r in result.rules())
    assert 4 in result.failures["row"].tolist()
    assert "| 4 |" in result.to_markdown()


def test_duplicate_minutes_fail_uniqueness(bars):
    doubled = pd.concat([bars, bars.iloc[[10]]], ignore_index=True)
    result = schemas.validate(schemas.minute_bars_schema(DAY), doubled)
    assert not result.passed and set(result.failures["row"]) == {10, 210}


def test_contracts_schema_rejects_expired_and_bad_tickers():
    frame, _ = contracts_frame("SPY", DAY, 600.12, 1.0, 2, "0dte")
    assert schemas.validate(schemas.option_contracts_schema(DAY), frame).passed
    frame.loc[0, "contract"] = "SPY251128C00601000"
    frame.loc[1, "expiration"] = dt.date(2025, 11, 26)
    result = schemas.validate(schemas.option_contracts_schema(DAY), frame)
    assert set(result.failures["row"]) == {0, 1}
