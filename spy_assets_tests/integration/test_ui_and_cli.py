"""The code location loads, the webserver serves the graph, the CLI explains bad input."""

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from spy_assets import cli
from spy_assets.errors import CorruptPartitionError
from spy_assets.storage import Storage, dataset

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_definitions_validate():
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_webserver_serves_the_asset_graph(tmp_path):
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster_webserver",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    query = json.dumps(
        {"query": "{ assetNodes { assetKey { path } partitionDefinition { name } } }"}
    ).encode()
    try:
        deadline, body = time.monotonic() + 90, None
        while time.monotonic() < deadline and body is None:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql",
                    data=query,
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    body = json.load(response)
            except OSError:
                time.sleep(0.5)
        assert body is not None, "the webserver did not answer within 90 s"
        keys = {"/".join(n["assetKey"]["path"]) for n in body["data"]["assetNodes"]}
        assert {
            "spy/minute_bars",
            "spy/option_contracts",
            "spy/option_minute_bars",
            "vix/minute_bars",
            "news/articles",
        } <= keys
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_corrupt_partition_is_left_out_of_queries_and_named(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPY_ASSETS_DATA_DIR", str(tmp_path))
    assert cli.main(["query", "SELECT 1"]) == 2
    assert "materialize some sessions first" in capsys.readouterr().err

    store, bars_ds = Storage(tmp_path), dataset("SPY", "minute_bars")
    good = pd.DataFrame(
        {
            "ticker": ["SPY"],
            "open": [1.0],
            "timestamp": pd.to_datetime(["2025-11-25 14:30"], utc=True),
        }
    )
    store.write(bars_ds, dt.date(2025, 11, 25), good)
    store.refresh_catalog([bars_ds])
    bad = store.partition_path(bars_ds, dt.date(2025, 11, 26))
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"garbage, not parquet")

    # The other sessions still answer; the bad file is named with what to do about it.
    assert cli.main(["query", "SELECT count(*) AS n FROM spy_minute_bars"]) == 0
    out, err = capsys.readouterr()
    assert out.split() == ["n", "1"]
    assert "session=2025-11-26" in err and "re-materialize" in err and "Traceback" not in err
    assert not store.exists(bars_ds, dt.date(2025, 11, 26))  # so a backfill rebuilds it
    with pytest.raises(CorruptPartitionError, match="Delete the file and re-materialize"):
        store.read(bars_ds, dt.date(2025, 11, 26))
