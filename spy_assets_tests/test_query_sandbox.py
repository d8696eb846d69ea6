"""Storage.query: one read-only statement, on a locked-down in-memory DuckDB, over the stored
Parquet files (real files written by Storage.write, real DuckDB)."""

import datetime as dt
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from spy_assets.errors import (
    MissingPartitionError,
    QueryError,
    QueryRefusedError,
)
from spy_assets.storage import NEWS_ARTICLES, QueryResult, Storage, dataset

BARS = dataset("SPY", "minute_bars")
CONTRACTS = dataset("SPY", "option_contracts")
SESSIONS = [dt.date(2025, 11, 24), dt.date(2025, 11, 25), dt.date(2025, 11, 26)]
NEW_SESSION = dt.date(2025, 11, 28)


def _bars(session, n=3):
    ts = pd.date_range(f"{session} 14:30", periods=n, freq="1min", tz="UTC")
    return pd.DataFrame({"ticker": "SPY", "timestamp": ts, "close": 600.0 + pd.RangeIndex(n)})


def _contracts(session, n=2):
    return pd.DataFrame(
        {
            "contract": [f"O:SPY{session:%y%m%d}C{600 + i:05d}000" for i in range(n)],
            "strike": [600.0 + i for i in range(n)],
        }
    )


@pytest.fixture
def store(tmp_path):
    store = Storage(tmp_path / "data")
    for session in SESSIONS:
        store.write(BARS, session, _bars(session))
        store.write(CONTRACTS, session, _contracts(session))
    return store


def _truncate_to_half(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ------------------------------------------------------------------ answers
def test_select_with_a_session_filter_across_two_datasets(store):
    assert store.datasets_on_disk() == ["spy/minute_bars", "spy/option_contracts"]
    frame = store.query(
        "SELECT b.session, count(DISTINCT b.timestamp) AS bars, count(DISTINCT c.contract) AS n "
        "FROM spy_minute_bars b JOIN spy_option_contracts c USING (session) "
        "WHERE session >= DATE '2025-11-25' GROUP BY 1 ORDER BY 1"
    )
    assert [pd.Timestamp(s).date() for s in frame["session"]] == SESSIONS[1:]
    assert frame["bars"].tolist() == [3, 3] and frame["n"].tolist() == [2, 2]
    result = store.query_with_report("SELECT count(*) AS n FROM spy_minute_bars")
    assert isinstance(result, QueryResult) and result.skipped == []
    assert result.frame["n"].tolist() == [9]
    assert not store.catalog_path.exists()  # query never needs or creates the catalog


@pytest.mark.parametrize(
    "sql",
    [
        "WITH x AS (SELECT * FROM spy_minute_bars) SELECT count(*) FROM x",
        "FROM spy_minute_bars LIMIT 1",
        "VALUES (1)",
        "DESCRIBE spy_minute_bars",
        "SHOW TABLES",
        "SUMMARIZE spy_option_contracts",
        "EXPLAIN SELECT * FROM spy_minute_bars",
        "explain analyze SELECT count(*) FROM spy_minute_bars",
        "-- a comment\nEXPLAIN SELECT 1",
        "SELECT table_name FROM information_schema.tables ORDER BY 1",
        "SELECT 1;",
    ],
)
def test_reads_are_allowed(store, sql):
    assert len(store.query(sql)) >= 1


# ----------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("", "empty query: give one SELECT statement"),
        ("   \n\t", "empty query: give one SELECT statement"),
        ("-- only a comment", "empty query"),
        ("SELECT 1; SELECT 2", "2 statements given"),
        ("SELECT 1; COPY (SELECT 1) TO 'x.csv'", "2 statements given"),
        ("ATTACH '/tmp/other.duckdb' AS other", "ATTACH is not allowed"),
        ("DETACH other", "DETACH is not allowed"),
        ("INSTALL httpfs", "INSTALL is not allowed"),
        ("LOAD httpfs", "LOAD is not allowed"),
        ("SET enable_external_access = true", "SET is not allowed"),
        ("RESET lock_configuration", "RESET is not allowed"),
        ("PRAGMA version", "PRAGMA is not allowed"),
        ("CALL pragma_version()", "CALL is not allowed"),
        ("CHECKPOINT", "CHECKPOINT is not allowed"),
        ("CREATE TABLE t AS SELECT 1", "CREATE is not allowed"),
        ("INSERT INTO spy_minute_bars VALUES (1)", "INSERT is not allowed"),
        ("UPDATE spy_minute_bars SET close = 0", "UPDATE is not allowed"),
        ("DELETE FROM spy_minute_bars", "DELETE is not allowed"),
        ("DROP VIEW spy_minute_bars", "DROP is not allowed"),
        ("EXPORT DATABASE '/tmp/export'", "EXPORT is not allowed"),
        ("USE memory", "USE is not allowed"),
        ("BEGIN", "BEGIN is not allowed"),
        ("PIVOT spy_minute_bars ON ticker USING sum(close)", "PIVOT is not allowed"),
        ("EXPLAIN ANALYZE COPY (SELECT 1) TO '/tmp/x.csv'", "only EXPLAIN"),
        ("EXPLAIN (FORMAT json) SELECT 1", "only EXPLAIN"),
        ("/* hidden */ EXPLAIN SELECT 1", "only EXPLAIN"),
    ],
)
def test_anything_but_one_read_is_refused(store, sql, why):
    with pytest.raises(QueryRefusedError, match=why) as info:
        store.query(sql)
    message = str(info.value)
    assert "\n" not in message
    assert "SELECT" in message  # says what is allowed


