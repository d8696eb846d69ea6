"""Quality in Dagster: vendor schema drift checks, freshness checks and their sensor, alerts.

- ``schema_drift`` (one per vendor dataset, per session): compares the fields and JSON types the
  vendor sent, recorded in the materialization's ``vendor_schema`` metadata, with the baseline
  under ``<data dir>/quality/``. ``SPY_ASSETS_DRIFT_SEVERITY=error`` makes it blocking. The
  synthetic source sends no vendor JSON, so the check passes and says so.
- ``freshness`` (one per dataset): is the session due by now stored? Evaluated by the
  ``freshness_sensor`` (a runless evaluation when the answer changes) against the NYSE
  calendar, so holidays expect nothing and early closes are due earlier.
- Alerts: ``freshness_sensor`` alerts a dataset that turns stale; ``failed_run_alerts`` alerts a
  failed run once, as the blocking check (schema, drift) that failed it when there is one, else
  as the run's error; ``failed_check_alerts`` alerts an error-severity check that failed in a run
  that succeeded. The incident is the run, so a run never gives two alerts, and each incident is
  sent once (see ``spy_assets.quality.alerts``).
"""

import datetime as dt
import json
from collections.abc import Callable, Iterator, Sequence

import pandas as pd
from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DailyPartitionsDefinition,
    DefaultSensorStatus,
    Definitions,
    EventLogRecord,
    MetadataValue,
    RunFailureSensorContext,
    RunStatusSensorContext,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset_check,
    multi_asset_check,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)

from spy_assets import config
from spy_assets.datasets import DatasetSpec
from spy_assets.defs.resources import StorageResource
from spy_assets.defs.runs import root_cause
from spy_assets.quality import alerts, drift, freshness

DRIFT_CHECK = "schema_drift"
FRESHNESS_CHECK = "freshness"
SCHEMA_CHECK = "schema"
Clock = Callable[[], pd.Timestamp]


def _key(name: str) -> AssetKey:
    return AssetKey(name.split("/"))


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


# ------------------------------------------------------------------------------- drift
def _observed(
    instance: DagsterInstance, key: AssetKey, partitions: Sequence[str]
) -> tuple[dict[str, drift.Schema], set[str]]:
    """What the vendor sent for each session, from its latest materialization, and the sources
    those materializations name."""
    observed: dict[str, drift.Schema] = {}
    sources: set[str] = set()
    by_run: dict[str, dict[str, drift.Schema]] = {}
    for partition, record in _latest_materializations(instance, key, partitions).items():
        if record.asset_materialization is None:
            continue
        metadata = record.asset_materialization.metadata
        if "source" in metadata:
            sources.add(str(metadata["source"].value))
        if record.run_id not in by_run:  # a ranged run repeats its metadata per session
            raw = metadata.get(drift.METADATA_KEY)
            by_run[record.run_id] = drift.schemas_from_metadata(raw.value if raw else None)
        if partition in by_run[record.run_id]:
            observed[partition] = by_run[record.run_id][partition]
    return observed, sources


def _latest_materializations(
    instance: DagsterInstance, key: AssetKey, partitions: Sequence[str]
) -> dict[str, EventLogRecord]:
    """The latest materialization of each partition, newest first in pages of the range's size
    (one query when this run materialized them all, not one per session)."""
    wanted, latest = set(partitions), {}
    cursor = None
    while wanted - latest.keys():
        page = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, asset_partitions=sorted(wanted - latest.keys())),
            limit=max(len(wanted), 1),
            cursor=cursor,
        )
        for record in page.records:
            latest.setdefault(record.partition_key, record)
        if not page.has_more:
            break
        cursor = page.cursor
    return latest


def _drift_table(drifted: dict[str, list[drift.Drift]]) -> str:
    rows = ["| session | change | field | baseline | observed |", "|---|---|---|---|---|"]
    for session, drifts in sorted(drifted.items()):
        rows += [
            f"| {session} | {d.kind} | `{d.field}` | {d.baseline} | {d.observed} |" for d in drifts
        ]
    return "\n".join(rows)


