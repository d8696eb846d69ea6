"""Materialize the whole graph for a range of sessions, in process, as single-run backfills."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from typing import Protocol

from dagster import DagsterInstance, Definitions, ExecuteInProcessResult, materialize

from spy_assets.defs import recovery

# Dagster's documented run tags for a single run over a range of partitions.
ASSET_PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
ASSET_PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"


def materialize_sessions(
    defs: Definitions,
    sessions: Sequence[dt.date],
    instance: DagsterInstance,
    resources: dict[str, object] | None = None,
    chunk: int = 21,
    log_level: str = "INFO",
    on_chunk: Callable[[dt.date, dt.date, ExecuteInProcessResult], None] | None = None,
) -> list[ExecuteInProcessResult]:
    """One run per chunk of consecutive sessions; every asset fetches its range at once.

    Each run is tagged with this process (:func:`recovery.owner_tags`), so that the next command
    can reclaim it if this process dies. On SIGINT/SIGTERM (under
    :func:`recovery.interrupt_guard`) or a KeyboardInterrupt, the current run ends failed, its
    pool slots are freed and :class:`recovery.Interrupted` is raised.
    """
    nodes = [*defs.assets, *defs.asset_checks]
    merged = {**defs.resources, **(resources or {})}
    owner = recovery.owner_tags()
    results = []
    for start in range(0, len(sessions), chunk):
        part = list(sessions[start : start + chunk])
        tags = {
            ASSET_PARTITION_RANGE_START_TAG: part[0].isoformat(),
            ASSET_PARTITION_RANGE_END_TAG: part[-1].isoformat(),
            **owner,
        }
        try:
            with recovery.run_scope():
                result = materialize(
                    nodes,
                    instance=instance,
                    resources=merged,
                    tags=tags,
                    run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
                    raise_on_error=False,
                )
        except KeyboardInterrupt as exc:
            raise recovery.stop_interrupted_run(instance, tags, exc) from None
        if recovery.interrupt_requested() is not None:
            raise recovery.stop_interrupted_run(instance, tags, run_id=result.run_id)
        if not result.success:
            recovery.free_run_slots(instance, result.run_id)
        results.append(result)
        if on_chunk:
            on_chunk(part[0], part[-1], result)
        if not result.success:
            break
    return results


def failure_summary(result: ExecuteInProcessResult) -> list[str]:
    """One line per failed step or failed check, for the command line: the project's own
    message (the innermost cause of Dagster's wrapper), never the wrapper's."""
    lines = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.event_specific_data.error
            lines.append(f"{event.step_key}: {root_cause(error) if error else 'failed'}")
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            if not evaluation.passed:
                lines.append(
                    f"check {evaluation.asset_key.to_user_string()}:{evaluation.check_name} "
                    f"failed: {evaluation.description or ''}"
                )
    return lines


class ErrorInfo(Protocol):
    """The fields of Dagster's serialized error that the command line reads."""

    message: str
    cls_name: str | None
    cause: ErrorInfo | None


def root_cause(error: ErrorInfo) -> str:
    """``ErrorClass: first line`` of the innermost cause of a (serialized) Dagster error."""
    while error.cause is not None:
        error = error.cause
    first = (error.message or "").strip().splitlines()
    text = first[0] if first else ""
    name = error.cls_name or "Error"
    # Dagster's message starts with the exception's qualified name; show the short one once.
    text = re.sub(rf"^(?:[\w.]+\.)?{re.escape(name)}: ", "", text)
    return f"{name}: {text}"
