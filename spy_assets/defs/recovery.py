"""Crash recovery for the runs the command line starts in process, and its instance home.

- **Reclaim on start.** Every run that :func:`spy_assets.defs.runs.materialize_sessions` starts
  carries its process's identity (:func:`owner_tags`: host, PID, boot id and process start
  time). A run whose process was killed (``kill -9``, OOM, power loss) stays STARTED forever and
  keeps the ``vendor_api`` pool slot its step had claimed, so later runs wait for that slot
  without end. :func:`reclaim_abandoned_runs` finds the runs of processes of this host that are
  gone, marks them failed and frees their slots; ``spy-assets backfill`` calls it first.
- **One instance per data folder.** :func:`prepare_instance_home` keeps ``<data dir>/dagster``
  configured by a copy of the project's ``dagster.yaml``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagster import DagsterInstance, DagsterRun

#: Run tags naming the process that executes a run in process.
OWNER_HOST_TAG = "spy_assets/owner_host"
OWNER_PID_TAG = "spy_assets/owner_pid"
#: ``<boot id>:<start time in clock ticks since boot>`` (Linux): tells a reused PID apart.
OWNER_START_TAG = "spy_assets/owner_start"


# --------------------------------------------------------------------- process identity
def _read_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` from the state on (field 3), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_start(pid: int) -> str:
    """``<boot id>:<start ticks>`` of a live process; empty where ``/proc`` is missing."""
    fields = _read_stat(pid)
    if not fields or len(fields) < 20:
        return ""
    return f"{_boot_id()}:{fields[19]}"


def owner_tags(pid: int | None = None) -> dict[str, str]:
    """The tags that name a process (this one by default) as the owner of a run."""
    pid = os.getpid() if pid is None else pid
    return {
        OWNER_HOST_TAG: socket.gethostname(),
        OWNER_PID_TAG: str(pid),
        OWNER_START_TAG: process_start(pid),
    }


def owner_is_gone(tags: Mapping[str, str]) -> bool:
    """True when the tags name a process of this host that no longer runs.

    False for a live process, for another host's process (nothing here can tell) and for a run
    without owner tags (started from the UI, the daemon or another tool).
    """
    if tags.get(OWNER_HOST_TAG) != socket.gethostname():
        return False
    try:
        pid = int(tags.get(OWNER_PID_TAG, ""))
    except ValueError:
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    fields = _read_stat(pid)
    if fields is None:  # no /proc (not Linux): the PID exists, take it as the owner
        return False
    if fields[0] in ("Z", "X"):  # killed, not yet reaped by its parent
        return True
    recorded = tags.get(OWNER_START_TAG, "")
    return bool(recorded) and recorded != process_start(pid)


# ------------------------------------------------------------------------------ reclaim
def _not_finished_statuses() -> list[object]:
    from dagster import DagsterRunStatus

    return [
        DagsterRunStatus.NOT_STARTED,
        DagsterRunStatus.STARTING,
        DagsterRunStatus.STARTED,
        DagsterRunStatus.CANCELING,
    ]


def _runs_holding_slots(instance: DagsterInstance) -> list[DagsterRun]:
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    runs = [instance.get_run_by_id(run_id) for run_id in sorted(storage.get_concurrency_run_ids())]
    return [run for run in runs if run is not None]


def release_run(instance: DagsterInstance, run: DagsterRun, message: str) -> bool:
    """Mark ``run`` failed unless it already finished, and free every pool slot and pending slot
    claim it holds. True when anything changed."""
    changed = False
    current = instance.get_run_by_id(run.run_id)
    if current is not None and not current.is_finished:
        instance.report_run_failed(current, message)
        changed = True
    return free_run_slots(instance, run.run_id) or changed


def reclaim_abandoned_runs(instance: DagsterInstance) -> list[str]:
    """Fail the unfinished runs, and free the pool slots of any run, whose owner process on this
    host is gone. Returns their run ids. Runs of live processes, of other hosts and runs without
    owner tags are left alone."""
    from dagster import RunsFilter

    host = socket.gethostname()
    candidates = {
        run.run_id: run
        for run in instance.get_runs(
            filters=RunsFilter(statuses=_not_finished_statuses(), tags={OWNER_HOST_TAG: host})
        )
    }
    for run in _runs_holding_slots(instance):
        candidates.setdefault(run.run_id, run)
    reclaimed = []
    for run in candidates.values():
        if not owner_is_gone(run.tags):
            continue
        pid = run.tags.get(OWNER_PID_TAG)
        message = (
            f"The process that ran this run (PID {pid} on {host}) died without finishing it "
            f"(killed or crashed) and left it {run.status.value}; marked failed and its pool "
            "slots freed by the next spy-assets command."
        )
        if release_run(instance, run, message):
            reclaimed.append(run.run_id)
    return reclaimed


def free_run_slots(instance: DagsterInstance, run_id: str) -> bool:
    """Free the pool slots and pending slot claims of one run; False when it held none."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return False
    if run_id not in storage.get_concurrency_run_ids():
        return False
    storage.free_concurrency_slots_for_run(run_id)
    return True


