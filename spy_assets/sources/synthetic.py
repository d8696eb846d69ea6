"""A deterministic synthetic market: the offline default source (SPEC §7).

Every series is a pure function of (seed, ticker, session): the same inputs give the same bytes,
whatever order sessions are asked in. SPY walks with a U-shaped intraday volatility and
occasional jumps; VIX moves against it; options are priced by Black-Scholes-Merton on a smile
(the ATM level tied to VIX) plus noise, and far strikes trade only on some minutes; news
carries per-ticker sentiment that leans with the day's move.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

from spy_assets import calendar
from spy_assets.analytics.greeks import bs_price
from spy_assets.contracts import build_ticker, parse_ticker
from spy_assets.params import PricingParams
from spy_assets.sources.base import (
    BAR_COLUMNS,
    CONTRACT_COLUMNS,
    INDEX_BAR_COLUMNS,
    NEWS_COLUMNS,
    RequestStats,
)

#: Price level on 2023-01-03 for the tickers the demo knows; others get one from their name.
_BASE_LEVELS = {"SPY": 385.0, "QQQ": 265.0, "IWM": 175.0, "DIA": 335.0}
#: The underlyings the synthetic market knows; any other would be made up from its name.
SYNTHETIC_UNDERLYINGS = tuple(_BASE_LEVELS)
#: Levels drift from this day; fixed so that the market does not move with the history start.
_EPOCH = dt.date(2023, 1, 3)
_NEWS_TICKERS = ("SPY", "QQQ", "AAPL", "NVDA", "MSFT", "TSLA")
_PUBLISHERS = ("Benzinga", "The Motley Fool", "Zacks", "GlobeNewswire", "Reuters")
_MINUTES_PER_TRADING_YEAR = 252 * 390


def _stream_seed(seed: int, *parts: object) -> np.random.Generator:
    """An independent generator for one (seed, stream, ...) tuple, stable across processes."""
    words = [seed & 0xFFFFFFFF] + [zlib.crc32(str(p).encode()) for p in parts]
    return np.random.default_rng(words)


@dataclass(frozen=True)
class _Day:
    """One session of an underlying: regular-hours minute path plus the day's VIX path."""

    minutes: pd.DatetimeIndex
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    vix_close: np.ndarray


