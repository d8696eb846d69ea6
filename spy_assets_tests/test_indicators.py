"""Indicators: values against hand-rolled references, causality, and the minute grid."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from spy_assets import calendar
from spy_assets.analytics import indicators as ind

SESSION = dt.date(2025, 12, 1)


def _walk(n: int = 120, seed: int = 7) -> pd.Series:
    rng = np.random.default_rng(seed)
    return pd.Series(100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, n))))


def _ema_loop(x: list[float], span: int) -> list[float]:
    a = 2.0 / (span + 1.0)
    out = [x[0]]
    for v in x[1:]:
        out.append(out[-1] + a * (v - out[-1]))
    return out


def _rsi_loop(x: list[float], period: int = 14) -> list[float]:
    """Wilder's RSI as in his book: seed with a simple average, then smooth."""
    out = [np.nan] * len(x)
    ch = [x[i] - x[i - 1] for i in range(1, len(x))]
    gain = sum(max(c, 0.0) for c in ch[:period]) / period
    loss = sum(max(-c, 0.0) for c in ch[:period]) / period
    out[period] = 100.0 - 100.0 / (1.0 + gain / loss)
    for i in range(period + 1, len(x)):
        c = ch[i - 1]
        gain = (gain * (period - 1) + max(c, 0.0)) / period
        loss = (loss * (period - 1) + max(-c, 0.0)) / period
        out[i] = 100.0 - 100.0 / (1.0 + gain / loss)
    return out


def test_returns_over_1_5_15_minutes():
    close = pd.Series(np.arange(1.0, 31.0))
    r1, r5, r15 = (ind.simple_return(close, n) for n in (1, 5, 15))
    assert np.isnan(r1.iloc[0]) and r1.iloc[1] == pytest.approx(1.0)  # 2/1 - 1
    assert r5.iloc[:5].isna().all() and r5.iloc[5] == pytest.approx(6.0 / 1.0 - 1)
    assert r15.iloc[:15].isna().all() and r15.iloc[29] == pytest.approx(30.0 / 15.0 - 1)


def test_ema_is_recursive_and_seeded_with_first_value():
    close = _walk(60)
    for span in (9, 21):
        np.testing.assert_allclose(ind.ema(close, span), _ema_loop(close.tolist(), span))


def test_rsi_matches_wilder_reference():
    close = _walk(80, seed=3)
    got = ind.rsi(close, 14)
    want = _rsi_loop(close.tolist(), 14)
    assert got.iloc[:14].isna().all()
    np.testing.assert_allclose(got.iloc[14:], want[14:], rtol=1e-10)


def test_rsi_monotone_and_flat_prices():
    assert ind.rsi(pd.Series(np.arange(1.0, 31.0))).iloc[-1] == 100.0
    assert ind.rsi(pd.Series(np.arange(31.0, 1.0, -1.0))).iloc[-1] == pytest.approx(0.0)
    assert ind.rsi(pd.Series(np.full(30, 5.0))).iloc[-1] == 50.0


def test_rsi_skips_leading_nans():
    close = _walk(60, seed=11)
    padded = pd.concat([pd.Series([np.nan] * 5), close], ignore_index=True)
    np.testing.assert_allclose(ind.rsi(padded).iloc[5:].to_numpy(), ind.rsi(close).to_numpy())


def test_macd_against_loop():
    close = _walk(100, seed=5)
    line, sig, hist = ind.macd(close)
    x = close.tolist()
    want_line = np.subtract(_ema_loop(x, 12), _ema_loop(x, 26))
    want_sig = _ema_loop(list(want_line), 9)
    np.testing.assert_allclose(line, want_line, atol=1e-12)
    np.testing.assert_allclose(sig, want_sig, atol=1e-12)
    np.testing.assert_allclose(hist, want_line - np.asarray(want_sig), atol=1e-12)


def test_bollinger_position():
    close = _walk(40, seed=9)
    pos = ind.bollinger_position(close)
    assert pos.iloc[:19].isna().all()
    w = close.iloc[20:40].to_numpy()
    assert pos.iloc[39] == pytest.approx((w[-1] - w.mean()) / (2 * w.std(ddof=0)))
    # A flat window has sd 0: the close sits on the middle band, not a division by zero.
    flat = pd.Series(np.full(25, 10.0))
    assert ind.bollinger_position(flat).iloc[-1] == 0.0


