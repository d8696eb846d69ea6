"""The command line survives its own death: kill -9 mid-step, SIGTERM/SIGINT, and the UI.

Backfills run as real processes (``python -m spy_assets.cli``), each in its own session, against
a local vendor server that answers every request after a delay, so steps of the ``vendor_api``
pool are in flight for a good part of each run.
"""

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

from spy_assets.defs.factory import VENDOR_POOL
from spy_assets.defs.recovery import owner_tags, prepare_instance_home
from spy_assets.sources.synthetic import SyntheticMarket
from spy_assets_tests.vendor_server import VendorServer

pytestmark = pytest.mark.slow

KEY = "crash-test-key"
RANGE = ["--start", "2025-11-17", "--end", "2025-11-21", "--chunk", "2"]
KILLS, SEED = 10, 20251117
#: Seconds after a backfill is ready (its "Materializing" line) before it is killed.
KILL_DELAY = (0.5, 5.0)
RESPONSE_DELAY = 0.3
UNFINISHED = [
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


def _vendor_server():
    server = VendorServer(SyntheticMarket(), api_key=KEY, page_size=20_000).start()
    server.add_fault("slow", every=1, delay=RESPONSE_DELAY)
    return server


@pytest.fixture(scope="module")
def vendor():
    server = _vendor_server()
    yield server
    server.stop()


def _env(data_dir, vendor):
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "DAGSTER_HOME" and not k.startswith(("SPY_ASSETS_", "MASSIVE_", "POLYGON_"))
    }
    env.update(
        SPY_ASSETS_DATA_DIR=str(data_dir),
        SPY_ASSETS_SOURCE="massive",
        MASSIVE_API_KEY=KEY,
        MASSIVE_BASE_URL=vendor.base_url,
        SPY_ASSETS_REQUESTS_PER_MINUTE="1000000",
        PYTHONUNBUFFERED="1",
    )
    return env


class Command:
    """A ``spy-assets`` command in its own session (process group), its output collected."""

    def __init__(self, args, data_dir, vendor, background_shell=False):
        cli = [sys.executable, "-m", "spy_assets.cli", *args]
        self.out = data_dir.parent / f"out-{uuid.uuid4().hex[:6]}.txt"
        self.err = self.out.with_suffix(".err")
        if background_shell:
            # What `spy-assets ... &` in a script does: no job control, so the shell starts the
            # command with SIGINT ignored. The shell prints the command's PID.
            line = " ".join(f"'{a}'" for a in cli) + f" >'{self.out}' 2>'{self.err}' &"
            argv = ["bash", "-c", f"{line}\necho $!\nwait $!"]
        else:
            argv = ["bash", "-c", f"exec \"$@\" >'{self.out}' 2>'{self.err}'", "bash", *cli]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            cwd=data_dir.parent,
            env=_env(data_dir, vendor),
            stdout=subprocess.PIPE if background_shell else subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.pid = int(self.proc.stdout.readline()) if background_shell else self.proc.pid

    def output(self):
        return self.out.read_text() if self.out.exists() else ""

    def errors(self):
        return self.err.read_text() if self.err.exists() else ""

    def wait_for(self, text, timeout):
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert self.proc.poll() is None, f"exited early:\n{self.output()}\n{self.errors()}"
            assert time.monotonic() < deadline, f"no {text!r} in {timeout} s:\n{self.output()}"
            time.sleep(0.1)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"still running after {timeout} s:\n{self.output()}\n{self.errors()}")

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.proc.wait()


def _instance(data_dir):
    return DagsterInstance.from_config(str(data_dir / "dagster"))


def _state(data_dir):
    """(unfinished run ids, run ids holding vendor_api slots or pending claims)."""
    if not (data_dir / "dagster" / "dagster.yaml").exists():
        return [], set()
    with _instance(data_dir) as instance:
        unfinished = [r.run_id for r in instance.get_runs(RunsFilter(statuses=UNFINISHED))]
        storage = instance.event_log_storage
        holders = set(storage.get_concurrency_run_ids())
    return unfinished, holders


def _parquet(root):
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted((root / "parquet").rglob("*.parquet"))
    }


