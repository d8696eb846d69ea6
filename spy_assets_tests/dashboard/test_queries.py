"""The dashboard's page logic as plain functions, over the shared data folder."""

import datetime as dt
import json
import math

import numpy as np
import pandas as pd
import pytest

from spy_assets import calendar
from spy_assets.analytics.scanner import scan_events, scan_report
from spy_assets.dashboard import figures, health, queries
from spy_assets.dashboard.db import PageReader
from spy_assets.errors import (
    CorruptPartitionError,
    FutureSessionError,
    MissingPartitionError,
    NotASessionError,
    QueryRefusedError,
    SpyAssetsError,
)
from spy_assets.reports import scan_report_for
from spy_assets.storage import Storage, dataset
from spy_assets_tests.dashboard.conftest import (
    FAILED_DATASET,
    FAILED_RULE,
    FAILED_SESSION,
    SESSIONS,
)

SESSION = dt.date(2025, 11, 25)


def test_session_view_marks_the_open_and_the_strikes_around_it(dash_data):
    view = queries.session_view(Storage(dash_data), "SPY", SESSION)
    assert len(view.spot) == 390 and view.spot["timestamp"].is_monotonic_increasing
    calls = view.strikes[view.strikes["contract_type"] == "call"]["strike"]
    puts = view.strikes[view.strikes["contract_type"] == "put"]["strike"]
    assert len(calls) == len(puts) == 2
    assert (calls > view.open_price).all() and (puts < view.open_price).all()
    assert len(view.vix) == 390 and len(view.news) > 0 and not view.notes
    assert set(view.news["sentiment"]) <= {"positive", "neutral", "negative", "n/a"}
    fig = figures.session_figure(view)
    assert len(fig.data) == 2 + len(view.strikes) + 1  # close, open, one per strike, VIX


def test_session_view_says_what_is_missing(data_copy):
    storage = Storage(data_copy)
    storage.partition_path(dataset("SPY", "option_contracts"), SESSION).unlink()
    view = queries.session_view(storage, "SPY", SESSION)
    assert view.strikes.empty and any("backfill --session 2025-11-25" in n for n in view.notes)
    with pytest.raises(MissingPartitionError, match="spy-assets backfill --session 2025-11-24"):
        queries.session_view(storage, "SPY", dt.date(2025, 11, 24))


def test_contract_view_running_low_events_and_iv_status(dash_data):
    storage = Storage(dash_data)
    contracts = queries.session_contracts(storage, "SPY", SESSION)
    assert len(contracts) == 4 and (contracts["bars"] > 0).all()
    stored_events = storage.read(dataset("SPY", "scan_events"), SESSION)
    busiest = stored_events["contract"].value_counts().index[0]
    view = queries.contract_view(storage, "SPY", SESSION, busiest)
    features = storage.read(dataset("SPY", "features"), SESSION)
    bars = features[features["contract"] == busiest].sort_values("timestamp")
    expected_low = bars["close"].cummin().shift(1).to_numpy()
    np.testing.assert_allclose(view.bars["running_low"].to_numpy(), expected_low)
    mine = stored_events[stored_events["contract"] == busiest]
    assert len(view.events) == len(mine) > 0
    assert (view.events["end_time"] > view.events["trigger_time"]).all()
    assert len(view.iv_missing) == int(bars["iv"].isna().sum())
    assert (view.iv_missing["iv_status"] != "ok").all()
    fig = figures.contract_figure(view)
    shaded = [s for s in fig.layout.shapes if s.name == figures.EVENT_SHAPE]
    assert len(shaded) == len(mine)
    names = [t.name for t in fig.data]
    assert "running session low (reference)" in names and "event peak" in names


