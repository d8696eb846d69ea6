"""Scan events (moves of +θ above the session's running low) and the scan report (SPEC §5).

For each contract-day, over its minute closes in time order, the reference is the lowest close
strictly earlier in the same session (the first bar has none); a bar is *above* when
``close >= (1 + θ)·reference``. An event is a maximal run of consecutive above bars, where
consecutive means consecutive in the contract's own bar sequence: a minute with no trade
inside a run does not break it. The run's wall-clock length goes from the trigger to the first
bar back below, or to the contract's last bar of the session + 1 minute when it ran to the
close.

The comparison carries a relative tolerance of 1e-9 so that a close exactly on the threshold in
decimal (e.g. 0.35 → 0.42 at θ = 0.20) counts as above despite binary rounding. Rows with a
missing close are ignored; a reference ≤ 0 marks no bar above.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from spy_assets.calendar import MARKET_TZ
from spy_assets.params import ScanParams

DEFAULT_THRESHOLD = ScanParams().threshold
_REL_TOL = 1e-9

#: Columns of :func:`scan_events`, in order.
EVENT_COLUMNS = [
    "contract",
    "session",
    "trigger_time",
    "trigger_price",
    "reference_price",
    "peak_price",
    "peak_time",
    "run_bars",
    "run_minutes",
    "ran_to_close",
    "threshold",
]


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "contract": pd.Series(dtype="str"),
            "session": pd.Series(dtype="object"),
            "trigger_time": pd.Series(dtype="datetime64[ms, UTC]"),
            "trigger_price": pd.Series(dtype="float64"),
            "reference_price": pd.Series(dtype="float64"),
            "peak_price": pd.Series(dtype="float64"),
            "peak_time": pd.Series(dtype="datetime64[ms, UTC]"),
            "run_bars": pd.Series(dtype="int64"),
            "run_minutes": pd.Series(dtype="float64"),
            "ran_to_close": pd.Series(dtype="bool"),
            "threshold": pd.Series(dtype="float64"),
        }
    )


def _ordered_bars(bars: pd.DataFrame) -> pd.DataFrame:
    b = bars[["contract", "session", "timestamp", "close"]].copy()
    b["timestamp"] = pd.to_datetime(b["timestamp"], utc=True).dt.as_unit("ms")
    b["close"] = b["close"].astype("float64")
    b = b[b["close"].notna()]
    b = b.sort_values(["contract", "session", "timestamp"], kind="stable", ignore_index=True)
    return b.drop_duplicates(["contract", "session", "timestamp"], keep="last", ignore_index=True)


def scan_events(bars: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """One row per event (:data:`EVENT_COLUMNS`), sorted by (contract, session, trigger_time).

    ``bars`` holds ``contract, session, timestamp, close`` for any number of sessions.
    """
    if bars.empty:
        return _empty_events()
    b = _ordered_bars(bars)
    if b.empty:
        return _empty_events()
    groups = b.groupby(["contract", "session"], sort=False)
    ref = groups["close"].cummin().groupby([b["contract"], b["session"]], sort=False).shift(1)
    close = b["close"].to_numpy()
    ref_v = ref.to_numpy(dtype="float64")
    with np.errstate(invalid="ignore"):
        above = (ref_v > 0) & (close >= (1.0 + threshold) * ref_v * (1.0 - _REL_TOL))
    group_id = groups.ngroup().to_numpy()
    new_group = np.r_[True, group_id[1:] != group_id[:-1]]
    prev_above = np.r_[False, above[:-1]] & ~new_group
    starts = above & ~prev_above
    if not starts.any():
        return _empty_events()
    run_id = np.cumsum(starts)
    idx = np.flatnonzero(above)
    run = pd.DataFrame(
        {
            "run": run_id[idx],
            "pos": idx,
            "close": close[idx],
        }
    )
    agg = run.groupby("run", sort=True).agg(
        first=("pos", "min"), last=("pos", "max"), n=("pos", "size"), peak=("close", "max")
    )
    # First position of the peak close within each run.
    is_peak = run["close"].to_numpy() == agg["peak"].to_numpy()[run["run"].to_numpy() - 1]
    peak_pos = run[is_peak].groupby("run", sort=True)["pos"].min().to_numpy()

    ts = b["timestamp"].dt.tz_convert(None).to_numpy(dtype="datetime64[ms]")
    first, last = agg["first"].to_numpy(), agg["last"].to_numpy()
    group_last = groups.cumcount(ascending=False).to_numpy() == 0
    ran_to_close = group_last[last]
    after = np.minimum(last + 1, len(b) - 1)
    end_time = np.where(ran_to_close, ts[last] + np.timedelta64(1, "m"), ts[after])
    trigger_time = ts[first]
    events = pd.DataFrame(
        {
            "contract": b["contract"].iloc[first].to_numpy(),
            "session": b["session"].iloc[first].to_numpy(),
            "trigger_time": trigger_time,
            "trigger_price": close[first],
            "reference_price": ref_v[first],
            "peak_price": agg["peak"].to_numpy(),
            "peak_time": ts[peak_pos],
            "run_bars": agg["n"].to_numpy().astype("int64"),
            "run_minutes": (end_time - trigger_time) / np.timedelta64(1, "m"),
            "ran_to_close": ran_to_close.astype(bool),
            "threshold": float(threshold),
        }
    )
    for col in ("trigger_time", "peak_time"):
        events[col] = pd.to_datetime(events[col], utc=True).dt.as_unit("ms")
    return events[EVENT_COLUMNS].reset_index(drop=True)


def _clean(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _fmt(value: float, spec: str = ".2f") -> str:
    return "n/a" if value is None or math.isnan(value) else format(value, spec)


@dataclass
class ScanReport:
    """The eight figures of SPEC §5 over a set of contract-days (plus their span)."""

    threshold: float
    first_session: dt.date | None
    last_session: dt.date | None
    contract_days: int
    bars: int
    events: int
    events_per_contract_day_min: float
    events_per_contract_day_median: float
    events_per_contract_day_max: float
    minutes_above: int
    positive_minute_rate: float
    duration_median_min: float
    duration_mean_min: float
    #: Hour of day (ET, 0–23) → number of triggers in that hour; hours without one are absent.
    trigger_hours_et: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-friendly values: dates as ISO strings, NaN as None, hours as str keys."""
        return {
            "threshold": self.threshold,
            "first_session": self.first_session.isoformat() if self.first_session else None,
            "last_session": self.last_session.isoformat() if self.last_session else None,
            "contract_days": self.contract_days,
            "bars": self.bars,
            "events": self.events,
            "events_per_contract_day_min": _clean(self.events_per_contract_day_min),
            "events_per_contract_day_median": _clean(self.events_per_contract_day_median),
            "events_per_contract_day_max": _clean(self.events_per_contract_day_max),
            "minutes_above": self.minutes_above,
            "positive_minute_rate": _clean(self.positive_minute_rate),
            "duration_median_min": _clean(self.duration_median_min),
            "duration_mean_min": _clean(self.duration_mean_min),
            "trigger_hours_et": {str(h): n for h, n in sorted(self.trigger_hours_et.items())},
        }

    def _figures(self) -> list[tuple[str, str]]:
        pct = f"+{self.threshold * 100:g}%"
        rate = self.positive_minute_rate
        return [
            ("Contract-days (zero-event days included)", f"{self.contract_days:,}"),
            ("Bars", f"{self.bars:,}"),
            (
                "Events per contract-day (min / median / max)",
                f"{_fmt(self.events_per_contract_day_min, 'g')} / "
                f"{_fmt(self.events_per_contract_day_median, 'g')} / "
                f"{_fmt(self.events_per_contract_day_max, 'g')}",
            ),
            (f"Minutes above {pct} (bars)", f"{self.minutes_above:,}"),
            (
                "Positive-minute rate (minutes above / bars)",
                "n/a" if math.isnan(rate) else f"{rate * 100:.2f}%",
            ),
            ("Event duration, median (wall minutes)", _fmt(self.duration_median_min, ".1f")),
            ("Event duration, mean (wall minutes)", _fmt(self.duration_mean_min, ".1f")),
            ("Events", f"{self.events:,}"),
        ]

    def _span(self) -> str:
        if self.first_session is None:
            return "no sessions"
        return f"{self.first_session} to {self.last_session}"

    def _hours(self) -> list[tuple[str, int, str]]:
        total = sum(self.trigger_hours_et.values())
        return [
            (f"{h:02d}:00", n, f"{n / total * 100:.1f}%")
            for h, n in sorted(self.trigger_hours_et.items())
        ]

    def to_markdown(self) -> str:
        """A Markdown summary: the figures table, then the trigger-hour table."""
        lines = [
            f"**Scan report** — threshold +{self.threshold * 100:g}%, {self._span()}",
            "",
            "| figure | value |",
            "|---|---|",
        ]
        lines += [f"| {name} | {value} |" for name, value in self._figures()]
        lines += ["", "Trigger hour of day (ET):", ""]
        if self.trigger_hours_et:
            lines += ["| hour (ET) | events | share |", "|---|---:|---:|"]
            lines += [f"| {h} | {n} | {s} |" for h, n, s in self._hours()]
        else:
            lines.append("_no events_")
        return "\n".join(lines) + "\n"

    def to_text(self) -> str:
        """A plain-text summary for a terminal or a log."""
        figures = self._figures()
        width = max(len(name) for name, _ in figures)
        lines = [f"Scan report: threshold +{self.threshold * 100:g}%, {self._span()}"]
        lines += [f"  {name:<{width}}  {value}" for name, value in figures]
        lines.append("  Trigger hour of day (ET):")
        if self.trigger_hours_et:
            lines += [f"    {h}  {n:>6}  {s:>6}" for h, n, s in self._hours()]
        else:
            lines.append("    no events")
        return "\n".join(lines) + "\n"


