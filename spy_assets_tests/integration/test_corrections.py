"""A corrected raw partition three sessions back: automation rebuilds that session's derived
partitions on its next tick, and touches no other file."""

import datetime as dt
import hashlib
import os

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    evaluate_automation_conditions,
    materialize,
)

from spy_assets import calendar, cli, config
from spy_assets.definitions import build_definitions
from spy_assets.defs.resources import MarketDataResource, ResearchSettings, StorageResource
from spy_assets.defs.runs import failure_summary, materialize_sessions
from spy_assets.provenance import dataset_code_version
from spy_assets.storage import Storage, dataset

SESSIONS = calendar.last_sessions(6, dt.date(2025, 11, 28))
CORRECTED = SESSIONS[-4]  # three sessions before the latest
DERIVED = ["spy/features", "spy/scan_events", "spy/training_data"]


def _files(root):
    """path → (content hash, inode): an atomic rewrite changes the inode even when the bytes
    come out the same."""
    return {
        p.relative_to(root / "parquet").as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            os.stat(p).st_ino,
        )
        for p in sorted((root / "parquet").rglob("*.parquet"))
    }


def test_a_corrected_raw_session_rebuilds_only_its_derived_partitions(
    instance, data_dir, monkeypatch, capsys
):
    defs = build_definitions(["SPY"], settings=config.load({}))
    nodes = [*defs.assets, *defs.asset_checks]
    resources = {
        **defs.resources,
        "storage": StorageResource(root=str(data_dir)),
        "market": MarketDataResource(source="synthetic"),
        "settings": ResearchSettings(strikes_per_side=1),  # fewer contracts: a faster test
    }
    [built] = materialize_sessions(
        defs, SESSIONS, instance, resources=resources, chunk=6, log_level="WARNING"
    )
    assert built.success, failure_summary(built)
    before = _files(data_dir)

    # first tick: the sensor's baseline; nothing has changed since
    tick = evaluate_automation_conditions(defs=defs, instance=instance)
    assert tick.total_requested == 0

    # the vendor corrects SPY's bars of that session: refetch it (another seed = other prices)
    bars = AssetKey(["spy", "minute_bars"])
    corrected = materialize(
        nodes,
        selection=AssetSelection.assets(bars),
        partition_key=CORRECTED.isoformat(),
        instance=instance,
        resources={**resources, "market": MarketDataResource(source="synthetic", seed=8)},
        run_config={"ops": {"spy__minute_bars": {"config": {"refetch": True}}}},
    )
    assert corrected.success

    tick = evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
    requested = {
        key.to_user_string(): tick.get_requested_partitions(key)
        for key in defs.resolve_asset_graph().get_all_asset_keys()
        if tick.get_requested_partitions(key)
    }
    assert requested == {name: {CORRECTED.isoformat()} for name in DERIVED}

    # launch what the sensor requested, as its run request would: those assets and their checks
    rebuilt = materialize(
        nodes,
        selection=AssetSelection.assets(*(AssetKey(n.split("/")) for n in DERIVED)),
        partition_key=CORRECTED.isoformat(),
        instance=instance,
        resources=resources,
    )
    assert rebuilt.success, failure_summary(rebuilt)
    checks = [e for e in rebuilt.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert len(checks) == 3 and all(e.event_specific_data.passed for e in checks)

    after = _files(data_dir)
    day = f"session={CORRECTED.isoformat()}"
    changed = {p for p in before if before[p] != after[p]}
    assert changed == {f"{name}/{day}/data.parquet" for name in ["spy/minute_bars", *DERIVED]}
    assert all(before[p][0] != after[p][0] for p in changed if "features" in p)  # new spot prices
    store = Storage(data_dir)
    features = store.read(dataset("SPY", "features"), CORRECTED)
    bars_close = store.read(dataset("SPY", "minute_bars"), CORRECTED).set_index("timestamp")[
        "close"
    ]
    assert (features["spot_close"] == features["timestamp"].map(bars_close)).all()

    # the next tick finds nothing left to do: the rebuild does not trigger itself
    tick = evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
    assert tick.total_requested == 0

    # provenance: the rebuild's run, the derived code version, and the corrected upstream
    monkeypatch.setenv("SPY_ASSETS_DATA_DIR", str(data_dir))
    monkeypatch.setenv("DAGSTER_HOME", instance.root_directory)
    assert cli.main(["provenance", "spy/features", CORRECTED.isoformat()]) == 0
    out = capsys.readouterr().out
    record = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=bars, asset_partitions=[CORRECTED.isoformat()]), limit=1
    ).records[0]
    assert record.run_id == corrected.run_id
    # Dagster's input data version of a partitioned upstream: sha256 of its partitions' versions
    bars_version = record.asset_materialization.tags["dagster/data_version"]
    expected = hashlib.sha256(bars_version.encode()).hexdigest()
    lines = {line.split()[0]: line.split()[-1] for line in out.splitlines() if line.strip()}
    assert lines["spy/minute_bars"] == expected
    assert {"spy/option_minute_bars", "spy/option_contracts", "vix/minute_bars"} <= set(lines)
    assert f"run {rebuilt.run_id}" in out and "source            derived" in out
    assert f"{dataset_code_version('spy/features')} (asset)" in out
    assert "rate=" in out and "dividend_yield=" in out