@pytest.mark.parametrize("inside_data", [False, True])
def test_copy_to_a_file_is_refused_and_writes_nothing(store, tmp_path, inside_data):
    # DuckDB's sandbox alone would let COPY write inside the readable folder: the statement
    # check is what stops it there.
    target = (store.root / "parquet" / "x.csv") if inside_data else (tmp_path / "x.csv")
    with pytest.raises(QueryRefusedError, match="COPY is not allowed.*SELECT"):
        store.query(f"COPY (SELECT 1 AS a) TO '{target}'")
    assert not target.exists()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_blob('/etc/hostname')",
        "SELECT * FROM read_parquet('/etc/x.parquet')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM read_json('file:///etc/passwd')",
        "SELECT * FROM read_parquet('https://example.com/x.parquet')",
    ],
)
def test_files_outside_the_data_cannot_be_read(store, sql):
    with pytest.raises(QueryRefusedError, match="disabled by configuration.*spy_minute_bars"):
        store.query(sql)


def test_escaping_the_data_folder_by_path_is_refused(store, tmp_path):
    (tmp_path / "secret.csv").write_text("a\n1\n")
    sneaky = store.root / "parquet" / ".." / ".." / "secret.csv"
    with pytest.raises(QueryRefusedError, match="disabled by configuration"):
        store.query(f"SELECT * FROM read_csv('{sneaky}')")
    with pytest.raises(QueryRefusedError, match="disabled by configuration"):
        store.query(f"SELECT * FROM read_csv('{tmp_path / 'secret.csv'}')")


def test_the_stored_files_themselves_can_be_read(store):
    glob = store.root / "parquet" / "spy" / "minute_bars" / "*" / "data.parquet"
    assert store.query(f"SELECT count(*) AS n FROM read_parquet('{glob}')")["n"].tolist() == [9]


def test_the_sandbox_settings_hold_and_cannot_be_changed(store):
    settings = store.query(
        "SELECT name, value FROM duckdb_settings() WHERE name IN "
        "('enable_external_access', 'lock_configuration', 'allowed_directories', "
        "'autoinstall_known_extensions', 'autoload_known_extensions')"
    ).set_index("name")["value"]
    assert settings["enable_external_access"] == "false"
    assert settings["lock_configuration"] == "true"
    assert settings["autoinstall_known_extensions"] == "false"
    assert settings["autoload_known_extensions"] == "false"
    allowed = settings["allowed_directories"].strip("[]").split(", ")
    # the data, and a private spill folder instead of DuckDB's default ./.tmp
    assert allowed[0] == f"{store.root / 'parquet'}/"
    assert len(allowed) == 2 and "spy-assets-query-" in allowed[1]
    assert not Path(allowed[1]).exists()  # removed once the query is done
    # even if the statement check were bypassed, the locked configuration holds
    with store.sandbox() as con:
        for sql in ("SET enable_external_access = true", "RESET allowed_directories"):
            with pytest.raises(duckdb.InvalidInputException, match="configuration has been locked"):
                con.execute(sql)
        with pytest.raises(duckdb.PermissionException):
            con.execute("INSTALL httpfs")
        with pytest.raises(duckdb.PermissionException):
            con.execute("ATTACH '/tmp/spy_assets_sandbox_probe.duckdb'")


