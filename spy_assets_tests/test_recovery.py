"""Reclaiming the runs of dead processes, the per-folder instance, and the interrupt guard."""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus

from spy_assets.defs.factory import VENDOR_POOL
from spy_assets.defs.recovery import (
    OWNER_HOST_TAG,
    OWNER_START_TAG,
    Interrupted,
    interrupt_guard,
    owner_is_gone,
    owner_tags,
    prepare_instance_home,
    reclaim_abandoned_runs,
    release_own_runs,
    run_scope,
)


def _dead_owner_tags():
    """The tags a process wrote on its run while it lived; the process is gone and reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tags = owner_tags(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    return tags


def _run(instance, tags, status=DagsterRunStatus.STARTED):
    return instance.add_run(
        DagsterRun(job_name="__ASSET_JOB", run_id=str(uuid.uuid4()), status=status, tags=tags)
    )


def _claim(instance, run, step_key):
    return instance.event_log_storage.claim_concurrency_slot(VENDOR_POOL, run.run_id, step_key)


def _slot_holders(instance):
    info = instance.event_log_storage.get_concurrency_info(VENDOR_POOL)
    return {slot.run_id for slot in info.claimed_slots}, info.pending_step_count


def _status(instance, run):
    return instance.get_run_by_id(run.run_id).status


@pytest.fixture
def pooled(instance):
    instance.event_log_storage.set_concurrency_slots(VENDOR_POOL, 2)
    return instance


def test_a_dead_process_run_is_failed_and_its_slot_freed(pooled):
    dead = _run(pooled, _dead_owner_tags())
    live = _run(pooled, owner_tags())
    assert _claim(pooled, dead, "spy__minute_bars").is_claimed
    assert _claim(pooled, live, "vix__minute_bars").is_claimed
    assert _slot_holders(pooled) == ({dead.run_id, live.run_id}, 0)
    untagged = _run(pooled, {})  # launched from the UI or another tool: not ours to judge

    assert reclaim_abandoned_runs(pooled) == [dead.run_id]

    assert _status(pooled, dead) == DagsterRunStatus.FAILURE
    assert _status(pooled, live) == DagsterRunStatus.STARTED
    assert _status(pooled, untagged) == DagsterRunStatus.STARTED
    assert _slot_holders(pooled) == ({live.run_id}, 0)
    failure = pooled.all_logs(dead.run_id)[-1]
    assert failure.dagster_event.event_type_value == "PIPELINE_FAILURE"
    assert "died" in failure.message and "PID" in failure.message
    # the freed slot can be claimed again, and a second pass finds nothing to do
    assert _claim(pooled, _run(pooled, owner_tags()), "news__articles").is_claimed
    assert reclaim_abandoned_runs(pooled) == []


def test_pending_claims_and_unstarted_runs_of_a_dead_process_are_released(pooled):
    pooled.event_log_storage.set_concurrency_slots(VENDOR_POOL, 1)
    live = _run(pooled, owner_tags())
    assert _claim(pooled, live, "spy__minute_bars").is_claimed
    tags = _dead_owner_tags()
    waiting = _run(pooled, tags)
    assert not _claim(pooled, waiting, "spy__minute_bars").is_claimed  # queued behind `live`
    not_started = _run(pooled, tags, DagsterRunStatus.NOT_STARTED)
    assert _slot_holders(pooled) == ({live.run_id}, 1)

    assert sorted(reclaim_abandoned_runs(pooled)) == sorted([waiting.run_id, not_started.run_id])

    assert _slot_holders(pooled) == ({live.run_id}, 0)
    assert _status(pooled, waiting) == _status(pooled, not_started) == DagsterRunStatus.FAILURE


def test_a_finished_run_of_a_dead_process_still_holding_a_slot_is_released(pooled):
    dead = _run(pooled, _dead_owner_tags())
    assert _claim(pooled, dead, "spy__minute_bars").is_claimed
    pooled.report_run_failed(dead, "marked failed from the UI")  # the slot stays claimed
    assert _slot_holders(pooled)[0] == {dead.run_id}

    assert reclaim_abandoned_runs(pooled) == [dead.run_id]
    assert _slot_holders(pooled) == (set(), 0)


def test_release_own_runs_fails_this_process_runs_only(pooled):
    mine = _run(pooled, owner_tags())
    assert _claim(pooled, mine, "spy__minute_bars").is_claimed
    other = _run(pooled, _dead_owner_tags())

    assert release_own_runs(pooled, "Interrupted by SIGTERM.") == [mine.run_id]
    assert _status(pooled, mine) == DagsterRunStatus.FAILURE
    assert _status(pooled, other) == DagsterRunStatus.STARTED
    assert _slot_holders(pooled) == (set(), 0)


def test_owner_is_gone_judges_only_processes_of_this_host():
    mine = owner_tags()
    assert not owner_is_gone(mine)
    assert owner_is_gone(_dead_owner_tags())
    assert not owner_is_gone({**_dead_owner_tags(), OWNER_HOST_TAG: "another-host"})
    assert not owner_is_gone({})
    if mine[OWNER_START_TAG]:  # Linux: a PID reused by a later process is told apart
        assert owner_is_gone({**mine, OWNER_START_TAG: mine[OWNER_START_TAG] + "0"})


def test_a_killed_but_unreaped_owner_counts_as_gone():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    tags = owner_tags(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    time.sleep(0.5)  # a zombie until its parent (this test) reaps it
    try:
        if not os.path.exists(f"/proc/{proc.pid}/stat"):
            pytest.skip("needs /proc to see zombie processes")
        assert owner_is_gone(tags)
    finally:
        proc.wait()


def test_each_data_folder_gets_its_own_configured_instance(tmp_path):
    template = tmp_path / "dagster.yaml"
    template.write_text("concurrency:\n  pools:\n    default_limit: 2\n")
    homes = [prepare_instance_home(tmp_path / name / "dagster", template) for name in "ab"]

    assert homes[0] != homes[1]
    for home in homes:
        text = (home / "dagster.yaml").read_text()
        assert text.startswith(f"# Copied by spy-assets from {template}")
        assert text.endswith(template.read_text())
        with DagsterInstance.from_config(str(home)) as instance:
            assert instance.event_log_storage.get_pool_config().default_pool_limit == 2
            assert str(home) in str(instance.root_directory)

    copy = homes[0] / "dagster.yaml"
    before = copy.stat().st_mtime_ns
    time.sleep(0.01)
    prepare_instance_home(homes[0], template)
    assert copy.stat().st_mtime_ns == before  # unchanged: not rewritten
    template.write_text("concurrency:\n  pools:\n    default_limit: 1\n")
    prepare_instance_home(homes[0], template)
    assert copy.read_text().endswith("default_limit: 1\n")


def test_the_project_dagster_yaml_writes_nowhere_but_the_instance_home(tmp_path):
    from spy_assets.defs.recovery import project_file

    template = project_file("dagster.yaml")
    assert template is not None
    assert "data/" not in template.read_text().replace("<data dir>", "")
    home = prepare_instance_home(tmp_path / "data" / "dagster")
    with DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_monitoring_enabled
        assert instance.event_log_storage.get_pool_config().default_pool_limit == 2
    written = {p.relative_to(tmp_path).parts[:2] for p in tmp_path.rglob("*")}
    assert written <= {("data",), ("data", "dagster")}


def test_sigterm_under_the_guard_raises_interrupted_and_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as caught, interrupt_guard():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert caught.value.signum == signal.SIGTERM and caught.value.exit_code == 143
    assert str(caught.value) == "SIGTERM received"
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_run_that_only_flags_the_signal_is_interrupted_after_the_grace_period():
    """Dagster's in-process executor installs a handler that only sets a flag, and does not read
    it while a step waits for a pool slot: the guard interrupts the main thread itself."""
    flagged = []
    with pytest.raises(Interrupted) as caught, interrupt_guard(grace=0.3):
        with run_scope():
            signal.signal(signal.SIGTERM, lambda signum, frame: flagged.append(signum))
            os.kill(os.getpid(), signal.SIGTERM)
            started = time.monotonic()
            while time.monotonic() - started < 10:  # a pool-slot wait that never ends
                time.sleep(0.05)
    assert flagged == [signal.SIGTERM]
    assert caught.value.signum == signal.SIGTERM
    assert time.monotonic() - started < 3


STUBBORN = """
import pathlib, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
pathlib.Path(sys.argv[1]).write_text(str(child.pid))
time.sleep(60)
"""


def test_run_supervised_forwards_sigterm_then_kills_the_whole_group(tmp_path):
    from spy_assets.defs.recovery import run_supervised

    pid_file = tmp_path / "grandchild"
    before = signal.getsignal(signal.SIGTERM)
    sender = threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGTERM))
    sender.start()
    started = time.monotonic()
    code = run_supervised([sys.executable, "-c", STUBBORN, str(pid_file)], stop_timeout=1.0)
    sender.join()
    assert code == 128 + signal.SIGKILL  # it ignored SIGTERM: killed after stop_timeout
    assert time.monotonic() - started < 15
    grandchild = int(pid_file.read_text())
    time.sleep(0.2)
    assert not os.path.exists(f"/proc/{grandchild}") or "Z" in _state_of(grandchild)
    assert signal.getsignal(signal.SIGTERM) is before


def test_run_supervised_returns_the_child_exit_code():
    from spy_assets.defs.recovery import run_supervised

    assert run_supervised([sys.executable, "-c", "raise SystemExit(3)"]) == 3


def _state_of(pid):
    text = open(f"/proc/{pid}/stat").read()
    return text[text.rfind(")") + 2]
