"""Materialize the whole graph for a range of sessions.

:func:`materialize_sessions` runs in this process (tests and benchmarks that want no launcher);
:class:`InstanceBackfill` goes through the instance in ``DAGSTER_HOME`` (the command line): its
backfills show on the UI's Backfills page, and its daemon, run queue, run launcher and the
definitions' executor run them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from dagster import (
    DagsterEvent,
    DagsterInstance,
    DagsterRun,
    Definitions,
    ExecuteInProcessResult,
    materialize,
)

from spy_assets.defs import recovery
from spy_assets.errors import SpyAssetsError
from spy_assets.gates import SCHEMA_CHECK, ranges_after_gates

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


def failure_summary(result: ExecuteInProcessResult | Iterable[DagsterEvent]) -> list[str]:
    """One line per failed step or failed check, for the command line: the project's own
    message (the innermost cause of Dagster's wrapper), never the wrapper's. Takes an in-process
    result or the events of a run (from the instance's event log)."""
    events = result.all_events if isinstance(result, ExecuteInProcessResult) else result
    lines = []
    for event in events:
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


# ------------------------------------------------------------- through the instance
#: One id per ``spy-assets backfill`` command: its backfills and runs carry it.
COMMAND_TAG = "spy_assets/command"
#: The sessions of one run, and the command's progress when that run ended (run metadata).
SESSIONS_TAG = "spy_assets/sessions"
PROGRESS_TAG = "spy_assets/progress"
#: Dagster's run queue dequeues higher priorities first: the command's chunks, in order.
PRIORITY_TAG = "dagster/priority"
#: Runs of a command are created ``held`` (dagster.yaml limits ``held`` runs to none in
#: progress): the command releases them one at a time, in order, so it decides what runs next.
QUEUE_TAG = "spy_assets/queue"
HELD, RELEASED = "held", "released"
BACKFILL_TAG = "dagster/backfill"
#: The metadata key of a failed ``schema`` check that names the sessions it held back.
GATED_SESSIONS_KEY = "gated_sessions"
#: Backfill statuses after which the daemon does nothing more with a backfill.
BACKFILL_DONE = frozenset(
    {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
)
RUN_DONE = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
#: Seconds between two looks at the instance while runs execute.
POLL_SECONDS = 0.5
#: Seconds to wait, after the last run, for the daemon to mark the backfills completed (it looks
#: at them every 30 s). None by default: a backfill whose runs have all ended is marked by the
#: next daemon that runs (the UI's, or the next command's), so a command does not wait for it.
SETTLE_SECONDS = 0.0

_LAUNCH = """
mutation Launch({params}) {{
{fields}
}}
"""
_LAUNCH_FIELD = """  b{i}: launchPartitionBackfill(backfillParams: $p{i}) {{
    __typename
    ... on LaunchBackfillSuccess {{ backfillId }}
    ... on PythonError {{ message }}
    ... on UnauthorizedError {{ message }}
    ... on PartitionSetNotFoundError {{ message }}
  }}"""


class BackfillLaunchError(SpyAssetsError):
    """The instance refused to create a backfill."""


@dataclass(frozen=True)
class RunOutcome:
    """How one run of a command ended, as the command line reports it."""

    run_id: str
    sessions: tuple[dt.date, ...]
    status: str
    #: One line per failed step or check (:func:`failure_summary`).
    lines: tuple[str, ...] = ()
    #: Sessions that failed a blocking ``schema`` check and held the rest of the run back.
    gated: tuple[dt.date, ...] = ()
    #: True when the gated sessions are the only reason the run failed.
    only_gated: bool = False

    @property
    def success(self) -> bool:
        return self.status == "SUCCESS"

    @property
    def span(self) -> str:
        first, last = self.sessions[0], self.sessions[-1]
        return str(first) if first == last else f"{first} … {last}"


@dataclass
class BackfillReport:
    """What a command's backfills did."""

    backfill_ids: list[str] = field(default_factory=list)
    outcomes: list[RunOutcome] = field(default_factory=list)
    #: The first run that stopped the command (a failure not caused by gated sessions only).
    stopped: RunOutcome | None = None
    #: Every session held back by its schema check, in order.
    gated: list[dt.date] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return self.stopped is None and not self.gated and bool(self.outcomes)


@dataclass
class Progress:
    """Sessions done of the total, the rate and the time left."""

    total: int
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(self, sessions: int) -> None:
        self.done += sessions

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.done / elapsed
        text = f"{self.done}/{self.total} sessions, {rate * 60:.1f}/min"
        if 0 < self.done < self.total and rate > 0:
            text += f", ETA {_duration((self.total - self.done) / rate)}"
        return text


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def chunks(sessions: Sequence[dt.date], size: int) -> list[list[dt.date]]:
    """Consecutive sessions, ``size`` to a run."""
    return [list(sessions[i : i + size]) for i in range(0, len(sessions), size)]


def followup_ranges(sessions: Sequence[dt.date], gated: Iterable[dt.date]) -> list[list[dt.date]]:
    """The runs that finish what a gated run held back: the consecutive ranges around the
    gated sessions (:func:`spy_assets.gates.ranges_after_gates`)."""
    return ranges_after_gates(sessions, gated)


def launch_backfills(
    workspace: Sequence[str],
    asset_keys: Sequence[Sequence[str]],
    ranges: Sequence[Sequence[dt.date]],
    tags: Sequence[Mapping[str, str]],
    run_config: Mapping[str, object] | None = None,
    log_path: Path | None = None,
) -> list[str]:
    """Create one asset backfill per range of sessions in the instance of ``DAGSTER_HOME``,
    through Dagster's GraphQL API (``launchPartitionBackfill``, as the UI does), executed in this
    process by ``dagster-graphql`` against ``workspace`` (its location arguments). The backfill
    daemon then requests the runs: the assets' single-run policy makes each range one run.
    Returns the backfill ids, in the order of ``ranges``."""
    variables: dict[str, object] = {}
    for i, (part, part_tags) in enumerate(zip(ranges, tags, strict=True)):
        params: dict[str, object] = {
            "assetSelection": [{"path": list(key)} for key in asset_keys],
            "partitionNames": [s.isoformat() for s in part],
            "tags": [{"key": k, "value": v} for k, v in part_tags.items()],
            "title": f"spy-assets {part[0]} … {part[-1]}"
            if len(part) > 1
            else f"spy-assets {part[0]}",
        }
        if run_config:
            params["runConfigData"] = dict(run_config)
        variables[f"p{i}"] = params
    document = _LAUNCH.format(
        params=", ".join(f"$p{i}: LaunchBackfillParams!" for i in range(len(ranges))),
        fields="\n".join(_LAUNCH_FIELD.format(i=i) for i in range(len(ranges))),
    )
    with tempfile.TemporaryDirectory(prefix="spy-assets-launch-") as folder:
        output = Path(folder) / "result.json"
        argv = [*workspace, "-t", document, "-v", json.dumps(variables), "--output", str(output)]
        log = Path(folder) / "graphql.log"
        with open(log, "wb") as sink:
            # Dagster's code server logs its start and stop: into the log, not the terminal
            done = subprocess.run(
                [*recovery.console_script("dagster-graphql"), *argv],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        text = log.read_text(errors="replace")
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "a") as kept:
                kept.write(text)
        result = json.loads(output.read_text()) if output.exists() else {}
    if done.returncode != 0 and not result:
        raise BackfillLaunchError(f"could not create the backfill: {_last_error(text)}")
    if result.get("errors"):
        raise BackfillLaunchError(
            f"could not create the backfill: {_first_line(result['errors'][0].get('message'))}"
        )
    ids = []
    for i in range(len(ranges)):
        answer = (result.get("data") or {}).get(f"b{i}") or {}
        if answer.get("__typename") != "LaunchBackfillSuccess":
            reason = _first_line(answer.get("message") or answer.get("__typename") or "no answer")
            raise BackfillLaunchError(f"could not create the backfill: {reason}")
        ids.append(answer["backfillId"])
    return ids


def _first_line(value: object) -> str:
    lines = str(value or "").strip().splitlines()
    return lines[0] if lines else type(value).__name__


def _last_error(log: str) -> str:
    """The line of a failed command's output that names its error."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception)\b", line)]
    return (errors or lines or ["no output"])[-1]


def describe_run(instance: DagsterInstance, run: DagsterRun) -> RunOutcome:
    """How ``run`` ended: its sessions, the project's failure lines, and the sessions its
    blocking schema checks held back."""
    from dagster import DagsterEventType

    sessions = tuple(_run_sessions(run))
    status = run.status.value
    if status == "SUCCESS":
        return RunOutcome(run.run_id, sessions, status)
    records = instance.all_logs(
        run.run_id,
        of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.ASSET_CHECK_EVALUATION},
    )
    events = [r.dagster_event for r in records if r.dagster_event is not None]
    gated: set[dt.date] = set()
    other_failures = 0
    for event in events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            if evaluation.passed:
                continue
            held = _gated_sessions(evaluation) if evaluation.check_name == SCHEMA_CHECK else []
            partition = getattr(evaluation, "partition", None)
            if evaluation.check_name == SCHEMA_CHECK and partition:
                held = [dt.date.fromisoformat(partition)]  # one session's own result
            gated.update(held)
            other_failures += not held
        elif event.event_type_value == "STEP_FAILURE":
            error = event.event_specific_data.error
            # a blocking check that fails also fails its step; that is the check's failure
            other_failures += not _is_check_failure(error)
    lines = tuple(failure_summary(events))
    if not lines and status == "CANCELED":
        lines = ("the run was canceled",)
    elif not lines:
        lines = (_run_level_error(instance, run.run_id, status),)
    only_gated = bool(gated) and other_failures == 0 and status == "FAILURE"
    return RunOutcome(run.run_id, sessions, status, lines, tuple(sorted(gated)), only_gated)


def _run_level_error(instance: DagsterInstance, run_id: str, status: str) -> str:
    """The innermost error of a run that failed outside its steps (its worker could not start,
    load the code or reach the storage), else a pointer to the UI."""
    from dagster import DagsterEventType

    records = instance.all_logs(
        run_id, of_type={DagsterEventType.RUN_FAILURE, DagsterEventType.ENGINE_EVENT}
    )
    for record in reversed(records):
        event = record.dagster_event
        error = getattr(event.event_specific_data, "error", None) if event else None
        if error is not None:
            return f"the run failed before its steps: {root_cause(error)}"
    return f"the run ended {status} before any step failed (see it in the UI)"


def _is_check_failure(error: ErrorInfo | None) -> bool:
    while error is not None:
        if (error.cls_name or "") == "DagsterAssetCheckFailedError":
            return True
        error = error.cause
    return False


def _gated_sessions(evaluation: object) -> list[dt.date]:
    value = (getattr(evaluation, "metadata", None) or {}).get(GATED_SESSIONS_KEY)
    value = getattr(value, "value", value)
    if isinstance(value, str):
        value = json.loads(value) if value.startswith("[") else [value]
    held = []
    for item in value or []:
        with contextlib.suppress(ValueError, TypeError):
            held.append(dt.date.fromisoformat(str(item)))
    return held


def _run_sessions(run: DagsterRun) -> list[dt.date]:
    if text := run.tags.get(SESSIONS_TAG):
        return [dt.date.fromisoformat(s) for s in text.split(",")]
    first = run.tags.get(ASSET_PARTITION_RANGE_START_TAG) or run.tags.get("dagster/partition")
    last = run.tags.get(ASSET_PARTITION_RANGE_END_TAG) or first
    return [dt.date.fromisoformat(first), dt.date.fromisoformat(last)] if first else []


class InstanceBackfill:
    """A ``spy-assets backfill`` command's backfills: created in the instance, run by its
    daemon (the run queue, launcher and executor of ``DAGSTER_HOME`` apply), watched here.

    Every backfill and run carries this process's owner tags (so a later command reclaims them
    if this process dies) and the command's id. The run queue runs the chunks in order
    (``dagster/priority``), one at a time per command (the tag limit in ``dagster.yaml``).
    """

    def __init__(
        self,
        instance: DagsterInstance,
        sessions: Sequence[dt.date],
        asset_keys: Sequence[Sequence[str]],
        workspace: Sequence[str],
        chunk: int = 21,
        log_level: str = "CRITICAL",
        log_path: Path | None = None,
        settle_seconds: float = SETTLE_SECONDS,
        code_server: recovery.CodeServer | None = None,
    ) -> None:
        self.instance = instance
        self.sessions = list(sessions)
        self.asset_keys = [list(k) for k in asset_keys]
        self.workspace = list(workspace)
        self.chunk = chunk
        self.log_level = log_level
        self.log_path = log_path
        self.settle_seconds = settle_seconds
        #: The code server the workspace points at, stopped at once on an interrupt.
        self.code_server = code_server
        self.command = uuid.uuid4().hex[:12]
        self.report = BackfillReport()
        self.progress = Progress(total=len(self.sessions))
        self._ranges: dict[str, list[dt.date]] = {}
        self._reported: set[str] = set()
        self._failed_backfills: set[str] = set()

    def tags(self, part: Sequence[dt.date], priority: int) -> dict[str, str]:
        return {
            **recovery.owner_tags(),
            COMMAND_TAG: self.command,
            SESSIONS_TAG: ",".join(s.isoformat() for s in part),
            PRIORITY_TAG: str(priority),
            QUEUE_TAG: HELD,
        }

    def launch(self, ranges: Sequence[Sequence[dt.date]], priority: int = 0) -> list[str]:
        """Create a backfill per range; the earlier a range, the sooner its run."""
        tags = [self.tags(part, priority - i) for i, part in enumerate(ranges)]
        run_config = {"loggers": {"console": {"config": {"log_level": self.log_level}}}}
        ids = launch_backfills(
            self.workspace, self.asset_keys, ranges, tags, run_config, self.log_path
        )
        for backfill_id, part in zip(ids, ranges, strict=True):
            self._ranges[backfill_id] = list(part)
        self.report.backfill_ids.extend(ids)
        return ids

    def runs(self) -> list[DagsterRun]:
        from dagster import RunsFilter

        runs = self.instance.get_runs(filters=RunsFilter(tags={COMMAND_TAG: self.command}))
        return sorted(runs, key=lambda r: (_run_sessions(r) or [dt.date.max])[0])

    def run(
        self,
        on_run: Callable[[RunOutcome, str], None] | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> BackfillReport:
        """Launch the chunks, keep a daemon running until every run has ended, and report each
        run as it ends (``on_run(outcome, progress line)``). A run that fails stops the command
        (the queued runs are canceled) unless only gated sessions failed it: then the sessions
        around them get their own runs and the command goes on. ``on_start()`` is called once,
        when the first run has started."""
        self.launch(chunks(self.sessions, self.chunk))
        with recovery.daemon(self.workspace, self.log_path) as daemon:
            try:
                self._watch(daemon, on_run, on_start)
            except KeyboardInterrupt as exc:
                recovery.stop_process_tree(daemon, graceful=False)
                if self.code_server is not None:
                    self.code_server.stop(graceful=False)  # and the run it executes
                raise self._interrupted(exc) from None
        return self.report

    def _watch(
        self,
        daemon: object,
        on_run: Callable[[RunOutcome, str], None] | None,
        on_start: Callable[[], None] | None,
    ) -> None:
        settle_until: float | None = None
        while True:
            runs = self.runs()
            if on_start is not None and any(
                r.status.value not in ("QUEUED", "NOT_STARTED") for r in runs
            ):
                on_start()
                on_start = None
            for run in runs:
                if run.run_id in self._reported or run.status.value not in RUN_DONE:
                    continue
                self._reported.add(run.run_id)
                self._ended(run, on_run)
            if recovery.interrupt_requested() is not None:
                raise recovery.Interrupted(recovery.interrupt_requested() or 2)
            runs = self._release_next(runs)
            unfinished = [r for r in runs if r.status.value not in RUN_DONE]
            with_runs = {r.tags.get(BACKFILL_TAG) for r in runs}
            waiting = [b for b in self._ranges if b not in with_runs and not self._closed(b)]
            if self.report.stopped is not None and waiting:
                recovery.cancel_backfills(self.instance, waiting)
                waiting = []
            if not unfinished and not waiting:
                if self._backfills_done() or (
                    settle_until is not None and time.monotonic() > settle_until
                ):
                    return
                settle_until = settle_until or time.monotonic() + self.settle_seconds
            elif not recovery.daemon_alive(daemon):
                raise BackfillLaunchError(
                    "the Dagster daemon that runs the backfill exited; see "
                    f"{self.log_path or 'its output'}"
                )
            time.sleep(POLL_SECONDS)

    def _release_next(self, runs: list[DagsterRun]) -> list[DagsterRun]:
        """Let the queue launch the earliest held run when none of the command's runs is in
        progress (nothing more once the command is stopping)."""
        if self.report.stopped is not None:
            return runs
        busy = [
            r
            for r in runs
            if r.status.value not in RUN_DONE
            and (r.status.value != "QUEUED" or r.tags.get(QUEUE_TAG) != HELD)
        ]
        held = [r for r in runs if r.status.value == "QUEUED" and r.tags.get(QUEUE_TAG) == HELD]
        if busy or not held:
            return runs
        self.instance.add_run_tags(held[0].run_id, {QUEUE_TAG: RELEASED})
        return self.runs()

    def _closed(self, backfill_id: str) -> bool:
        """True when the daemon closed the backfill without a run: an error of the backfill
        itself (it stops the command) or nothing to do."""
        backfill = self.instance.get_backfill(backfill_id)
        if backfill is None or backfill.status.value not in BACKFILL_DONE:
            return False
        if backfill.status.value == "CANCELED" or backfill_id in self._failed_backfills:
            return True
        self._failed_backfills.add(backfill_id)
        if backfill.status.value in ("FAILED", "COMPLETED_FAILED") and self.report.stopped is None:
            error = getattr(backfill, "error", None)
            reason = root_cause(error) if error is not None else f"backfill {backfill_id} failed"
            sessions = tuple(self._ranges[backfill_id])
            self.report.stopped = RunOutcome("", sessions, "FAILURE", (reason,))
            self._cancel_queued()
        return True

    def _backfills_done(self) -> bool:
        for backfill_id in self._ranges:
            backfill = self.instance.get_backfill(backfill_id)
            if backfill is not None and backfill.status.value not in BACKFILL_DONE:
                return False
        return True

    def _ended(self, run: DagsterRun, on_run: Callable[[RunOutcome, str], None] | None) -> None:
        outcome = describe_run(self.instance, run)
        self.report.outcomes.append(outcome)
        if outcome.success:
            self.progress.add(len(outcome.sessions))
        elif outcome.only_gated and self.report.stopped is None:
            self.report.gated.extend(s for s in outcome.gated if s not in self.report.gated)
            rest = followup_ranges(outcome.sessions, outcome.gated)
            self.progress.total -= len(outcome.sessions) - sum(len(r) for r in rest)
            if rest:
                self.launch(rest, priority=int(run.tags.get(PRIORITY_TAG, "0")))
        elif self.report.stopped is None:
            self.report.stopped = outcome
            self._cancel_queued()
        line = self.progress.line()
        self.instance.add_run_tags(run.run_id, {PROGRESS_TAG: line})
        if on_run:
            on_run(outcome, line)

    def _cancel_queued(self) -> None:
        for run in self.runs():
            if run.status.value == "QUEUED":
                self.instance.run_coordinator.cancel_run(run.run_id)

    def _interrupted(self, exc: KeyboardInterrupt) -> recovery.Interrupted:
        """After SIGINT/SIGTERM: the daemon and its runs are stopped; fail what is unfinished,
        free its pool slots, cancel the open backfills, and say which run it hit."""
        recovery.mark_delivered()
        signum = exc.signum if isinstance(exc, recovery.Interrupted) else None
        signum = signum or recovery.interrupt_requested() or 2
        runs = self.runs()
        current = next((r for r in runs if r.status.value in ("STARTING", "STARTED")), None)
        recovery.release_own_runs(
            self.instance,
            f"Interrupted by {recovery.signal_name(signum)}.",
            run_ids=[r.run_id for r in runs],
        )
        recovery.cancel_backfills(self.instance, list(self._ranges))
        if current is None:
            pending = [r for r in runs if r.status.value not in RUN_DONE]
            span = RunOutcome("", tuple(_run_sessions(pending[0])), "").span if pending else None
            detail = f"stopped before the run of {span} started" if span else "no run was left"
            return recovery.Interrupted(signum, detail)
        after = self.instance.get_run_by_id(current.run_id)
        span = RunOutcome("", tuple(_run_sessions(current)), "").span
        state = after.status.value if after is not None else "FAILURE"
        return recovery.Interrupted(
            signum, f"run {current.run_id[:8]} ({span}) ended {state}, holding no pool slot"
        )
