"""After a run stopped by a schema gate, build the rest of its sessions.

A ranged run (a UI backfill, the CLI's chunks, ``dagster asset materialize --partition-range``)
whose only failures are blocking ``schema`` checks has built nothing downstream of them, for
every session of the run. This sensor requests one follow-up run per consecutive range of the
run's sessions that did not fail (:func:`spy_assets.gates.ranges_after_gates`), with the same
asset selection; the failed sessions stay unbuilt downstream until their source is fixed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterEventType,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    Definitions,
    RunRequest,
    RunStatusSensorContext,
    SkipReason,
    run_status_sensor,
)

from spy_assets import calendar
from spy_assets.defs.schedules import all_sessions_job
from spy_assets.gates import SCHEMA_CHECK, ranges_after_gates

# Dagster's documented run tags for a single run over a range of partitions.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
#: On a follow-up run: the run whose gated sessions it builds around.
AFTER_GATES_OF_TAG = "spy_assets/after_gates_of"
#: The error Dagster raises at the end of a step whose blocking check failed.
CHECK_FAILED_ERROR = "DagsterAssetCheckFailedError"


def gated_sessions_of(context: RunStatusSensorContext) -> list[dt.date] | None:
    """The sessions the run's schema checks gated, or None when the run also failed for
    another reason (a step error, a run-level failure) or gated nothing."""
    run_id = context.dagster_run.run_id
    failures = context.instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
    if not failures:
        return None
    for record in failures:
        data = record.dagster_event.event_specific_data if record.dagster_event else None
        error = getattr(data, "error", None)
        if error is None or error.cls_name != CHECK_FAILED_ERROR:
            return None
    gated: set[dt.date] = set()
    records = context.instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    for record in records:
        evaluation = record.dagster_event.event_specific_data
        if evaluation.passed or evaluation.check_name != SCHEMA_CHECK:
            continue
        listed = evaluation.metadata.get("gated_sessions")
        if listed is not None:
            gated |= {calendar.parse_session(s) for s in listed.value}
    return sorted(gated) or None


def follow_up_requests(
    run: DagsterRun, gated: list[dt.date], assets: Iterable[AssetKey] | None = None
) -> list[RunRequest]:
    """One run per consecutive range of the run's sessions left once ``gated`` is taken out,
    over the run's assets (``assets`` when the run does not record its selection)."""
    start, end = run.tags.get(RANGE_START_TAG), run.tags.get(RANGE_END_TAG)
    if not start or not end:
        return []
    sessions = calendar.sessions_between(start, end)
    checks = run.asset_check_selection
    selection = _sorted(run.asset_selection or assets)
    requests = []
    for part in ranges_after_gates(sessions, gated):
        first, last = part[0].isoformat(), part[-1].isoformat()
        requests.append(
            RunRequest(
                run_key=f"{run.run_id}:{first}:{last}",
                asset_selection=selection,
                asset_check_keys=_sorted(checks),
                tags={RANGE_START_TAG: first, RANGE_END_TAG: last, AFTER_GATES_OF_TAG: run.run_id},
            )
        )
    return requests


def _planned_assets(context: RunStatusSensorContext) -> set[AssetKey]:
    """The assets the run planned to materialize (a run of a subset job may not record its
    selection)."""
    records = context.instance.all_logs(
        context.dagster_run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    )
    return {r.dagster_event.asset_key for r in records if r.dagster_event}


def _sorted(keys: Iterable[AssetKey | AssetCheckKey] | None) -> list | None:
    # None (or empty, for a run of the whole graph): the whole job
    return sorted(keys, key=lambda k: k.to_user_string()) if keys else None


@run_status_sensor(
    run_status=DagsterRunStatus.FAILURE,
    name="build_around_gated_sessions",
    request_job=all_sessions_job,
    default_status=DefaultSensorStatus.RUNNING,
    description="A ranged run stopped only by sessions failing their schema check: build its "
    "other sessions, one run per consecutive range.",
)
def build_around_gated_sessions(
    context: RunStatusSensorContext,
) -> list[RunRequest] | SkipReason:
    run = context.dagster_run
    if RANGE_START_TAG not in run.tags:
        return SkipReason(f"run {run.run_id} covers one session or none: nothing to split")
    gated = gated_sessions_of(context)
    if gated is None:
        return SkipReason(f"run {run.run_id} did not fail only on schema gates")
    requests = follow_up_requests(run, gated, _planned_assets(context))
    if not requests:
        return SkipReason(f"run {run.run_id}: every session was gated")
    return requests


def definitions() -> Definitions:
    return Definitions(sensors=[build_around_gated_sessions])