def _kill_mid_request(backfill, server, delay, patience):
    """SIGKILL the backfill's process group ``delay`` seconds after it is ready, at the first
    vendor request it makes from then on (every answer takes RESPONSE_DELAY, so the kill lands
    while a vendor_api step waits for it), or ``patience`` seconds later when it makes none
    (what it reads is stored already)."""
    backfill.wait_for("Materializing", timeout=120)
    backfill.ready_after = time.monotonic() - backfill.started
    time.sleep(delay)
    seen, deadline = len(server.requests), time.monotonic() + patience
    while len(server.requests) == seen and time.monotonic() < deadline:
        if backfill.proc.poll() is not None:
            break
        time.sleep(0.01)
    mid_request = len(server.requests) > seen
    return backfill.kill(), mid_request


@pytest.fixture(scope="module")
def crashed_and_clean(vendor, tmp_path_factory):
    """Ten backfills killed with SIGKILL at seeded random points, then one left to finish; and
    the same sessions built once without a crash, in another data folder (at the same time)."""
    base = tmp_path_factory.mktemp("crash")
    crashed, clean = base / "crashed" / "data", base / "clean" / "data"
    crashed.parent.mkdir()
    clean.parent.mkdir()
    started = time.monotonic()
    clean_run = Command(["backfill", *RANGE], clean, vendor)
    server = _vendor_server()  # the crashed folder's own, to see its requests alone
    rng = random.Random(SEED)
    kills, backfill = [], None
    try:
        for i in range(KILLS):
            before = _state(crashed)
            backfill = Command(["backfill", *RANGE], crashed, server)
            delay = rng.uniform(*KILL_DELAY)
            # the first backfill has everything to download: it is killed mid-request for sure
            patience = 60.0 if i == 0 else 1.0
            code, mid_request = _kill_mid_request(backfill, server, delay, patience)
            unfinished, holders = _state(crashed)
            kills.append(
                {
                    "ready_after": round(backfill.ready_after, 1),
                    "delay": round(delay, 2),
                    "exit": code,
                    "mid_request": mid_request,
                    "reclaimed": "reclaimed" in backfill.output(),
                    "left_running": len(unfinished),
                    "left_slots": len(holders),
                    "before": len(before[0]),
                }
            )
        backfill = final = Command(["backfill", *RANGE], crashed, server)
        final_code = final.wait(timeout=240)
        clean_code = clean_run.wait(timeout=240)
    finally:
        for command in (backfill, clean_run):
            if command is not None and command.proc.poll() is None:
                command.kill()
        server.stop()
    return {
        "crashed": crashed,
        "clean": clean,
        "kills": kills,
        "final": final,
        "final_code": final_code,
        "clean_code": clean_code,
        "seconds": round(time.monotonic() - started, 1),
    }


def test_killed_backfills_leave_nothing_a_final_backfill_cannot_finish(crashed_and_clean):
    result, final = crashed_and_clean, crashed_and_clean["final"]
    kills = result["kills"]
    print(f"\n{len(kills)} kills, then a final backfill; {result['seconds']} s in all")
    for kill in kills:
        print(f"  {kill}")
    assert result["clean_code"] == 0
    assert result["final_code"] == 0, final.output() + final.errors()
    assert "Traceback" not in final.errors()
    # kills landed while vendor_api steps held slots, and the next start reclaimed them
    assert kills[0]["mid_request"] and kills[0]["left_slots"] == 1, kills
    assert sum(k["left_running"] > 0 for k in kills) >= KILLS // 2, kills
    assert all(k["reclaimed"] for k in kills[1:] if k["before"]), kills
    unfinished, holders = _state(result["crashed"])
    assert unfinished == [] and holders == set()


def test_every_parquet_file_is_byte_identical_to_a_clean_run(crashed_and_clean):
    crashed, clean = _parquet(crashed_and_clean["crashed"]), _parquet(crashed_and_clean["clean"])
    assert len(clean) >= 5 * 5  # five sessions of the raw datasets at least
    assert sorted(crashed) == sorted(clean)
    different = [name for name in clean if crashed[name] != clean[name]]
    assert different == []


def test_no_temporary_file_survives_the_crashes(crashed_and_clean):
    leftovers = list((crashed_and_clean["crashed"] / "parquet").rglob("*.tmp"))
    assert leftovers == []


# ---------------------------------------------------------------------------- signals
def _hog_vendor_slots(data_dir):
    """Both vendor_api slots, held by runs of this (live) test process."""
    home = prepare_instance_home(data_dir / "dagster")
    runs = []
    with DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots(VENDOR_POOL, 2)
        for step in ("hog_a", "hog_b"):
            run = instance.add_run(
                DagsterRun(
                    job_name="__ASSET_JOB",
                    run_id=str(uuid.uuid4()),
                    status=DagsterRunStatus.STARTED,
                    tags=owner_tags(),
                )
            )
            assert storage.claim_concurrency_slot(VENDOR_POOL, run.run_id, step).is_claimed
            runs.append(run.run_id)
    return runs


