"""Assets, each with its blocking per-session schema check, built from the table of datasets
(``spy_assets.datasets``).

An asset body is one call into the core (``spec.build``), whose sessions are validated and
written one at a time (``spy_assets.gates.store_sessions``). Every session is written; a session
that breaks its schema fails the ``schema`` check on its own partition, and the step's check
result then fails the step, so nothing downstream of the run is built; the other sessions are
built by follow-up runs (``spy_assets.defs.gates``).
"""

import time
import typing
from collections.abc import Iterator

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    AssetsDefinition,
    BackfillPolicy,
    Config,
    DailyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from spy_assets import calendar, gates
from spy_assets.builds import BuildRequest
from spy_assets.datasets import DatasetSpec
from spy_assets.defs.automation import (
    VENDOR_RETRY_POLICY,
    rebuild_on_upstream_change,
    retry_only_transient_errors,
)
from spy_assets.defs.resources import MarketDataResource, ResearchSettings, StorageResource
from spy_assets.gates import SCHEMA_CHECK, SessionOutcome
from spy_assets.live.fold import LiveRun
from spy_assets.provenance import code_version, dataset_code_version
from spy_assets.sources.base import RequestStats

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
    the shared partitions, the vendor pool when it reads the market, and its blocking ``schema``
    check, evaluated per session inside the step on the frames it writes."""
    key = asset_key(spec.name)
    decorate = asset(
        key=key,
        deps=[asset_key(d) for d in spec.deps],
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.single_run(),
        pool=VENDOR_POOL if spec.calls_vendor else None,
        group_name=spec.group,
        kinds={"parquet"},
        description=f"{spec.description} Grain: {spec.grain}.",
        # Raw partitions have no code version, so each re-fetch gets a new data version and
        # marks the derived partitions built from it stale; derived ones are rebuilt by
        # automation when an upstream partition changes, and show stale when their code does.
        code_version=None if spec.calls_vendor else dataset_code_version(spec.name),
        automation_condition=None if spec.calls_vendor else rebuild_on_upstream_change(),
        retry_policy=VENDOR_RETRY_POLICY if spec.calls_vendor else None,
        check_specs=[
            AssetCheckSpec(
                SCHEMA_CHECK,
                asset=key,
                blocking=True,
                partitions_def=partitions,
                description=spec.check_description,
            )
        ],
    )
    if spec.calls_vendor:

        def ingest(
            context: AssetExecutionContext,
            config: IngestConfig,
            storage: StorageResource,
            market: MarketDataResource,
            settings: ResearchSettings,
        ) -> Iterator[MaterializeResult | AssetCheckEvaluation | AssetCheckResult]:
            with retry_only_transient_errors():
                yield from _materialize(context, spec, storage, settings, market, config.refetch)

        ingest.__name__ = spec.dataset.view_name
        return decorate(ingest)

    def derive(
        context: AssetExecutionContext, storage: StorageResource, settings: ResearchSettings
    ) -> Iterator[MaterializeResult | AssetCheckEvaluation | AssetCheckResult]:
        yield from _materialize(context, spec, storage, settings, None, False)

    derive.__name__ = spec.dataset.view_name
    return decorate(derive)


def _materialize(
    context: AssetExecutionContext,
    spec: DatasetSpec,
    storage: StorageResource,
    settings: ResearchSettings,
    market: MarketDataResource | None,
    refetch: bool,
) -> Iterator[MaterializeResult | AssetCheckEvaluation | AssetCheckResult]:
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
    ds = spec.dataset
    provenance = built.provenance()
    outcomes: list[SessionOutcome] = []
    sample = None
    for outcome in gates.store_sessions(store, ds, spec.schema, built.sessions, provenance):
        context.add_asset_metadata(
            _session_metadata(outcome), partition_key=outcome.session.isoformat()
        )
        if outcome.head is not None:
            sample = (outcome.session, outcome.head)
        outcome.head = None  # the outcomes are kept to the end of the step: keep them small
        outcomes.append(outcome)
    # Sessions the build wrote itself (the live fold) are checked as stored.
    for session, result in sorted(built.written.items()):
        outcome = gates.reused_outcome(store, ds, spec.schema, session)
        outcome.written, outcome.reused = result, False
        context.add_asset_metadata(_session_metadata(outcome), partition_key=session.isoformat())
        outcomes.append(outcome)
    for session in built.reused:
        outcome = gates.reused_outcome(store, ds, spec.schema, session)
        context.add_asset_metadata(_session_metadata(outcome), partition_key=session.isoformat())
        outcomes.append(outcome)
    written = [o for o in outcomes if o.written is not None]
    if written:
        try:
            store.refresh_catalog([ds])
        except Exception as exc:  # a reader holding the catalog file must not fail the write
            context.log.warning(f"DuckDB catalog not refreshed for {ds.name}: {exc}")
    if built.error is not None:
        raise built.error
    failed = sorted((o for o in outcomes if not o.passed), key=lambda o: o.session)
    rows = sum(o.rows for o in written)
    context.log.info(
        f"{ds.name}: {len(written)} session(s) written, {rows} rows"
        + (f", {len(built.reused)} already stored" if built.reused else "")
        + (f"; schema failed on {', '.join(str(o.session) for o in failed)}" if failed else "")
    )
    # Run-level facts only: these are attached to every partition's materialization.
    metadata: dict[str, object] = {
        "sessions": len(outcomes),
        "source": built.source,
        "seconds": round(time.perf_counter() - started, 3),
        "code_version": code_version(),
        **(source.stats if source else RequestStats()).as_metadata(),
    }
    if built.params:
        metadata["params"] = MetadataValue.json(built.params)
    for name, value in built.facts.items():
        metadata[name] = MetadataValue.json(value) if isinstance(value, dict | list) else value
    # Cheap to show once, never repeated on every partition: the sample on the session it
    # comes from, the run's markdown (the scan report) on the run's last session.
    if sample is not None:
        context.add_asset_metadata(
            {"sample": MetadataValue.md(sample[1].to_markdown(index=False))},
            partition_key=sample[0].isoformat(),
        )
    if built.markdown:
        context.add_asset_metadata(
            {name: MetadataValue.md(text) for name, text in built.markdown.items()},
            partition_key=context.partition_keys[-1],
        )
    yield MaterializeResult(metadata=metadata)

    key = asset_key(spec.name)
    # A one-session run's check result is that partition's own (Dagster scopes it): no second
    # evaluation of the same partition.
    per_session = outcomes if not context.has_partition_key else []
    targets = _materialization_targets(context, key) if per_session else {}
    # Every session gets its own evaluation, passing ones too: without it Dagster shows the
    # partition's check as skipped (or failed to execute, when the run failed), and automation
    # waiting for passed blocking checks would never build it. One small event per session.
    for outcome in sorted(per_session, key=lambda o: o.session):
        yield AssetCheckEvaluation(
            asset_key=key,
            check_name=SCHEMA_CHECK,
            passed=outcome.passed,
            partition=outcome.session.isoformat(),
            severity=AssetCheckSeverity.ERROR,
            blocking=True,
            metadata=_check_metadata(outcome),
            description=None
            if outcome.passed
            else f"{spec.name} failed its schema on {outcome.session}: " + ", ".join(outcome.rules),
            **_target(targets, outcome.session.isoformat()),
        )
    gated = [o.session.isoformat() for o in failed]
    summary: dict[str, object] = {
        "sessions_checked": len(outcomes),
        "rows_checked": sum(o.rows for o in outcomes),
        "gated_sessions": MetadataValue.json(gated),
    }
    if not per_session and len(outcomes) == 1:
        summary.update(_check_metadata(outcomes[0]))
    if failed:
        summary["failures"] = MetadataValue.md(
            "\n\n".join(f"### {o.session}\n{o.failure}" for o in failed)
        )
    yield AssetCheckResult(
        passed=not failed,
        severity=AssetCheckSeverity.ERROR,
        metadata=summary,
        description=None
        if not failed
        else f"{spec.name} failed its schema on {len(failed)} session(s): " + ", ".join(gated),
    )


def _session_metadata(outcome: SessionOutcome) -> dict[str, object]:
    """One partition's own facts, for its materialization."""
    meta: dict[str, object] = {"schema": "passed" if outcome.passed else "failed"}
    if outcome.written is not None:
        meta.update(
            row_count=outcome.rows,
            bytes=outcome.written.bytes,
            duplicates_dropped=outcome.duplicates_dropped,
            path=MetadataValue.path(str(outcome.written.path)),
        )
        meta["dagster/row_count"] = outcome.rows
    elif outcome.reused:
        meta["already_stored"] = True
    else:
        meta["not_built"] = outcome.failure or ""
    for name, value in outcome.facts.items():
        meta[name] = MetadataValue.json(value) if isinstance(value, dict | list) else value
    return meta


