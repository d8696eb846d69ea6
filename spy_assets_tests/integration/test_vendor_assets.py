"""The real vendor path through Dagster: the massive client against a local vendor server."""

import datetime as dt

import pandas as pd
import pytest
from dagster import AssetKey
from dagster._serdes import serialize_value

from spy_assets import calendar
from spy_assets.definitions import build_definitions
from spy_assets.defs.resources import MarketDataResource, ResearchSettings, StorageResource
from spy_assets.defs.runs import failure_summary, materialize_sessions
from spy_assets.sources.synthetic import SyntheticMarket
from spy_assets.storage import NEWS_ARTICLES, VIX_MINUTE_BARS, Storage, dataset
from spy_assets_tests.vendor_server import VendorServer

pytestmark = pytest.mark.usefixtures("data_dir_in_env")

KEY = "sk-live-SUPERSECRET-7c1f9a0b2d"
RAW = [
    dataset("SPY", "minute_bars"),
    dataset("SPY", "option_contracts"),
    dataset("SPY", "option_minute_bars"),
    VIX_MINUTE_BARS,
    NEWS_ARTICLES,
]


@pytest.fixture
def server():
    with VendorServer(SyntheticMarket(), api_key=KEY, page_size=20_000) as srv:
        yield srv


def _vendor(server, **overrides):
    options = {
        "source": "massive",
        "api_key": KEY,
        "base_url": server.base_url,
        "requests_per_minute": 1e9,
        "read_timeout_s": 1.0,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
    }
    return MarketDataResource(**(options | overrides))


def _run(instance, root, market, sessions):
    resources = {"storage": StorageResource(root=str(root)), "market": market}
    [result] = materialize_sessions(
        build_definitions(["SPY"]),
        sessions,
        instance,
        resources=resources,
        chunk=len(sessions),
        log_level="CRITICAL",
    )
    return result


def _assert_same_raw(a: Storage, b: Storage, sessions):
    for ds in RAW:
        for session in sessions:
            pd.testing.assert_frame_equal(
                a.read(ds, session), b.read(ds, session), obj=f"{ds.name} {session}"
            )


def test_a_month_through_the_vendor_equals_the_synthetic_month(instance, tmp_path, server):
    sessions = calendar.sessions_between("2025-10-01", "2025-10-31")
    assert len(sessions) == 23
    vendor = _run(instance, tmp_path / "vendor", _vendor(server), sessions)
    assert vendor.success, failure_summary(vendor)
    meta = instance.get_latest_materialization_event(
        AssetKey(["spy", "minute_bars"])
    ).asset_materialization.metadata
    assert meta["source"].value == "massive" and meta["api_requests"].value >= 1
    synthetic = _run(
        instance, tmp_path / "synthetic", MarketDataResource(source="synthetic"), sessions
    )
    assert synthetic.success
    _assert_same_raw(Storage(tmp_path / "vendor"), Storage(tmp_path / "synthetic"), sessions)

    aggs = [r for r in server.requests if "/v2/aggs/" in r.path]
    spy_and_vix = [r for r in aggs if "/ticker/SPY/" in r.path or "I:VIX" in r.path]
    assert len(spy_and_vix) <= 4  # one ranged read each, a page or two
    assert len([r for r in aggs if "/ticker/O:" in r.path]) == 4 * len(sessions)

    # re-running sessions already stored costs no request at all
    before = len(server.requests)
    again = _run(instance, tmp_path / "vendor", _vendor(server), sessions)
    assert again.success and len(server.requests) == before


def test_faults_lose_nothing_and_are_counted(instance, tmp_path, server):
    sessions = calendar.sessions_between("2025-11-17", "2025-11-21")
    server.add_fault("429", every=10, retry_after=1)
    server.add_fault("503", every=10, offset=5)
    server.add_fault("slow", nth=3, delay=2.0)
    server.add_fault("truncated", nth=8)
    result = _run(instance, tmp_path / "vendor", _vendor(server), sessions)
    assert result.success, failure_summary(result)
    assert server.faults_fired >= 4
    retries = 0
    for key in (
        ["spy", "minute_bars"],
        ["spy", "option_minute_bars"],
        ["vix", "minute_bars"],
        ["news", "articles"],
        ["spy", "option_contracts"],
    ):
        meta = instance.get_latest_materialization_event(AssetKey(key)).asset_materialization
        retries += meta.metadata["retries"].value
    clean = _run(instance, tmp_path / "synthetic", MarketDataResource(source="synthetic"), sessions)
    assert clean.success
    _assert_same_raw(Storage(tmp_path / "vendor"), Storage(tmp_path / "synthetic"), sessions)
    assert retries == server.faults_fired


def _contracts_of(root, session):
    return Storage(root).read(dataset("SPY", "option_contracts"), session)["contract"].tolist()


def test_a_refused_key_fails_the_run_after_one_request(instance, tmp_path, server):
    sessions = [dt.date(2025, 11, 25), dt.date(2025, 11, 26)]
    server.add_fault("401", match="/ticker/O:")  # every option request
    result = _run(instance, tmp_path / "vendor", _vendor(server), sessions)
    assert not result.success
    option_requests = [r for r in server.requests if "/ticker/O:" in r.path]
    assert len(option_requests) == 1  # never retried, and nothing more asked
    [line] = [x for x in failure_summary(result) if "option_minute_bars" in x]
    assert "AuthError" in line and "401" in line and "2025-11-25" in line
    assert "Error occurred while executing" not in line
    store = Storage(tmp_path / "vendor")
    assert not any(store.exists(dataset("SPY", "option_minute_bars"), s) for s in sessions)
    assert not store.exists(dataset("SPY", "features"), sessions[0])


