"""Data health: what is stored per dataset and session, and what the Dagster instance recorded.

Files are judged by their Parquet footer (rows, readable or not). Materializations and check
results come from the Dagster instance through its Python API (never by reading its files):
the instance is ``DAGSTER_HOME`` when set, else ``<data dir>/dagster`` when it exists. This is
the only dashboard module that imports Dagster, and only when an instance exists.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from spy_assets import calendar
from spy_assets.errors import CorruptPartitionError, MissingPartitionError
from spy_assets.storage import Dataset, Storage

if TYPE_CHECKING:
    from dagster import DagsterInstance

#: The quality checks shown beside the schema check: vendor schema drift (vendor datasets only)
#: and freshness (every dataset; evaluated by the freshness sensor while the daemon runs).
QUALITY_CHECKS = ("schema_drift", "freshness")
SCHEMA_CHECK = "schema"


def dataset_names(storage: Storage, underlyings: Sequence[str]) -> list[str]:
    """Every dataset of the configuration (the table in ``spy_assets.datasets``), upstream
    first, plus any other one found on disk."""
    from spy_assets.datasets import all_datasets

    names = [spec.name for spec in all_datasets(underlyings)]
    return names + [n for n in storage.datasets_on_disk() if n not in names]


@dataclass(frozen=True)
class InstanceLocation:
    """Where the Dagster instance of a data folder is, or why there is none."""

    home: Path | None
    how: str


def locate_instance(data_dir: Path, environ: Mapping[str, str] | None = None) -> InstanceLocation:
    """``DAGSTER_HOME`` if set, else ``<state dir>/dagster`` if it exists, else none
    (``data_dir`` is the local state folder: the data folder itself when that is local)."""
    env = os.environ if environ is None else environ
    if env.get("DAGSTER_HOME", "").strip():
        return InstanceLocation(Path(env["DAGSTER_HOME"]).expanduser().absolute(), "DAGSTER_HOME")
    candidate = Path(data_dir) / "dagster"
    if candidate.is_dir():
        return InstanceLocation(candidate, "the data folder's instance")
    return InstanceLocation(
        None,
        f"no Dagster instance yet: DAGSTER_HOME is not set and {candidate} does not exist "
        "(a backfill creates it)",
    )


def file_table(storage: Storage, names: Sequence[str], sessions: Sequence[dt.date]) -> pd.DataFrame:
    """One row per (dataset, session): ``file`` (ok / missing / damaged) and ``rows`` (from the
    Parquet footer; nothing else of the file is read)."""
    records = []
    for name in names:
        for session in sessions:
            status, rows = "missing", None
            try:
                rows = storage.footer(dataset_from_name(name), session).num_rows
                status = "ok"
            except CorruptPartitionError:
                status = "damaged"
            except MissingPartitionError:
                pass
            records.append({"dataset": name, "session": session, "file": status, "rows": rows})
    frame = pd.DataFrame.from_records(records, columns=["dataset", "session", "file", "rows"])
    frame["rows"] = frame["rows"].astype("Int64")
    return frame


@dataclass(frozen=True)
class CheckRun:
    """One evaluation of a check in one run: its status and, per failing session, why."""

    run_id: str
    status: str  # passed, failed, or not run (planned, but the run stopped before it)
    timestamp: float | None
    description: str | None
    failures: dict[str, str]


_SECTION = re.compile(r"^### (\d{4}-\d{2}-\d{2})\s*$", re.MULTILINE)


def split_failures(markdown: str) -> dict[str, str]:
    """The schema check's ``failures`` metadata (``### <session>`` then the failing rows and
    rules) split per session."""
    parts = _SECTION.split(markdown or "")
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}


def _key(name: str) -> object:
    from dagster import AssetKey

    return AssetKey(name.split("/"))


class InstanceHealth:
    """Reads of one Dagster instance for the health page (public instance methods only)."""

    def __init__(self, instance: DagsterInstance) -> None:
        self.instance = instance

    @classmethod
    def open(cls, home: Path) -> InstanceHealth:
        from dagster import DagsterInstance

        return cls(DagsterInstance.from_config(str(home)))

    def materialized_partitions(self, name: str) -> set[str]:
        return set(self.instance.get_materialized_partitions(_key(name)))

    def latest_materializations(self, names: Sequence[str]) -> dict[str, dict[str, object]]:
        """Per dataset, its latest materialization (one read for all of them)."""
        out = {}
        for record in self.instance.get_asset_records([_key(n) for n in names]):
            event = record.asset_entry.last_materialization
            if event is None:
                continue
            made = event.asset_materialization
            out[record.asset_entry.asset_key.to_user_string()] = {
                "timestamp": event.timestamp,
                "run_id": event.run_id,
                "partition": made.partition if made else None,
            }
        return out

    def materializations(self, name: str, sessions: Sequence[dt.date]) -> dict[str, dict]:
        """The latest materialization of each of these sessions: ``{session: {timestamp,
        run_id}}`` (sessions never materialized are absent)."""
        from dagster import AssetRecordsFilter

        wanted = {s.isoformat() for s in sessions}
        found: dict[str, dict] = {}
        cursor = None
        while wanted - found.keys():
            result = self.instance.fetch_materializations(
                AssetRecordsFilter(asset_key=_key(name), asset_partitions=sorted(wanted)),
                limit=max(50, 2 * len(wanted)),
                cursor=cursor,
            )
            for record in result.records:  # newest first
                if record.partition_key in wanted and record.partition_key not in found:
                    found[record.partition_key] = {
                        "timestamp": record.timestamp,
                        "run_id": record.run_id,
                    }
            if not result.has_more:
                break
            cursor = result.cursor
        return found

    def check_runs(self, name: str, check: str = SCHEMA_CHECK, limit: int = 200) -> list[CheckRun]:
        """The latest evaluations of a check on a dataset, newest first."""
        from dagster import AssetCheckKey

        key = AssetCheckKey(_key(name), check)
        history = self.instance.event_log_storage.get_asset_check_execution_history
        latest = history(key, limit=1)
        if not latest:
            return []
        # The status filter takes the records' own enum; it is not exported by ``dagster``, so
        # it is read off a record. Evaluated records only: a run also leaves one "planned"
        # record per session it covers, which would crowd the evaluations out of the limit.
        status = type(latest[0].status)
        records = history(key, limit=limit, status={status.SUCCEEDED, status.FAILED})
        return [_check_run(r) for r in records]

    def latest_checks(
        self, names: Sequence[str], checks: Sequence[str]
    ) -> dict[tuple[str, str], CheckRun]:
        """The latest evaluation of each (dataset, check) that has one (one read for all)."""
        from dagster import AssetCheckKey

        keys = [AssetCheckKey(_key(n), c) for n in names for c in checks]
        found = self.instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
        return {
            (key.asset_key.to_user_string(), key.name): _check_run(record)
            for key, record in found.items()
            if record is not None
        }


_OPEN: dict[str, tuple[float, InstanceHealth]] = {}
_OPEN_LOCK = threading.Lock()
#: An open instance is reused this long, then opened afresh.
INSTANCE_TTL_S = 600.0


def instance_health(home: Path) -> InstanceHealth:
    """The instance at ``home``, opened once and kept for :data:`INSTANCE_TTL_S` seconds
    (opening one means importing Dagster and reading its storage: seconds, not milliseconds).
    Thread-safe: the server's warm-up and a page may ask at once."""
    key = str(Path(home).absolute())
    with _OPEN_LOCK:
        found = _OPEN.get(key)
        if found is not None and time.monotonic() - found[0] < INSTANCE_TTL_S:
            return found[1]
        opened = InstanceHealth.open(Path(key))
        _OPEN[key] = (time.monotonic(), opened)
        return opened


