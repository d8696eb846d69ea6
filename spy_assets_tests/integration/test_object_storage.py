"""The data root on an S3 server (moto, on 127.0.0.1): a backfill through the real graph, a
writer killed in the middle of an upload, a rerun, the same bytes as a local run, and DuckDB
queries (``Storage.query`` and ``spy-assets query``) over the objects."""

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import boto3
import duckdb
import pandas as pd
import pytest
from dagster import DagsterInstance, materialize
from moto.server import ThreadedMotoServer

from spy_assets import cli
from spy_assets.dashboard import health
from spy_assets.dashboard.db import PageReader
from spy_assets.definitions import build_definitions
from spy_assets.defs.resources import MarketDataResource, ResearchSettings, StorageResource
from spy_assets.errors import ObjectStoreError, QueryRefusedError
from spy_assets.storage import Storage, dataset
from spy_assets_tests.conftest import SESSIONS

BUCKET = "spy-research"
PREFIX = "runs/one"
ROOT = f"s3://{BUCKET}/{PREFIX}"
#: Two consecutive sessions: the day before Thanksgiving and the early close after it.
BACKFILL = SESSIONS[1:]
BARS = dataset("SPY", "minute_bars")


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on a free port of 127.0.0.1, a bucket, and the AWS_* variables that
    point s3fs and boto3 at it (for this module only)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        try:
            yield client, env
        finally:
            server.stop()


def _backfill(instance, root, sessions, state_dir=None):
    """The whole graph for a range of sessions, as one single-run backfill."""
    defs = build_definitions(["SPY"])
    result = materialize(
        [*defs.assets, *defs.asset_checks],
        instance=instance,
        resources={
            **defs.resources,
            "storage": StorageResource(root=str(root), state_dir=state_dir and str(state_dir)),
            "market": MarketDataResource(source="synthetic"),
            "settings": ResearchSettings(strikes_per_side=1),  # the whole graph, kept small
        },
        tags={
            "dagster/asset_partition_range_start": sessions[0].isoformat(),
            "dagster/asset_partition_range_end": sessions[-1].isoformat(),
        },
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        raise_on_error=False,
    )
    assert result.success


#: Overwrites one stored session with a ~12 MB file, sent as a multipart upload of three
#: parts of S3's smallest part size (the writer's part size is lowered to keep the test quick).
BIG_WRITER = textwrap.dedent(
    """
    import datetime as dt, sys
    import numpy as np, pandas as pd
    from spy_assets import storage
    from spy_assets.storage import Storage, dataset
    storage.UPLOAD_PART_BYTES = 5 * 2**20
    n = 750_000
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {"ticker": "SPY", "timestamp": np.arange(n), "a": rng.random(n), "b": rng.random(n)}
    )
    session = dt.date.fromisoformat(sys.argv[2])
    Storage(sys.argv[1]).write(dataset("SPY", "minute_bars"), session, frame)
    print("completed", flush=True)
    """
)


def _uploads(client):
    return client.list_multipart_uploads(Bucket=BUCKET, Prefix=f"{PREFIX}/").get("Uploads", [])


