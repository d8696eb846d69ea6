"""Causal intraday indicators over a regular minute grid (no value uses a later minute).

Every indicator is computed on the session's full minute grid (``calendar.session_minutes``):
a minute with no trade takes the *prevailing* price, the last close carried forward, and is
never filled backward, so minutes before a series' first trade stay NaN. Volume on such a
minute is 0 and it adds nothing to the session VWAP. Bars outside the regular session are not
used. The functions take a Series (one series) or a DataFrame (one column per series, e.g. one
per option contract) indexed by the grid, and work column by column.

Conventions (the names are those of :data:`INDICATOR_NAMES`):

- ``ret_1m``, ``ret_5m``, ``ret_15m``: simple return ``close_t / close_{t-n} - 1``.
- ``ema_9``, ``ema_21``: ``ewm(span=n, adjust=False)``, seeded with the first close.
- ``rsi_14``: Wilder's RSI — the first average gain/loss is the simple mean of the first 14
  changes, then Wilder smoothing (alpha = 1/14). 100 when there is no loss in the average, 50
  when there is neither gain nor loss (a flat price).
- ``macd``, ``macd_signal``, ``macd_hist``: EMA(12) − EMA(26), its EMA(9), and their difference.
- ``bb_position``: Bollinger(20, 2) position ``(close - mid) / (2·sd)`` with ``sd`` the
  population standard deviation (ddof=0) of the last 20 closes: −1 on the lower band, 0 on the
  middle, +1 on the upper band (not %B). 0 when the window is flat (sd = 0).
- ``vwap_distance``: ``close / session_vwap - 1``, with session VWAP = cumulative
  Σ(vwap·volume) / Σ(volume) since the open (a bar without a vwap counts at its close).
- ``realized_vol_15m``: sample std (ddof=1) of the last 15 one-minute log returns, per minute,
  NOT annualized (multiply by sqrt(minutes per year) to annualize). Carried-forward minutes
  contribute a zero return.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import pandas as pd

_S = TypeVar("_S", pd.Series, pd.DataFrame)

#: The indicator columns, in output order (a prefix such as ``spot_`` or ``opt_`` goes in front).
INDICATOR_NAMES = [
    "ret_1m",
    "ret_5m",
    "ret_15m",
    "ema_9",
    "ema_21",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_position",
    "vwap_distance",
    "realized_vol_15m",
]


def simple_return(close: _S, minutes: int) -> _S:
    """``close_t / close_{t-minutes} - 1`` on the minute grid."""
    return close / close.shift(minutes) - 1.0


def ema(close: _S, span: int) -> _S:
    """Exponential moving average, ``adjust=False`` (recursive, seeded with the first value)."""
    return close.ewm(span=span, adjust=False).mean()


def _wilder(values: _S, period: int) -> _S:
    # Seed with the simple mean of the first `period` valid values, then y = y + (x - y)/period.
    seed = values.rolling(period, min_periods=period).mean()
    first_seed = seed.notna() & seed.shift(1).isna()
    x = values.where(seed.notna()).mask(first_seed, seed)
    return x.ewm(alpha=1.0 / period, adjust=False).mean()


def rsi(close: _S, period: int = 14) -> _S:
    """Wilder's relative strength index, 0–100 (see the module docstring for flat prices)."""
    change = close.diff()
    avg_gain = _wilder(change.clip(lower=0.0), period)
    avg_loss = _wilder((-change).clip(lower=0.0), period)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    out = out.mask((avg_loss == 0) & (avg_gain > 0), 100.0)
    return out.mask((avg_loss == 0) & (avg_gain == 0), 50.0)


