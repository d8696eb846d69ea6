"""Schema drift end to end: the local vendor server gains, loses and retypes a field; the
``schema_drift`` check fails naming them, ``spy-assets drift accept`` takes the new schema, the
check passes; the failed run gives exactly one alert at a local webhook."""

import datetime as dt
import json

import pytest
from dagster import DagsterEventType, materialize

from spy_assets import cli, config, datasets
from spy_assets.defs import quality
from spy_assets.defs.factory import dataset_asset
from spy_assets.defs.partitions import sessions_partitions
from spy_assets.defs.resources import MarketDataResource, ResearchSettings, StorageResource
from spy_assets.defs.runs import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from spy_assets.quality import drift
from spy_assets.sources.synthetic import SyntheticMarket
from spy_assets_tests.quality.sensor_contexts import run_event_context
from spy_assets_tests.vendor_server import VendorServer

pytestmark = pytest.mark.usefixtures("data_dir_in_env")

KEY = "sk-live-DRIFT-SECRET-41c0ffee"
BARS = datasets.underlying_datasets("SPY")[0]
PARTITIONS = sessions_partitions(config.DEFAULT_FIRST_SESSION)


def _changed(result: dict) -> dict:
    """The vendor's new aggs: ``vw`` gone, ``n`` a string, a new ``otc`` flag."""
    result.pop("vw", None)
    result["n"] = str(result["n"])
    result["otc"] = False
    return result


def _run(instance, root, server, sessions, severity):
    nodes = [dataset_asset(BARS, PARTITIONS), quality.drift_check(BARS, PARTITIONS, severity)]
    resources = {
        "storage": StorageResource(root=str(root)),
        "settings": ResearchSettings(),
        "market": MarketDataResource(
            source="massive", api_key=KEY, base_url=server.base_url, requests_per_minute=1e9
        ),
    }
    keys = [s.isoformat() for s in sessions]
    if len(keys) == 1:
        return materialize(
            nodes,
            instance=instance,
            resources=resources,
            partition_key=keys[0],
            raise_on_error=False,
        )
    tags = {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}
    return materialize(
        nodes, instance=instance, resources=resources, tags=tags, raise_on_error=False
    )


def _evaluations(result):
    return [
        e.event_specific_data
        for e in result.all_events
        if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION
        and e.event_specific_data.check_name == "schema_drift"
    ]


def test_gained_lost_and_retyped_fields_fail_the_check_until_accepted(
    instance, data_dir, monkeypatch, capsys, webhook
):
    sessions = [dt.date(2025, 11, 20), dt.date(2025, 11, 21), dt.date(2025, 11, 24)]
    store = drift.BaselineStore(data_dir)
    with VendorServer(SyntheticMarket(), api_key=KEY, page_size=20_000) as server:
        first = _run(instance, data_dir, server, sessions[:1], "error")
        assert first.success
        [ok] = _evaluations(first)
        assert ok.passed and "first observation" in ok.description
        baseline = json.loads(store.baseline_path("spy/minute_bars").read_text())
        assert baseline["fields"] == {
            k: "number" for k in ("c", "h", "l", "n", "o", "t", "v", "vw")
        }

        server.add_result_transform(_changed, match="/SPY/")
        drifted = _run(instance, data_dir, server, sessions[1:], "error")
        assert not drifted.success  # error severity blocks
        evaluations = _evaluations(drifted)
        per_session = {e.partition: e for e in evaluations if e.partition}
        assert sorted(per_session) == ["2025-11-21", "2025-11-24"]
        for evaluation in evaluations:
            assert not evaluation.passed and evaluation.blocking
            text = evaluation.description
            assert "retyped field n: number → string" in text
            assert "missing field vw (baseline: number; now absent)" in text
            assert "new field otc (boolean; baseline: absent)" in text

        # One alert for the run the drift failed, at the webhook, sent once.
        settings = config.load({config.ALERT_URL: webhook.url})
        sensor = quality.failed_run_alerts(settings)
        for _ in range(2):
            context = run_event_context(
                instance, sensor, drifted.run_id, DagsterEventType.RUN_FAILURE, data_dir
            )
            sensor(context.for_run_failure())
        [alert] = webhook.received
        assert alert["title"].startswith("check failed: schema_drift on spy/minute_bars")
        assert "retyped field n: number → string" in alert["message"]
        facts = json.loads(alert["message"].splitlines()[-1])
        assert facts["kind"] == "drift_error" and facts["incident"] == f"run:{drifted.run_id}"
        assert facts["details"]["sessions"] == ["2025-11-21", "2025-11-24"]
        assert KEY not in json.dumps(alert)

        monkeypatch.setenv(config.DATA_DIR, str(data_dir))
        assert cli.main(["drift", "show", "spy/minute_bars"]) == 0
        assert "retyped field n: number → string" in capsys.readouterr().out
        assert cli.main(["drift", "accept", "spy/minute_bars"]) == 0
        out = capsys.readouterr().out
        assert "baseline is now the schema observed on 2025-11-24" in out
        assert "accepted: new field otc" in out
        accepted = json.loads(store.baseline_path("spy/minute_bars").read_text())
        assert accepted["fields"]["n"] == "string" and "vw" not in accepted["fields"]

        after = _run(instance, data_dir, server, [dt.date(2025, 11, 25)], "error")
        assert after.success
        [passed] = _evaluations(after)
        assert passed.passed and "match the baseline" in passed.description


@pytest.mark.parametrize(
    "argv, message",
    [
        (["drift", "accept", "spy/features"], "'spy/features' is not a vendor dataset"),
        (["drift", "accept", "bogus"], "'bogus' is not a vendor dataset"),
        (["drift", "accept", "vix/minute_bars"], "vix/minute_bars: no vendor schema observed"),
    ],
)
def test_drift_accept_refuses_in_one_line(argv, message, data_dir, monkeypatch, capsys):
    monkeypatch.setenv(config.DATA_DIR, str(data_dir))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1


def test_the_synthetic_source_has_no_vendor_schema_to_compare(instance, data_dir):
    nodes = [
        dataset_asset(BARS, PARTITIONS),
        quality.drift_check(BARS, PARTITIONS, "error"),
        quality.freshness_checks([BARS], config.load({}), clock=lambda: None),
    ]
    resources = {
        "storage": StorageResource(root=str(data_dir)),
        "settings": ResearchSettings(),
        "market": MarketDataResource(source="synthetic"),
    }
    result = materialize(nodes, instance=instance, resources=resources, partition_key="2025-11-26")
    # One evaluation: the freshness check stays silent in a materialization.
    [evaluation] = _evaluations(result)
    assert evaluation.passed and evaluation.description == "synthetic source: no vendor schema"
    assert not (data_dir / "quality").exists()
