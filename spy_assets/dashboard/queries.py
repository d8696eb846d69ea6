"""What each dashboard page reads, as plain functions over :class:`~spy_assets.storage.Storage`.

Every function takes the storage and the underlying, reads only the partitions it needs through
:class:`~spy_assets.dashboard.db.PageReader` (filters on session and contract are pushed down to
DuckDB) and raises a project error with a message a user can act on: a date that is not a
session, a dataset that is not built yet (with the command that builds it), a damaged file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from spy_assets import calendar
from spy_assets.analytics.scanner import DEFAULT_THRESHOLD, ScanReport, scan_events, scan_report
from spy_assets.dashboard.db import PageReader
from spy_assets.errors import (
    CorruptPartitionError,
    MissingPartitionError,
    NotASessionError,
    SpyAssetsError,
)
from spy_assets.reports import stored_sessions as report_sessions
from spy_assets.storage import NEWS_ARTICLES, VIX_MINUTE_BARS, Dataset, Storage, dataset

#: The commands that build data, for a page with nothing to show yet.
BUILD_HINT = (
    "uv run spy-assets demo (the last sessions of the demo window) or "
    "uv run spy-assets backfill --start YYYY-MM-DD --end YYYY-MM-DD"
)


def backfill_command(first: dt.date, last: dt.date | None = None) -> str:
    """The command that builds these sessions."""
    if last is None or last == first:
        return f"uv run spy-assets backfill --session {first}"
    return f"uv run spy-assets backfill --start {first} --end {last}"


def no_data_message(storage: Storage) -> str | None:
    """A message when nothing at all is stored under the data folder, else None."""
    if storage.datasets_on_disk():
        return None
    return f"No data yet under {storage.root}. Build some with: {BUILD_HINT}"


def parse_session(value: str | dt.date) -> dt.date:
    """A session that has traded (today's included): NotASessionError explains anything else."""
    session = calendar.parse_session(value)
    return calendar.check_not_future(session)


def require(storage: Storage, ds: Dataset, session: dt.date) -> None:
    """Raise a clear error unless the partition is stored and its Parquet footer parses."""
    status = storage.status(ds, session)
    if status == "missing":
        raise MissingPartitionError(
            f"{ds.name} has no data for session {session} yet: build it with "
            f"{backfill_command(session)}"
        )
    if status == "corrupt":
        raise CorruptPartitionError(
            f"the stored file of {ds.name} for session {session} is damaged (not readable "
            f"Parquet: {storage.location(ds, session)}); rebuild it with "
            f"{backfill_command(session)}"
        )


def default_session(sessions: Sequence[dt.date], now: pd.Timestamp | None = None) -> dt.date:
    """Today's session while it is live, else the latest stored session (else the current one)."""
    live = live_session(now)
    if live is not None:
        return live
    return max(sessions) if sessions else calendar.current_session(now)


def live_session(now: pd.Timestamp | None = None) -> dt.date | None:
    """Today's session while it trades (between its open and its close), else None."""
    stamp = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    today = stamp.tz_convert(calendar.MARKET_TZ).date()
    if not calendar.is_session(today):
        return None
    if calendar.session_open(today) <= stamp < calendar.session_close(today):
        return today
    return None


def to_et(series: pd.Series) -> pd.Series:
    """UTC timestamps as naive New York wall time (what the charts and tables show)."""
    stamps = pd.to_datetime(series, utc=True)
    return stamps.dt.tz_convert(calendar.MARKET_TZ).dt.tz_localize(None)


# --------------------------------------------------------------------------- session view
@dataclass
class SessionView:
    """One session: the underlying's closes, its open, the picked strikes, VIX and news."""

    session: dt.date
    underlying: str
    spot: pd.DataFrame  # timestamp (UTC), close
    open_price: float
    open_time: pd.Timestamp
    strikes: pd.DataFrame  # contract, contract_type, strike, expiration
    vix: pd.DataFrame | None  # timestamp, close
    news: pd.DataFrame | None  # published (ET), title, publisher, sentiment, tickers
    notes: list[str] = field(default_factory=list)


def session_view(storage: Storage, underlying: str, session: dt.date) -> SessionView:
    bars_ds = dataset(underlying, "minute_bars")
    contracts_ds = dataset(underlying, "option_contracts")
    require(storage, bars_ds, session)
    notes: list[str] = []
    with PageReader(storage) as db:
        db.view("bars", bars_ds, [session])
        spot = db.frame("SELECT timestamp, open, close FROM bars ORDER BY timestamp")
        if spot.empty:
            raise MissingPartitionError(f"{bars_ds.name} holds no bar for session {session}")
        open_price, open_time = float(spot["open"].iloc[0]), spot["timestamp"].iloc[0]
        strikes = pd.DataFrame(columns=["contract", "contract_type", "strike", "expiration"])
        if _stored(storage, contracts_ds, session, notes, "strikes"):
            db.view("contracts", contracts_ds, [session])
            strikes = db.frame(
                "SELECT contract, contract_type, strike, expiration, underlying_open "
                "FROM contracts ORDER BY strike DESC"
            )
            if len(strikes) and pd.notna(strikes["underlying_open"].iloc[0]):
                open_price = float(strikes["underlying_open"].iloc[0])
        vix = None
        if _stored(storage, VIX_MINUTE_BARS, session, notes, "VIX"):
            db.view("vix", VIX_MINUTE_BARS, [session])
            vix = db.frame("SELECT timestamp, close FROM vix ORDER BY timestamp")
        news = None
        if _stored(storage, NEWS_ARTICLES, session, notes, "news"):
            db.view("news", NEWS_ARTICLES, [session])
            raw = db.frame(
                "SELECT published_utc, title, publisher, tickers, sentiment_json "
                "FROM news ORDER BY published_utc"
            )
            news = pd.DataFrame(
                {
                    "time (ET)": to_et(raw["published_utc"]),
                    "title": raw["title"],
                    "publisher": raw["publisher"],
                    "sentiment": [sentiment_label(v, underlying) for v in raw["sentiment_json"]],
                    "tickers": raw["tickers"],
                }
            )
    return SessionView(
        session=session,
        underlying=underlying.upper(),
        spot=spot[["timestamp", "close"]],
        open_price=open_price,
        open_time=open_time,
        strikes=strikes[["contract", "contract_type", "strike", "expiration"]],
        vix=vix,
        news=news,
        notes=notes,
    )


def _stored(storage: Storage, ds: Dataset, session: dt.date, notes: list[str], what: str) -> bool:
    """Whether a secondary dataset can be shown; if not, a note says why and how to fix it."""
    try:
        require(storage, ds, session)
    except SpyAssetsError as exc:
        notes.append(f"No {what}: {exc}")
        return False
    return True


_WORDS = {1: "positive", 0: "neutral", -1: "negative"}


def sentiment_label(raw: object, underlying: str) -> str:
    """The article's sentiment on the underlying (``positive``/``neutral``/``negative``), or
    ``n/a`` when the article has none for it."""
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        parsed = None
    value = parsed.get(underlying.upper()) if isinstance(parsed, dict) else None
    if isinstance(value, str) and value.strip():
        return value.strip().lower()
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return _WORDS.get(int(round(value)), f"{value:g}")
    return "n/a"


# -------------------------------------------------------------------------- contract view
def session_contracts(storage: Storage, underlying: str, session: dt.date) -> pd.DataFrame:
    """The contracts picked for a session with their number of feature rows (minute bars):
    ``contract, contract_type, strike, expiration, bars``; calls first, by strike."""
    contracts_ds = dataset(underlying, "option_contracts")
    features_ds = dataset(underlying, "features")
    require(storage, contracts_ds, session)
    require(storage, features_ds, session)
    with PageReader(storage) as db:
        db.view("contracts", contracts_ds, [session])
        db.view("features", features_ds, [session])
        return db.frame(
            "SELECT c.contract, c.contract_type, c.strike, c.expiration, "
            "coalesce(b.bars, 0)::BIGINT AS bars FROM contracts c LEFT JOIN "
            "(SELECT contract, count(*) AS bars FROM features GROUP BY contract) b "
            "USING (contract) ORDER BY c.contract_type, c.strike"
        )


@dataclass
class ContractView:
    """One contract-day: closes, the scan's reference (the running session low), its events,
    IV and Greeks per minute (IV NaN rows kept, with their ``iv_status``)."""

    session: dt.date
    contract: str
    threshold: float
    bars: pd.DataFrame  # timestamp, close, running_low, iv, delta, gamma, theta, iv_status
    events: pd.DataFrame  # trigger_time, end_time, peak_time, peak_price, ... (UTC)

    @property
    def iv_missing(self) -> pd.DataFrame:
        """The minutes whose IV is NaN, with why."""
        return self.bars[self.bars["iv"].isna()]


def contract_view(
    storage: Storage, underlying: str, session: dt.date, contract: str
) -> ContractView:
    features_ds = dataset(underlying, "features")
    events_ds = dataset(underlying, "scan_events")
    require(storage, features_ds, session)
    require(storage, events_ds, session)
    with PageReader(storage) as db:
        db.view("features", features_ds, [session])
        db.view("events", events_ds, [session])
        bars = db.frame(
            "SELECT timestamp, close, min(close) OVER (ORDER BY timestamp ROWS BETWEEN "
            "UNBOUNDED PRECEDING AND 1 PRECEDING) AS running_low, "
            "iv, delta, gamma, theta, iv_status FROM features WHERE contract = ? "
            "ORDER BY timestamp",
            [contract],
        )
        events = db.frame(
            "SELECT trigger_time, trigger_price, reference_price, peak_price, peak_time, "
            "run_bars, run_minutes, ran_to_close, threshold FROM events WHERE contract = ? "
            "ORDER BY trigger_time",
            [contract],
        )
    if bars.empty:
        picked = session_contracts(storage, underlying, session)["contract"].tolist()
        if contract in picked:
            raise MissingPartitionError(
                f"{contract} has no minute bars on {session}: it was picked for the session "
                "but never traded (the vendor returned no bars for it)"
            )
        raise MissingPartitionError(
            f"{contract} is not one of the contracts picked on {session} "
            f"({', '.join(picked) or 'none were picked'})"
        )
    events["end_time"] = events["trigger_time"] + pd.to_timedelta(events["run_minutes"], unit="m")
    if len(events):
        threshold = float(events["threshold"].iloc[0])
    else:
        threshold = _stored_threshold(storage, events_ds, [session]) or DEFAULT_THRESHOLD
    return ContractView(session, contract, threshold, bars, events)


def _stored_threshold(
    storage: Storage,
    events_ds: Dataset,
    sessions: Sequence[dt.date],
    also: Sequence[float] = (),
) -> float:
    """The threshold the stored events of these sessions were scanned with (their provenance,
    plus ``also``: thresholds known from event rows); one, or the error ``spy-assets report``
    gives."""
    found = {float(t) for t in also}
    for session in sessions:
        value = storage.provenance(events_ds, session).get("params", {})
        found.add(float(value.get("threshold", "nan")) if isinstance(value, dict) else math.nan)
    found = {t for t in found if not math.isnan(t)}
    if len(found) > 1:
        raise SpyAssetsError(
            f"the stored scan events of these sessions were made with different thresholds "
            f"({', '.join(f'{t:g}' for t in sorted(found))}): rebuild them with one"
        )
    return found.pop() if found else DEFAULT_THRESHOLD


# ---------------------------------------------------------------------------- scan report
def stored_threshold(storage: Storage, underlying: str) -> float:
    """The threshold the latest stored scan events were made with (the default)."""
    events_ds = dataset(underlying, "scan_events")
    latest = next(
        (s for s in reversed(storage.sessions(events_ds)) if storage.exists(events_ds, s)), None
    )
    return DEFAULT_THRESHOLD if latest is None else _stored_threshold(storage, events_ds, [latest])


@dataclass
class ReportView:
    """The scan report over the stored sessions of a range, at the stored or another
    threshold, with its events."""

    report: ScanReport
    events: pd.DataFrame
    sessions: list[dt.date]
    not_stored: list[dt.date]
    damaged: list[dt.date]
    stored_threshold: float
    rescanned: bool

    @property
    def total_sessions(self) -> int:
        """Every session of the range, stored or not."""
        return len(self.sessions) + len(self.not_stored) + len(self.damaged)


def report_view(
    storage: Storage,
    underlying: str,
    start: dt.date,
    end: dt.date,
    threshold: float | None = None,
) -> ReportView:
    """The report over [start, end] exactly as ``spy-assets report`` computes it (the sessions
    of :func:`spy_assets.reports.stored_sessions`, :func:`scan_report` at the threshold in the
    events' provenance), reading only the four columns the scanner needs. A ``threshold``
    other than the stored one rescans the bars with :func:`scan_events`.

    The stored sessions are found by listing the folders and letting DuckDB read the files;
    only when one turns out damaged are the footers checked one by one to leave it out. A
    rescan does not read the stored events.
    """
    underlying = underlying.upper()
    if start > end:
        raise NotASessionError(f"the range starts ({start}) after it ends ({end})")
    current = calendar.current_session()
    sessions = [s for s in calendar.sessions_between(start, end) if s <= current]
    if not sessions:
        raise NotASessionError(f"no NYSE session has traded between {start} and {end}")
    features_ds = dataset(underlying, "features")
    events_ds = dataset(underlying, "scan_events")
    wanted = set(sessions)
    listed = sorted(wanted & set(storage.sessions(features_ds)) & set(storage.sessions(events_ds)))
    latest = stored_threshold(storage, underlying)
    rescan = threshold is not None and not _same(threshold, latest)
    damaged: list[dt.date] = []
    try:
        bars, events = _report_inputs(storage, features_ds, events_ds, listed, not rescan)
        stored = listed
    except CorruptPartitionError:
        stored = report_sessions(storage, underlying, listed)
        damaged = sorted(set(listed) - set(stored))
        bars, events = _report_inputs(storage, features_ds, events_ds, stored, not rescan)
    not_stored = [s for s in sessions if s not in set(stored) and s not in set(damaged)]
    if not stored:
        extra = f" ({len(damaged)} damaged: rebuild them)" if damaged else ""
        raise MissingPartitionError(
            f"no scan events of {underlying} are stored for {sessions[0]} … "
            f"{sessions[-1]}{extra}: build them with {backfill_command(sessions[0], sessions[-1])}"
        )
    if rescan:
        stored_at = latest
    else:
        # Each event row carries the threshold it was scanned with, as the file's provenance
        # does; only sessions without any event need their provenance read.
        with_events = set(_dates(events["session"].drop_duplicates()))
        stored_at = _stored_threshold(
            storage,
            events_ds,
            [s for s in stored if s not in with_events],
            also=events["threshold"].dropna().unique(),
        )
        rescan = threshold is not None and not _same(threshold, stored_at)
    if rescan:
        events = scan_events(bars, threshold)
    report = scan_report(bars, events, threshold=threshold if rescan else stored_at)
    # sessions travel as timestamps (the scanner groups those faster than date objects)
    report = dataclasses.replace(
        report,
        first_session=_date_or_none(report.first_session),
        last_session=_date_or_none(report.last_session),
    )
    events = events.assign(session=_dates(events["session"]))
    return ReportView(
        report=report,
        events=events.reset_index(drop=True),
        sessions=stored,
        not_stored=not_stored,
        damaged=damaged,
        stored_threshold=stored_at,
        rescanned=rescan,
    )


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=0, abs_tol=1e-12)


