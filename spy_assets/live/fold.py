"""The live day's path into the stored partitions: fold landed micro-batches, repair gaps, stitch.

The stream consumer lands micro-batches (``spy_assets.landing``); runs of the ordinary assets
tagged with a :class:`LiveRun` turn them into the same session partitions as the batch path:

- **fold** (during the day, and for late data): the batches of a dataset and session landed
  since the last fold are merged with what is stored for that session and written with the same
  atomic, deduplicating :meth:`Storage.write`. *Landed rows win on the key*: a bar the stream
  sent again or corrected replaces the stored one. Regular-session minutes missing before the
  latest landed minute (the socket was down) are fetched over REST and filled in; REST never
  overwrites a landed bar during the day.
- **stitch** (after the close): the session is read again over REST exactly as a backfill reads
  it and *REST wins*: the stored partition is then byte for byte what a pure backfill gives.
  Bars that REST added, corrected or dropped are counted.

Which batches a partition already holds is kept per dataset and session under
``<landing>/.fold/`` (the name of the last batch folded, and how far gaps were checked). It is
written after the partition, under a lock that serialises folds and stitches of the same
dataset and session, so concurrent runs never lose a batch and a crash in between only folds
the same batches again (the merge is idempotent). Batches landed after a stitch are late data
and are folded on top of the REST data.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from spy_assets import calendar, gates, ingest
from spy_assets.builds import VIX_TICKER, BuildRequest, Built
from spy_assets.datasets import DatasetSpec
from spy_assets.landing import LandedBatch, LandingZone
from spy_assets.sources.base import (
    BAR_COLUMNS,
    INDEX_BAR_COLUMNS,
    MarketSource,
    empty_frame,
    fetch_option_bars,
)
from spy_assets.storage import VIX_MINUTE_BARS, Dataset, Storage, WriteResult

#: Run tags of a live run: its mode, and the last landed batch (a landing cursor) it may fold.
LIVE_MODE_TAG = "spy_assets/live"
LANDING_THROUGH_TAG = "spy_assets/landing_through"
#: Source recorded in the provenance of a folded partition.
LANDING_SOURCE = "landing"
_STATE_DIR = ".fold"

Mode = Literal["fold", "stitch"]


def is_landed(ds: Dataset | str) -> bool:
    """True for the datasets the stream consumer lands: minute bars of the underlyings, of
    their options, and of VIX."""
    name = ds.name if isinstance(ds, Dataset) else ds
    return name.endswith("/minute_bars") or name.endswith("/option_minute_bars")


@dataclass(frozen=True)
class LiveRun:
    """How a run's assets treat the landing zone; carried in the run's tags."""

    mode: Mode
    #: Batches named up to this one may be folded (later ones belong to later runs).
    through: str

    def tags(self) -> dict[str, str]:
        return {LIVE_MODE_TAG: self.mode, LANDING_THROUGH_TAG: self.through}

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> LiveRun | None:
        mode = tags.get(LIVE_MODE_TAG)
        if mode not in ("fold", "stitch"):
            return None
        return cls(mode, tags.get(LANDING_THROUGH_TAG, ""))  # type: ignore[arg-type]

    def build(self, spec: DatasetSpec, request: BuildRequest) -> Built:
        """The dataset's build in this run: folded or stitched when the stream lands it, read
        again over REST at the stitch, else the ordinary build."""
        zone = LandingZone.under(request.storage.state_dir)
        if is_landed(spec.dataset):
            if self.mode == "fold":
                return fold(spec.dataset, request, zone, self.through)
            return stitch(spec, request, zone, self.through)
        if self.mode == "stitch" and spec.calls_vendor:
            return spec.build(replace(request, refetch=True))
        return spec.build(request)


# ------------------------------------------------------------------ state
@dataclass(frozen=True)
class FoldState:
    """What a stored partition already holds of the landing zone."""

    #: Name of the last batch folded (or superseded by REST at the stitch).
    landing_through: str | None = None
    #: Minutes up to this one were checked for gaps (and repaired where REST had bars).
    gaps_checked_through: pd.Timestamp | None = None


def _state_path(zone: LandingZone, ds: Dataset, session: dt.date) -> Path:
    return zone.root / _STATE_DIR / ds.name / f"session={session.isoformat()}.json"


def fold_state(zone: LandingZone, ds: Dataset, session: dt.date) -> FoldState:
    """The fold state of one dataset and session (empty when nothing was folded yet)."""
    path = _state_path(zone, ds, session)
    if not path.is_file():
        return FoldState()
    raw = json.loads(path.read_text())
    checked = raw.get("gaps_checked_through")
    return FoldState(raw.get("landing_through"), pd.Timestamp(checked) if checked else None)


def _write_state(zone: LandingZone, ds: Dataset, session: dt.date, state: FoldState) -> None:
    path = _state_path(zone, ds, session)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "landing_through": state.landing_through,
        "gaps_checked_through": (
            state.gaps_checked_through.isoformat() if state.gaps_checked_through else None
        ),
    }
    fd, tmp = tempfile.mkstemp(prefix=".state.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(body, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _session_lock(zone: LandingZone, ds: Dataset, session: dt.date) -> Iterator[None]:
    """One fold or stitch of a dataset and session at a time, across processes."""
    path = _state_path(zone, ds, session).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def unfolded_batches(
    zone: LandingZone, ds: Dataset, session: dt.date, through: str | None = None
) -> list[LandedBatch]:
    """Batches of a dataset and session not yet in its partition (up to ``through``)."""
    done = fold_state(zone, ds, session).landing_through
    return [
        b
        for b in zone.batches([ds], after=done, session=session)
        if through is None or b.name <= through
    ]


# ------------------------------------------------------------------- fold
def _columns(ds: Dataset) -> list[str]:
    if ds == VIX_MINUTE_BARS:
        return list(INDEX_BAR_COLUMNS)
    first = "contract" if ds.name.endswith("/option_minute_bars") else "ticker"
    return [first, *BAR_COLUMNS]


def _empty(ds: Dataset) -> pd.DataFrame:
    columns = _columns(ds)
    frame = empty_frame(columns[1:] if columns[0] in ("ticker", "contract") else columns)
    if columns[0] in ("ticker", "contract"):
        frame.insert(0, columns[0], pd.Series(dtype="str"))
    if "transactions" in frame:
        frame["transactions"] = frame["transactions"].astype("int64")
    return frame


@dataclass
class _Conformed:
    frame: pd.DataFrame
    outside_session: int = 0
    unusable: int = 0
    transactions_unknown: int = 0


def _conform(landed: pd.DataFrame, ds: Dataset, session: dt.date) -> _Conformed:
    """Landed rows with the stored dataset's columns and types, inside the regular session.

    ``received_at`` and any other extra column are dropped. The vendor's minute aggregates on
    the socket carry no trade count: a missing ``transactions`` is stored as 0 (and counted)
    until the stitch after the close brings the REST value.
    """
    columns = _columns(ds)
    if landed.empty:
        return _Conformed(_empty(ds))
    frame = landed.copy()
    for col in columns:
        if col not in frame:
            frame[col] = np.nan
    frame = frame[columns]
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True).astype("datetime64[ms, UTC]")
    for col in ("open", "high", "low", "close", "volume", "vwap"):
        if col in frame:
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    missing_count = pd.Series(False, index=frame.index)
    if "transactions" in frame:
        counts = pd.to_numeric(frame["transactions"], errors="coerce")
        missing_count = counts.isna()
        frame["transactions"] = counts.fillna(0).round().astype("int64")
    key_first = columns[0]
    if key_first in ("ticker", "contract"):
        frame[key_first] = frame[key_first].astype("str")
    prices = ["open", "high", "low", "close"]
    usable = frame["timestamp"].notna() & frame[prices].notna().all(axis=1)
    lo, hi = calendar.window_utc(session)
    inside = (frame["timestamp"] >= lo) & (frame["timestamp"] < hi)
    kept = usable & inside
    unknown = int((kept & missing_count).sum())
    return _Conformed(
        frame[kept].reset_index(drop=True),
        int((usable & ~inside).sum()),
        int((~usable).sum()),
        unknown,
    )


def _dedup(frame: pd.DataFrame, ds: Dataset) -> pd.DataFrame:
    """Last row per key wins, like :meth:`Storage.write`."""
    return frame.drop_duplicates(subset=list(ds.key), keep="last").reset_index(drop=True)


def _picked_contracts(storage: Storage, ds: Dataset, session: dt.date) -> list[str] | None:
    name = ds.name.replace("/option_minute_bars", "/option_contracts")
    contracts_ds = Dataset(name, ("contract",))
    if not storage.exists(contracts_ds, session):
        return None
    return storage.read(contracts_ds, session)["contract"].astype(str).tolist()


def _holes(
    merged: pd.DataFrame, session: dt.date, checked: pd.Timestamp | None
) -> pd.DatetimeIndex:
    """Regular-session minutes before the latest stored minute that no row covers (for option
    bars: no contract at all), after the minutes already checked."""
    if merged.empty:
        return pd.DatetimeIndex([], tz="UTC").as_unit("ms")
    minutes = calendar.session_minutes(session)
    latest = merged["timestamp"].max()
    wanted = minutes[minutes < latest]
    if checked is not None:
        wanted = wanted[wanted > checked]
    return wanted.difference(pd.DatetimeIndex(merged["timestamp"].unique()))


def _rest_bars(
    ds: Dataset,
    market: MarketSource,
    session: dt.date,
    contracts: Sequence[str],
    warn: Callable[[str], None],
) -> pd.DataFrame:
    """The session's bars over REST, as the batch path reads them (whole session: a source
    reads whole sessions, and the vendor answers one session in one request)."""
    if ds == VIX_MINUTE_BARS:
        return ingest.split_sessions(market.index_bars(VIX_TICKER, session, session), [session])[
            session
        ]
    if ds.name.endswith("/option_minute_bars"):
        got = fetch_option_bars(market, list(contracts), session, session)
        for contract, reason in got.errors.items():
            warn(f"{session} {contract}: gap repair skipped: {reason}")
        parts = []
        for contract, bars in got.bars.items():
            bars = ingest.split_sessions(bars, [session])[session]
            if not bars.empty:
                bars.insert(0, "contract", contract)
                parts.append(bars)
        return pd.concat(parts, ignore_index=True) if parts else _empty(ds)
    underlying = ds.name.split("/")[0].upper()
    bars = ingest.split_sessions(market.stock_bars(underlying, session, session), [session])[
        session
    ]
    bars.insert(0, "ticker", underlying)
    return bars


def fold(ds: Dataset, request: BuildRequest, zone: LandingZone, through: str) -> Built:
    """Fold the landed batches (up to ``through``) of each session of the request into its
    partition, repairing gaps over REST; see the module docstring for who wins."""
    written: dict[dt.date, WriteResult] = {}
    facts: dict[str, int] = dict.fromkeys(FOLD_FACTS, 0)
    params: dict[str, object] = {}
    sources = {LANDING_SOURCE}
    for session in request.sessions:
        with _session_lock(zone, ds, session):
            done = _fold_session(ds, request, zone, through, session, facts)
        if done is not None:
            written[session], source, params = done
            sources |= set(source.split("+"))
    return Built(
        {},
        "+".join(sorted(sources)),
        params=params,
        reused=[s for s in request.sessions if s not in written],
        facts=dict(facts),
        written=written,
    )


#: The counts a fold adds to the materialization's metadata.
FOLD_FACTS = (
    "batches_folded",
    "bars_landed",
    "bars_new",
    "bars_updated",
    "rows_outside_session",
    "rows_unusable",
    "rows_not_picked",
    "transactions_unknown",
    "gap_minutes_repaired",
)


def _fold_session(
    ds: Dataset,
    request: BuildRequest,
    zone: LandingZone,
    through: str,
    session: dt.date,
    facts: dict[str, int],
) -> tuple[WriteResult, str, dict[str, object]] | None:
    """One session's fold, under its lock; None when there was nothing to write."""
    store = request.storage
    state = fold_state(zone, ds, session)
    batches = unfolded_batches(zone, ds, session, through or None)
    conformed = _conform(zone.read(batches), ds, session)
    landed = _dedup(conformed.frame, ds)
    picked = None
    if ds.name.endswith("/option_minute_bars"):
        picked = _picked_contracts(store, ds, session)
        if picked is not None:
            keep = landed["contract"].isin(picked)
            facts["rows_not_picked"] += int((~keep).sum())
            landed = landed[keep].reset_index(drop=True)
    # The partition's sources accumulate: what REST filled earlier is still in it.
    sources = {LANDING_SOURCE}
    if store.exists(ds, session):
        stored = store.read(ds, session)
        sources |= set(str(store.provenance(ds, session).get("source", "")).split("+")) - {""}
    else:
        stored = _empty(ds)
    merged = _dedup(pd.concat([stored, landed], ignore_index=True), ds)
    new, updated = _changes(stored, landed, ds)
    holes = _holes(merged, session, state.gaps_checked_through)
    checked = merged["timestamp"].max() if not merged.empty else state.gaps_checked_through
    repaired = 0
    if len(holes) and request.source is not None:
        if picked is not None or "contract" not in merged:
            contracts = picked or []
        else:
            contracts = sorted(set(merged["contract"]))
        rest = _rest_bars(ds, request.market, session, contracts, request.warn)
        fill = rest[rest["timestamp"].isin(holes)]
        repaired = int(fill["timestamp"].nunique())
        if repaired:
            merged = _dedup(pd.concat([fill, merged], ignore_index=True), ds)
            sources.add(request.market.name)
        # A delayed REST feed may not have the latest minutes yet: check them again next time.
        covered = rest["timestamp"].max() if not rest.empty else state.gaps_checked_through
        checked = min(checked, covered) if covered is not None else None
        request.warn(
            f"{ds.name} {session}: {len(holes)} minute(s) missing from the stream, "
            f"{repaired} repaired over REST"
        )
    facts["batches_folded"] += len(batches)
    facts["bars_landed"] += len(landed)
    facts["bars_new"] += new
    facts["bars_updated"] += updated
    facts["rows_outside_session"] += conformed.outside_session
    facts["rows_unusable"] += conformed.unusable
    facts["transactions_unknown"] += conformed.transactions_unknown
    facts["gap_minutes_repaired"] += repaired
    if not batches and not repaired:
        if checked != state.gaps_checked_through:
            _write_state(zone, ds, session, FoldState(state.landing_through, checked))
        return None
    through_name = batches[-1].name if batches else state.landing_through
    params: dict[str, object] = {"landing_through": through_name}
    source = "+".join(sorted(sources))
    provenance = Built({}, source, params=params).provenance()
    result = store.write(ds, session, merged, provenance)
    # After the partition, so that a crash in between folds the same batches again.
    _write_state(zone, ds, session, FoldState(through_name, checked))
    return result, source, params


