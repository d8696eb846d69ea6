"""`spy-assets backfill` on an instance whose storage is a real PostgreSQL server, with the
multiprocess executor: configuration only (dagster.yaml and SPY_ASSETS_EXECUTOR)."""

import datetime as dt
import os
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus

from spy_assets.defs.runs import BACKFILL_TAG, COMMAND_TAG
from spy_assets.storage import Storage, dataset
from spy_assets_tests.integration.servers import postgres_bin, postgres_server, run_command

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        postgres_bin() is None,
        reason="PostgreSQL server binaries (/usr/lib/postgresql/*/bin, Debian's postgresql "
        "package) are not installed; .ci/run installs them",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
SESSIONS = [dt.date(2025, 11, 17), dt.date(2025, 11, 18), dt.date(2025, 11, 19)]
POSTGRES_STORAGE = """
storage:
  postgres:
    postgres_url:
      env: SPY_ASSETS_POSTGRES_URL
"""


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "DAGSTER_HOME" and not k.startswith(("SPY_ASSETS_", "MASSIVE_", "POLYGON_"))
    }
    return {**env, "SPY_ASSETS_SOURCE": "synthetic", **extra}


def test_a_backfill_on_postgres_with_the_multiprocess_executor(tmp_path, monkeypatch):
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    # the project's instance settings, with PostgreSQL storage added: no code change
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text() + POSTGRES_STORAGE)
    with postgres_server() as server_url:
        # dagster-postgres speaks psycopg2 (SQLAlchemy would pick psycopg 3 for postgresql://)
        url = server_url.replace("postgresql://", "postgresql+psycopg2://", 1)
        done = run_command(
            ["backfill", "--start", str(SESSIONS[0]), "--end", str(SESSIONS[-1])],
            cwd=tmp_path,
            env=_env(
                DAGSTER_HOME=str(home),
                SPY_ASSETS_DATA_DIR=str(data),
                SPY_ASSETS_EXECUTOR="multiprocess",
                SPY_ASSETS_POSTGRES_URL=url,
            ),
            timeout=1200,
        )
        print(done.stdout, done.stderr)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"Dagster instance: {home}" in done.stdout

        monkeypatch.setenv("SPY_ASSETS_POSTGRES_URL", url)
        with DagsterInstance.from_config(str(home)) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            # the three sessions are one backfill of the instance (the UI's Backfills page lists
            # it), requested by the daemon as one ranged run
            [run] = instance.get_runs()
            assert run.tags["spy_assets/sessions"] == "2025-11-17,2025-11-18,2025-11-19"
            assert run.status == DagsterRunStatus.SUCCESS and COMMAND_TAG in run.tags
            [backfill] = instance.get_backfills()
            assert run.tags[BACKFILL_TAG] == backfill.backfill_id
            assert backfill.title == "spy-assets 2025-11-17 … 2025-11-19"
            runs = [run]
            # the multiprocess executor ran the steps, each in its own process
            messages = [e.user_message for e in instance.all_logs(runs[0].run_id)]
            assert any("in subprocess" in m for m in messages), messages[:20]
            for key in (["spy", "minute_bars"], ["spy", "training_data"], ["news", "articles"]):
                records = instance.fetch_materializations(AssetKey(key), limit=50).records
                partitions = {r.partition_key for r in records}
                assert partitions == {str(s) for s in SESSIONS}, (key, partitions)

    storage = Storage(data)
    for name in ("minute_bars", "option_minute_bars", "features"):
        for session in SESSIONS:
            assert storage.partition_path(dataset("SPY", name), session).is_file()
