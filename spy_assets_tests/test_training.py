"""Training targets and the coverage filter (SPEC §6) on hand-made feature rows."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from spy_assets import calendar
from spy_assets.analytics.training import build_training_data, target_columns

SESSION = dt.date(2025, 12, 1)
EARLY = dt.date(2025, 11, 28)  # closes 13:00 ET: 210 minutes


def _features(
    minutes: list[int] | range,
    closes: list[float] | np.ndarray,
    contract: str = "O:A",
    session: dt.date = SESSION,
) -> pd.DataFrame:
    grid = calendar.session_minutes(session)
    minutes = list(minutes)
    return pd.DataFrame(
        {
            "contract": contract,
            "timestamp": grid[minutes],
            "close": np.asarray(closes, dtype=float),
            "delta": 0.5,  # a stand-in feature column that must pass through unchanged
        }
    )


def test_target_names_are_all_target_prefixed():
    assert target_columns() == [
        "target_close_5m",
        "target_close_15m",
        "target_close_30m",
        "target_max_return_30m",
    ]


def test_targets_on_a_full_session():
    closes = 1.0 + np.arange(390) / 100.0
    td = build_training_data(_features(range(390), closes), SESSION)
    f = td.frame
    for h in (5, 15, 30):
        col = f[f"target_close_{h}m"].to_numpy()
        np.testing.assert_allclose(col[: 390 - h], closes[h:])
        assert np.isnan(col[390 - h :]).all()  # t + h is past 15:59 ET
    mx = f["target_max_return_30m"].to_numpy()
    np.testing.assert_allclose(mx[:360], closes[30:] / closes[:360] - 1)
    assert np.isnan(mx[360:]).all()
    pd.testing.assert_series_equal(f["delta"], pd.Series(0.5, index=f.index, name="delta"))


def test_prevailing_close_is_carried_forward():
    # Bars at minutes 0, 1, 3, then 6 onwards: minutes 2, 4 and 5 carry the last close.
    feats = _features([0, 1, 3, *range(6, 390)], [1.0, 2.0, 3.0, *([4.0] * 384)])
    td = build_training_data(feats, SESSION, horizons=(2, 4), min_coverage=0.0)
    f = td.frame
    assert list(f["target_close_2m"].iloc[:3]) == [2.0, 3.0, 3.0]  # lands on 2, 3, 5
    assert list(f["target_close_4m"].iloc[:3]) == [3.0, 3.0, 4.0]  # lands on 4, 5, 7


def test_max_return_uses_traded_closes_only():
    # After minute 0 nothing trades until minute 3, which is lower: the max return is negative,
    # not the zero a carried-forward close would give.
    feats = _features([0, 3, *range(40, 390)], [2.0, 1.0, *([1.5] * 350)])
    td = build_training_data(feats, SESSION, min_coverage=0.0)
    assert td.frame["target_max_return_30m"].iloc[0] == pytest.approx(1.0 / 2.0 - 1)
    # From minute 3 the next 30 minutes (4..33) hold no trade at all: NaN.
    assert np.isnan(td.frame["target_max_return_30m"].iloc[1])
    # Minute 40 to 70 all at 1.5: zero.
    assert td.frame["target_max_return_30m"].iloc[2] == 0.0


def test_max_return_window_is_t_plus_1_to_t_plus_h():
    closes = np.full(390, 1.0)
    closes[31] = 3.0  # inside (0, 30]? no: minute 31 is outside minute 0's window
    closes[30] = 2.0  # the last minute of minute 0's window
    td = build_training_data(_features(range(390), closes), SESSION)
    mx = td.frame["target_max_return_30m"]
    assert mx.iloc[0] == pytest.approx(1.0)
    assert mx.iloc[1] == pytest.approx(2.0)
    assert mx.iloc[30] == pytest.approx(3.0 / 2.0 - 1)


def test_coverage_filter_at_exactly_the_boundary():
    kept = _features(range(312), np.ones(312), contract="O:KEEP")  # 312 / 390 = 80%
    dropped = _features(range(311), np.ones(311), contract="O:DROP")
    td = build_training_data(pd.concat([dropped, kept], ignore_index=True), SESSION)
    assert td.dropped_contract_days == 1 and td.kept_contract_days == 1
    assert set(td.frame["contract"]) == {"O:KEEP"}
    cov = td.coverage.set_index("contract")
    assert cov.loc["O:KEEP", "bars"] == 312 and cov.loc["O:DROP", "bars"] == 311
    assert td.min_bars == pytest.approx(312.0) and td.session_minutes == 390


def test_early_close_session():
    grid = calendar.session_minutes(EARLY)
    assert len(grid) == 210
    closes = 1.0 + np.arange(210) / 100.0
    full = _features(range(210), closes, contract="O:FULL", session=EARLY)
    edge = _features(range(168), np.ones(168), contract="O:EDGE", session=EARLY)  # 80% of 210
    short = _features(range(167), np.ones(167), contract="O:SHORT", session=EARLY)
    td = build_training_data(pd.concat([full, edge, short], ignore_index=True), EARLY)
    assert td.session_minutes == 210 and td.dropped_contract_days == 1
    assert set(td.frame["contract"]) == {"O:FULL", "O:EDGE"}
    f = td.frame[td.frame["contract"] == "O:FULL"].set_index("timestamp")
    et = f.index.tz_convert(calendar.MARKET_TZ)
    at_1254 = f.iloc[list(zip(et.hour, et.minute, strict=True)).index((12, 54))]
    at_1255 = f.iloc[list(zip(et.hour, et.minute, strict=True)).index((12, 55))]
    assert at_1254["target_close_5m"] == pytest.approx(closes[209])  # lands on 12:59 ET
    assert np.isnan(at_1255["target_close_5m"])  # 13:00 ET is past the early close
    assert np.isnan(f["target_max_return_30m"].iloc[180:]).all()
    assert not np.isnan(f["target_max_return_30m"].iloc[179])


def test_contracts_are_independent_and_output_sorted():
    a = _features(range(390), np.full(390, 1.0), contract="O:A")
    b = _features(range(390), np.full(390, 9.0), contract="O:B")
    td = build_training_data(pd.concat([b, a], ignore_index=True).iloc[::-1], SESSION)
    f = td.frame
    assert list(f["contract"].iloc[[0, 390]]) == ["O:A", "O:B"]
    assert f["timestamp"].is_monotonic_increasing is False  # two contracts, each in order
    assert (f.groupby("contract")["timestamp"].diff().dropna() > pd.Timedelta(0)).all()
    assert set(f.loc[f["contract"] == "O:A", "target_close_5m"].dropna()) == {1.0}
    assert set(f.loc[f["contract"] == "O:B", "target_close_5m"].dropna()) == {9.0}
