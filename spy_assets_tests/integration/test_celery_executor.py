"""A week through `spy-assets backfill` with the Celery executor: Redis from Debian's package
as broker and result backend, a Celery worker of dagster-celery, configuration only."""

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus

from spy_assets.storage import Storage, dataset
from spy_assets_tests.integration.servers import redis_server, run_command

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("redis-server") is None,
        reason="redis-server (Debian's redis-server package) is not installed; .ci/run installs it",
    ),
    # a Celery task per step (16 a run) with a worker process each: minutes on 2 busy cores,
    # more than the suite's budget allows; the README shows the same week by hand
    pytest.mark.skipif(
        os.environ.get("SPY_ASSETS_TEST_CELERY") != "1",
        reason="the Celery week takes minutes: run it with SPY_ASSETS_TEST_CELERY=1",
    ),
]

WEEK = [dt.date(2025, 11, 17) + dt.timedelta(days=d) for d in range(5)]


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "DAGSTER_HOME" and not k.startswith(("SPY_ASSETS_", "MASSIVE_", "POLYGON_"))
    }
    return {**env, "SPY_ASSETS_SOURCE": "synthetic", **extra}


def test_a_week_with_the_celery_executor(tmp_path):
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    root = Path(__file__).resolve().parents[2]
    (home / "dagster.yaml").write_text((root / "dagster.yaml").read_text())
    with redis_server() as url:
        env = _env(
            DAGSTER_HOME=str(home),
            SPY_ASSETS_DATA_DIR=str(data),
            SPY_ASSETS_EXECUTOR="celery",
            SPY_ASSETS_CELERY_BROKER=url,
            SPY_ASSETS_CELERY_BACKEND=url,
        )
        worker_log = tmp_path / "worker.log"
        celery = Path(sys.executable).with_name("celery")
        with open(worker_log, "wb") as log:
            worker = subprocess.Popen(
                [str(celery), "-A", "dagster_celery.app", "-b", url, "--result-backend", url]
                + ["worker", "-Q", "dagster", "-c", "2", "-l", "INFO", "--without-heartbeat"]
                + ["--without-gossip", "--without-mingle"],
                cwd=tmp_path,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            done = run_command(
                ["backfill", "--start", str(WEEK[0]), "--end", str(WEEK[-1])],
                cwd=tmp_path,
                env=env,
                timeout=600,
            )
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, 9)
                worker.wait()
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr + worker_log.read_text()[-3000:]

    with DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs()
        assert run.status == DagsterRunStatus.SUCCESS
        logs = instance.all_logs(run.run_id)
    started = {e.step_key for e in logs if e.dagster_event and e.dagster_event.is_step_start}
    submitted = {
        e.user_message.removeprefix("Submitting celery task for step ").split(" ")[0].strip('"')
        for e in logs
        if e.user_message.startswith("Submitting celery task for step")
    }
    # every step of the run (each asset with its schema check, each drift check) went to Celery
    assert len(started) >= 8 and submitted == started, (sorted(started), sorted(submitted))
    assert "execute_plan" in worker_log.read_text() and "succeeded" in worker_log.read_text()
    storage = Storage(data)
    for name in ("minute_bars", "option_minute_bars", "training_data"):
        for session in WEEK:
            assert storage.partition_path(dataset("SPY", name), session).is_file()
