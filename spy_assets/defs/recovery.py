"""What the command line needs to survive its own death: reclaim, interrupts, instance home.

- **Reclaim on start.** Every run that :func:`spy_assets.defs.runs.materialize_sessions` starts
  carries its process's identity (:func:`owner_tags`: host, PID, boot id and process start
  time). A run whose process was killed (``kill -9``, OOM, power loss) stays STARTED forever and
  keeps the ``vendor_api`` pool slot its step had claimed, so later runs wait for that slot
  without end. :func:`reclaim_abandoned_runs` finds the runs of processes of this host that are
  gone, marks them failed and frees their slots; ``spy-assets backfill`` calls it first.
- **Interrupts.** Inside a run, Dagster swaps the SIGINT and SIGTERM handlers for one that only
  sets a flag, which the in-process executor reads at the start of the next step and never while
  a step waits for a pool slot; on the way out it maps SIGTERM to whatever SIGINT does, which is
  "ignore" in a process started with ``&`` from a script. :func:`interrupt_guard` gives both
  signals a handler for the life of a command and, when one arrives during a run that does not
  stop on its own within :data:`GRACE_SECONDS`, interrupts the main thread itself.
- **One instance per data folder.** :func:`prepare_instance_home` keeps ``<data dir>/dagster``
  configured by a copy of the project's ``dagster.yaml``; :func:`run_supervised` runs
  ``dagster dev`` for ``spy-assets ui`` as a child that it can stop.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagster import DagsterInstance, DagsterRun

#: Run tags naming the process that executes a run in process.
OWNER_HOST_TAG = "spy_assets/owner_host"
OWNER_PID_TAG = "spy_assets/owner_pid"
#: ``<boot id>:<start time in clock ticks since boot>`` (Linux): tells a reused PID apart.
OWNER_START_TAG = "spy_assets/owner_start"

#: Seconds a run gets to stop by itself after SIGINT/SIGTERM before the main thread is
#: interrupted directly (a step blocked on a pool slot never looks at Dagster's flag).
GRACE_SECONDS = 2.0
#: Seconds after SIGINT/SIGTERM after which a run that still has not stopped ends the process.
HARD_DEADLINE_SECONDS = 30.0
#: Seconds ``spy-assets ui`` gives ``dagster dev`` to shut down before killing its group.
UI_STOP_SECONDS = 15.0

_INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_POKE_SIGNAL = signal.SIGUSR1
#: Seconds between two attempts to interrupt the main thread at a safe point.
_RETRY_SECONDS = 0.2
#: Code that an exception must not cut through: it writes the instance's storage or logs, and
#: may swallow or log the exception (SQLAlchemy logs one raised while closing a connection).
_UNSAFE_MODULES = (
    "sqlalchemy",
    "sqlite3",
    "alembic",
    "logging",
    "dagster._core.storage",
    "dagster._core.instance",
    "dagster._core.events",
)


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


def _is_own(tags: Mapping[str, str]) -> bool:
    mine = owner_tags()
    return all(tags.get(key) == value for key, value in mine.items())


# ------------------------------------------------------------------------------ reclaim
def _not_finished_statuses() -> list[object]:
    from dagster import DagsterRunStatus

    return [
        DagsterRunStatus.QUEUED,
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


def release_own_runs(
    instance: DagsterInstance, message: str, run_ids: Sequence[str] = ()
) -> list[str]:
    """Fail this process's unfinished runs and free the pool slots they and ``run_ids`` hold
    (the cleanup of an interrupted :func:`~spy_assets.defs.runs.materialize_sessions`)."""
    from dagster import RunsFilter

    mine = owner_tags()
    runs = {
        run.run_id: run
        for run in instance.get_runs(
            filters=RunsFilter(statuses=_not_finished_statuses(), tags=mine)
        )
    }
    for run_id in run_ids:
        if run_id not in runs and (run := instance.get_run_by_id(run_id)) is not None:
            runs[run_id] = run
    for run in _runs_holding_slots(instance):
        if _is_own(run.tags):
            runs.setdefault(run.run_id, run)
    return [run_id for run_id, run in runs.items() if release_run(instance, run, message)]


def free_run_slots(instance: DagsterInstance, run_id: str) -> bool:
    """Free the pool slots and pending slot claims of one run; False when it held none."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return False
    if run_id not in storage.get_concurrency_run_ids():
        return False
    storage.free_concurrency_slots_for_run(run_id)
    return True


#: Backfill statuses after which the daemon does nothing more with a backfill.
_BACKFILL_DONE = ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED")