def test_session_vwap_distance_by_hand():
    close = pd.Series([10.0, 10.0, 11.0, 12.0])
    vwap = pd.Series([10.0, np.nan, 11.0, 12.0])  # minute 1: no trade
    volume = pd.Series([100.0, 0.0, 300.0, 0.0])
    sv = ind.session_vwap(close, vwap, volume)
    np.testing.assert_allclose(sv, [10.0, 10.0, 10.75, 10.75])
    dist = ind.vwap_distance(close, vwap, volume)
    assert dist.iloc[3] == pytest.approx(12.0 / 10.75 - 1)
    nothing = ind.session_vwap(close, vwap, pd.Series([0.0, 0.0, 5.0, 0.0]))
    assert nothing.iloc[:2].isna().all() and nothing.iloc[2] == pytest.approx(11.0)


def test_realized_vol_not_annualized():
    close = _walk(40, seed=2)
    rv = ind.realized_vol(close, 15)
    assert rv.iloc[:15].isna().all()
    lr = np.diff(np.log(close.to_numpy()))
    assert rv.iloc[15] == pytest.approx(np.std(lr[:15], ddof=1))
    assert rv.iloc[39] == pytest.approx(np.std(lr[-15:], ddof=1))


def test_every_indicator_is_causal():
    close = _walk(200, seed=4)
    vol = pd.Series(np.linspace(100, 300, 200))
    vwap = close * 1.0001
    full = ind.compute_indicators(close, vwap, vol)
    for cut in (1, 17, 60, 150):
        part = ind.compute_indicators(close.iloc[:cut], vwap.iloc[:cut], vol.iloc[:cut])
        for name in ind.INDICATOR_NAMES:
            np.testing.assert_allclose(
                part[name].to_numpy(), full[name].iloc[:cut].to_numpy(), rtol=1e-12, err_msg=name
            )


def _grid_bars(minutes: list[int], closes: list[float], contract: str = "A") -> pd.DataFrame:
    grid = calendar.session_minutes(SESSION)
    return pd.DataFrame(
        {
            "contract": contract,
            "timestamp": grid[minutes],
            "close": closes,
            "vwap": closes,
            "volume": 10.0,
        }
    )


def test_minute_grid_carries_forward_never_backward():
    grid = calendar.session_minutes(SESSION)
    bars = _grid_bars([3, 4, 7], [1.0, 2.0, 4.0])
    close, vwap, volume = ind.to_minute_grid(bars, grid, by="contract")
    c = close["A"].to_numpy()
    assert np.isnan(c[:3]).all()  # nothing before the first trade
    np.testing.assert_array_equal(c[3:9], [1.0, 2.0, 2.0, 2.0, 4.0, 4.0])
    assert volume["A"].iloc[5] == 0.0 and np.isnan(vwap["A"].iloc[5])
    assert len(close) == 390


def test_add_indicators_uses_prevailing_price_across_gaps_and_keys():
    grid = calendar.session_minutes(SESSION)
    a = _grid_bars([0, 1, 3], [1.0, 2.0, 4.0], "A")
    b = _grid_bars([0, 1, 2, 3], [5.0, 5.0, 10.0, 5.0], "B")
    bars = pd.concat([b, a], ignore_index=True)
    out = ind.add_indicators(bars, grid, prefix="opt_", by="contract")
    assert list(out["contract"]) == list(bars["contract"])  # same rows, same order
    a3 = out[(out["contract"] == "A") & (out["timestamp"] == grid[3])].iloc[0]
    assert a3["opt_ret_1m"] == pytest.approx(1.0)  # 4 / prevailing 2 - 1
    b3 = out[(out["contract"] == "B") & (out["timestamp"] == grid[3])].iloc[0]
    assert b3["opt_ret_1m"] == pytest.approx(-0.5)
    # The same contract alone gives the same numbers (columns do not leak into each other).
    alone = ind.add_indicators(a, grid, prefix="opt_", by="contract")
    pd.testing.assert_frame_equal(
        out[out["contract"] == "A"].reset_index(drop=True), alone, check_dtype=False
    )