def report_fingerprint(
    storage: Storage, underlying: str, start: dt.date, end: dt.date
) -> tuple[tuple[str, int, int], ...]:
    """(path, size, mtime) of every features and scan-events file in [start, end]: a report
    computed from the same fingerprint would be the same."""
    out = []
    for kind in ("features", "scan_events"):
        ds = dataset(underlying, kind)
        for session in storage.sessions(ds):
            if start <= session <= end:
                info = storage.file_info(ds, session)
                if info is not None:
                    out.append((storage.location(ds, session), info.size, info.modified_ns))
    return tuple(out)


def _report_inputs(
    storage: Storage,
    features_ds: Dataset,
    events_ds: Dataset,
    sessions: Sequence[dt.date],
    with_events: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scanner's bars (contract, session, timestamp, close) and the stored events (none
    unless ``with_events``)."""
    events = pd.DataFrame(columns=["contract", "session", "trigger_time", "threshold"])
    if not sessions:
        return pd.DataFrame(columns=["contract", "session", "timestamp", "close"]), events
    with PageReader(storage) as db:
        db.view("features", features_ds, sessions, same_schema=True)
        bars = db.frame(
            "SELECT contract, session::TIMESTAMP AS session, timestamp, close FROM features",
            arrow=True,
        )
        if with_events:
            db.view("events", events_ds, sessions, same_schema=True)
            events = db.frame(
                "SELECT * EXCLUDE (session), session::TIMESTAMP AS session FROM events "
                "ORDER BY trigger_time, contract"
            )
    return bars, events


def _date_or_none(value: object) -> dt.date | None:
    return None if value is None else pd.Timestamp(value).date()


def _dates(series: pd.Series) -> pd.Series:
    """DuckDB DATE values as ``datetime.date`` objects (what ``Storage.read_sessions`` gives)."""
    return pd.Series(pd.to_datetime(series).dt.date, index=series.index, dtype="object")


def events_table(events: pd.DataFrame) -> pd.DataFrame:
    """The event table as the page shows and downloads it: times in New York time."""
    out = pd.DataFrame(
        {
            "session": events["session"].astype(str),
            "contract": events["contract"],
            "trigger (ET)": to_et(events["trigger_time"]),
            "trigger_price": events["trigger_price"],
            "reference_price": events["reference_price"],
            "peak_price": events["peak_price"],
            "peak (ET)": to_et(events["peak_time"]),
            "run_bars": events["run_bars"].astype("int64"),
            "run_minutes": events["run_minutes"],
            "ran_to_close": events["ran_to_close"].astype(bool),
        }
    )
    return out.reset_index(drop=True)