def test_a_contract_without_bars_or_not_picked_is_explained(data_copy):
    storage = Storage(data_copy)
    ds = dataset("SPY", "option_contracts")
    contracts = storage.read(ds, SESSION)
    extra = contracts.iloc[[0]].assign(contract="O:SPY251125C00700000", strike=700.0)
    storage.write(ds, SESSION, pd.concat([contracts, extra]))
    listed = queries.session_contracts(storage, "SPY", SESSION)
    assert int(listed.loc[listed["contract"] == "O:SPY251125C00700000", "bars"].iloc[0]) == 0
    with pytest.raises(MissingPartitionError, match="has no minute bars on 2025-11-25"):
        queries.contract_view(storage, "SPY", SESSION, "O:SPY251125C00700000")
    with pytest.raises(MissingPartitionError, match="is not one of the contracts picked"):
        queries.contract_view(storage, "SPY", SESSION, "O:SPY251125P00100000")


def test_report_equals_the_command_line_report_and_rescans(dash_data):
    storage = Storage(dash_data)
    view = queries.report_view(storage, "SPY", SESSIONS[0], SESSIONS[-1])
    assert view.sessions == SESSIONS and not view.rescanned and not view.not_stored
    assert view.report.to_dict() == scan_report_for(storage, "SPY", SESSIONS).to_dict()
    assert view.report.to_markdown() == scan_report_for(storage, "SPY", SESSIONS).to_markdown()

    rescanned = queries.report_view(storage, "SPY", SESSIONS[0], SESSIONS[-1], threshold=0.3)
    bars = storage.read_sessions(dataset("SPY", "features"), SESSIONS)
    expected = scan_report(bars, scan_events(bars, 0.3), threshold=0.3)
    assert rescanned.rescanned and rescanned.report.to_dict() == expected.to_dict()
    assert len(rescanned.events) == expected.events


def test_report_leaves_out_damaged_and_missing_sessions(data_copy):
    storage = Storage(data_copy)
    bad = storage.partition_path(dataset("SPY", "features"), SESSIONS[1])
    bad.write_bytes(b"not parquet at all")
    view = queries.report_view(storage, "SPY", dt.date(2025, 11, 21), SESSIONS[-1])
    assert view.damaged == [SESSIONS[1]]
    assert view.not_stored == [dt.date(2025, 11, 21), dt.date(2025, 11, 24)]
    assert view.sessions == [SESSIONS[0], SESSIONS[2]]
    kept = [SESSIONS[0], SESSIONS[2]]
    assert view.report.to_dict() == scan_report_for(storage, "SPY", kept).to_dict()
    with pytest.raises(MissingPartitionError, match="backfill --start 2025-11-03"):
        queries.report_view(storage, "SPY", dt.date(2025, 11, 3), dt.date(2025, 11, 7))
    with pytest.raises(CorruptPartitionError, match="damaged"):
        queries.contract_view(storage, "SPY", SESSIONS[1], "O:SPY251126C00601000")


def test_page_reader_is_read_only_and_sandboxed(dash_data, tmp_path):
    (tmp_path / "secret.csv").write_text("a\n1\n")
    with PageReader(Storage(dash_data)) as db:
        db.view("bars", dataset("SPY", "minute_bars"), [SESSION])
        assert len(db.frame("SELECT * FROM bars WHERE session = ?", [SESSION])) == 390
        for sql in (
            f"SELECT * FROM read_csv('{tmp_path / 'secret.csv'}')",
            "SET enable_external_access = true",
            f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'",
        ):
            with pytest.raises(Exception) as raised:  # noqa: B017 - DuckDB's own refusals
                db.frame(sql)
            assert not isinstance(raised.value, AssertionError)
    assert not (tmp_path / "out.csv").exists()
    assert QueryRefusedError  # the CLI's sandbox refuses the same statements


