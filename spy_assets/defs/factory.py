"""Assets and blocking schema checks built from the table of datasets (``spy_assets.datasets``).

An asset body is one call into the core (``spec.build``) and one store of its frames; a check
reads what was stored and validates it with the dataset's Pandera schema.
"""

import time

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    Config,
    DailyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)
from pydantic import Field

from spy_assets import calendar, schemas
from spy_assets.builds import BuildRequest, Built
from spy_assets.datasets import DatasetSpec
from spy_assets.defs.resources import MarketDataResource, ResearchSettings, StorageResource
from spy_assets.errors import CorruptPartitionError, MissingPartitionError
from spy_assets.live.fold import LiveRun
from spy_assets.provenance import code_version
from spy_assets.sources.base import RequestStats
from spy_assets.storage import Storage, WriteResult

#: Every asset that calls the vendor runs in this pool, so concurrent calls are capped across
#: runs (dagster.yaml sets its limit).
VENDOR_POOL = "vendor_api"


class IngestConfig(Config):
    refetch: bool = Field(
        default=False,
        description="Download sessions that are already stored again (vendor corrections). "
        "Off: stored, readable sessions are kept and cost no request.",
    )


def asset_key(name: str) -> AssetKey:
    return AssetKey(name.split("/"))


def dataset_asset(spec: DatasetSpec, partitions: DailyPartitionsDefinition) -> AssetsDefinition:
    """The asset of one dataset: single-run backfills (the build gets every session of the run),
    the shared partitions, and the vendor pool when it reads the market."""
    decorate = asset(
        key=asset_key(spec.name),
        deps=[asset_key(d) for d in spec.deps],
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.single_run(),
        pool=VENDOR_POOL if spec.calls_vendor else None,
        group_name=spec.group,
        kinds={"parquet"},
        description=f"{spec.description} Grain: {spec.grain}.",
    )
    if spec.calls_vendor:

        def ingest(
            context: AssetExecutionContext,
            config: IngestConfig,
            storage: StorageResource,
            market: MarketDataResource,
            settings: ResearchSettings,
        ) -> MaterializeResult:
            return _materialize(context, spec, storage, settings, market, config.refetch)

        ingest.__name__ = spec.dataset.view_name
        return decorate(ingest)

    def derive(
        context: AssetExecutionContext, storage: StorageResource, settings: ResearchSettings
    ) -> MaterializeResult:
        return _materialize(context, spec, storage, settings, None, False)

    derive.__name__ = spec.dataset.view_name
    return decorate(derive)


def _materialize(
    context: AssetExecutionContext,
    spec: DatasetSpec,
    storage: StorageResource,
    settings: ResearchSettings,
    market: MarketDataResource | None,
    refetch: bool,
) -> MaterializeResult:
    started = time.perf_counter()
    store = storage.get()
    source = market.build() if market is not None else None
    request = BuildRequest(
        sessions=[calendar.parse_session(k) for k in context.partition_keys],
        storage=store,
        params=settings.params(),
        source=source,
        refetch=refetch,
        warn=context.log.warning,
    )
    live = LiveRun.from_tags(context.run.tags)
    built = live.build(spec, request) if live else spec.build(request)
    result = _store(context, store, spec, built, started, source.stats if source else None)
    if built.error is not None:
        raise built.error
    return result


def _store(
    context: AssetExecutionContext,
    store: Storage,
    spec: DatasetSpec,
    built: Built,
    started: float,
    stats: RequestStats | None,
) -> MaterializeResult:
    """Write each session's frame, with provenance from the values the build used, and
    describe the run in one set of metadata."""
    ds = spec.dataset
    provenance = built.provenance()
    written: dict[str, WriteResult] = {str(s): w for s, w in built.written.items()}
    for session, frame in sorted(built.frames.items()):
        written[str(session)] = store.write(ds, session, frame, provenance)
    if written:
        try:
            store.refresh_catalog([ds])
        except Exception as exc:  # a reader holding the catalog file must not fail the write
            context.log.warning(f"DuckDB catalog not refreshed for {ds.name}: {exc}")
    rows = sum(w.rows for w in written.values())
    context.log.info(
        f"{ds.name}: {len(written)} session(s) written, {rows} rows"
        + (f", {len(built.reused)} already stored" if built.reused else "")
    )
    metadata: dict[str, object] = {
        "sessions": len(written) + len(built.reused),
        "row_count": rows,
        "bytes": sum(w.bytes for w in written.values()),
        "duplicates_dropped": sum(w.duplicates_dropped for w in written.values()),
        "rows_per_session": MetadataValue.json({s: w.rows for s, w in written.items()}),
        "source": built.source,
        "seconds": round(time.perf_counter() - started, 3),
        "code_version": code_version(),
        "dagster/row_count": rows,
        **(stats or RequestStats()).as_metadata(),
    }
    if built.reused:
        metadata["sessions_already_stored"] = MetadataValue.json([str(s) for s in built.reused])
    if built.params:
        metadata["params"] = MetadataValue.json(built.params)
    if written:
        metadata["path"] = MetadataValue.path(str(written[max(written)].path))
    sample = next((f for _, f in sorted(built.frames.items(), reverse=True) if len(f)), None)
    if sample is not None:
        metadata["sample"] = MetadataValue.md(sample.head(5).to_markdown(index=False))
    for name, value in built.facts.items():
        metadata[name] = MetadataValue.json(value) if isinstance(value, dict | list) else value
    for name, text in built.markdown.items():
        metadata[name] = MetadataValue.md(text)
    return MaterializeResult(metadata=metadata)


def schema_check(spec: DatasetSpec, partitions: DailyPartitionsDefinition) -> AssetChecksDefinition:
    """A blocking Pandera check over every session of the run: when it fails, downstream assets
    of the run do not execute, and the metadata names the session, the rows and the rule."""

    @asset_check(
        asset=asset_key(spec.name),
        name="schema",
        blocking=True,
        partitions_def=partitions,
        description=spec.check_description,
    )
    def _check(context: AssetCheckExecutionContext, storage: StorageResource) -> AssetCheckResult:
        store = storage.get()
        failures: dict[str, str] = {}
        rows = 0
        for key in context.partition_keys:
            session = calendar.parse_session(key)
            try:
                frame = store.read(spec.dataset, session)
            except (MissingPartitionError, CorruptPartitionError) as exc:
                failures[key] = str(exc)
                continue
            result = schemas.validate(spec.schema(session), frame)
            rows += result.rows
            if not result.passed:
                failures[key] = (
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
            else f"{spec.name} failed its schema on " + ", ".join(failures),
        )

    _check.__name__ = f"{spec.dataset.view_name}_schema"
    return _check