# ------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("sql", "first_line"),
    [
        ("SELEC 1", 'Parser Error: syntax error at or near "SELEC"'),
        ("SELECT nope FROM spy_minute_bars", 'Binder Error: Referenced column "nope" not found'),
        ("SELECT * FROM spy_bars", "Catalog Error: Table with name spy_bars does not exist"),
        ("SELECT 'x'::INTEGER", "Conversion Error"),
    ],
)
def test_duckdb_errors_are_one_line(store, sql, first_line):
    with pytest.raises(QueryError, match=first_line) as info:
        store.query(sql)
    assert "\n" not in str(info.value) and "LINE 1" not in str(info.value)


def test_an_unknown_table_lists_the_views(store):
    with pytest.raises(QueryError, match="views: spy_minute_bars, spy_option_contracts"):
        store.query("SELECT * FROM minute_bars")


def test_nothing_stored_asks_to_materialize(tmp_path):
    with pytest.raises(MissingPartitionError, match="materialize some sessions first"):
        Storage(tmp_path).query("SELECT 1")


# ------------------------------------------------------------ broken files
def test_a_truncated_file_is_skipped_and_named(store):
    bad = store.partition_path(BARS, SESSIONS[1])
    _truncate_to_half(bad)
    result = store.query_with_report(
        "SELECT strftime(session, '%Y-%m-%d') AS s, count(*) AS n FROM spy_minute_bars "
        "GROUP BY 1 ORDER BY 1"
    )
    assert result.frame["s"].tolist() == [SESSIONS[0].isoformat(), SESSIONS[2].isoformat()]
    assert result.frame["n"].tolist() == [3, 3]
    assert result.skipped == [str(bad)]
    # a query on the other dataset only builds its view the fast way and skips nothing new
    other = store.query_with_report("SELECT count(*) AS n FROM spy_option_contracts")
    assert other.frame["n"].tolist() == [6] and other.skipped == [str(bad)]
    assert store.query("SELECT count(*) AS n FROM spy_minute_bars")["n"].tolist() == [6]


def test_a_garbage_file_and_a_dataset_with_nothing_readable(store):
    garbage = store.partition_path(BARS, SESSIONS[0])
    garbage.write_bytes(b"not parquet")
    result = store.query_with_report("SELECT count(*) AS n FROM spy_minute_bars")
    assert result.frame["n"].tolist() == [6] and result.skipped == [str(garbage)]
    for session in SESSIONS:
        store.partition_path(CONTRACTS, session).write_bytes(b"")
    # the other dataset still answers...
    assert store.query("SELECT count(*) AS n FROM spy_minute_bars")["n"].tolist() == [6]
    # ...and the broken one says why it has no view
    with pytest.raises(QueryError, match="view spy_option_contracts is missing: no readable"):
        store.query("SELECT * FROM spy_option_contracts")


def test_a_file_damaged_past_its_footer_gives_a_one_line_error(store):
    # The footer parses, so the file is not left out; DuckDB's error does not name it.
    path = store.partition_path(BARS, SESSIONS[2])
    meta = pq.read_metadata(path)
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    chunk = meta.row_group(0).column(names.index("close"))
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(path.read_bytes())
    data[start + 8 : start + chunk.total_compressed_size] = b"\xab" * (
        chunk.total_compressed_size - 8
    )
    path.write_bytes(bytes(data))
    assert store.status(BARS, SESSIONS[2]) == "ok"
    with pytest.raises(QueryError, match="re-materialize its session") as info:
        store.query("SELECT sum(close) AS s FROM spy_minute_bars")
    assert "\n" not in str(info.value)
    # columns that are intact still answer
    assert store.query("SELECT count(ticker) AS n FROM spy_minute_bars")["n"].tolist() == [9]


# ---------------------------------------------------------------- catalog
HOLD_CATALOG = textwrap.dedent(
    """
    import sys
    import duckdb
    con = duckdb.connect(sys.argv[1])  # read-write: DuckDB's exclusive lock on the file
    print("holding", flush=True)
    for sql in sys.stdin:  # keeps reading the catalog it opened
        print(con.execute(sql).fetchall(), flush=True)
    """
)