def test_sessions_dates_and_live_hours():
    with pytest.raises(NotASessionError, match="not an NYSE trading session"):
        queries.parse_session("2025-11-27")
    with pytest.raises(FutureSessionError, match="has not traded yet"):
        queries.parse_session(calendar.next_session(calendar.current_session()))
    stamp = pd.Timestamp
    assert queries.live_session(stamp("2025-11-26 15:00", tz="UTC")) == dt.date(2025, 11, 26)
    assert queries.live_session(stamp("2025-11-26 21:05", tz="UTC")) is None  # after the close
    assert queries.live_session(stamp("2025-11-27 15:00", tz="UTC")) is None  # Thanksgiving
    assert queries.live_session(stamp("2025-11-28 18:30", tz="UTC")) is None  # early close
    assert queries.live_session(stamp("2025-11-28 17:30", tz="UTC")) == dt.date(2025, 11, 28)
    assert queries.default_session([SESSION], stamp("2025-11-26 15:00", tz="UTC")) == dt.date(
        2025, 11, 26
    )
    assert queries.default_session([SESSION], stamp("2025-11-26 22:00", tz="UTC")) == SESSION


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        (json.dumps({"SPY": 1}), "positive"),
        (json.dumps({"SPY": -1, "QQQ": 1}), "negative"),
        (json.dumps({"SPY": "Neutral"}), "neutral"),
        (json.dumps({"QQQ": 1}), "n/a"),
        ("not json", "n/a"),
        (None, "n/a"),
    ],
)
def test_sentiment_label(raw, label):
    assert queries.sentiment_label(raw, "spy") == label


def test_health_reads_files_and_the_instance(dash_data):
    storage = Storage(dash_data)
    location = health.locate_instance(dash_data, {})
    assert location.home == dash_data / "dagster"
    names = health.dataset_names(storage, ["SPY"])
    instance = health.InstanceHealth.open(location.home)
    listed = {n: storage.sessions(health.dataset_from_name(n)) for n in names}
    summary = health.dataset_summary(listed, instance).set_index("dataset")
    assert (summary["sessions stored"] == 3).all()
    assert summary.loc[FAILED_DATASET, "schema check (latest)"].startswith("failed")
    assert summary.loc["spy/features", "schema check (latest)"].startswith("not run")
    # drift is checked on what the vendor datasets fetched (the synthetic source passes it)
    assert summary.loc["spy/minute_bars", "schema_drift"] == "passed"
    assert summary.loc["spy/features", "schema_drift"] == "never evaluated"
    files = health.file_table(storage, names, SESSIONS)
    table = health.session_table(files, instance, names, SESSIONS)
    assert (table["file"] == "ok").all() and table["rows"].notna().all()
    failed = table[table["check"] == "failed"]
    assert failed[["dataset", "session"]].values.tolist() == [[FAILED_DATASET, FAILED_SESSION]]
    assert FAILED_RULE in failed["failure"].iloc[0] and "| row |" in failed["failure"].iloc[0]
    assert table["materialized"].notna().all()


def test_instance_location_rules(tmp_path):
    assert health.locate_instance(tmp_path, {"DAGSTER_HOME": "/x/home"}).home.as_posix() == (
        "/x/home"
    )
    missing = health.locate_instance(tmp_path, {})
    assert missing.home is None and "no Dagster instance yet" in missing.how
    (tmp_path / "dagster").mkdir()
    assert health.locate_instance(tmp_path, {}).home == tmp_path / "dagster"


def test_split_failures():
    text = "### 2025-11-25\n1 failing rows; rules: a\n\n| row |\n### 2025-11-26\nmissing"
    assert health.split_failures(text) == {
        "2025-11-25": "1 failing rows; rules: a\n\n| row |",
        "2025-11-26": "missing",
    }
    assert health.split_failures("") == {}


def test_report_threshold_must_be_one(data_copy):
    storage = Storage(data_copy)
    ds = dataset("SPY", "scan_events")
    frame = storage.read(ds, SESSIONS[0])
    storage.write(ds, SESSIONS[0], frame.assign(threshold=0.25), {"params": {"threshold": 0.25}})
    with pytest.raises(SpyAssetsError, match="different thresholds"):
        queries.report_view(storage, "SPY", SESSIONS[0], SESSIONS[-1])
    assert math.isclose(queries.stored_threshold(storage, "SPY"), 0.2)