def _check_run(record: object) -> CheckRun:
    evaluation = record.event.asset_check_evaluation if record.event else None
    if evaluation is None:
        return CheckRun(record.run_id, "not run", None, "its run stopped before it", {})
    failures = {}
    raw = evaluation.metadata.get("failures")
    if raw is not None:
        failures = split_failures(str(getattr(raw, "value", raw)))
    return CheckRun(
        run_id=record.run_id,
        status="passed" if evaluation.passed else "failed",
        timestamp=record.event.timestamp,
        description=evaluation.description,
        failures=failures,
    )


def _when(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    stamp = pd.Timestamp(timestamp, unit="s", tz="UTC").tz_convert(calendar.MARKET_TZ)
    return f"{stamp:%Y-%m-%d %H:%M:%S} ET"


def session_table(
    files: pd.DataFrame,
    health: InstanceHealth | None,
    names: Sequence[str],
    sessions: Sequence[dt.date],
) -> pd.DataFrame:
    """The file table joined with each session's last materialization and the schema check
    of the run that made it (``check``; ``failure`` holds the rules and failing rows)."""
    out = files.copy()
    out["materialized"] = None
    out["run"] = None
    out["check"] = None
    out["failure"] = None
    if health is None:
        return out
    for name in names:
        made = health.materializations(name, sessions)
        runs = {}
        for check_run in reversed(health.check_runs(name)):  # oldest first: newest wins
            runs[check_run.run_id] = check_run
        rows = out.index[out["dataset"] == name]
        for i in rows:
            session = out.at[i, "session"].isoformat()
            record = made.get(session)
            if record is None:
                continue
            out.at[i, "materialized"] = _when(record["timestamp"])
            out.at[i, "run"] = record["run_id"][:8]
            check_run = runs.get(record["run_id"])
            if check_run is None:
                out.at[i, "check"] = "not evaluated"
            elif check_run.status == "failed" and session in check_run.failures:
                out.at[i, "check"] = "failed"
                out.at[i, "failure"] = check_run.failures[session]
            elif check_run.status == "failed":
                out.at[i, "check"] = "passed (other sessions of the run failed)"
            else:
                out.at[i, "check"] = check_run.status
    return out


def dataset_summary(
    sessions: Mapping[str, Sequence[dt.date]],
    health: InstanceHealth | None,
) -> pd.DataFrame:
    """One row per dataset (``sessions`` maps each to its stored sessions): the span, what the
    instance recorded (materialized sessions, the latest materialization and schema check)
    and the latest schema drift and freshness evaluations."""
    names = list(sessions)
    latest, checks = {}, {}
    if health is not None:
        latest = health.latest_materializations(names)
        checks = health.latest_checks(names, (SCHEMA_CHECK, *QUALITY_CHECKS))
    records = []
    for name in names:
        stored = sessions[name]
        record: dict[str, object] = {
            "dataset": name,
            "sessions stored": len(stored),
            "first": stored[0] if stored else None,
            "last": stored[-1] if stored else None,
        }
        if health is not None:
            record["materialized sessions"] = len(health.materialized_partitions(name))
            made = latest.get(name)
            record["last materialization"] = (
                f"{_when(made['timestamp'])} ({made['partition']}, run {str(made['run_id'])[:8]})"
                if made
                else "never"
            )
            record["schema check (latest)"] = _check_text(
                health, name, checks.get((name, SCHEMA_CHECK))
            )
            for quality in QUALITY_CHECKS:
                found = checks.get((name, quality))
                record[quality] = "never evaluated" if found is None else found.status
        records.append(record)
    return pd.DataFrame.from_records(records)


def _check_text(health: InstanceHealth, name: str, check: CheckRun | None) -> str:
    if check is None:
        return "never evaluated"
    text = check.status + (f": {check.description}" if check.description else "")
    if check.status == "not run":
        text += f" (run {check.run_id[:8]})"
        evaluated = health.check_runs(name, limit=1)
        if evaluated:
            text += f"; last evaluated: {evaluated[0].status}"
    return text


def dataset_from_name(name: str) -> Dataset:
    """The storage Dataset of ``group/kind`` (the key does not matter for listing)."""
    return Dataset(name, ())