def cancel_backfills(instance: DagsterInstance, backfill_ids: Sequence[str]) -> list[str]:
    """Close the backfills that are still open, so that no daemon requests more runs for them
    (their unfinished runs are the caller's to stop). Returns the ids it closed."""
    closed = []
    for backfill_id in backfill_ids:
        backfill = instance.get_backfill(backfill_id)
        if backfill is None or backfill.status.value in _BACKFILL_DONE:
            continue
        # the status enum comes from the backfill itself: no import of Dagster's internals
        canceled = backfill.with_status(type(backfill.status)("CANCELED"))
        instance.update_backfill(canceled.with_end_timestamp(time.time()))
        closed.append(backfill_id)
    return closed


def reclaim_abandoned_backfills(instance: DagsterInstance) -> list[str]:
    """Close the open backfills of ``spy-assets backfill`` commands whose process on this host
    died before their runs ended (the runs are reclaimed by :func:`reclaim_abandoned_runs`).
    A backfill whose runs all ended is left to the daemon, which marks it completed."""
    from dagster import RunsFilter

    host = socket.gethostname()
    abandoned = []
    for backfill in instance.get_backfills(limit=200):
        if (
            backfill.status.value in _BACKFILL_DONE
            or backfill.tags.get(OWNER_HOST_TAG) != host
            or not owner_is_gone(backfill.tags)
        ):
            continue
        runs = instance.get_runs(
            filters=RunsFilter(tags={"dagster/backfill": backfill.backfill_id})
        )
        if not runs or any(not run.is_finished for run in runs):
            abandoned.append(backfill.backfill_id)
    return cancel_backfills(instance, abandoned)


def reclaim_on_start(data_dir: Path | str) -> str | None:
    """What ``spy-assets backfill`` does before it starts: reclaim the runs of dead processes
    on the instance in ``DAGSTER_HOME`` and sweep the temporary files of dead writers under
    ``data_dir``. Returns one line to print when anything was reclaimed, else None."""
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        # first: a backfill counts as abandoned while its dead process's runs are unfinished
        closed = reclaim_abandoned_backfills(instance)
        reclaimed = reclaim_abandoned_runs(instance)
    swept = sweep_temp_files(data_dir)
    parts = []
    if reclaimed:
        parts.append(
            f"reclaimed {len(reclaimed)} run(s) left by processes that died: "
            + ", ".join(run_id[:8] for run_id in reclaimed)
            + " (marked failed, pool slots freed)"
        )
    if closed:
        parts.append(f"canceled {len(closed)} backfill(s) left open by processes that died")
    if swept:
        parts.append(f"removed {len(swept)} temporary file(s) of writers that died")
    return "; ".join(parts) or None


def sweep_temp_files(data_dir: Path | str) -> list[str]:
    """Remove the ``.data.<pid>.*.parquet.tmp`` files of writers that died (on an object store:
    their stale unfinished uploads)."""
    from spy_assets.storage import Storage

    return Storage(data_dir).sweep_temp_files()