@dataclass
class SyntheticMarket:
    """The offline market. ``rate``/``div_yield`` are the ones options are priced with."""

    seed: int = 7
    rate: float = PricingParams().rate
    div_yield: float = PricingParams().dividend_yield
    name: str = "synthetic"
    stats: RequestStats = field(default_factory=RequestStats)

    # ----------------------------------------------------------------- paths
    def _day(self, ticker: str, session: dt.date) -> _Day:
        return _simulate_day(self.seed, ticker.upper(), session)

    def stock_bars(self, ticker: str, first: dt.date, last: dt.date) -> pd.DataFrame:
        if ticker.upper() not in SYNTHETIC_UNDERLYINGS:  # like the vendor: no bars, no error
            return _concat([], BAR_COLUMNS)
        frames = [self._stock_session(ticker, s) for s in calendar.sessions_between(first, last)]
        return _concat(frames, BAR_COLUMNS)

    def _stock_session(self, ticker: str, session: dt.date) -> pd.DataFrame:
        day = self._day(ticker, session)
        rng = _stream_seed(self.seed, "stock-extra", ticker.upper(), session)
        n = len(day.minutes)
        u = _u_shape(n)
        volume = np.round(u * rng.lognormal(np.log(60_000), 0.35, n)).astype("float64")
        vwap = np.round((day.high + day.low + day.close) / 3.0, 4)
        regular = pd.DataFrame(
            {
                "timestamp": day.minutes,
                "open": day.open,
                "high": day.high,
                "low": day.low,
                "close": day.close,
                "volume": volume,
                "vwap": vwap,
                "transactions": np.maximum(1, (volume / 95).astype("int64")),
            }
        )
        # Sparse extended-hours prints, so consumers must pick the regular session themselves.
        pre = _sparse_extended(
            rng, day.open[0], calendar.window_utc(session, extended=True)[0], day.minutes[0], 0.4
        )
        post = _sparse_extended(
            rng,
            day.close[-1],
            day.minutes[-1] + pd.Timedelta(minutes=1),
            day.minutes[-1] + pd.Timedelta(minutes=61),
            0.3,
        )
        return pd.concat([pre, regular, post], ignore_index=True)

    def index_bars(self, ticker: str, first: dt.date, last: dt.date) -> pd.DataFrame:
        if ticker.upper() not in ("I:VIX", "VIX"):
            raise ValueError(f"the synthetic market only has the I:VIX index, not {ticker!r}")
        frames = []
        for session in calendar.sessions_between(first, last):
            day = self._day("SPY", session)
            rng = _stream_seed(self.seed, "vix-bars", session)
            close = day.vix_close
            opn = np.round(np.concatenate([[close[0] * (1 + rng.normal(0, 0.002))], close[:-1]]), 2)
            wiggle = np.abs(rng.normal(0, 0.0015, (2, len(close)))) * close
            frames.append(
                pd.DataFrame(
                    {
                        "timestamp": day.minutes,
                        "open": opn,
                        "high": np.round(np.maximum(opn, close) + wiggle[0], 2),
                        "low": np.round(np.minimum(opn, close) - wiggle[1], 2),
                        "close": close,
                    }
                )
            )
        return _concat(frames, INDEX_BAR_COLUMNS)

    # --------------------------------------------------------------- options
    def implied_vol(self, spot: np.ndarray, strike: float, vix: np.ndarray) -> np.ndarray:
        """The smile the market prices with: ATM from VIX, skewed towards low strikes."""
        m = np.log(strike / spot)
        atm = 0.85 * vix / 100.0
        return np.clip(atm * (1.0 - 2.5 * m + 40.0 * m * m), 0.04, 3.0)

    def option_bars(self, contract: str, first: dt.date, last: dt.date) -> pd.DataFrame:
        spec = parse_ticker(contract)
        frames = []
        for session in calendar.sessions_between(first, min(last, spec.expiration)):
            frames.append(self._option_session(contract, session))
        return _concat(frames, BAR_COLUMNS)

    def _option_session(self, contract: str, session: dt.date) -> pd.DataFrame:
        spec = parse_ticker(contract)
        day = self._day(spec.underlying, session)
        rng = _stream_seed(self.seed, "option", contract, session)
        is_call = spec.contract_type == "call"
        t_end = calendar.years_to_expiry(day.minutes, spec.expiration)
        t_start = t_end + 1.0 / calendar.MINUTES_PER_YEAR
        n = len(day.minutes)
        # Noise lives in volatility (as quotes do), so deep in-the-money prices stay near
        # intrinsic instead of jittering by a fixed share of the price.
        sigma = self.implied_vol(day.close, spec.strike, day.vix_close)
        noise = np.exp(rng.normal(0.0, 0.02, (2, n)))
        close = _tick(
            bs_price(
                day.close, spec.strike, t_end, self.rate, self.div_yield, sigma * noise[0], is_call
            )
        )
        opn = _tick(
            bs_price(
                day.open, spec.strike, t_start, self.rate, self.div_yield, sigma * noise[1], is_call
            )
        )
        up = bs_price(day.high, spec.strike, t_end, self.rate, self.div_yield, sigma, is_call)
        down = bs_price(day.low, spec.strike, t_end, self.rate, self.div_yield, sigma, is_call)
        high = np.maximum(_tick(np.maximum(up, down)), np.maximum(opn, close))
        low = np.minimum(_tick(np.minimum(up, down)), np.minimum(opn, close))
        # Far strikes and near-worthless contracts print on only some minutes.
        distance = np.abs(np.log(spec.strike / day.close))
        p_trade = np.clip(0.995 * np.exp(-distance / 0.02), 0.25, 0.995)
        p_trade = np.where(close <= 0.02, np.minimum(p_trade, 0.5), p_trade)
        traded = rng.random(n) < p_trade
        volume = np.round(rng.lognormal(np.log(400), 0.8, n) * np.exp(-distance / 0.01) + 1)
        vwap = np.round(np.clip((high + low + 2 * close) / 4.0, low, high), 4)
        bars = pd.DataFrame(
            {
                "timestamp": day.minutes,
                "open": opn,
                "high": high,
                "low": low,
                "close": close,
                "volume": volume.astype("float64"),
                "vwap": vwap,
                "transactions": np.maximum(1, (volume / 7).astype("int64")),
            }
        )
        return bars[traded].reset_index(drop=True)

    def option_contracts(
        self,
        underlying: str,
        as_of: dt.date,
        expiration: dt.date,
        strike_min: float,
        strike_max: float,
    ) -> pd.DataFrame:
        if expiration < as_of:
            return _concat([], CONTRACT_COLUMNS)
        # Half-dollar strikes within ±5% of the day's open, whole dollars further out.
        spot = float(self._day(underlying, as_of).open[0])
        grid = np.arange(np.floor(spot * 0.9), np.ceil(spot * 1.1) + 0.5, 0.5)
        listed = grid[(np.abs(grid / spot - 1) <= 0.05) | (grid % 1 == 0)]
        listed = listed[(listed >= strike_min - 1e-9) & (listed <= strike_max + 1e-9)]
        rows = [
            {
                "contract": build_ticker(underlying, expiration, kind, float(k)),
                "underlying": underlying.upper(),
                "contract_type": kind,
                "strike": float(k),
                "expiration": expiration,
            }
            for kind in ("call", "put")
            for k in listed
        ]
        return pd.DataFrame(rows, columns=CONTRACT_COLUMNS)

    # ------------------------------------------------------------------ news
    def news(self, ticker: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        start, end = pd.Timestamp(start), pd.Timestamp(end)
        sessions = calendar.sessions_between(
            (start - pd.Timedelta(days=10)).date(), (end + pd.Timedelta(days=1)).date()
        )
        frames = [self._news_session(s) for s in sessions]
        articles = _concat(frames, NEWS_COLUMNS)
        mask = (
            (articles["published_utc"] >= start)
            & (articles["published_utc"] < end)
            & articles["tickers"].str.split(",").map(lambda ts: ticker.upper() in ts)
        )
        return articles[mask].sort_values(["published_utc", "article_id"]).reset_index(drop=True)

    def _news_session(self, session: dt.date) -> pd.DataFrame:
        """Articles published from the previous session's close to this session's close."""
        rng = _stream_seed(self.seed, "news", session)
        lo = calendar.session_close(calendar.previous_session(session))
        hi = calendar.session_close(session)
        day = self._day("SPY", session)
        lean = np.tanh(100 * np.log(day.close[-1] / day.open[0]))
        count = int(rng.poisson(9))
        offsets = np.sort(rng.random(count)) * (hi - lo).total_seconds()
        rows = []
        for i, offset in enumerate(offsets):
            others = rng.choice(_NEWS_TICKERS[1:], size=int(rng.integers(0, 3)), replace=False)
            tickers = ["SPY", *sorted(others)]
            sentiment = {
                t: int(np.clip(np.round(rng.normal(lean if t == "SPY" else 0.0, 0.8)), -1, 1))
                for t in tickers
            }
            rows.append(
                {
                    "article_id": f"syn-{session:%Y%m%d}-{i:03d}",
                    "published_utc": (lo + pd.Timedelta(seconds=int(offset))).floor("s"),
                    "publisher": str(rng.choice(_PUBLISHERS)),
                    "title": f"Market update {session:%b %d} #{i + 1}: {', '.join(tickers)}",
                    "article_url": f"https://news.example.invalid/{session:%Y%m%d}/{i:03d}",
                    "tickers": ",".join(tickers),
                    "sentiment_json": json.dumps(sentiment, sort_keys=True),
                }
            )
        return pd.DataFrame(rows, columns=NEWS_COLUMNS)


# --------------------------------------------------------------------- helpers
@lru_cache(maxsize=256)
def _simulate_day(seed: int, ticker: str, session: dt.date) -> _Day:
    minutes = calendar.session_minutes(session)
    n = len(minutes)
    rng = _stream_seed(seed, "path", ticker, session)
    years = (session - _EPOCH).days / 365.25
    base = _BASE_LEVELS.get(ticker, 20.0 + zlib.crc32(ticker.encode()) % 480)
    level = base * np.exp(0.14 * years + 0.03 * np.sin(years * 5.0) + rng.normal(0, 0.01))
    vix_open = float(np.clip(16.0 * np.exp(rng.normal(0, 0.25)), 10.0, 45.0))
    sigma_day = vix_open / 100.0 * 0.9
    per_minute = sigma_day / np.sqrt(_MINUTES_PER_TRADING_YEAR) * _u_shape(n)
    log_ret = rng.normal(0.0, 1.0, n) * per_minute
    jumps = rng.random(n) < 2.0 / 390.0
    log_ret += jumps * rng.normal(0.0, 0.0025, n)
    close = np.round(level * np.exp(np.cumsum(log_ret)), 2)
    opn = np.round(np.concatenate([[level], close[:-1]]) * np.exp(rng.normal(0, 1e-5, n)), 2)
    wick = np.abs(rng.normal(0.0, 0.6, (2, n))) * per_minute * close
    high = np.maximum(np.round(np.maximum(opn, close) + wick[0], 2), np.maximum(opn, close))
    low = np.minimum(np.round(np.minimum(opn, close) - wick[1], 2), np.minimum(opn, close))
    # VIX moves against the underlying (about -4 vol-% per +1%), with its own noise.
    drift = np.log(close / level)
    vix_noise = np.cumsum(rng.normal(0.0, 0.0015, n))
    vix_close = np.round(vix_open * np.exp(-4.0 * drift + vix_noise), 2)
    return _Day(minutes, opn, high, low, close, vix_close)


def _u_shape(n: int) -> np.ndarray:
    """Intraday activity: high at the open and close, low at midday, mean 1."""
    x = np.linspace(-1.0, 1.0, n)
    shape = 0.55 + 1.6 * x**2
    return shape / shape.mean()


def _tick(price: np.ndarray) -> np.ndarray:
    """Round to the penny; an option never prints below one cent."""
    return np.maximum(np.round(price, 2), 0.01)


def _sparse_extended(
    rng: np.random.Generator, price: float, start: pd.Timestamp, end: pd.Timestamp, p: float
) -> pd.DataFrame:
    minutes = pd.date_range(start, end, freq="1min", inclusive="left").as_unit("ms")
    minutes = minutes[rng.random(len(minutes)) < p]
    n = len(minutes)
    close = np.round(price * np.exp(np.cumsum(rng.normal(0, 2e-4, n))), 2)
    volume = np.round(rng.lognormal(np.log(800), 0.5, n)).astype("float64")
    return pd.DataFrame(
        {
            "timestamp": minutes,
            "open": close,
            "high": close,
            "low": close,
            "close": close,
            "volume": volume,
            "vwap": close,
            "transactions": np.maximum(1, (volume / 50).astype("int64")),
        }
    )


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        from spy_assets.sources.base import empty_frame

        return empty_frame(columns)
    out = pd.concat(frames, ignore_index=True)[columns]
    for col in ("timestamp", "published_utc"):
        if col in out:
            out[col] = out[col].astype("datetime64[ms, UTC]")
    return out
