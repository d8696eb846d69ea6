import datetime as dt
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from spy_assets import calendar
from spy_assets.contracts import build_ticker, select_contracts
from spy_assets.sources.base import BAR_COLUMNS, INDEX_BAR_COLUMNS, NEWS_COLUMNS, MarketSource
from spy_assets.sources.synthetic import SyntheticMarket

DAY = dt.date(2025, 11, 26)


def _digest(frame: pd.DataFrame) -> str:
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def test_implements_the_source_interface():
    assert isinstance(SyntheticMarket(), MarketSource)


def test_same_seed_and_session_give_the_same_data_in_any_order():
    one = SyntheticMarket(seed=11).stock_bars("SPY", DAY, DAY)
    # a fresh market asked for a range that holds the day, in another process state
    other = SyntheticMarket(seed=11).stock_bars("SPY", dt.date(2025, 11, 24), dt.date(2025, 11, 28))
    lo, hi = calendar.window_utc(DAY, extended=True)
    same_day = other[(other.timestamp >= lo) & (other.timestamp < hi)].reset_index(drop=True)
    assert _digest(one) == _digest(same_day)
    assert _digest(one) != _digest(SyntheticMarket(seed=12).stock_bars("SPY", DAY, DAY))


def test_stock_bars_shape_and_u_shaped_activity():
    bars = SyntheticMarket().stock_bars("SPY", DAY, DAY)
    assert list(bars.columns) == BAR_COLUMNS
    lo, hi = calendar.window_utc(DAY)
    regular = bars[(bars.timestamp >= lo) & (bars.timestamp < hi)]
    assert len(regular) == 390 and len(bars) > 390  # extended-hours prints around it
    assert (regular.high >= regular[["open", "close"]].max(axis=1)).all()
    assert (regular.low <= regular[["open", "close"]].min(axis=1)).all()
    # U shape over many days: first and last half hours move more than midday
    moves = {"edge": [], "mid": []}
    for session in calendar.sessions_between("2025-09-01", "2025-10-31"):
        b = SyntheticMarket().stock_bars("SPY", session, session)
        r = np.diff(
            np.log(
                b[
                    (b.timestamp >= calendar.session_open(session))
                    & (b.timestamp < calendar.session_close(session))
                ].close.to_numpy()
            )
        )
        moves["edge"].append(np.abs(np.r_[r[:30], r[-30:]]).mean())
        moves["mid"].append(np.abs(r[150:240]).mean())
    assert np.mean(moves["edge"]) > 1.5 * np.mean(moves["mid"])


def test_vix_has_no_volume_and_moves_against_spy():
    vix = SyntheticMarket().index_bars("I:VIX", DAY, DAY)
    assert list(vix.columns) == INDEX_BAR_COLUMNS
    spy = SyntheticMarket().stock_bars("SPY", DAY, DAY).merge(vix, on="timestamp")
    corr = np.corrcoef(np.diff(np.log(spy.close_x)), np.diff(np.log(spy.close_y)))[0, 1]
    assert corr < -0.3
    with pytest.raises(ValueError, match="I:VIX"):
        SyntheticMarket().index_bars("I:SPX", DAY, DAY)


def test_far_strikes_trade_less_and_prices_respect_bounds():
    market = SyntheticMarket()
    s0 = float(
        market.stock_bars("SPY", DAY, DAY)
        .pipe(lambda b: b[b.timestamp >= calendar.session_open(DAY)])
        .open.iloc[0]
    )
    near = select_contracts("SPY", DAY, s0, 1.0, 1, "0dte")[0]
    far = build_ticker("SPY", DAY, "call", round(s0 * 1.02))
    near_bars = market.option_bars(near.ticker, DAY, DAY)
    far_bars = market.option_bars(far, DAY, DAY)
    assert len(near_bars) > len(far_bars)
    assert len(near_bars) >= 0.8 * 390  # near the money trades nearly every minute
    assert (near_bars.close >= 0.01).all()
    assert (near_bars.high >= near_bars[["open", "close"]].max(axis=1)).all()
    # an expired contract has no bars after its expiry
    assert market.option_bars(
        build_ticker("SPY", dt.date(2025, 11, 25), "call", s0), DAY, DAY
    ).empty


def test_listed_contracts_cover_a_strike_band():
    listed = SyntheticMarket().option_contracts("SPY", DAY, DAY, 590.0, 600.0)
    assert set(listed.contract_type) == {"call", "put"}
    assert listed.strike.between(590.0, 600.0).all()
    assert SyntheticMarket().option_contracts("SPY", DAY, dt.date(2025, 11, 25), 0, 1e9).empty


def test_news_windows_and_sentiment():
    market = SyntheticMarket()
    lo = calendar.session_close(calendar.previous_session(DAY))
    hi = calendar.session_close(DAY)
    news = market.news("SPY", lo, hi)
    assert list(news.columns) == NEWS_COLUMNS
    assert len(news) > 0 and news.published_utc.between(lo, hi, inclusive="left").all()
    for raw in news.sentiment_json:
        sentiment = json.loads(raw)
        assert sentiment["SPY"] in (-1, 0, 1)
    assert news.article_id.is_unique
    assert market.news("NVDA", lo, hi).tickers.str.contains("NVDA").all()
