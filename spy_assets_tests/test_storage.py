import datetime as dt
import hashlib
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from spy_assets.errors import CorruptPartitionError, MissingPartitionError
from spy_assets.storage import Storage, dataset

DAY = dt.date(2025, 11, 26)
BARS = dataset("SPY", "minute_bars")


def _bars(n=5, start="2025-11-26 14:30"):
    ts = pd.date_range(start, periods=n, freq="1min", tz="UTC")
    return pd.DataFrame(
        {
            "ticker": "SPY",
            "timestamp": ts,
            "open": 600.0,
            "high": 601.0,
            "low": 599.0,
            "close": 600.5 + pd.RangeIndex(n) / 100,
        }
    )


def test_write_dedups_sorts_and_counts(tmp_path):
    store = Storage(tmp_path)
    frame = pd.concat([_bars(5), _bars(2)]).iloc[::-1]
    result = store.write(BARS, DAY, frame)
    assert (result.rows, result.duplicates_dropped) == (5, 2)
    back = store.read(BARS, DAY)
    assert back["timestamp"].is_monotonic_increasing
    assert str(back["timestamp"].dtype) == "datetime64[ms, UTC]"


def test_rewrite_is_byte_identical_and_stamped(tmp_path):
    store = Storage(tmp_path)
    first = store.write(BARS, DAY, _bars(), {"code_version": "1", "params": {"k": 1.0}})
    digest = hashlib.sha256(Path(first.path).read_bytes()).hexdigest()
    again = store.write(
        BARS,
        DAY,
        _bars().sample(frac=1, random_state=3),
        {"code_version": "1", "params": {"k": 1.0}},
    )
    assert hashlib.sha256(Path(again.path).read_bytes()).hexdigest() == digest
    assert store.provenance(BARS, DAY) == {"code_version": "1", "params": {"k": 1.0}}


def test_crash_mid_write_keeps_the_old_partition(tmp_path, monkeypatch):
    store = Storage(tmp_path)
    store.write(BARS, DAY, _bars(5))
    before = store.partition_path(BARS, DAY).read_bytes()

    def crash(table, where, **kwargs):
        where.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        store.write(BARS, DAY, _bars(9))
    assert store.partition_path(BARS, DAY).read_bytes() == before
    assert [p.name for p in store.partition_dir(BARS, DAY).iterdir()] == ["data.parquet"]


def test_crash_on_first_write_leaves_nothing(tmp_path, monkeypatch):
    store = Storage(tmp_path)
    monkeypatch.setattr(pq, "write_table", lambda *a, **k: (_ for _ in ()).throw(OSError("x")))
    with pytest.raises(OSError):
        store.write(BARS, DAY, _bars())
    assert not store.exists(BARS, DAY)
    assert store.sessions(BARS) == []


def test_missing_and_corrupt_partitions_are_explained(tmp_path):
    store = Storage(tmp_path)
    with pytest.raises(MissingPartitionError, match="materialize it first"):
        store.read(BARS, DAY)
    path = store.partition_path(BARS, DAY)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not parquet at all")
    with pytest.raises(CorruptPartitionError, match="Delete the file and re-materialize"):
        store.read(BARS, DAY)


def test_duckdb_catalog_sees_every_session(tmp_path):
    store = Storage(tmp_path)
    store.write(BARS, DAY, _bars(5))
    assert store.refresh_catalog([BARS, dataset("SPY", "features")]) == ["spy_minute_bars"]
    store.write(BARS, dt.date(2025, 11, 28), _bars(3, "2025-11-28 14:30"))  # no refresh needed
    counts = store.query("SELECT session, count(*) AS n FROM spy_minute_bars GROUP BY 1 ORDER BY 1")
    assert counts["n"].tolist() == [5, 3]
    assert [d.date() for d in pd.to_datetime(counts["session"])] == [DAY, dt.date(2025, 11, 28)]
    assert store.sessions(BARS) == [DAY, dt.date(2025, 11, 28)]


def test_key_columns_are_required(tmp_path):
    with pytest.raises(ValueError, match="key columns"):
        Storage(tmp_path).write(BARS, DAY, _bars().drop(columns="ticker"))


def _truncate_to_half(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_or_garbage_partition_is_not_stored(tmp_path):
    store = Storage(tmp_path)
    other = dt.date(2025, 11, 28)
    store.write(BARS, DAY, _bars(50))
    store.write(BARS, other, _bars(5, "2025-11-28 14:30"))
    assert store.status(BARS, DAY) == "ok" and store.exists(BARS, DAY)
    assert store.status(BARS, dt.date(2025, 11, 25)) == "missing"

    _truncate_to_half(store.partition_path(BARS, DAY))
    store.partition_path(BARS, other).write_bytes(b"PAR1 this is not parquet PAR1")
    for session in (DAY, other):
        assert store.status(BARS, session) == "corrupt"
        assert not store.exists(BARS, session)
    assert store.sessions(BARS) == [DAY, other]  # the files are there...
    assert store.corrupt_sessions(BARS) == [DAY, other]  # ...but unreadable

    store.write(BARS, DAY, _bars(7))  # a write over a corrupt partition replaces it
    assert store.exists(BARS, DAY) and len(store.read(BARS, DAY)) == 7
    assert store.corrupt_sessions(BARS) == [other]


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_sweep_removes_temp_files_of_dead_writers_only(tmp_path):
    store = Storage(tmp_path)
    store.write(BARS, DAY, _bars())
    folder = store.partition_dir(BARS, DAY)
    dead = folder / f".data.{_dead_pid()}.k2j4h1xz.parquet.tmp"
    live = folder / f".data.{os.getpid()}.a8c0e3qq.parquet.tmp"
    legacy_old = folder / ".data.q1w2e3r4.parquet.tmp"
    legacy_new = folder / ".data.z9x8c7v6.parquet.tmp"
    for path in (dead, live, legacy_old, legacy_new):
        path.write_bytes(b"PAR1 half")
    two_hours_ago = time.time() - 7200
    os.utime(legacy_old, (two_hours_ago, two_hours_ago))
    os.utime(live, (two_hours_ago, two_hours_ago))  # old, but its writer is alive

    assert sorted(store.sweep_temp_files()) == sorted([str(dead), str(legacy_old)])
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["data.parquet", live.name, legacy_new.name]
    )
    assert store.exists(BARS, DAY)
    assert Storage(tmp_path / "nothing").sweep_temp_files() == []


def test_a_writer_names_its_temp_file_with_its_pid(tmp_path, monkeypatch):
    store = Storage(tmp_path)
    seen = []

    def crash(table, where, **kwargs):
        seen.extend(p.name for p in store.partition_dir(BARS, DAY).glob(".data.*.tmp"))
        raise OSError("killed")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(OSError):
        store.write(BARS, DAY, _bars())
    assert len(seen) == 1 and seen[0].startswith(f".data.{os.getpid()}.")


def test_data_files_are_readable_by_others_as_the_umask_allows(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    result = Storage(tmp_path).write(BARS, DAY, _bars())
    mode = stat.S_IMODE(Path(result.path).stat().st_mode)
    assert mode == 0o644 & ~umask  # not mkstemp's 0600
    if umask == 0o022:
        assert mode == 0o644
