"""The per-option-per-minute feature table: joins, news windows, pricing, and no look-ahead."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from spy_assets import calendar
from spy_assets.analytics.features import FEATURE_COLUMNS, FEATURE_DESCRIPTIONS, build_features
from spy_assets.analytics.greeks import bs_price

SESSION = dt.date(2025, 12, 1)
EARLY = dt.date(2025, 11, 28)  # closes 13:00 ET
RATE, DIV, VOL = 0.045, 0.013, 0.20
MISSING_SPOT_MINUTE = 50


def _contracts(session: dt.date) -> pd.DataFrame:
    yymmdd = session.strftime("%y%m%d")
    rows = [("C", 681.0), ("C", 682.0), ("P", 680.0), ("P", 679.0)]
    return pd.DataFrame(
        {
            "contract": [f"O:SPY{yymmdd}{cp}{int(k * 1000):08d}" for cp, k in rows],
            "underlying": "SPY",
            "contract_type": ["call" if cp == "C" else "put" for cp, _ in rows],
            "strike": [k for _, k in rows],
            "expiration": session,
            "underlying_open": 680.4,
        }
    )


def _market(session: dt.date = SESSION, seed: int = 1) -> dict[str, pd.DataFrame]:
    """A small deterministic session: SPY walk, BSM-priced options with gaps, VIX, news."""
    rng = np.random.default_rng(seed)
    grid = calendar.session_minutes(session)
    n = len(grid)
    spot = 680.4 * np.exp(np.cumsum(rng.normal(0, 0.0004, n)))
    spot_bars = pd.DataFrame(
        {
            "ticker": "SPY",
            "timestamp": grid,
            "open": spot * 0.9999,
            "high": spot * 1.0002,
            "low": spot * 0.9997,
            "close": spot,
            "volume": rng.integers(1_000, 5_000, n).astype(float),
            "vwap": spot * 1.00001,
            "transactions": pd.array(rng.integers(10, 50, n), dtype="Int64"),
        }
    )
    premarket = spot_bars.iloc[[0]].assign(timestamp=grid[0] - pd.Timedelta(minutes=5))
    spot_bars = pd.concat([premarket, spot_bars.drop(index=MISSING_SPOT_MINUTE)])
    contracts = _contracts(session)
    t = calendar.years_to_expiry(grid, session)
    option_frames = []
    for i, c in contracts.iterrows():
        price = bs_price(spot, c["strike"], t, RATE, DIV, VOL, c["contract_type"] == "call")
        traded = rng.random(n) > (0.05 if i < 2 else 0.3)  # sparse trading for far strikes
        option_frames.append(
            pd.DataFrame(
                {
                    "contract": c["contract"],
                    "timestamp": grid,
                    "open": price * 1.01,
                    "high": price * 1.02,
                    "low": price * 0.98,
                    "close": price,
                    "volume": rng.integers(1, 100, n).astype(float),
                    "vwap": price * 1.001,
                    "transactions": pd.array(rng.integers(1, 20, n), dtype="Int64"),
                }
            )[traded]
        )
    option_bars = pd.concat(option_frames, ignore_index=True)
    vix_close = 16 + np.cumsum(rng.normal(0, 0.02, n))
    vix_bars = pd.DataFrame(
        {
            "timestamp": grid,
            "open": vix_close,
            "high": vix_close,
            "low": vix_close,
            "close": vix_close,
        }
    ).iloc[3:]  # VIX starts late: the first minutes have no known value
    pub = (
        grid[0]
        - pd.Timedelta(minutes=90)
        + pd.to_timedelta(np.sort(rng.integers(0, (n + 90) * 60, 40)), unit="s")
    )
    news = pd.DataFrame(
        {
            "article_id": [f"a{i}" for i in range(40)],
            "published_utc": pub.as_unit("ms"),
            "publisher": "wire",
            "title": "t",
            "article_url": "u",
            "tickers": ["SPY,QQQ" if i % 4 else "AAPL" for i in range(40)],
            "sentiment_json": [json.dumps({"SPY": int(s)}) for s in rng.integers(-1, 2, 40)],
        }
    )
    return {
        "contracts": contracts,
        "option_bars": option_bars,
        "underlying_bars": spot_bars,
        "vix_bars": vix_bars,
        "news": news,
    }


def _build(m: dict[str, pd.DataFrame], session: dt.date = SESSION) -> pd.DataFrame:
    return build_features(
        session,
        m["contracts"],
        m["option_bars"],
        m["underlying_bars"],
        m["vix_bars"],
        m["news"],
        rate=RATE,
        div_yield=DIV,
    )


def test_one_flat_row_per_option_bar_in_order():
    m = _market()
    junk = m["option_bars"].iloc[:2].assign(contract="O:SPY251201C00999000")  # unknown contract
    late = m["option_bars"].iloc[:1].assign(timestamp=calendar.session_close(SESSION))
    m["option_bars"] = pd.concat([late, m["option_bars"], junk], ignore_index=True)
    f = _build(m)
    assert list(f.columns) == FEATURE_COLUMNS == list(FEATURE_DESCRIPTIONS)
    assert len(f) == len(m["option_bars"]) - 3
    assert f.equals(f.sort_values(["contract", "timestamp"]).reset_index(drop=True))
    assert not f.duplicated(["contract", "timestamp"]).any()
    assert str(f["timestamp"].dtype) == "datetime64[ms, UTC]"
    for col in f.columns[[d == np.dtype(object) for d in f.dtypes]]:  # no nested values
        assert not f[col].map(lambda v: isinstance(v, list | dict | tuple)).any(), col
    assert (f["session"] == SESSION).all() and (f["underlying"] == "SPY").all()
    pd.testing.assert_frame_equal(f, _build(m))  # deterministic


def test_same_minute_spot_moneyness_and_iv():
    m = _market()
    f = _build(m)
    spot = m["underlying_bars"].set_index("timestamp")["close"]
    has_spot = f["timestamp"].isin(spot.index)
    np.testing.assert_array_equal(
        f.loc[has_spot, "spot_close"], spot.reindex(f.loc[has_spot, "timestamp"]).to_numpy()
    )
    np.testing.assert_allclose(f["moneyness"], np.log(f["spot_close"] / f["strike"]))
    ok = f[f["iv_status"] == "ok"]
    assert len(ok) > 0.8 * len(f)
    # Priced at VOL, solved back: exact where the price pins sigma down (vega above a tenth
    # of a cent per vol point); deep in the wings a float's worth of price moves sigma more.
    pinned = ok[ok["vega"] > 1e-3]
    assert len(pinned) > 0.5 * len(ok)
    np.testing.assert_allclose(pinned["iv"], VOL, atol=1e-6)
    np.testing.assert_allclose(ok["iv"], VOL, atol=1e-3)


def test_minute_without_spot_bar_gives_no_silent_iv():
    f = _build(_market())
    gap = f[f["minutes_since_open"] == MISSING_SPOT_MINUTE]
    assert len(gap) > 0
    assert gap["spot_close"].isna().all() and gap["iv"].isna().all()
    assert (gap["iv_status"] != "ok").all()
    assert gap["spot_ema_9"].notna().all()  # indicators use the prevailing spot price


def test_vix_is_the_last_known_value():
    m = _market()
    grid = calendar.session_minutes(SESSION)
    m["vix_bars"] = pd.DataFrame(
        {"timestamp": grid[[10, 20]], "open": 1.0, "high": 1.0, "low": 1.0, "close": [15.0, 16.0]}
    )
    f = _build(m)
    one = f[f["contract"] == f["contract"].iloc[0]].set_index("minutes_since_open")
    minutes = [i for i in (5, 10, 15, 20, 25) if i in one.index]
    assert {10, 20} <= set(minutes)
    want = {5: (np.nan, np.nan), 10: (15.0, 0.0), 15: (15.0, 5.0), 20: (16.0, 0.0), 25: (16.0, 5.0)}
    for i in minutes:
        np.testing.assert_array_equal(one.loc[i, ["vix_close", "vix_age_min"]], want[i])


def test_news_windows_by_hand():
    m = _market()
    grid = calendar.session_minutes(SESSION)
    s = pd.Timedelta(seconds=1)
    articles = [
        ("open", grid[0], "SPY", 1),  # in [end - 15m, end) for minutes 0..14 exactly
        ("in-bar", grid[20] + 30 * s, "SPY,QQQ", -1),  # during minute 20: counts at 20
        ("at-end", grid[21], "QQQ, SPY", 1),  # at minute 20's end: counts from minute 21
        ("other", grid[20], "AAPL", 1),  # not about SPY
        ("no-score", grid[20], "SPY", None),  # about SPY, no SPY sentiment
    ]
    m["news"] = pd.DataFrame(
        {
            "article_id": [a[0] for a in articles],
            "published_utc": pd.DatetimeIndex([a[1] for a in articles]).as_unit("ms"),
            "publisher": "p",
            "title": "t",
            "article_url": "u",
            "tickers": [a[2] for a in articles],
            "sentiment_json": [json.dumps({} if a[3] is None else {"SPY": a[3]}) for a in articles],
        }
    )
    # Every minute trades for this check.
    c0 = m["contracts"]["contract"].iloc[0]
    m["option_bars"] = pd.DataFrame({"contract": c0, "timestamp": grid, "close": 1.0})
    f = _build(m).set_index("minutes_since_open")
    cols = ["news_count_15m", "news_sentiment_15m", "news_count_60m", "news_sentiment_60m"]
    np.testing.assert_array_equal(f.loc[0, cols], [1, 1.0, 1, 1.0])
    np.testing.assert_array_equal(f.loc[14, cols], [1, 1.0, 1, 1.0])
    np.testing.assert_array_equal(f.loc[15, cols], [0, np.nan, 1, 1.0])
    np.testing.assert_array_equal(f.loc[19, cols], [0, np.nan, 1, 1.0])
    np.testing.assert_array_equal(f.loc[20, cols], [2, -1.0, 3, 0.0])
    np.testing.assert_array_equal(f.loc[21, cols], [3, 0.0, 4, 1 / 3])
    assert f.loc[59, "news_count_60m"] == 4 and f.loc[60, "news_count_60m"] == 3
    assert f["news_count_15m"].dtype == np.int64


def test_no_look_ahead():
    m = _market()
    base = _build(m)
    grid = calendar.session_minutes(SESSION)
    t = grid[200]
    end_t = t + pd.Timedelta(minutes=1)
    rng = np.random.default_rng(99)

    def scramble(bars: pd.DataFrame, after: pd.Series, cols: list[str]) -> pd.DataFrame:
        b = bars.copy()
        k = int(after.sum())
        for col in cols:
            b.loc[after, col] = b.loc[after, col] * rng.uniform(0.5, 2.0, k)
        return b.drop(index=b.index[after.to_numpy()][::7])  # and some later bars vanish

    ob = m["option_bars"]
    m2 = dict(m)
    m2["option_bars"] = pd.concat(
        [
            scramble(ob, ob["timestamp"] > t, ["open", "high", "low", "close", "vwap", "volume"]),
            # New trades after t, at minutes that had none, and a contract that starts later.
            pd.DataFrame(
                {
                    "contract": ob["contract"].iloc[-1],
                    "timestamp": grid[201:390:3],
                    "close": 0.77,
                    "volume": 5.0,
                }
            ),
        ],
        ignore_index=True,
    ).drop_duplicates(["contract", "timestamp"], keep="first")
    ub = m["underlying_bars"]
    m2["underlying_bars"] = scramble(
        ub, ub["timestamp"] > t, ["open", "high", "low", "close", "vwap", "volume"]
    )
    vb = m["vix_bars"]
    m2["vix_bars"] = scramble(vb, vb["timestamp"] > t, ["close"])
    nw = m["news"].copy()
    later = nw["published_utc"] >= end_t
    nw.loc[later, "sentiment_json"] = json.dumps({"SPY": -1})
    extra = nw.iloc[:3].assign(
        article_id=["x1", "x2", "x3"],
        published_utc=pd.DatetimeIndex([end_t, end_t, end_t + pd.Timedelta(minutes=5)]).as_unit(
            "ms"
        ),
        tickers="SPY",
    )
    m2["news"] = pd.concat([nw, extra], ignore_index=True)

    changed = _build(m2)
    assert (
        not changed[changed["timestamp"] > t]
        .reset_index(drop=True)
        .equals(base[base["timestamp"] > t].reset_index(drop=True))
    )  # the perturbation did reach the later rows
    before = base[base["timestamp"] <= t].reset_index(drop=True)
    after = changed[changed["timestamp"] <= t].reset_index(drop=True)
    assert len(before) > 600
    assert not any(c.startswith("target_") for c in FEATURE_COLUMNS)
    pd.testing.assert_frame_equal(before, after, check_exact=True)


def test_contracts_do_not_leak_into_each_other():
    m = _market()
    full = _build(m)
    first = m["contracts"]["contract"].iloc[0]
    m["option_bars"] = m["option_bars"][m["option_bars"]["contract"] == first]
    alone = _build(m)
    pd.testing.assert_frame_equal(
        full[full["contract"] == first].reset_index(drop=True), alone, check_exact=True
    )


def test_early_close_session():
    m = _market(EARLY)
    # A stray bar after the 13:00 ET close must not become a row.
    stray = m["option_bars"].iloc[:1].assign(timestamp=calendar.session_close(EARLY))
    m["option_bars"] = pd.concat([m["option_bars"], stray], ignore_index=True)
    f = _build(m, EARLY)
    assert f.groupby("contract").size().max() <= 210
    assert f["minutes_since_open"].max() <= 209
    et = f["timestamp"].dt.tz_convert(calendar.MARKET_TZ)
    assert et.max().hour == 12
    noon = f[(et.dt.hour == 12) & (et.dt.minute == 0)]
    np.testing.assert_allclose(noon["t_years"], 59 / calendar.MINUTES_PER_YEAR)
    last = f[f["minutes_since_open"] == 209]
    assert (last["t_years"] == 0.0).all() and last["iv"].isna().all()
    assert (last["iv_status"] != "ok").all()
    ok = f[f["iv_status"] == "ok"]
    assert len(ok) > 0.8 * len(f)
    # Exact where the price pins sigma down (as in the same-minute test): near expiry a deep ITM
    # put's vega is ~1e-9, below the rounding of the test's own parity-priced input.
    pinned = ok[ok["vega"] > 1e-3]
    assert len(pinned) > 0.5 * len(ok)
    np.testing.assert_allclose(pinned["iv"], VOL, atol=1e-6)


def test_later_expiry_time_to_expiry():
    m = _market()
    nxt = calendar.next_session(SESSION)
    m["contracts"] = m["contracts"].assign(expiration=pd.Timestamp(nxt))  # datetime64 accepted
    f = _build(m)
    np.testing.assert_allclose(f["t_years"], calendar.years_to_expiry(f["timestamp"], nxt))
    assert (f["expiration"] == nxt).all()


def test_no_option_bars():
    m = _market()
    m["option_bars"] = m["option_bars"].iloc[0:0]
    f = _build(m)
    assert f.empty and list(f.columns) == FEATURE_COLUMNS


@pytest.mark.parametrize("drop", ["vix_bars", "news"])
def test_empty_side_inputs(drop: str):
    m = _market()
    m[drop] = m[drop].iloc[0:0]
    f = _build(m)
    assert len(f) == len(m["option_bars"])
    if drop == "vix_bars":
        assert f["vix_close"].isna().all()
    else:
        assert (f["news_count_60m"] == 0).all() and f["news_sentiment_60m"].isna().all()