def drift_check(
    spec: DatasetSpec, partitions: DailyPartitionsDefinition, severity: str
) -> AssetChecksDefinition:
    """``schema_drift`` on a vendor dataset: new, missing or retyped vendor fields per session."""
    blocking = severity == "error"
    level = AssetCheckSeverity.ERROR if blocking else AssetCheckSeverity.WARN
    key = _key(spec.name)

    @asset_check(
        asset=key,
        name=DRIFT_CHECK,
        blocking=blocking,
        partitions_def=partitions,
        description="The vendor's fields and JSON types for each session, against the baseline "
        f"in <data dir>/quality/schema_baselines/{spec.name}.json (severity: {severity}; "
        f"{config.DRIFT_SEVERITY}). `spy-assets drift accept {spec.name}` takes a new schema.",
    )
    def _check(
        context: AssetCheckExecutionContext, storage: StorageResource
    ) -> Iterator[AssetCheckResult | AssetCheckEvaluation]:
        sessions = list(context.partition_keys)
        observed, sources = _observed(context.instance, key, sessions)
        if not observed:
            why = (
                "synthetic source: no vendor schema"
                if sources == {"synthetic"}
                else "no vendor response for these sessions (stored sessions were reused, or "
                "the vendor sent no results)"
            )
            yield AssetCheckResult(passed=True, severity=level, description=why)
            return
        store = drift.BaselineStore(storage.get().state_dir)
        baseline, created = store.record(spec.name, observed)
        drifted = {s: d for s, schema in observed.items() if (d := drift.diff(baseline, schema))}
        base_meta = {
            "baseline": MetadataValue.path(str(store.baseline_path(spec.name))),
            "baseline_created": created,
        }
        if len(sessions) > 1:  # one run, many sessions: each session's own result
            for session, drifts in sorted(drifted.items()):
                yield AssetCheckEvaluation(
                    asset_key=key,
                    check_name=DRIFT_CHECK,
                    passed=False,
                    severity=level,
                    blocking=blocking,
                    partition=session,
                    description=f"{spec.name} {session}: {drift.describe(drifts)}",
                    metadata={
                        **base_meta,
                        "drift": MetadataValue.md(_drift_table({session: drifts})),
                    },
                )
        metadata: dict[str, object] = {
            **base_meta,
            "sessions_observed": len(observed),
            "sessions_drifted": MetadataValue.json(sorted(drifted)),
        }
        if drifted:
            metadata["drift"] = MetadataValue.md(_drift_table(drifted))
            first = min(drifted)
            description = (
                f"{spec.name}: the vendor schema drifted on {len(drifted)} session(s); "
                f"{first}: {drift.describe(drifted[first])}"
            )
        else:
            description = f"{spec.name}: {len(observed)} session(s) match the baseline" + (
                " (recorded now from this first observation)" if created else ""
            )
        yield AssetCheckResult(
            passed=not drifted, severity=level, description=description, metadata=metadata
        )

    _check.__name__ = f"{spec.dataset.view_name}_{DRIFT_CHECK}"
    return _check


# --------------------------------------------------------------------------- freshness
def _stored(instance: DagsterInstance, key: AssetKey, session: dt.date) -> bool:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[session.isoformat()]), limit=1
    ).records
    return bool(records)


def _latest_stored(instance: DagsterInstance, key: AssetKey) -> dt.date | None:
    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=50).records
    keys = [r.partition_key for r in records if r.partition_key]
    return dt.date.fromisoformat(max(keys)) if keys else None


def _freshness(
    instance: DagsterInstance, name: str, now: pd.Timestamp, settings: config.Settings
) -> freshness.Freshness:
    key = _key(name)
    return freshness.evaluate(
        name,
        now,
        freshness.Deadline.parse(settings.freshness_deadline),
        settings.first_session,
        lambda session: _stored(instance, key, session),
        lambda: _latest_stored(instance, key),
    )


def _freshness_metadata(result: freshness.Freshness) -> dict[str, object]:
    metadata: dict[str, object] = {}
    if result.expected is not None:
        metadata["expected_session"] = str(result.expected)
        metadata["due"] = MetadataValue.timestamp(result.due.timestamp()) if result.due else None
    metadata["latest_session"] = str(result.latest) if result.latest else "none"
    return {k: v for k, v in metadata.items() if v is not None}