def _check_metadata(outcome: SessionOutcome) -> dict[str, object]:
    meta: dict[str, object] = {"rows_checked": outcome.rows}
    if not outcome.passed:
        meta["rules"] = MetadataValue.json(outcome.rules)
        meta["failing_rows"] = outcome.failing_rows
        # the dashboard reads the same ``### <session>`` layout as the step's summary
        meta["failures"] = MetadataValue.md(f"### {outcome.session}\n{outcome.failure}")
    return meta


def _materialization_targets(context: AssetExecutionContext, key: AssetKey) -> dict[str, object]:
    """This run's materialization of each partition, so each per-session evaluation points at
    the materialization it checked (Dagster counts a check as current only then)."""
    keys = list(context.partition_keys)
    found: dict[str, object] = {}
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=keys), limit=len(keys)
    ).records
    for record in records:
        if record.run_id == context.run.run_id and record.partition_key not in found:
            found[record.partition_key] = record
    return found


def _target(targets: dict[str, object], partition: str) -> dict[str, object]:
    record = targets.get(partition)
    if record is None or _TARGET_TYPE is None:
        return {}
    return {
        "target_materialization_data": _TARGET_TYPE(
            storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
        )
    }


def _target_type() -> type | None:
    """The type of ``AssetCheckEvaluation.target_materialization_data``, a documented argument
    whose class Dagster does not export: read off the public class's type hints."""
    try:
        hint = typing.get_type_hints(AssetCheckEvaluation)["target_materialization_data"]
    except Exception:  # another Dagster version: evaluations go without a target
        return None
    return next((a for a in typing.get_args(hint) if a is not type(None)), None)


_TARGET_TYPE = _target_type()