def test_sigterm_stops_a_background_backfill(vendor, tmp_path):
    data = tmp_path / "data"
    args = ["backfill", "--start", "2025-11-17", "--end", "2025-11-19", "--chunk", "1"]
    backfill = Command(args, data, vendor, background_shell=True)
    # after its first run Dagster used to leave SIGTERM ignored (SIGINT's disposition here)
    backfill.wait_for("2025-11-17 … 2025-11-17: ok", timeout=180)
    time.sleep(1.0)
    sent = time.monotonic()
    os.kill(backfill.pid, signal.SIGTERM)
    code = backfill.wait(timeout=60)
    took = time.monotonic() - sent
    print(f"\nstopped {took:.1f} s after SIGTERM: {backfill.errors().strip()}")

    assert took < 15
    assert code == 143
    errors = backfill.errors()
    assert errors.startswith("interrupted: SIGTERM received") and errors.count("\n") == 1
    assert "Traceback" not in errors
    assert _state(data) == ([], set())

    after = Command(args, data, vendor)
    assert after.wait(timeout=240) == 0, after.output() + after.errors()
    assert "reclaimed" not in after.output()  # the interrupted run was cleaned up already


def test_sigint_stops_a_backfill_waiting_for_a_pool_slot(vendor, tmp_path):
    data = tmp_path / "data"
    hogs = _hog_vendor_slots(data)  # held by a live process: never reclaimed
    backfill = Command(["backfill", "--session", "2025-11-17"], data, vendor, True)
    backfill.wait_for("Materializing", timeout=120)
    deadline = time.monotonic() + 60
    while True:  # until the run is up and its first vendor step waits for a slot
        unfinished, holders = _state(data)
        if len(unfinished) == 3 and holders == set(unfinished):  # the hogs and the waiting run
            break
        assert time.monotonic() < deadline, (unfinished, holders, backfill.output())
        time.sleep(0.5)
    time.sleep(1.0)
    sent = time.monotonic()
    os.kill(backfill.pid, signal.SIGINT)  # ignored by the shell's `&`, handled anyway
    code = backfill.wait(timeout=60)
    took = time.monotonic() - sent
    print(f"\nstopped {took:.1f} s after SIGINT: {backfill.errors().strip()}")

    assert took < 15 and code == 130
    assert backfill.errors().startswith("interrupted: SIGINT received")
    assert "Traceback" not in backfill.errors()
    unfinished, holders = _state(data)
    assert sorted(unfinished) == sorted(hogs) and holders == set(hogs)

    # the slots leaked in that folder's instance cannot block another folder: its own instance
    other = tmp_path / "other"
    backfill = Command(["backfill", "--session", "2025-11-17"], other, vendor)
    assert backfill.wait(timeout=240) == 0, backfill.output() + backfill.errors()
    assert f"Dagster instance: {other / 'dagster'}" in backfill.output()


# --------------------------------------------------------------------------------- ui
def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _descendants(pid):
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid):
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rfind(")") + 2] != "Z"


def test_ui_stops_on_sigterm_and_leaves_no_process(vendor, tmp_path):
    data, port = tmp_path / "data", _free_port()
    ui = Command(["ui", "--port", str(port)], data, vendor, background_shell=True)
    deadline, up = time.monotonic() + 150, False
    while not up and time.monotonic() < deadline:
        assert ui.proc.poll() is None, ui.output() + ui.errors()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                up = True
        except OSError:
            time.sleep(0.5)
    assert up, f"the UI did not answer within 150 s:\n{ui.output()}\n{ui.errors()}"
    assert f"DAGSTER_HOME={data / 'dagster'}" in ui.output()
    processes = _descendants(ui.pid)
    groups = {os.getpgid(p) for p in processes if _alive(p)}
    assert len(processes) >= 3  # dagster dev, the webserver, the daemon (and code servers)

    sent = time.monotonic()
    os.kill(ui.pid, signal.SIGTERM)
    code = ui.wait(timeout=60)
    took = time.monotonic() - sent
    print(f"\nui stopped {took:.1f} s after SIGTERM (exit {code})")

    assert took < 30
    time.sleep(0.5)
    assert [p for p in processes if _alive(p)] == []
    for group in groups:
        with pytest.raises(ProcessLookupError):
            os.killpg(group, 0)