def freshness_checks(
    specs: Sequence[DatasetSpec], settings: config.Settings, clock: Clock
) -> AssetChecksDefinition:
    """A ``freshness`` check on every dataset. The sensor reports it; executed on its own
    (from the UI) it evaluates now. In a run that materializes assets it stays silent: a
    backfill of old sessions is not the place to judge what is due today."""

    @multi_asset_check(
        specs=[
            AssetCheckSpec(
                FRESHNESS_CHECK,
                asset=_key(s.name),
                description="The session due by now is stored: due "
                f"{freshness.Deadline.parse(settings.freshness_deadline)} "
                f"({config.FRESHNESS_DEADLINE}), from the NYSE calendar (early closes, holidays).",
            )
            for s in specs
        ],
        can_subset=True,
        name="freshness_checks",
    )
    def _checks(context: AssetCheckExecutionContext) -> Iterator[AssetCheckResult]:
        if context.job_def.asset_layer.selected_asset_keys:
            # A materialization: a backfill of old sessions is not the place to judge today.
            context.log.info("freshness is evaluated by freshness_sensor, not in materializations")
            return
        now = clock()
        for check_key in context.selected_asset_check_keys:
            result = _freshness(
                context.instance, check_key.asset_key.to_user_string(), now, settings
            )
            yield AssetCheckResult(
                asset_key=check_key.asset_key,
                check_name=FRESHNESS_CHECK,
                passed=result.fresh,
                severity=AssetCheckSeverity.WARN,
                description=result.description,
                metadata=_freshness_metadata(result),
            )

    return _checks


def freshness_sensor(
    specs: Sequence[DatasetSpec], settings: config.Settings, clock: Clock = _now
) -> SensorDefinition:
    """Reports each dataset's ``freshness`` when it changes and alerts a dataset that turns
    stale, once per incident (it stays one incident until the dataset is fresh again)."""
    names = [s.name for s in specs]

    @sensor(
        name="freshness_sensor",
        minimum_interval_seconds=300,
        default_status=DefaultSensorStatus.RUNNING,
        description="Each dataset's due session is stored by its deadline after the close; "
        "stale datasets fail their freshness check and send one alert.",
    )
    def _sensor(
        context: SensorEvaluationContext, storage: StorageResource
    ) -> SensorResult | SkipReason:
        state: dict[str, dict] = json.loads(context.cursor) if context.cursor else {}
        now = clock()
        sender = alerts.AlertSender(storage.get().state_dir, settings.alert_url)
        events, changed = [], []
        for name in names:
            result = _freshness(context.instance, name, now, settings)
            previous = state.get(name, {})
            reported = [str(result.expected), result.fresh]
            if previous.get("reported") != reported:
                events.append(
                    AssetCheckEvaluation(
                        asset_key=_key(name),
                        check_name=FRESHNESS_CHECK,
                        passed=result.fresh,
                        severity=AssetCheckSeverity.WARN,
                        description=result.description,
                        metadata=_freshness_metadata(result),
                    )
                )
                changed.append(name)
            since = None if result.fresh else previous.get("stale_since") or str(result.expected)
            if since and not previous.get("stale_since"):
                sender.send(
                    alerts.Alert(
                        incident=f"stale:{name}:{since}",
                        kind=alerts.STALE,
                        title=f"{name} is stale: session {result.expected} is not stored",
                        lines=[result.description],
                        details={"dataset": name, "expected_session": str(result.expected)},
                    )
                )
            state[name] = {"reported": reported, "stale_since": since}
        cursor = json.dumps(state, sort_keys=True)
        if not events:
            context.update_cursor(cursor)
            return SkipReason(f"no freshness change at {now.isoformat(timespec='seconds')}")
        return SensorResult(asset_events=events, cursor=cursor)

    return _sensor


# ------------------------------------------------------------------------------ alerts
def _failed_error_checks(instance: DagsterInstance, run_id: str) -> list[AssetCheckEvaluation]:
    failed = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data if entry.dagster_event else None
        if evaluation is None or evaluation.passed:
            continue
        if evaluation.severity == AssetCheckSeverity.ERROR:
            failed.append(evaluation)
    return failed