def reclaim_on_start(data_dir: Path) -> str | None:
    """What ``spy-assets backfill`` does before it starts: reclaim the runs of dead processes
    on the instance in ``DAGSTER_HOME`` and sweep the temporary files of dead writers under
    ``data_dir``. Returns one line to print when anything was reclaimed, else None."""
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        reclaimed = reclaim_abandoned_runs(instance)
    swept = sweep_temp_files(data_dir)
    parts = []
    if reclaimed:
        parts.append(
            f"reclaimed {len(reclaimed)} run(s) left by processes that died: "
            + ", ".join(run_id[:8] for run_id in reclaimed)
            + " (marked failed, pool slots freed)"
        )
    if swept:
        parts.append(f"removed {len(swept)} temporary file(s) of writers that died")
    return "; ".join(parts) or None


def sweep_temp_files(data_dir: Path) -> list[Path]:
    """Remove the ``.data.<pid>.*.parquet.tmp`` files of writers that died, where the storage
    layer offers it (``Storage.sweep_temp_files``); an empty list otherwise."""
    from spy_assets.storage import Storage

    sweep = getattr(Storage(data_dir), "sweep_temp_files", None)
    return list(sweep()) if sweep is not None else []


# ------------------------------------------------------------------------ instance home
#: Used only when no project ``dagster.yaml`` is found (an installed wheel run elsewhere).
DEFAULT_INSTANCE_YAML = """\
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 2
"""


def project_file(name: str) -> Path | None:
    """A file of the project: next to the ``spy_assets`` package (a checkout or an editable
    install), else in the current folder."""
    for folder in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (folder / name).is_file():
            return folder / name
    return None


def instance_yaml_text(template: Path | None) -> str:
    """The content of an instance folder's ``dagster.yaml``: a header naming its source, then
    the project's ``dagster.yaml`` verbatim."""
    source = str(template) if template else "the built-in defaults (no dagster.yaml was found)"
    header = (
        f"# Copied by spy-assets from {source}.\n"
        "# Do not edit this copy: edit that file. spy-assets rewrites this copy whenever it\n"
        "# differs, before every backfill, demo and ui.\n\n"
    )
    body = template.read_text() if template else DEFAULT_INSTANCE_YAML
    return header + body


def prepare_instance_home(home: Path, template: Path | None = None) -> Path:
    """Create the instance folder ``home`` and write or refresh its ``dagster.yaml`` from the
    project's (``template``, by default :func:`project_file`). Returns ``home``, absolute."""
    home = home.absolute()
    home.mkdir(parents=True, exist_ok=True)
    text = instance_yaml_text(template or project_file("dagster.yaml"))
    target = home / "dagster.yaml"
    try:
        current = target.read_text()
    except OSError:
        current = None
    if current != text:
        tmp = home / f".dagster.yaml.{os.getpid()}.tmp"
        tmp.write_text(text)
        os.replace(tmp, target)
    return home