def test_a_401_mid_session_stops_requests_and_keeps_earlier_sessions(instance, tmp_path, server):
    sessions = [dt.date(2025, 11, 25), dt.date(2025, 11, 26)]
    probe = _run(instance, tmp_path / "probe", MarketDataResource(source="synthetic"), sessions)
    assert probe.success
    picked = _contracts_of(tmp_path / "probe", sessions[1])
    refused = picked[1]
    server.add_fault("401", match=refused)
    result = _run(instance, tmp_path / "vendor", _vendor(server), sessions)
    assert not result.success
    assert len(server.requests_for(refused)) == 1
    assert all(not server.requests_for(c) for c in picked[2:])  # not requested after the 401
    store = Storage(tmp_path / "vendor")
    option_bars = dataset("SPY", "option_minute_bars")
    assert store.exists(option_bars, sessions[0]) and not store.exists(option_bars, sessions[1])
    # the session before the refusal is kept: a rerun with a good key asks only for the rest
    server.clear_faults()
    before = len(server.requests)
    again = _run(instance, tmp_path / "vendor", _vendor(server), sessions)
    assert again.success, failure_summary(again)
    asked = [r.path for r in server.requests[before:] if "/ticker/O:" in r.path]
    assert len(asked) == len(picked) and all(sessions[1].strftime("%y%m%d") in p for p in asked)


def test_discovery_mode_finds_the_rule_contracts_through_the_reference_api(
    instance, tmp_path, server
):
    sessions = calendar.sessions_between("2025-11-24", "2025-11-28")
    rule = _run(instance, tmp_path / "rule", MarketDataResource(source="synthetic"), sessions)
    assert rule.success
    resources = {
        "storage": StorageResource(root=str(tmp_path / "discovery")),
        "market": _vendor(server),
        "settings": ResearchSettings(selection_mode="discovery"),
    }
    [result] = materialize_sessions(
        build_definitions(["SPY"]), sessions, instance, resources=resources, chunk=len(sessions)
    )
    assert result.success, failure_summary(result)
    lookups = [r for r in server.requests if r.path == "/v3/reference/options/contracts"]
    assert len(lookups) >= len(sessions)
    as_of = {r.params.get("as_of") for r in lookups}
    assert {s.isoformat() for s in sessions} <= as_of  # past sessions looked up as of then
    store = Storage(tmp_path / "discovery")
    for session in sessions:
        found = store.read(dataset("SPY", "option_contracts"), session)
        assert found["contract"].tolist() == _contracts_of(tmp_path / "rule", session)
        assert (found["selection_mode"] == "discovery").all()
        assert store.exists(dataset("SPY", "training_data"), session)
    provenance = store.provenance(dataset("SPY", "option_contracts"), sessions[0])
    assert provenance["params"]["selection_mode"] == "discovery"


def test_the_key_never_leaves_the_process(instance, tmp_path, server):
    server.add_fault("429", nth=2, retry_after=1)
    server.add_fault("401", nth=6)
    sessions = [dt.date(2025, 11, 25), dt.date(2025, 11, 26)]
    result = _run(instance, tmp_path / "vendor", _vendor(server), sessions)
    # The 401 fails the run: its error, logs and metadata must not carry the key either.
    assert not result.success
    assert any("AuthError" in line for line in failure_summary(result))
    seen = []
    records = instance.all_logs(result.run_id)
    assert any(r.dagster_event and r.dagster_event.is_step_materialization for r in records)
    seen += [serialize_value(record) for record in records]  # messages, metadata, errors
    seen.append(serialize_value(instance.get_run_by_id(result.run_id)))  # config and tags
    for path in tmp_path.rglob("*"):
        if path.is_file():
            seen.append(path.read_bytes().decode("latin-1"))
    assert seen and not [text for text in seen if KEY in text]


def test_an_unknown_underlying_fails_with_its_name(instance, tmp_path, server):
    resources = {"storage": StorageResource(root=str(tmp_path / "x")), "market": _vendor(server)}
    [result] = materialize_sessions(
        build_definitions(["XYZ"]), [dt.date(2025, 11, 26)], instance, resources=resources
    )
    assert not result.success
    [line] = [x for x in failure_summary(result) if "xyz__minute_bars" in x]
    assert "UnknownUnderlyingError" in line and "no minute bars for XYZ" in line
    assert not Storage(tmp_path / "x").exists(dataset("XYZ", "minute_bars"), dt.date(2025, 11, 26))


def test_one_malformed_bar_is_skipped_and_counted_not_fatal(instance, tmp_path, server):
    session = dt.date(2025, 11, 26)
    server.add_fault("malformed", match="/ticker/SPY/", bad_field="c", bad_value="n/a", bad_at=5)
    result = _run(instance, tmp_path / "vendor", _vendor(server), [session])
    assert result.success, failure_summary(result)
    meta = instance.get_latest_materialization_event(
        AssetKey(["spy", "minute_bars"])
    ).asset_materialization.metadata
    assert meta["skipped"].value == 1
    bars = Storage(tmp_path / "vendor").read(dataset("SPY", "minute_bars"), session)
    assert len(bars) >= 389  # at most the one bad minute is missing, never the session
