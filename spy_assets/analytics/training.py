"""ML training data (SPEC §6): the feature rows plus future targets, after a coverage filter.

Targets are the only columns that look ahead and all are named ``target_*``:

- ``target_close_{h}m``: the option's *prevailing* close at ``t + h`` minutes on the session's
  minute grid (the last close at or before that minute), NaN where ``t + h`` is past the
  session's last minute (15:59 ET, or 12:59 on an early close).
- ``target_max_return_{H}m``: ``max(close_u) / close_t - 1`` over the bars actually traded in
  ``(t, t + H]``; NaN where ``t + H`` is past the session's last minute, or when nothing traded
  in the window. Traded closes, not carried-forward ones, so that a quiet first minute does not
  make the maximum look like a zero return.

The coverage filter keeps a contract-day when its bar count is at least ``min_coverage`` ×
the session's minutes (390, or 210 on an early close) and drops it otherwise.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from spy_assets import calendar
from spy_assets.params import TrainingParams

_DEFAULTS = TrainingParams()


@dataclass
class TrainingData:
    """The training frame and what the coverage filter did."""

    #: Feature rows of the kept contract-days plus the ``target_*`` columns.
    frame: pd.DataFrame
    #: One row per contract: ``contract, bars, coverage, kept``.
    coverage: pd.DataFrame
    session_minutes: int
    min_bars: float

    @property
    def dropped_contract_days(self) -> int:
        return int((~self.coverage["kept"]).sum())

    @property
    def kept_contract_days(self) -> int:
        return int(self.coverage["kept"].sum())


def target_columns(
    horizons: tuple[int, ...] = (5, 15, 30), max_return_horizon: int = 30
) -> list[str]:
    """The target column names, in output order."""
    return [f"target_close_{h}m" for h in horizons] + [f"target_max_return_{max_return_horizon}m"]


def _forward_max(traded: np.ndarray, horizon: int) -> np.ndarray:
    """max over rows (i, i + horizon] of a (minutes × contracts) array, NaN-skipping."""
    n = traded.shape[0]
    rev = pd.DataFrame(traded[::-1])
    # Reversed, a trailing window of `horizon` rows ending at row j covers original rows
    # [i, i + horizon - 1]; shifting by one row then gives (i, i + horizon].
    window = rev.rolling(horizon, min_periods=1).max().to_numpy()[::-1]
    out = np.full_like(traded, np.nan, dtype="float64")
    if n > 1:
        out[:-1] = window[1:]
    return out


def build_training_data(
    features: pd.DataFrame,
    session: dt.date | str,
    *,
    horizons: tuple[int, ...] = _DEFAULTS.horizons,
    max_return_horizon: int = _DEFAULTS.max_return_horizon,
    min_coverage: float = _DEFAULTS.min_coverage,
) -> TrainingData:
    """Targets for one session's feature rows (``contract, timestamp, close`` are used) and
    the coverage filter; the frame is sorted by (contract, timestamp)."""
    day = calendar.parse_session(session)
    grid = calendar.session_minutes(day)
    n_min = len(grid)
    min_bars = min_coverage * n_min
    targets = target_columns(horizons, max_return_horizon)

    f = features.sort_values(["contract", "timestamp"], kind="stable", ignore_index=True)
    ts = pd.to_datetime(f["timestamp"], utc=True).dt.as_unit("ms")
    row_min = grid.get_indexer(pd.DatetimeIndex(ts))
    on_grid = row_min >= 0

    contracts = sorted(f["contract"].astype(str).unique())
    col = pd.Index(contracts).get_indexer(f["contract"].astype(str))
    traded = np.full((n_min, len(contracts)), np.nan)
    traded[row_min[on_grid], col[on_grid]] = f["close"].to_numpy(dtype="float64")[on_grid]
    prevailing = pd.DataFrame(traded).ffill().to_numpy()

    out = f.copy()
    for h, name in zip(horizons, targets[:-1], strict=True):
        at = row_min + h
        valid = on_grid & (at <= n_min - 1)
        values = np.full(len(f), np.nan)
        values[valid] = prevailing[at[valid], col[valid]]
        out[name] = values
    fwd = _forward_max(traded, max_return_horizon)
    valid = on_grid & (row_min + max_return_horizon <= n_min - 1)
    peak = np.full(len(f), np.nan)
    peak[valid] = fwd[row_min[valid], col[valid]]
    with np.errstate(divide="ignore", invalid="ignore"):
        out[targets[-1]] = peak / f["close"].to_numpy(dtype="float64") - 1.0

    bars = (
        pd.Series(on_grid, index=f.index)
        .groupby(f["contract"].astype(str))
        .sum()
        .reindex(contracts, fill_value=0)
        .astype("int64")
    )
    coverage = pd.DataFrame(
        {
            "contract": contracts,
            "bars": bars.to_numpy(),
            "coverage": bars.to_numpy() / n_min,
            # A tiny slack so that exactly min_coverage (e.g. 312 of 390) is never lost to rounding.
            "kept": bars.to_numpy() >= min_bars - 1e-9,
        }
    )
    kept = set(coverage.loc[coverage["kept"], "contract"])
    frame = out[out["contract"].astype(str).isin(kept)].reset_index(drop=True)
    return TrainingData(frame=frame, coverage=coverage, session_minutes=n_min, min_bars=min_bars)