def _changes(before: pd.DataFrame, after: pd.DataFrame, ds: Dataset) -> tuple[int, int]:
    """(keys of ``after`` not in ``before``, keys in both whose values differ)."""
    if after.empty:
        return 0, 0
    key = list(ds.key)
    joined = after.merge(before, on=key, how="left", suffixes=("", "__old"), indicator=True)
    fresh = int((joined["_merge"] == "left_only").sum())
    both = joined[joined["_merge"] == "both"]
    values = [c for c in after.columns if c not in key and f"{c}__old" in both]
    differ = pd.Series(False, index=both.index)
    for col in values:
        new, old = both[col], both[f"{col}__old"]
        differ |= ~((new == old) | (new.isna() & old.isna()))
    return fresh, int(differ.sum())


# ----------------------------------------------------------------- stitch
def stitch(spec: DatasetSpec, request: BuildRequest, zone: LandingZone, through: str) -> Built:
    """Read each session of the request again over REST, exactly as a backfill does, and
    replace its partition with it; count what REST added, corrected and dropped.

    The batches landed up to ``through`` count as superseded: later ones are late data.
    """
    ds = spec.dataset
    built = spec.build(replace(request, refetch=True))
    if built.error is not None:
        return built
    counts = {"gap_minutes_repaired": 0, "bars_replaced_by_rest": 0, "bars_dropped_by_rest": 0}
    written: dict[dt.date, WriteResult] = {}
    for session, frame in sorted(built.frames.items()):
        with _session_lock(zone, ds, session):
            state = fold_state(zone, ds, session)
            if store_has := request.storage.exists(ds, session):
                stored = request.storage.read(ds, session)
            else:
                stored = _empty(ds)
            rest = _dedup(frame, ds)
            added, replaced = _changes(stored, rest, ds)
            if store_has and not stored.empty:
                dropped, _ = _changes(rest, stored, ds)
            else:
                dropped = 0
            counts["gap_minutes_repaired"] += (
                added
                if not ds.name.endswith("/option_minute_bars")
                else _added_minutes(stored, rest, ds)
            )
            counts["bars_replaced_by_rest"] += replaced
            counts["bars_dropped_by_rest"] += dropped
            written[session] = gates.write_checked(
                request.storage, ds, session, frame, spec.schema, built.provenance()
            )
            last = max(filter(None, [state.landing_through, through]), default=None)
            _write_state(zone, ds, session, FoldState(last, calendar.session_close(session)))
    return Built(
        {},
        built.source,
        params=built.params,
        reused=built.reused,
        facts={**built.facts, **counts},
        markdown=built.markdown,
        written=written,
    )


