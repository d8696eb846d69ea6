"""The raw layer end to end: a real Dagster instance, real Parquet, the real DuckDB catalog."""

import hashlib

import numpy as np
import pandas as pd
from dagster import AssetKey, DagsterEventType

from spy_assets import schemas
from spy_assets.definitions import build_definitions
from spy_assets.defs.resources import MarketDataResource, StorageResource
from spy_assets.defs.runs import failure_summary, materialize_sessions
from spy_assets.storage import VIX_MINUTE_BARS, Storage, dataset
from spy_assets_tests.conftest import SESSIONS

RAW = [
    "spy/minute_bars",
    "spy/option_contracts",
    "spy/option_minute_bars",
    "vix/minute_bars",
    "news/articles",
]


def _run(instance, data_dir, sessions=SESSIONS, **kwargs):
    resources = {
        "storage": StorageResource(root=str(data_dir)),
        "market": MarketDataResource(source="synthetic"),
    }
    return materialize_sessions(
        build_definitions(["SPY"]),
        sessions,
        instance,
        resources=resources,
        log_level="WARNING",
        **kwargs,
    )


def _digests(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.parquet"))
    }


def test_raw_layer_for_a_range_of_sessions(instance, data_dir):
    [result] = _run(instance, data_dir)
    assert result.success, failure_summary(result)
    store = Storage(data_dir)
    for name in RAW:
        key = AssetKey(name.split("/"))
        materialized = instance.get_materialized_partitions(key)
        assert materialized == {s.isoformat() for s in SESSIONS}, name
        event = instance.get_latest_materialization_event(key)
        meta = event.asset_materialization.metadata
        for field in ("row_count", "bytes", "source", "seconds", "api_requests"):
            assert field in meta, (name, field)
        assert meta["source"].value == "synthetic"
    # every session is queryable through the DuckDB catalog
    counts = store.query(
        "SELECT strftime(session, '%Y-%m-%d') AS s, count(*) AS n FROM spy_minute_bars "
        "GROUP BY 1 ORDER BY 1"
    )
    assert counts["s"].tolist() == [s.isoformat() for s in SESSIONS]
    assert counts["n"].tolist() == [390, 390, 210]  # the early close
    contracts = store.read(dataset("SPY", "option_contracts"), SESSIONS[0])
    bars = store.read(dataset("SPY", "minute_bars"), SESSIONS[0])
    s0 = bars.sort_values("timestamp")["open"].iloc[0]
    calls = contracts[contracts.contract_type == "call"].strike
    puts = contracts[contracts.contract_type == "put"].strike
    assert len(calls) == len(puts) == 2 and calls.min() > s0 > puts.max()
    option_bars = store.read(dataset("SPY", "option_minute_bars"), SESSIONS[0])
    assert set(option_bars["contract"]) <= set(contracts["contract"])
    assert len(option_bars) > 0
    provenance = store.provenance(dataset("SPY", "option_contracts"), SESSIONS[0])
    assert provenance["params"]["strike_increment"] == 1.0 and provenance["code_version"]


def test_rerunning_changes_no_file(instance, data_dir):
    _run(instance, data_dir)
    before = _digests(data_dir)
    assert len(before) == 8 * len(SESSIONS)  # five raw datasets, three derived
    [again] = _run(instance, data_dir)
    assert again.success
    assert _digests(data_dir) == before


def test_a_backfill_repairs_truncated_and_garbage_partitions(instance, data_dir):
    _run(instance, data_dir)
    before = _digests(data_dir)
    store = Storage(data_dir)
    truncated = store.partition_path(dataset("SPY", "option_minute_bars"), SESSIONS[1])
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    store.partition_path(VIX_MINUTE_BARS, SESSIONS[0]).write_bytes(b"not parquet")
    assert store.status(VIX_MINUTE_BARS, SESSIONS[0]) == "corrupt"
    [again] = _run(instance, data_dir)
    assert again.success, failure_summary(again)
    assert _digests(data_dir) == before  # rebuilt from the source, byte for byte


def test_a_corrupt_partition_blocks_everything_downstream(instance, data_dir):
    sessions = SESSIONS[:1]
    _run(instance, data_dir, sessions)
    store = Storage(data_dir)
    bars_ds = dataset("SPY", "minute_bars")
    bars = store.read(bars_ds, sessions[0])
    bars.loc[[3, 4], "high"] = bars.loc[[3, 4], "low"] - 1.0  # high below the bar's body
    bars.loc[7, "close"] = -1.0
    store.write(bars_ds, sessions[0], bars)
    for kind in ("option_contracts", "option_minute_bars"):
        store.partition_path(dataset("SPY", kind), sessions[0]).unlink()
    [result] = _run(instance, data_dir, sessions)
    assert not result.success
    evaluations = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    failed = [e for e in evaluations if not e.passed]
    assert {e.asset_key.to_user_string() for e in failed} == {"spy/minute_bars"}
    report = failed[0].metadata["failures"].value
    assert "high < max(open, close)" in report and "price must be positive" in report
    assert "| 3 |" in report and "| 7 |" in report
    materialized = {
        e.asset_key.to_user_string()
        for e in result.all_events
        if e.event_type == DagsterEventType.ASSET_MATERIALIZATION
    }
    assert "spy/option_contracts" not in materialized
    assert not store.exists(dataset("SPY", "option_contracts"), sessions[0])


def test_stored_raw_data_passes_its_own_schemas(instance, data_dir):
    _run(instance, data_dir, SESSIONS[-1:])
    store = Storage(data_dir)
    session = SESSIONS[-1]
    checks = {
        "minute_bars": schemas.minute_bars_schema,
        "option_minute_bars": schemas.option_bars_schema,
        "option_contracts": schemas.option_contracts_schema,
    }
    for kind, schema_for in checks.items():
        frame = store.read(dataset("SPY", kind), session)
        assert schemas.validate(schema_for(session), frame).passed, kind
    bars = store.read(dataset("SPY", "option_minute_bars"), session)
    per_contract = bars.groupby("contract").size()
    assert per_contract.max() <= 210
    vix = store.read(VIX_MINUTE_BARS, session)
    spy = store.read(dataset("SPY", "minute_bars"), session)
    joined = pd.merge(spy, vix, on="timestamp", suffixes=("_spy", "_vix"))
    corr = np.corrcoef(np.diff(np.log(joined.close_spy)), np.diff(np.log(joined.close_vix)))[0, 1]
    assert corr < -0.3  # VIX moves against SPY
