"""The per-option-per-minute feature table (SPEC §4): one flat row per option bar.

Every value in a row is known at the end of that row's bar: the option and underlying bars of
the same minute, the last VIX bar starting at or before it (``merge_asof`` backward), news
published strictly before the bar's end, and indicators computed on the minute grid with the
prevailing price (see :mod:`spy_assets.analytics.indicators`). Only regular-session bars of
contracts listed in ``contracts`` are kept. Nothing here looks ahead; targets live in
:mod:`spy_assets.analytics.training`.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd

from spy_assets import calendar
from spy_assets.analytics.indicators import INDICATOR_NAMES, grid_indicators
from spy_assets.errors import NotASessionError
from spy_assets.params import PricingParams

_PRICING = PricingParams()

_BAR_FIELDS = ["open", "high", "low", "close", "volume", "vwap", "transactions"]
NEWS_WINDOWS_MIN = (15, 60)
_SENTIMENT_WORDS = {"positive": 1.0, "neutral": 0.0, "negative": -1.0}

#: Every output column with its meaning, in output order.
FEATURE_DESCRIPTIONS: dict[str, str] = {
    "session": "NYSE session date of the row",
    "underlying": "underlying ticker (e.g. SPY)",
    "contract": "option ticker, O:SPY250321C00594000 style",
    "contract_type": "'call' or 'put'",
    "strike": "strike price",
    "expiration": "expiry session date",
    "timestamp": "bar start, UTC (the row's minute)",
    "minutes_since_open": "whole minutes from the regular-session open to the bar start",
    "open": "option bar open",
    "high": "option bar high",
    "low": "option bar low",
    "close": "option bar close (the price IV is solved from)",
    "volume": "option bar volume (contracts)",
    "vwap": "option bar volume-weighted average price",
    "transactions": "option bar trade count",
    "spot_open": "underlying bar open, same minute (NaN if the underlying has no bar)",
    "spot_high": "underlying bar high, same minute",
    "spot_low": "underlying bar low, same minute",
    "spot_close": "underlying bar close, same minute (the spot for IV and moneyness)",
    "spot_volume": "underlying bar volume, same minute",
    "spot_vwap": "underlying bar vwap, same minute",
    "spot_transactions": "underlying bar trade count, same minute",
    "vix_close": "close of the last VIX bar starting at or before this minute",
    "vix_age_min": "minutes between that VIX bar's start and this bar's start (0 = same minute)",
    "news_count_15m": "articles on the underlying published in [bar end - 15 min, bar end)",
    "news_sentiment_15m": "mean sentiment (+1/0/-1) of those articles; NaN when none has one",
    "news_count_60m": "articles on the underlying published in [bar end - 60 min, bar end)",
    "news_sentiment_60m": "mean sentiment (+1/0/-1) of those articles; NaN when none has one",
    "t_years": "years from the bar's end to the expiry session's close (365-day year)",
    "moneyness": "ln(spot_close / strike)",
    "iv": "Black-Scholes-Merton implied volatility from close (NaN unless iv_status == 'ok')",
    "delta": "BSM delta",
    "gamma": "BSM gamma (per $1 of spot)",
    "theta": "BSM theta per calendar day",
    "vega": "BSM vega per 1 vol point",
    "rho": "BSM rho per 1% rate",
    "iv_status": "IV solver outcome: ok, bad_input, expired, below_intrinsic, "
    "above_upper_bound, no_time_value, no_convergence",
}
_INDICATOR_MEANING = {
    "ret_1m": "1-minute simple return of the prevailing close",
    "ret_5m": "5-minute simple return of the prevailing close",
    "ret_15m": "15-minute simple return of the prevailing close",
    "ema_9": "EMA(9) of the prevailing close (adjust=False)",
    "ema_21": "EMA(21) of the prevailing close (adjust=False)",
    "rsi_14": "Wilder RSI(14), 0-100",
    "macd": "MACD line, EMA(12) - EMA(26)",
    "macd_signal": "MACD signal, EMA(9) of the line",
    "macd_hist": "MACD histogram, line - signal",
    "bb_position": "Bollinger(20, 2) position (close - mid)/(2 sd): -1 lower, +1 upper band",
    "vwap_distance": "close / session VWAP - 1",
    "realized_vol_15m": "std of the last 15 one-minute log returns (per minute, not annualized)",
}
for _prefix, _what in (("spot_", "underlying"), ("opt_", "option")):
    for _name in INDICATOR_NAMES:
        FEATURE_DESCRIPTIONS[_prefix + _name] = f"{_what}: {_INDICATOR_MEANING[_name]}"

#: The exact output column order of :func:`build_features`.
FEATURE_COLUMNS: list[str] = list(FEATURE_DESCRIPTIONS)

_GREEK_COLUMNS = ["iv", "delta", "gamma", "theta", "vega", "rho"]
_INT_COLUMNS = ["minutes_since_open", "news_count_15m", "news_count_60m"]


def _utc_ms(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).dt.as_unit("ms")


def _as_date(value: object) -> dt.date | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, dt.datetime | pd.Timestamp):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value).date()
    return dt.date.fromisoformat(str(value)[:10])


def _empty_features() -> pd.DataFrame:
    dtypes = {c: "float64" for c in FEATURE_COLUMNS}
    dtypes.update({c: "int64" for c in _INT_COLUMNS})
    dtypes.update({c: "object" for c in ("session", "expiration")})
    dtypes.update({c: "str" for c in ("underlying", "contract", "contract_type", "iv_status")})
    dtypes.update({"timestamp": "datetime64[ms, UTC]", "transactions": "Int64"})
    dtypes["spot_transactions"] = "Int64"
    return pd.DataFrame({c: pd.Series(dtype=dtypes[c]) for c in FEATURE_COLUMNS})


def _prepare_contracts(contracts: pd.DataFrame, underlying: str) -> pd.DataFrame:
    c = contracts.copy()
    if "underlying" in c.columns:
        c = c[c["underlying"].astype(str) == underlying]
    c = c.drop_duplicates("contract", keep="first")
    out = pd.DataFrame(
        {
            "contract": c["contract"].astype(str).to_numpy(),
            "contract_type": c["contract_type"].astype(str).str.lower().to_numpy(),
            "strike": c["strike"].astype("float64").to_numpy(),
            "expiration": np.array([_as_date(v) for v in c["expiration"]], dtype=object),
        }
    )
    return out


def _session_bars(bars: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    b = bars.copy()
    b["timestamp"] = _utc_ms(b["timestamp"])
    return b[(b["timestamp"] >= start) & (b["timestamp"] < end)]


def _article_sentiment(raw: object, underlying: str) -> float:
    if not isinstance(raw, str) or not raw:
        return np.nan
    try:
        parsed = json.loads(raw)
    except ValueError:
        return np.nan
    if not isinstance(parsed, dict):
        return np.nan
    value = parsed.get(underlying)
    if isinstance(value, str):
        return _SENTIMENT_WORDS.get(value.strip().lower(), np.nan)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return np.nan
    return float(value)


def _news_windows(
    news: pd.DataFrame, bar_end: np.ndarray, underlying: str
) -> dict[str, np.ndarray]:
    """Counts and mean sentiment of articles on ``underlying`` in [end - w, end) per row."""
    out: dict[str, np.ndarray] = {}
    if news is None or news.empty:
        times = np.array([], dtype="int64")
        scores = np.array([], dtype="float64")
    else:
        n = news.drop_duplicates("article_id", keep="first") if "article_id" in news else news
        about = (
            n["tickers"]
            .fillna("")
            .astype(str)
            .map(lambda s: underlying in {t.strip() for t in s.split(",")})
        )
        n = n[about.to_numpy(dtype=bool)]
        published = _utc_ms(n["published_utc"])
        keep = published.notna().to_numpy()
        times = published[keep].dt.tz_convert(None).to_numpy(dtype="datetime64[ms]")
        times = times.astype("int64")
        scores = np.array(
            [_article_sentiment(v, underlying) for v in n["sentiment_json"][keep]], dtype=float
        )
        order = np.argsort(times, kind="stable")
        times, scores = times[order], scores[order]
    has = ~np.isnan(scores)
    cum_sum = np.concatenate([[0.0], np.cumsum(np.where(has, scores, 0.0))])
    cum_has = np.concatenate([[0], np.cumsum(has)])
    right = np.searchsorted(times, bar_end, side="left")
    for w in NEWS_WINDOWS_MIN:
        left = np.searchsorted(times, bar_end - w * 60_000, side="left")
        scored = cum_has[right] - cum_has[left]
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = (cum_sum[right] - cum_sum[left]) / scored
        out[f"news_count_{w}m"] = (right - left).astype("int64")
        out[f"news_sentiment_{w}m"] = np.where(scored > 0, mean, np.nan)
    return out


def _years_to_expiry(timestamps: pd.Series, expirations: pd.Series) -> np.ndarray:
    t = np.full(len(timestamps), np.nan)
    exp = expirations.to_numpy(dtype=object)
    for expiry in sorted({e for e in exp if e is not None}):
        mask = exp == expiry
        try:
            t[mask] = calendar.years_to_expiry(timestamps[mask], expiry)
        except NotASessionError:
            pass  # a non-session expiry: NaN, and the IV solver reports bad_input
    return t


def build_features(
    session: dt.date | str,
    contracts: pd.DataFrame,
    option_bars: pd.DataFrame,
    underlying_bars: pd.DataFrame,
    vix_bars: pd.DataFrame,
    news: pd.DataFrame,
    *,
    underlying: str = "SPY",
    rate: float = _PRICING.rate,
    div_yield: float = _PRICING.dividend_yield,
) -> pd.DataFrame:
    """One flat row per regular-session option bar of ``session``, columns
    :data:`FEATURE_COLUMNS`, sorted by (contract, timestamp). See the module docstring."""
    from spy_assets.analytics.greeks import implied_vol_and_greeks

    day = calendar.parse_session(session)
    grid = calendar.session_minutes(day)
    start, end = calendar.session_open(day), calendar.session_close(day)

    c = _prepare_contracts(contracts, underlying)
    ob = _session_bars(option_bars, start, end)
    ob = ob[ob["contract"].astype(str).isin(set(c["contract"]))]
    if ob.empty:
        return _empty_features()
    ob = ob.assign(contract=ob["contract"].astype(str))
    ob = ob.sort_values(["contract", "timestamp"], kind="stable")
    ob = ob.drop_duplicates(["contract", "timestamp"], keep="last")
    rows = ob[["contract", "timestamp", *[f for f in _BAR_FIELDS if f in ob.columns]]]
    rows = rows.merge(c, on="contract", how="inner", validate="many_to_one")
    rows = rows.sort_values(["contract", "timestamp"], kind="stable", ignore_index=True)
    rows["session"] = np.array([day] * len(rows), dtype=object)
    rows["underlying"] = underlying
    rows["minutes_since_open"] = ((rows["timestamp"] - start) // pd.Timedelta(minutes=1)).astype(
        "int64"
    )

    # The underlying bar of the same minute, and its grid indicators.
    sb = _session_bars(underlying_bars, start, end)
    if "ticker" in sb.columns:
        sb = sb[sb["ticker"].astype(str) == underlying]
    sb = sb.sort_values("timestamp", kind="stable").drop_duplicates("timestamp", keep="last")
    spot = sb[["timestamp", *[f for f in _BAR_FIELDS if f in sb.columns]]].rename(
        columns={f: "spot_" + f for f in _BAR_FIELDS}
    )
    rows = rows.merge(spot, on="timestamp", how="left", validate="many_to_one")
    spot_ind = grid_indicators(sb, grid, prefix="spot_")
    rows = rows.merge(spot_ind, on="timestamp", how="left", validate="many_to_one")
    rows = rows.merge(
        grid_indicators(ob, grid, prefix="opt_", by="contract"),
        on=["contract", "timestamp"],
        how="left",
        validate="one_to_one",
    )

    # VIX: the last bar starting at or before the row's minute (the same minute ends together).
    vix = vix_bars.copy() if vix_bars is not None else pd.DataFrame(columns=["timestamp", "close"])
    vix["timestamp"] = _utc_ms(vix["timestamp"])
    vix = vix.dropna(subset=["timestamp", "close"]).sort_values("timestamp", kind="stable")
    vix = vix.drop_duplicates("timestamp", keep="last")
    vix = pd.DataFrame(
        {
            "timestamp": vix["timestamp"],
            "vix_close": vix["close"].astype("float64"),
            "_vix_ts": vix["timestamp"],
        }
    )
    by_time = rows[["timestamp"]].reset_index().sort_values(["timestamp", "index"], kind="stable")
    joined = pd.merge_asof(by_time, vix, on="timestamp", direction="backward")
    joined = joined.sort_values("index", kind="stable")
    rows["vix_close"] = joined["vix_close"].to_numpy()
    rows["vix_age_min"] = (
        (joined["timestamp"] - joined["_vix_ts"]) / pd.Timedelta(minutes=1)
    ).to_numpy(dtype="float64")

    bar_start = rows["timestamp"].dt.tz_convert(None).to_numpy(dtype="datetime64[ms]")
    bar_end = bar_start.astype("int64") + 60_000
    for name, values in _news_windows(news, bar_end, underlying).items():
        rows[name] = values

    rows["t_years"] = _years_to_expiry(rows["timestamp"], rows["expiration"])
    spot_close = rows["spot_close"].to_numpy(dtype="float64")
    strike = rows["strike"].to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        rows["moneyness"] = np.log(spot_close / strike)
    greeks = implied_vol_and_greeks(
        rows["close"].to_numpy(dtype="float64"),
        spot_close,
        strike,
        rows["t_years"].to_numpy(dtype="float64"),
        rate,
        div_yield,
        (rows["contract_type"] == "call").to_numpy(),
    )
    for col in _GREEK_COLUMNS:
        rows[col] = greeks[col].to_numpy(dtype="float64")
    rows["iv_status"] = greeks["iv_status"].astype(str).to_numpy()

    for col in FEATURE_COLUMNS:
        if col not in rows.columns:
            rows[col] = np.nan
    out = rows[FEATURE_COLUMNS].copy()
    for col in ("transactions", "spot_transactions"):
        out[col] = pd.to_numeric(out[col]).round().astype("Int64")
    float_cols = [
        col
        for col, kind in _empty_features().dtypes.items()
        if kind == "float64" and col in out.columns
    ]
    out[float_cols] = out[float_cols].astype("float64")
    return out.reset_index(drop=True)