# --------------------------------------------------------------------------- interrupts
class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the command. A :class:`KeyboardInterrupt`, so that Dagster,
    when it surfaces inside a step, treats it as an interruption of the run."""

    def __init__(self, signum: int, detail: str = "") -> None:
        super().__init__(signum, detail)
        self.signum = int(signum)
        self.detail = detail

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        return f"{name} received" + (f"; {self.detail}" if self.detail else "")


class _Guard:
    """The handlers of one :func:`interrupt_guard`, and the thread that watches the signals."""

    def __init__(self, grace: float, hard_deadline: float) -> None:
        self.grace = grace
        self.hard_deadline = hard_deadline
        self.requested: int | None = None
        self.requested_at = 0.0
        self.delivered = False
        self.in_run = threading.Event()
        self._main = threading.main_thread().ident
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._thread = threading.Thread(target=self._watch, name="interrupt-watch", daemon=True)

    def request(self, signum: int) -> None:
        if self.requested is None:
            self.requested = signum
            self.requested_at = time.monotonic()

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """SIGINT/SIGTERM outside Dagster's execution, and the watcher's poke: raise
        :class:`Interrupted` in the main thread, unless it is in code that must not be cut
        through (the watcher then tries again a moment later)."""
        if signum != _POKE_SIGNAL:
            self.request(signum)
        if self.requested is None or self.delivered or not _safe_to_raise(frame):
            return
        self.delivered = True
        raise Interrupted(self.requested)

    def _watch(self) -> None:
        next_poke = None
        while True:
            ready, _, _ = select.select([self._read_fd], [], [], 0.2)
            if ready:
                try:
                    data = os.read(self._read_fd, 64)
                except OSError:
                    return
                if not data:
                    return
                for signum in data:
                    if signum in _INTERRUPT_SIGNALS:
                        self.request(signum)
            if self.requested is None or self.delivered:
                next_poke = None
                continue
            now = time.monotonic()
            if now - self.requested_at > self.hard_deadline:
                name = signal.Signals(self.requested).name
                sys.stderr.write(
                    f"interrupted: {name} received; the command did not stop within "
                    f"{self.hard_deadline:.0f} s, exiting (the next backfill reclaims its run)\n"
                )
                sys.stderr.flush()
                os._exit(128 + self.requested)
            if next_poke is None:  # a run first gets the chance to stop by itself
                wait = self.grace if self.in_run.is_set() else _RETRY_SECONDS
                next_poke = self.requested_at + wait
            if now >= next_poke:
                with contextlib.suppress(ProcessLookupError, OSError):
                    signal.pthread_kill(self._main, _POKE_SIGNAL)
                next_poke = now + _RETRY_SECONDS

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        os.close(self._write_fd)
        self._thread.join(timeout=2)
        os.close(self._read_fd)


def _safe_to_raise(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith(_UNSAFE_MODULES):
            return False
        frame = frame.f_back
    return True


_guard: _Guard | None = None


@contextlib.contextmanager
def interrupt_guard(
    grace: float = GRACE_SECONDS, hard_deadline: float = HARD_DEADLINE_SECONDS
) -> Iterator[None]:
    """For the life of a command: SIGINT and SIGTERM raise :class:`Interrupted` (even when the
    shell started the process with SIGINT ignored), and :func:`run_scope` makes a run that does
    not stop by itself stop. Restores the previous handlers on exit. Main thread only."""
    global _guard
    if threading.current_thread() is not threading.main_thread() or _guard is not None:
        yield
        return
    guard = _Guard(grace, hard_deadline)
    previous = {sig: signal.getsignal(sig) for sig in (*_INTERRUPT_SIGNALS, _POKE_SIGNAL)}
    old_wakeup = signal.set_wakeup_fd(guard._write_fd, warn_on_full_buffer=False)
    _guard = guard
    try:
        for sig in previous:
            signal.signal(sig, guard.on_signal)
        guard.start()
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(old_wakeup)
        _guard = None
        guard.stop()


@contextlib.contextmanager
def run_scope() -> Iterator[None]:
    """Marks the main thread as executing a Dagster run (see :func:`interrupt_guard`)."""
    guard = _guard
    if guard is None:
        yield
        return
    guard.in_run.set()
    try:
        yield
    finally:
        guard.in_run.clear()


def interrupt_requested() -> int | None:
    """The signal that asked this command to stop, if one did (under :func:`interrupt_guard`)."""
    guard = _guard
    return guard.requested if guard is not None else None


def mark_delivered() -> None:
    """Tell the guard that the interruption is being handled: no further signal raises."""
    if _guard is not None:
        _guard.delivered = True


def stop_interrupted_run(
    instance: DagsterInstance,
    tags: Mapping[str, str],
    exc: BaseException | None = None,
    run_id: str | None = None,
) -> Interrupted:
    """After SIGINT/SIGTERM (or a KeyboardInterrupt ``exc``) during the run tagged ``tags``
    (``run_id`` when known): make sure it ended failed and holds no pool slot, and return the
    :class:`Interrupted` that describes it."""
    from dagster import RunsFilter

    mark_delivered()
    if isinstance(exc, Interrupted):
        signum = exc.signum
    else:
        signum = interrupt_requested() or signal.SIGINT
    if run_id is None:
        latest = instance.get_runs(filters=RunsFilter(tags=dict(tags)), limit=1)
        run_id = latest[0].run_id if latest else None
    span = " … ".join(
        dict.fromkeys(
            tags.get(key, "?")
            for key in ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
        )
    )
    release_own_runs(
        instance,
        f"Interrupted by {signal.Signals(signum).name}.",
        run_ids=[run_id] if run_id else [],
    )
    run = instance.get_run_by_id(run_id) if run_id else None
    if run is None:
        return Interrupted(signum, f"stopped before the run of {span} started")
    return Interrupted(
        signum, f"run {run.run_id[:8]} ({span}) ended {run.status.value}, holding no pool slot"
    )


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


# ------------------------------------------------------------------------------- daemon
#: Seconds the daemon gets to stop by itself before it and its children are killed.
DAEMON_STOP_SECONDS = 5.0


def console_script(name: str) -> list[str]:
    script = Path(sys.executable).with_name(name)
    return [str(script)] if script.exists() else [name]


def _spawn_logged(args: Sequence[str], log_path: Path | None) -> subprocess.Popen[bytes]:
    """Start ``args`` with its output appended to ``log_path`` (or discarded), in this
    process's group; the parent's copy of the log file is closed once the child has it."""
    if log_path is None:
        return subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )


#: The name of the code location, as in the project's workspace.yaml and the UI.
LOCATION_NAME = "spy_assets"
#: Seconds the code server gets to load the definitions before the command gives up.
CODE_SERVER_START_SECONDS = 300.0


class CodeServer:
    """A Dagster code server (``dagster api grpc``) for the definitions, on a free port of
    127.0.0.1, shared by everything a command starts: ``dagster-graphql``, the daemon and,
    through the default run launcher, the runs (the definitions load once per command).

    It stays in this process's group (see :func:`daemon`). :meth:`workspace` writes the
    workspace file that points at it, under the location name the UI uses."""

    def __init__(self, module: str, log_path: Path | None = None) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.log_path = log_path
        self.proc = _spawn_logged(
            [*console_script("dagster"), "api", "grpc", "-h", "127.0.0.1"]
            + ["-p", str(self.port), "--location-name", LOCATION_NAME, "-m", module]
            + ["--log-level", "warning"],
            log_path,
        )

    def wait_ready(self, timeout: float = CODE_SERVER_START_SECONDS) -> None:
        """Until the server accepts connections: it listens once the definitions are loaded."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                from spy_assets.errors import SpyAssetsError

                where = f"; see {self.log_path}" if self.log_path else ""
                raise SpyAssetsError(
                    f"the Dagster code server could not load the definitions{where}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the code server did not start within {timeout:.0f} s")
            time.sleep(0.2)

    def workspace(self, folder: Path) -> list[str]:
        """The ``-w <file>`` arguments of a workspace that loads from this server."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"workspace.{os.getpid()}.yaml"
        path.write_text(
            "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
            f"      port: {self.port}\n      location_name: {LOCATION_NAME}\n"
        )
        return ["-w", str(path)]

    def stop(self, graceful: bool = True) -> None:
        stop_process_tree(self.proc, graceful)


@contextlib.contextmanager
def daemon(
    workspace: Sequence[str], log_path: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``dagster-daemon run`` on the instance of ``DAGSTER_HOME`` for the life of a command:
    its backfill daemon requests the runs, its run queue hands them to the run launcher.

    It stays in this process's group, so that whatever kills the command's group (``kill -9`` of
    a shell job) kills the daemon, the code server and the run they execute too; the next
    command then reclaims that run. Its output goes to ``log_path``."""
    proc = _spawn_logged([*console_script("dagster-daemon"), "run", *workspace], log_path)
    try:
        yield proc
    finally:
        stop_process_tree(proc)