def scan_report(
    bars: pd.DataFrame, events: pd.DataFrame, threshold: float | None = None
) -> ScanReport:
    """The scan report over every contract-day in ``bars`` (the bars the events came from).

    ``threshold`` defaults to the events' own, else :data:`DEFAULT_THRESHOLD`.
    """
    if threshold is None:
        if not events.empty and "threshold" in events.columns:
            threshold = float(events["threshold"].iloc[0])
        else:
            threshold = DEFAULT_THRESHOLD
    b = _ordered_bars(bars) if not bars.empty else None
    if b is None or b.empty:
        cdays = pd.MultiIndex.from_tuples([], names=["contract", "session"])
        sessions: list[dt.date] = []
        n_bars = 0
    else:
        cdays = pd.MultiIndex.from_frame(b[["contract", "session"]].drop_duplicates())
        sessions = sorted(b["session"].unique())
        n_bars = len(b)

    if events.empty:
        per_day = pd.Series(0, index=cdays, dtype="int64")
        run_bars = np.array([], dtype="int64")
        minutes = np.array([], dtype="float64")
        hours: dict[int, int] = {}
    else:
        counts = events.groupby(["contract", "session"], sort=False).size()
        per_day = counts.reindex(cdays.union(counts.index), fill_value=0)
        run_bars = events["run_bars"].to_numpy(dtype="int64")
        minutes = events["run_minutes"].to_numpy(dtype="float64")
        et = pd.to_datetime(events["trigger_time"], utc=True).dt.tz_convert(MARKET_TZ)
        hour_counts = et.dt.hour.value_counts().sort_index()
        hours = {int(h): int(n) for h, n in hour_counts.items()}

    per = per_day.to_numpy(dtype="float64")
    minutes_above = int(run_bars.sum())
    nan = float("nan")
    return ScanReport(
        threshold=float(threshold),
        first_session=sessions[0] if sessions else None,
        last_session=sessions[-1] if sessions else None,
        contract_days=int(len(per_day)),
        bars=n_bars,
        events=int(len(events)),
        events_per_contract_day_min=float(per.min()) if per.size else nan,
        events_per_contract_day_median=float(np.median(per)) if per.size else nan,
        events_per_contract_day_max=float(per.max()) if per.size else nan,
        minutes_above=minutes_above,
        positive_minute_rate=minutes_above / n_bars if n_bars else nan,
        duration_median_min=float(np.median(minutes)) if minutes.size else nan,
        duration_mean_min=float(minutes.mean()) if minutes.size else nan,
        trigger_hours_et=hours,
    )
