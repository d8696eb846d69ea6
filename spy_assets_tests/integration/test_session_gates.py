"""Per-session schema gates: one bad session of a 21-session run stops at its check, the sensor
asks for the other sessions, and they are built through training_data; the bad one is not."""

import datetime as dt

import pandas as pd
import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    build_run_status_sensor_context,
    evaluate_automation_conditions,
    materialize,
)

from spy_assets import calendar, config
from spy_assets.definitions import build_definitions
from spy_assets.defs.gates import RANGE_END_TAG, RANGE_START_TAG, build_around_gated_sessions
from spy_assets.defs.resources import MarketDataResource, StorageResource
from spy_assets.gates import gate_of, ranges_after_gates
from spy_assets.sources.synthetic import SyntheticMarket
from spy_assets.storage import Storage, dataset
from spy_assets_tests.vendor_server import VendorServer

KEY = "gate-test-key-0a1b2c"
SESSIONS = calendar.sessions_between("2025-10-01", "2025-10-29")
BAD = dt.date(2025, 10, 15)
BARS = dataset("SPY", "minute_bars")
DERIVED = ["spy/option_contracts", "spy/features", "spy/training_data"]


def _bad_high_at_eleven(market: SyntheticMarket, first: dt.date, last: dt.date, session: dt.date):
    """The vendor fault that breaks the 11:00 ET bar of ``session`` in a page of first … last:
    parseable, but its high below its open and close (the schema's rule, not the parser's)."""
    bars = market.stock_bars("SPY", first, last)
    minute = calendar.session_open(session) + pd.Timedelta(minutes=90)
    position = int((bars["timestamp"] == minute).to_numpy().argmax())
    return {"bad_field": "h", "bad_value": 1.0, "bad_at": position}


def _tags(first: dt.date, last: dt.date) -> dict[str, str]:
    return {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()}


def _run(defs, instance, resources, tags, selection=None):
    return materialize(
        defs.assets,
        instance=instance,
        resources={**defs.resources, **resources},
        tags=tags,
        selection=selection,
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        raise_on_error=False,
    )


def _evaluations(instance, run_id):
    records = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    return [r.dagster_event.event_specific_data for r in records]


@pytest.fixture(scope="module")
def gated_backfill(tmp_path_factory):
    """A 21-session run whose SPY bars break the schema on one session, then the follow-ups."""
    root = tmp_path_factory.mktemp("gates")
    (root / "home").mkdir()
    market = SyntheticMarket()
    with (
        DagsterInstance.local_temp(tempdir=str(root / "home")) as instance,
        VendorServer(market, api_key=KEY, page_size=20_000) as server,
        pytest.MonkeyPatch.context() as env,
    ):
        # the vendor client's rate-limit bucket file follows the environment's data folder
        env.setenv(config.DATA_DIR, str(root / "data"))
        # the vendor server pages the whole range at once
        server.add_fault(
            "malformed",
            match="/ticker/SPY/",
            **_bad_high_at_eleven(market, SESSIONS[0], SESSIONS[-1], BAD),
        )
        resources = {
            "storage": StorageResource(root=str(root / "data")),
            "market": MarketDataResource(
                source="massive",
                api_key=KEY,
                base_url=server.base_url,
                requests_per_minute=1e9,
                backoff_base_s=0.01,
            ),
        }
        defs = build_definitions(["SPY"])
        # the chain to training_data (the scan is left out to keep the test short)
        chain = [a.key for a in defs.assets if a.key != AssetKey(["spy", "scan_events"])]
        first = _run(defs, instance, resources, _tags(SESSIONS[0], SESSIONS[-1]), chain)
        run = instance.get_run_by_id(first.run_id)
        context = build_run_status_sensor_context(
            sensor_name=build_around_gated_sessions.name,
            dagster_event=first.get_run_failure_event(),
            dagster_instance=instance,
            dagster_run=run,
        )
        requests = build_around_gated_sessions(context)
        follow_ups = [
            _run(defs, instance, resources, r.tags, selection=r.asset_selection) for r in requests
        ]
        yield {
            "instance": instance,
            "storage": Storage(root / "data"),
            "first": first,
            "requests": requests,
            "follow_ups": follow_ups,
            "defs": defs,
            "resources": resources,
            "server": server,
            "market": market,
        }


def test_the_bad_session_fails_its_own_partition_naming_rows_and_rule(gated_backfill):
    instance, first = gated_backfill["instance"], gated_backfill["first"]
    assert not first.success
    evaluations = _evaluations(instance, first.run_id)
    bars = [e for e in evaluations if e.asset_key == AssetKey(["spy", "minute_bars"])]
    per_session = {e.partition: e for e in bars if e.partition is not None}
    assert set(per_session) == {s.isoformat() for s in SESSIONS}  # one per partition
    failed = [p for p, e in per_session.items() if not e.passed]
    assert failed == [BAD.isoformat()]
    bad = per_session[BAD.isoformat()]
    assert bad.metadata["rules"].value == ["high < max(open, close)"]
    assert bad.metadata["failing_rows"].value == 1
    assert "high=1.0" in bad.metadata["failures"].value  # the failing row, by its values
    # each evaluation points at its partition's materialization, so Dagster counts it current
    assert all(e.target_materialization_data.run_id == first.run_id for e in per_session.values())
    [summary] = [e for e in bars if e.partition is None]
    assert not summary.passed and summary.blocking
    assert summary.metadata["gated_sessions"].value == [BAD.isoformat()]
    # the stored file and the check agree: it was written, with the gate's outcome
    gate = gate_of(gated_backfill["storage"].provenance(BARS, BAD))
    assert gate == {
        "check": "schema",
        "passed": False,
        "rules": ["high < max(open, close)"],
        "failing_rows": 1,
    }
    # Dagster's blocking: nothing downstream of the gate ran in that run
    built = {m.asset_key.to_user_string() for m in first.get_asset_materialization_events()}
    assert not built & set(DERIVED)