def daemon_alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


def stop_process_tree(proc: subprocess.Popen[bytes], graceful: bool = True) -> None:
    """Stop a child (SIGTERM, then SIGKILL after :data:`DAEMON_STOP_SECONDS`), and kill what it
    leaves behind (code servers, run workers). Not ``graceful``: kill at once."""
    children = descendants(proc.pid)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        try:
            proc.wait(timeout=DAEMON_STOP_SECONDS if graceful else 5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pid in children | descendants(proc.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def descendants(pid: int) -> set[int]:
    """The PIDs of every live process below ``pid`` (Linux ``/proc``; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _read_stat(int(stat.parent.name))
        if fields and len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


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


# ------------------------------------------------------------------------- supervision
def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_group(pgid: int, timeout: float) -> None:
    """SIGTERM what is left of a process group, then SIGKILL it after ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        if not _group_alive(pgid):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.1)


def run_supervised(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stop_timeout: float = UI_STOP_SECONDS,
) -> int:
    """Run ``argv`` as a child in its own process group and return its exit code.

    SIGINT and SIGTERM are forwarded to the child (SIGHUP, a closed terminal, as SIGTERM: the
    child's own session does not get it); when it has not exited ``stop_timeout`` seconds after
    the first one, its whole group is killed. Whatever the child leaves running in its group when
    it exits is stopped too. A child killed by a signal gives ``128 + signal``.
    """
    first_signal_at: list[float] = []
    proc: subprocess.Popen[bytes] | None = None

    def forward(signum: int, frame: FrameType | None) -> None:
        if not first_signal_at:
            first_signal_at.append(time.monotonic())
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)

    # Handlers go in before the child starts: it then gets the default dispositions, even for
    # a SIGINT that the shell had ignored for us (Dagster maps SIGTERM onto SIGINT's handler).
    on_main = threading.current_thread() is threading.main_thread()
    forwarded = [*_INTERRUPT_SIGNALS]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # respect nohup
        forwarded.append(signal.SIGHUP)
    previous = {sig: signal.getsignal(sig) for sig in forwarded} if on_main else {}
    try:
        for sig in previous:
            signal.signal(sig, forward)
        proc = subprocess.Popen(
            list(argv), env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True
        )
        if first_signal_at:  # asked to stop while the child was starting
            proc.send_signal(signal.SIGTERM)
        while proc.poll() is None:
            if first_signal_at and time.monotonic() - first_signal_at[0] > stop_timeout:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if proc is not None:
            if proc.poll() is None:  # stopped by an exception of our own
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=stop_timeout)
            _kill_group(proc.pid, 3.0)
            proc.wait()
    assert proc is not None
    code = proc.returncode
    return 128 - code if code < 0 else code