def _kill_mid_upload(client, env, session, cwd):
    """Start a writer and SIGKILL it while its multipart upload is open (parts sent, not
    completed); returns the unfinished uploads seen after the kill."""
    writer = subprocess.Popen(
        [sys.executable, "-c", BIG_WRITER, ROOT, session.isoformat()],
        env={**os.environ, **env},
        cwd=cwd,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120  # a ceiling for a loaded machine
        while not _uploads(client):
            assert writer.poll() is None, "the writer ended before its upload was seen"
            assert time.monotonic() < deadline, "no upload started"
            time.sleep(0.005)
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
        out = writer.stdout.read()
        writer.stdout.close()
    assert "completed" not in out
    return _uploads(client)


def _objects(client):
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/parquet/")
    return {
        item["Key"].removeprefix(f"{PREFIX}/"): client.get_object(Bucket=BUCKET, Key=item["Key"])[
            "Body"
        ].read()
        for item in listed.get("Contents", [])
    }


def _local_files(root):
    base = Path(root)
    return {
        p.relative_to(base).as_posix(): p.read_bytes()
        for p in (base / "parquet").rglob("*")
        if p.is_file()
    }


@pytest.fixture
def instance():
    """An in-memory Dagster instance: the runs are real, their event log costs no disk."""
    with DagsterInstance.ephemeral() as memory:
        yield memory


def test_backfill_crash_and_rerun_on_s3_give_the_local_bytes_and_answer_queries(
    s3, instance, tmp_path, monkeypatch, capsys
):
    client, env = s3
    local_root, state = tmp_path / "local", tmp_path / "state"
    _backfill(instance, local_root, BACKFILL)

    # 1. a backfill into the bucket
    _backfill(instance, ROOT, BACKFILL, state)
    store = Storage(ROOT, state)
    assert store.sessions(BARS) == BACKFILL
    stored = store.location(BARS, BACKFILL[0])
    key = stored.removeprefix(f"s3://{BUCKET}/")
    before = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    # 2. a writer killed while uploading a new version of that object: the old one stays
    unfinished = _kill_mid_upload(client, env, BACKFILL[0], tmp_path)
    assert [u["Key"] for u in unfinished] == [key]  # parts sent, never completed
    assert client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == before
    assert store.status(BARS, BACKFILL[0]) == "ok"
    # the sweep aborts unfinished uploads older than an hour (moto dates every upload 2010)
    assert store.sweep_temp_files() == [f"{stored} (unfinished upload)"]
    assert _uploads(client) == []

    # 3. the rerun finds every session stored and readable, and changes nothing
    _backfill(instance, ROOT, BACKFILL, state)
    in_bucket, on_disk = _objects(client), _local_files(local_root)
    assert sorted(in_bucket) == sorted(on_disk) and len(on_disk) >= 16
    different = [name for name in on_disk if in_bucket[name] != on_disk[name]]
    assert different == []  # byte for byte, every dataset and session

    # 4. DuckDB over the objects: Storage.query, the catalog in the state folder, the CLI
    sql = (
        "SELECT strftime(session, '%Y-%m-%d') AS s, count(*) AS n FROM spy_option_minute_bars "
        "GROUP BY 1 ORDER BY 1"
    )
    answer = store.query(sql)
    assert answer.equals(Storage(local_root).query(sql))
    assert answer["s"].tolist() == [s.isoformat() for s in BACKFILL]
    assert store.datasets_on_disk() == Storage(local_root).datasets_on_disk()
    client.put_object(Bucket=BUCKET, Key="secret.csv", Body=b"a\n1\n")
    for outside in (f"s3://{BUCKET}/secret.csv", f"{ROOT}/parquet/../../secret.csv"):
        with pytest.raises(QueryRefusedError, match="disabled by configuration"):
            store.query(f"SELECT * FROM read_csv('{outside}')")
    with duckdb.connect(str(state / "catalog.duckdb"), read_only=True) as con:
        store.register_filesystem(con)
        count = con.execute("SELECT count(*) FROM spy_features").fetchone()[0]
    assert count == store.query("SELECT count(*) AS n FROM spy_features")["n"].iloc[0] > 0

    # the dashboard's reader and health table go through the same Storage
    rows = [Storage(local_root).footer(BARS, session).num_rows for session in BACKFILL]
    with PageReader(store) as page:
        page.view("bars", BARS, BACKFILL)
        assert page.frame("SELECT count(*) AS n FROM bars")["n"].iloc[0] == sum(rows) > 0
    files = health.file_table(store, [BARS.name], BACKFILL)
    assert files["file"].tolist() == ["ok", "ok"] and files["rows"].tolist() == rows

    # the command line, in this process (its start-up is what a subprocess would add)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPY_ASSETS_DATA_DIR", ROOT)
    monkeypatch.setenv("SPY_ASSETS_STATE_DIR", str(state))
    sql = "SELECT count(DISTINCT session) AS sessions FROM spy_minute_bars"
    assert cli.main(["query", sql]) == 0
    assert capsys.readouterr().out.split() == ["sessions", "2"]
    monkeypatch.setenv("SPY_ASSETS_DATA_DIR", "gs://elsewhere/data")
    assert cli.main(["query", sql]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: SPY_ASSETS_DATA_DIR='gs://elsewhere/data': use a local folder or an "
        "s3://bucket[/prefix] URL"
    )
    assert not list(tmp_path.glob("s3*")) and not list(tmp_path.glob("gs*"))


def test_a_missing_bucket_is_one_line_not_a_local_folder(s3, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = Storage("s3://no-such-bucket/data", tmp_path / "state")
    assert store.sessions(BARS) == [] and store.status(BARS, BACKFILL[0]) == "missing"
    frame = pd.DataFrame({"ticker": ["SPY"], "timestamp": [1], "close": [1.0]})
    with pytest.raises(ObjectStoreError, match="the bucket no-such-bucket does not exist"):
        store.write(BARS, BACKFILL[0], frame)
    assert list(tmp_path.iterdir()) == []