@pytest.fixture
def catalog_held_open(store):
    store.refresh_catalog([BARS, CONTRACTS])
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_CATALOG, str(store.catalog_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        yield holder
    finally:
        holder.kill()
        holder.wait()
        holder.stdin.close()
        holder.stdout.close()


def test_query_works_while_another_process_holds_the_catalog(store, catalog_held_open):
    frame = store.query("SELECT count(*) AS n FROM spy_minute_bars WHERE session = '2025-11-26'")
    assert frame["n"].tolist() == [3]


def test_a_reader_holding_the_catalog_never_blocks_a_writer(store, catalog_held_open):
    # a writer adds a new dataset and a new session while another process holds the catalog
    news = NEWS_ARTICLES
    store.write(news, SESSIONS[0], pd.DataFrame({"article_id": ["a1", "a2"], "title": "t"}))
    store.write(BARS, NEW_SESSION, _bars(NEW_SESSION, n=4))
    started = time.monotonic()
    views = store.refresh_catalog([news])
    assert time.monotonic() - started < 2  # no waiting on the holder's lock
    assert views == ["news_articles", "spy_minute_bars", "spy_option_contracts"]
    # a new reader of the catalog sees the new view and the new session
    with duckdb.connect(str(store.catalog_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM news_articles").fetchall() == [(2,)]
        assert con.execute(
            "SELECT count(*) FROM spy_minute_bars WHERE session = ?", [NEW_SESSION]
        ).fetchall() == [(4,)]
    # and so does a query, which never needs the catalog
    assert store.query("SELECT count(*) AS n FROM news_articles")["n"].tolist() == [2]
    # the holder still reads the catalog it opened (its views are globs: new sessions show)
    catalog_held_open.stdin.write("SELECT count(*) FROM spy_minute_bars\n")
    catalog_held_open.stdin.flush()
    assert catalog_held_open.stdout.readline().strip() == "[(13,)]"
    assert sorted(p.name for p in store.catalog_path.parent.glob("*catalog*")) == [
        ".catalog.json",
        ".catalog.lock",
        "catalog.duckdb",
    ]  # no half-built catalog left behind


def test_the_catalog_follows_new_columns_and_removed_datasets(store):
    store.refresh_catalog()
    store.write(BARS, NEW_SESSION, _bars(NEW_SESSION).assign(volume=7.0))  # a new column
    store.refresh_catalog()
    with duckdb.connect(str(store.catalog_path), read_only=True) as con:
        assert con.execute("SELECT count(volume) FROM spy_minute_bars").fetchall() == [(3,)]
    shutil.rmtree(store.root / "parquet" / "spy" / "option_contracts")
    assert store.refresh_catalog() == ["spy_minute_bars"]
    store.catalog_path.unlink()  # a record that no longer describes the file is not trusted
    assert store.refresh_catalog() == ["spy_minute_bars"]
    with duckdb.connect(str(store.catalog_path), read_only=True) as con:
        views = con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    assert views == [("spy_minute_bars",)]


def test_the_catalog_file_is_readable_by_others_as_the_umask_allows(store):
    umask = os.umask(0)
    os.umask(umask)
    store.refresh_catalog()
    assert stat.S_IMODE(store.catalog_path.stat().st_mode) == 0o644 & ~umask


def test_every_stored_dataset_gets_a_view_whatever_the_caller_names(store):
    # a refresh after writing one dataset also covers one whose own refresh never ran
    store.write(NEWS_ARTICLES, SESSIONS[0], pd.DataFrame({"article_id": ["a1"], "title": "t"}))
    assert store.refresh_catalog([BARS]) == [
        "news_articles",
        "spy_minute_bars",
        "spy_option_contracts",
    ]


def test_refresh_catalog_leaves_out_unreadable_files(store):
    bad = store.partition_path(BARS, SESSIONS[0])
    _truncate_to_half(bad)
    assert store.refresh_catalog([BARS, CONTRACTS]) == ["spy_minute_bars", "spy_option_contracts"]
    with duckdb.connect(str(store.catalog_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM spy_minute_bars").fetchall() == [(6,)]
