"""Derived assets on the synthetic market, through a real Dagster instance."""

import datetime as dt

import numpy as np
from dagster import AssetKey

from spy_assets import cli
from spy_assets.definitions import build_definitions
from spy_assets.defs.resources import MarketDataResource, StorageResource
from spy_assets.defs.runs import failure_summary, materialize_sessions
from spy_assets.sources.synthetic import SyntheticMarket
from spy_assets.storage import Storage, dataset

SESSION = dt.date(2025, 11, 26)


def _build(instance, data_dir, sessions):
    resources = {
        "storage": StorageResource(root=str(data_dir)),
        "market": MarketDataResource(source="synthetic"),
    }
    [result] = materialize_sessions(
        build_definitions(["SPY"]), sessions, instance, resources=resources, log_level="WARNING"
    )
    assert result.success, failure_summary(result)
    return Storage(data_dir)


def test_iv_solver_recovers_the_synthetic_volatility(instance, data_dir):
    store = _build(instance, data_dir, [SESSION])
    features = store.read(dataset("SPY", "features"), SESSION)
    priced = features[features["close"] >= 0.05]
    assert len(priced) > 500
    truth = SyntheticMarket().implied_vol(
        priced["spot_close"].to_numpy(), priced["strike"].to_numpy(), priced["vix_close"].to_numpy()
    )
    error_points = np.abs(priced["iv"].to_numpy() - truth) * 100
    assert np.nanmedian(error_points) < 1.0
    assert (features["iv"].isna() == (features["iv_status"] != "ok")).all()


def test_scan_report_is_attached_and_printed(instance, data_dir, monkeypatch, capsys):
    sessions = [dt.date(2025, 11, 25), SESSION]
    store = _build(instance, data_dir, sessions)
    event = instance.get_latest_materialization_event(AssetKey(["spy", "scan_events"]))
    markdown = event.asset_materialization.metadata["scan_report"].value
    assert "Contract-days" in markdown
    events = store.read_sessions(dataset("SPY", "scan_events"), sessions)
    features = store.read_sessions(dataset("SPY", "features"), sessions)
    assert len(events) > 0
    assert (events["trigger_price"] >= 1.2 * events["reference_price"] - 1e-9).all()
    provenance = store.provenance(dataset("SPY", "scan_events"), SESSION)
    assert provenance["params"] == {"threshold": 0.2} and provenance["code_version"]

    monkeypatch.setenv("SPY_ASSETS_DATA_DIR", str(data_dir))
    assert cli.main(["report", "--start", "2025-11-25", "--end", "2025-11-26"]) == 0
    out = capsys.readouterr().out
    contract_days = features.groupby(["session", "contract"]).ngroups
    assert f"Contract-days (zero-event days included)      {contract_days}" in out
    assert f"{len(features):,}" in out
