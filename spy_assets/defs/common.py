"""Shared Dagster glue: reading the run's sessions, storing frames, metadata, schema checks."""

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence

import pandas as pd
import pandera.pandas as pa
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from spy_assets import calendar, schemas
from spy_assets.defs.partitions import sessions_partitions
from spy_assets.defs.resources import StorageResource
from spy_assets.errors import CorruptPartitionError, MissingPartitionError
from spy_assets.provenance import code_version
from spy_assets.sources.base import RequestStats
from spy_assets.storage import Dataset, Storage, WriteResult

#: Every asset that calls the vendor runs in this pool, so concurrent calls are capped
#: across runs (dagster.yaml sets its limit).
VENDOR_POOL = "vendor_api"


def session_asset(
    key: AssetKey,
    *,
    group: str,
    description: str,
    deps: Sequence[object] = (),
    calls_vendor: bool = False,
) -> Callable[..., AssetsDefinition]:
    """``@asset`` for a Parquet dataset partitioned by session: one shared partitions
    definition, and single-run backfills (each asset loops over the run's sessions)."""
    return asset(
        key=key,
        deps=list(deps),
        partitions_def=sessions_partitions,
        backfill_policy=BackfillPolicy.single_run(),
        pool=VENDOR_POOL if calls_vendor else None,
        group_name=group,
        kinds={"parquet"},
        description=description,
    )


def run_sessions(context: AssetExecutionContext | AssetCheckExecutionContext) -> list[dt.date]:
    """The sessions of this run: its partition keys (never its time window, which spans
    weekends and holidays)."""
    return [calendar.parse_session(key) for key in context.partition_keys]


class Timer:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return round(time.perf_counter() - self.started, 3)


def store_sessions(
    context: AssetExecutionContext,
    storage: Storage,
    ds: Dataset,
    frames: Mapping[dt.date, pd.DataFrame],
    *,
    source: str,
    timer: Timer,
    stats: RequestStats | None = None,
    params: Mapping[str, object] | None = None,
    extra: Mapping[str, object] | None = None,
    reused: Sequence[dt.date] = (),
) -> MaterializeResult:
    """Write each session's frame and describe the whole run in one set of metadata."""
    provenance = {"code_version": code_version(), "source": source, "params": dict(params or {})}
    written: dict[dt.date, WriteResult] = {}
    for session, frame in sorted(frames.items()):
        written[session] = storage.write(ds, session, frame, provenance)
        context.log.info(
            f"{ds.name} {session}: {written[session].rows} rows "
            f"({written[session].duplicates_dropped} duplicates dropped)"
        )
    try:
        storage.refresh_catalog([ds])
    except Exception as exc:  # a reader holding the catalog must not fail the write
        context.log.warning(f"DuckDB catalog not refreshed for {ds.name}: {exc}")
    sample_frame = next((f for f in reversed(list(frames.values())) if len(f)), None)
    metadata: dict[str, object] = {
        "sessions": len(written) + len(reused),
        "row_count": sum(w.rows for w in written.values()),
        "bytes": sum(w.bytes for w in written.values()),
        "duplicates_dropped": sum(w.duplicates_dropped for w in written.values()),
        "rows_per_session": MetadataValue.json({str(s): w.rows for s, w in written.items()}),
        "source": source,
        "seconds": timer.seconds,
        "code_version": code_version(),
        "dagster/row_count": sum(w.rows for w in written.values()),
    }
    if reused:
        metadata["sessions_already_stored"] = MetadataValue.json([str(s) for s in reused])
    if params:
        metadata["params"] = MetadataValue.json(dict(params))
    metadata.update((stats or RequestStats()).as_metadata())
    if written:
        last = max(written)
        metadata["path"] = MetadataValue.path(str(written[last].path))
    if sample_frame is not None:
        metadata["sample"] = MetadataValue.md(sample_frame.head(5).to_markdown(index=False))
    metadata.update(extra or {})
    return MaterializeResult(metadata=metadata)


def schema_check(
    asset: AssetsDefinition | AssetKey,
    ds: Dataset,
    schema_for: Callable[[dt.date], pa.DataFrameSchema],
    description: str,
) -> Callable[..., object]:
    """A blocking Pandera check over every session of the run: when it fails, downstream assets
    of the run do not execute, and the metadata names the session, the rows and the rule."""

    key = asset.key if isinstance(asset, AssetsDefinition) else asset

    @asset_check(
        asset=key,
        name="schema",
        blocking=True,
        partitions_def=sessions_partitions,
        description=description,
    )
    def _check(context: AssetCheckExecutionContext, storage: StorageResource) -> AssetCheckResult:
        store = storage.get()
        failures: dict[str, str] = {}
        rows = 0
        for session in run_sessions(context):
            try:
                frame = store.read(ds, session)
            except (MissingPartitionError, CorruptPartitionError) as exc:
                failures[str(session)] = str(exc)
                continue
            result = schemas.validate(schema_for(session), frame)
            rows += result.rows
            if not result.passed:
                failures[str(session)] = (
                    f"{result.failing_rows} failing rows; rules: {', '.join(result.rules())}\n\n"
                    + result.to_markdown()
                )
        metadata: dict[str, object] = {"rows_checked": rows, "sessions_failed": len(failures)}
        if failures:
            metadata["failures"] = MetadataValue.md(
                "\n\n".join(f"### {s}\n{text}" for s, text in failures.items())
            )
        return AssetCheckResult(
            passed=not failures,
            severity=AssetCheckSeverity.ERROR,
            metadata=metadata,
            description=None
            if not failures
            else f"{ds.name} failed its schema on " + ", ".join(failures),
        )

    _check.__name__ = f"{ds.view_name}_schema"
    return _check