def macd(close: _S, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[_S, _S, _S]:
    """MACD line (EMA fast − EMA slow), signal line (EMA of the line) and histogram."""
    line = ema(close, fast) - ema(close, slow)
    sig = ema(line, signal)
    return line, sig, line - sig


def bollinger_position(close: _S, window: int = 20, num_sd: float = 2.0) -> _S:
    """``(close - mid) / (num_sd·sd)`` over the last ``window`` closes (population sd)."""
    roll = close.rolling(window, min_periods=window)
    mid = roll.mean()
    sd = roll.std(ddof=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pos = (close - mid) / (num_sd * sd)
    # A flat window has sd 0 (up to rounding): the close sits on the middle band.
    flat = sd <= 1e-12 * mid.abs()
    return pos.mask(flat, 0.0)


def session_vwap(close: _S, vwap: _S, volume: _S) -> _S:
    """Cumulative Σ(vwap·volume)/Σ(volume) since the first minute of the grid (NaN before any
    volume). A bar without a vwap counts at its close; a minute without a bar adds nothing."""
    vol = volume.fillna(0.0)
    price = vwap.fillna(close).where(vol > 0, 0.0)
    cum_vol = vol.cumsum()
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (price * vol).cumsum() / cum_vol
    return out.where(cum_vol > 0)


def vwap_distance(close: _S, vwap: _S, volume: _S) -> _S:
    """Relative distance from the session VWAP: ``close / session_vwap - 1``."""
    return close / session_vwap(close, vwap, volume) - 1.0


def realized_vol(close: _S, window: int = 15) -> _S:
    """Std (ddof=1) of the last ``window`` one-minute log returns; per minute, not annualized."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ret = np.log(close).diff()
    return log_ret.rolling(window, min_periods=window).std(ddof=1)


def compute_indicators(
    close: _S, vwap: _S | None = None, volume: _S | None = None
) -> dict[str, _S]:
    """Every indicator of :data:`INDICATOR_NAMES` for grid-aligned series (close carried
    forward already). Without vwap/volume, ``vwap_distance`` is NaN."""
    line, sig, hist = macd(close)
    if vwap is None or volume is None:
        dist = close * np.nan
    else:
        dist = vwap_distance(close, vwap, volume)
    return {
        "ret_1m": simple_return(close, 1),
        "ret_5m": simple_return(close, 5),
        "ret_15m": simple_return(close, 15),
        "ema_9": ema(close, 9),
        "ema_21": ema(close, 21),
        "rsi_14": rsi(close, 14),
        "macd": line,
        "macd_signal": sig,
        "macd_hist": hist,
        "bb_position": bollinger_position(close, 20, 2.0),
        "vwap_distance": dist,
        "realized_vol_15m": realized_vol(close, 15),
    }


def _utc_ms(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).dt.as_unit("ms")


def to_minute_grid(
    bars: pd.DataFrame, grid: pd.DatetimeIndex, by: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Wide (grid × series) close, vwap and volume frames from long bars.

    ``close`` is carried forward over minutes without a bar (never backward), ``vwap`` is NaN
    and ``volume`` 0 there. With ``by`` (e.g. ``"contract"``) there is one column per key,
    otherwise a single column named ``0``. Duplicate (key, timestamp) bars keep the last row.
    """
    frame = bars.copy()
    frame["timestamp"] = _utc_ms(frame["timestamp"])
    key = by if by is not None else "__series"
    if by is None:
        frame[key] = 0
    frame = frame.drop_duplicates([key, "timestamp"], keep="last")
    grid = pd.DatetimeIndex(grid).as_unit("ms")
    keys = sorted(frame[key].unique())

    def wide(col: str) -> pd.DataFrame:
        if col not in frame.columns or frame.empty:
            return pd.DataFrame(np.nan, index=grid, columns=keys)
        out = frame.pivot(index="timestamp", columns=key, values=col)
        return out.reindex(index=grid, columns=keys).astype("float64")

    close = wide("close").ffill()
    vwap = wide("vwap")
    volume = wide("volume").fillna(0.0)
    return close, vwap, volume


def grid_indicators(
    bars: pd.DataFrame, grid: pd.DatetimeIndex, *, prefix: str = "", by: str | None = None
) -> pd.DataFrame:
    """Indicators for every grid minute (× every key of ``by``), as a long frame with columns
    ``[by,] timestamp, <prefix><name>...``; minutes without a bar carry the prevailing price."""
    close, vwap, volume = to_minute_grid(bars, grid, by)
    values = compute_indicators(close, vwap, volume)
    n_min, n_key = close.shape
    out: dict[str, object] = {}
    if by is not None:
        out[by] = np.tile(np.asarray(close.columns, dtype=object), n_min)
    out["timestamp"] = np.repeat(close.index.to_numpy(), n_key)
    for name in INDICATOR_NAMES:
        out[prefix + name] = values[name].to_numpy(dtype="float64").reshape(-1)
    result = pd.DataFrame(out)
    result["timestamp"] = result["timestamp"].astype("datetime64[ms, UTC]")
    if by is not None:
        result = result.sort_values([by, "timestamp"], kind="stable", ignore_index=True)
    return result


def add_indicators(
    bars: pd.DataFrame, grid: pd.DatetimeIndex, *, prefix: str = "", by: str | None = None
) -> pd.DataFrame:
    """``bars`` (same rows, same order) plus the ``<prefix><name>`` indicator columns at each
    bar's minute, computed on the grid with the prevailing price. Bars off the grid get NaN."""
    ind = grid_indicators(bars, grid, prefix=prefix, by=by)
    keys = ["timestamp"] if by is None else [by, "timestamp"]
    left = bars.reset_index(drop=True)
    probe = left[keys].copy()
    probe["timestamp"] = _utc_ms(probe["timestamp"])
    found = probe.merge(ind, on=keys, how="left", validate="many_to_one")
    for name in INDICATOR_NAMES:
        left[prefix + name] = found[prefix + name].to_numpy()
    return left
