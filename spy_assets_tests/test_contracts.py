import datetime as dt

import numpy as np
import pandas as pd
import pytest

from spy_assets import contracts, ingest
from spy_assets.contracts import ExpiryConvention


def test_spec_example_half_dollar():
    assert contracts.select_strikes(593.88, 0.5, 2) == ([594.0, 594.5], [593.5, 593.0])


def test_whole_dollar_default():
    assert contracts.select_strikes(593.88) == ([594.0, 595.0], [593.0, 592.0])


@pytest.mark.parametrize(
    ("s0", "k", "call", "put"),
    [(594.0, 1.0, 595.0, 593.0), (593.5, 0.5, 594.0, 593.0), (600.0, 0.5, 600.5, 599.5)],
)
def test_open_on_a_strike_moves_both_sides_out(s0, k, call, put):
    assert contracts.first_strikes(s0, k) == (call, put)


def test_calls_strictly_above_and_puts_strictly_below_for_many_opens():
    rng = np.random.default_rng(1)
    for s0 in np.round(rng.uniform(400, 700, 2000), 2):
        for k in (0.5, 1.0):
            calls, puts = contracts.select_strikes(float(s0), k, 3)
            assert min(calls) > s0 > max(puts)
            assert calls[0] - s0 <= k and s0 - puts[0] <= k


def test_ticker_format_and_round_trip():
    ticker = contracts.build_ticker("SPY", dt.date(2025, 3, 21), "call", 594)
    assert ticker == "O:SPY250321C00594000"
    for strike in (0.5, 593.5, 1234.125, 99999.999):
        for kind in ("call", "put"):
            t = contracts.build_ticker("SPY", dt.date(2026, 1, 2), kind, strike)
            parsed = contracts.parse_ticker(t)
            assert (parsed.strike, parsed.contract_type) == (strike, kind)
            assert parsed.ticker == t


@pytest.mark.parametrize("bad", ["SPY250321C00594000", "O:SPY250321X00594000", "O:SPY2503C1"])
def test_parse_rejects_malformed(bad):
    with pytest.raises(ValueError, match="not an option ticker"):
        contracts.parse_ticker(bad)


def test_expiry_conventions():
    wed = dt.date(2025, 11, 26)
    assert contracts.expiry_for(wed, ExpiryConvention.ZERO_DTE) == wed
    # the next trading day skips Thanksgiving
    assert contracts.expiry_for(wed, "next_trading_day") == dt.date(2025, 11, 28)
    assert contracts.expiry_for(wed, "next_friday") == dt.date(2025, 11, 28)
    # Friday: the next session is Monday, so the Friday after it
    assert contracts.expiry_for(dt.date(2025, 11, 21), "next_friday") == dt.date(2025, 11, 28)
    # Good Friday 2025-04-18 is a holiday: roll back to Thursday
    assert contracts.expiry_for(dt.date(2025, 4, 16), "next_friday") == dt.date(2025, 4, 17)


def test_select_contracts_builds_calls_and_puts():
    picked = contracts.select_contracts("spy", dt.date(2025, 11, 26), 593.88, 0.5, 2, "0dte")
    assert [c.ticker for c in picked] == [
        "O:SPY251126C00594000",
        "O:SPY251126C00594500",
        "O:SPY251126P00593500",
        "O:SPY251126P00593000",
    ]


def test_discovery_matches_listed_strikes_within_a_cent():
    session = dt.date(2025, 11, 26)
    listed = pd.DataFrame(
        {
            "contract": ["O:SPY251126C00594000", "O:SPY251126P00593500", "O:SPY251126C00600000"],
            "contract_type": ["call", "put", "call"],
            "strike": [593.9999999, 593.5000001, 600.0],
        }
    )
    picked, unlisted = ingest.contracts_frame("SPY", session, 593.88, 0.5, 2, "0dte", listed)
    assert picked["contract"].tolist() == ["O:SPY251126C00594000", "O:SPY251126P00593500"]
    assert (picked["selection_mode"] == "discovery").all()
    assert unlisted == [594.5, 593.0]