def run_alert(instance: DagsterInstance, context: RunStatusSensorContext) -> alerts.Alert | None:
    """The one alert for a finished run: the error-severity checks that failed in it (those
    that block failed the run), else, for a failed run, its error; ``None`` for a run with
    nothing to say."""
    run_id = context.dagster_run.run_id
    failed = _failed_error_checks(instance, run_id)
    short = run_id[:8]
    if failed:
        lines, names = [], set()
        for ev in failed:
            names.add(ev.check_name)
            where = f" {ev.partition}" if ev.partition else ""
            lines.append(
                f"{ev.asset_key.to_user_string()}:{ev.check_name}{where}: {ev.description or ''}"
            )
        kind = alerts.DRIFT_ERROR if names == {DRIFT_CHECK} else alerts.FAILED_CHECK
        assets = sorted({ev.asset_key.to_user_string() for ev in failed})
        title = f"check failed: {', '.join(sorted(names))} on {', '.join(assets)} (run {short})"
        sessions = {ev.partition for ev in failed if ev.partition}
        for ev in failed:  # a per-session gate's summary names the sessions it held back
            gated = ev.metadata.get("gated_sessions")
            if gated is not None and isinstance(gated.value, list):
                sessions.update(str(s) for s in gated.value)
        details = {
            "run_id": run_id,
            "checks": sorted(names),
            "assets": assets,
            "sessions": sorted(sessions),
        }
        return alerts.Alert(f"run:{run_id}", kind, title, lines, details)
    if not isinstance(context, RunFailureSensorContext):
        return None
    lines = []
    for event in context.get_step_failure_events():
        error = event.event_specific_data.error if event.event_specific_data else None
        lines.append(f"{event.step_key}: {root_cause(error) if error else 'failed'}")
    if not lines:
        lines.append(context.failure_event.message or "the run failed")
    title = f"run {short} failed: {lines[0]}"[:300]
    return alerts.Alert(f"run:{run_id}", alerts.FAILED_RUN, title, lines, {"run_id": run_id})


def failed_run_alerts(settings: config.Settings) -> SensorDefinition:
    @run_failure_sensor(
        name="failed_run_alerts",
        monitor_all_code_locations=True,
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description="One alert per failed run (UI, schedule or spy-assets backfill): the "
        "blocking check that failed it, or its error.",
    )
    def _sensor(context: RunFailureSensorContext, storage: StorageResource) -> SkipReason:
        return _send(run_alert(context.instance, context), storage, settings)

    return _sensor


def failed_check_alerts(settings: config.Settings) -> SensorDefinition:
    """Error-severity checks that failed in a run that still succeeded (a check that does not
    block): the same one alert per run; a failed run is ``failed_run_alerts``' to tell."""

    @run_status_sensor(
        name="failed_check_alerts",
        run_status=DagsterRunStatus.SUCCESS,
        monitor_all_code_locations=True,
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description="One alert per successful run in which an error-severity check failed.",
    )
    def _sensor(context: RunStatusSensorContext, storage: StorageResource) -> SkipReason:
        return _send(run_alert(context.instance, context), storage, settings)

    return _sensor


def _send(
    alert: alerts.Alert | None, storage: StorageResource, settings: config.Settings
) -> SkipReason:
    if alert is None:
        return SkipReason("no failed error-severity check in this run")
    sent = alerts.AlertSender(storage.get().state_dir, settings.alert_url).send(alert)
    return SkipReason(("alert sent: " if sent else "already alerted: ") + alert.title)


def definitions(
    specs: Sequence[DatasetSpec],
    partitions: DailyPartitionsDefinition,
    settings: config.Settings,
    clock: Clock = _now,
) -> Definitions:
    """Drift checks on the vendor datasets, freshness checks on every dataset, the sensors."""
    vendor = [s for s in specs if s.calls_vendor]
    return Definitions(
        asset_checks=[
            *(drift_check(s, partitions, settings.drift_severity) for s in vendor),
            freshness_checks(specs, settings, clock),
        ],
        sensors=[
            freshness_sensor(specs, settings, clock),
            failed_run_alerts(settings),
            failed_check_alerts(settings),
        ],
    )