def test_the_other_twenty_sessions_are_built_through_training_data(gated_backfill):
    requests, follow_ups = gated_backfill["requests"], gated_backfill["follow_ups"]
    good = [s for s in SESSIONS if s != BAD]
    assert [(r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in requests] == [
        (p[0].isoformat(), p[-1].isoformat()) for p in ranges_after_gates(SESSIONS, [BAD])
    ]
    assert len({r.run_key for r in requests}) == len(requests) == 2
    assert AssetKey(["spy", "scan_events"]) not in requests[0].asset_selection  # the run's own
    assert all(r.success for r in follow_ups)
    store, instance = gated_backfill["storage"], gated_backfill["instance"]
    training = dataset("SPY", "training_data")
    assert [s for s in SESSIONS if store.exists(training, s)] == good
    for name in DERIVED:
        assert not store.exists(dataset("SPY", name.split("/")[1]), BAD), name
        assert BAD.isoformat() not in instance.get_materialized_partitions(
            AssetKey(name.split("/"))
        )
    assert instance.get_materialized_partitions(AssetKey(["spy", "training_data"])) == {
        s.isoformat() for s in good
    }


def test_a_build_refuses_a_gated_upstream_session(gated_backfill):
    """Asked for the bad session anyway (automation, a hand-made run), a downstream build
    refuses it on its own partition and builds the sessions around it."""
    instance, store = gated_backfill["instance"], gated_backfill["storage"]
    around = SESSIONS[SESSIONS.index(BAD) - 1 : SESSIONS.index(BAD) + 2]
    result = _run(
        gated_backfill["defs"],
        instance,
        gated_backfill["resources"],
        _tags(around[0], around[-1]),
        selection=[AssetKey(["spy", "option_contracts"])],
    )
    assert not result.success
    evaluations = [e for e in _evaluations(instance, result.run_id) if e.partition]
    verdict = {e.partition: e.passed for e in evaluations}
    assert verdict == {s.isoformat(): s != BAD for s in around}
    [refused] = [e for e in evaluations if not e.passed]
    assert refused.metadata["rules"].value == ["upstream_gated"]
    assert "spy/minute_bars failed its schema check on 2025-10-15" in refused.description + (
        refused.metadata["failures"].value
    )
    assert not store.exists(dataset("SPY", "option_contracts"), BAD)
    # that run failed only on its gate too: the sensor asks for the session on each side of it
    context = build_run_status_sensor_context(
        sensor_name=build_around_gated_sessions.name,
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id),
    )
    requests = build_around_gated_sessions(context)
    assert [(r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in requests] == [
        (around[0].isoformat(),) * 2,
        (around[2].isoformat(),) * 2,
    ]
    assert all(r.asset_selection == [AssetKey(["spy", "option_contracts"])] for r in requests)


def test_ranges_after_gates():
    d = [dt.date(2025, 10, n) for n in (1, 2, 3, 6, 7)]
    assert ranges_after_gates(d, []) == [d]
    assert ranges_after_gates(d, [d[2]]) == [d[:2], d[3:]]
    assert ranges_after_gates(d, [d[0], d[4]]) == [d[1:4]]
    assert ranges_after_gates(d, [d[1], d[2]]) == [d[:1], d[3:]]
    assert ranges_after_gates(d, d) == []
    assert ranges_after_gates([], [d[0]]) == []


def test_automation_waits_while_an_upstream_session_fails_its_gate(gated_backfill):
    """A built session refetched with a bad correction is written with a failed check: automation
    asks for no rebuild of it (the build would refuse it: a failed run and an alert for
    nothing), and rebuilds its derived partitions once a refetch passes again. Runs last: it
    changes the vendor server's faults."""
    instance, defs, server = (gated_backfill[k] for k in ("instance", "defs", "server"))
    session = SESSIONS[SESSIONS.index(BAD) + 2]
    bars = AssetKey(["spy", "minute_bars"])

    def refetch():
        return materialize(
            defs.assets,
            selection=[bars],
            partition_key=session.isoformat(),
            instance=instance,
            resources={**defs.resources, **gated_backfill["resources"]},
            run_config={
                "ops": {"spy__minute_bars": {"config": {"refetch": True}}},
                "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
            },
            raise_on_error=False,
        )

    tick = evaluate_automation_conditions(defs=defs, instance=instance)
    server.clear_faults()
    server.add_fault(
        "malformed",
        match=f"/range/1/minute/{session}/{session}",
        **_bad_high_at_eleven(gated_backfill["market"], session, session, session),
    )
    assert not refetch().success  # written, and its blocking check failed
    tick = evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
    assert tick.total_requested == 0

    server.clear_faults()
    assert refetch().success
    tick = evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
    requested = {
        key.to_user_string(): tick.get_requested_partitions(key)
        for key in defs.resolve_asset_graph().get_all_asset_keys()
        if tick.get_requested_partitions(key)
    }
    assert "spy/features" in requested
    assert all(partitions == {session.isoformat()} for partitions in requested.values())