def _added_minutes(stored: pd.DataFrame, rest: pd.DataFrame, ds: Dataset) -> int:
    key = list(ds.key)
    joined = rest[key].merge(stored[key], on=key, how="left", indicator=True)
    return int(joined.loc[joined["_merge"] == "left_only", "timestamp"].nunique())


# ------------------------------------------------------------------- plan
@dataclass(frozen=True)
class FoldPlan:
    """The datasets a run for one session builds after batches landed, upstream first."""

    session: dt.date
    datasets: list[str]
    #: The session is over: late data, everything downstream is rebuilt.
    late: bool


def plan_fold(
    specs: Sequence[DatasetSpec],
    storage: Storage,
    zone: LandingZone,
    session: dt.date,
    landed: set[str],
    late: bool,
) -> FoldPlan:
    """What to build for ``session`` when batches of the ``landed`` datasets arrived.

    The landed datasets are folded. An underlying's contracts are picked once its open is
    known (rebuilt for late data, in case the opening bar changed). The derived datasets are
    rebuilt when each of their inputs is stored or built in the same run: for today features
    and scan events, for a past session everything downstream. News missing for the session is
    read first, since the features need it.
    """
    by_name = {s.name: s for s in specs}
    chosen = {n for n in landed if n in by_name}
    available = {s.name for s in specs if storage.exists(s.dataset, session)} | chosen
    for spec in specs:
        name = spec.name
        if not name.endswith("/option_contracts"):
            continue
        bars = name.replace("/option_contracts", "/minute_bars")
        if bars not in available:
            continue
        if late and bars in chosen:
            chosen.add(name)
        elif name not in available and _has_open(storage, zone, by_name[bars].dataset, session):
            chosen.add(name)
    available |= chosen
    wanted_kinds = ("/features", "/scan_events") + (("/training_data",) if late else ())
    derived: set[str] = set()
    # Upstream first: the table lists every dataset after its upstreams.
    for spec in specs:
        if not spec.name.endswith(wanted_kinds) or not spec.deps:
            continue
        inputs = set(spec.deps)
        missing = inputs - available - derived
        # Inputs read straight from the source (news) are fetched in the same run.
        fetchable = {
            d for d in missing if d in by_name and not by_name[d].deps and not is_landed(d)
        }
        if missing - fetchable:
            continue
        if not (inputs & (chosen | derived)) and not fetchable:
            continue  # nothing it reads changes
        chosen |= fetchable
        available |= fetchable
        derived.add(spec.name)
    chosen |= derived
    return FoldPlan(session, [s.name for s in specs if s.name in chosen], late)


def _has_open(storage: Storage, zone: LandingZone, bars: Dataset, session: dt.date) -> bool:
    """A regular-session bar of the underlying is stored or landed (its open is known)."""
    lo, hi = calendar.window_utc(session)
    frames = [zone.read(zone.batches([bars], session=session))]
    if storage.exists(bars, session):
        frames.append(storage.read(bars, session))
    for frame in frames:
        if not frame.empty:
            stamps = pd.to_datetime(frame["timestamp"], utc=True)
            if ((stamps >= lo) & (stamps < hi)).any():
                return True
    return False
