"""Run alerts: a failed run without a failed check gives one alert with the project's own error
and no key; an error-severity check that fails in a successful run gives one alert too."""

import json

import pytest
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    DagsterEventType,
    asset,
    asset_check,
    materialize,
)

from spy_assets import config, datasets
from spy_assets.defs import quality
from spy_assets.defs.factory import dataset_asset
from spy_assets.defs.partitions import sessions_partitions
from spy_assets.defs.resources import MarketDataResource, ResearchSettings, StorageResource
from spy_assets.quality.alerts import Alert, AlertSender
from spy_assets.sources.synthetic import SyntheticMarket
from spy_assets_tests.quality.sensor_contexts import run_event_context
from spy_assets_tests.vendor_server import VendorServer

pytestmark = pytest.mark.usefixtures("data_dir_in_env")

WRONG_KEY = "sk-live-WRONG-KEY-0badc0de"


def test_a_failed_run_alerts_once_with_its_error_and_never_the_key(instance, data_dir, webhook):
    spec = datasets.underlying_datasets("SPY")[0]
    asset = dataset_asset(spec, sessions_partitions(config.DEFAULT_FIRST_SESSION))
    with VendorServer(SyntheticMarket(), api_key="the-right-key") as server:
        result = materialize(
            [asset],
            instance=instance,
            partition_key="2025-11-19",
            raise_on_error=False,
            resources={
                "storage": StorageResource(root=str(data_dir)),
                "settings": ResearchSettings(),
                "market": MarketDataResource(
                    source="massive", api_key=WRONG_KEY, base_url=server.base_url
                ),
            },
        )
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    settings = config.load({config.ALERT_URL: webhook.url})
    sensor = quality.failed_run_alerts(settings)
    failure = DagsterEventType.RUN_FAILURE
    for _ in range(2):  # a second look at the same run (a restarted sensor) sends nothing
        sensor(run_event_context(instance, sensor, run.run_id, failure, data_dir).for_run_failure())
    [alert] = webhook.received
    assert alert["title"].startswith(f"run {run.run_id[:8]} failed: spy__minute_bars: AuthError:")
    assert "HTTP 401" in alert["message"]
    assert WRONG_KEY not in json.dumps(alert)
    assert alert["type"] == "failure" and alert["path"] == "/alerts"


def test_a_failed_error_check_in_a_successful_run_alerts_once(instance, data_dir, webhook):
    @asset(key=["quality_test", "prices"])
    def prices() -> None:
        return None

    @asset_check(asset=prices, name="no_gaps", blocking=False)
    def no_gaps() -> AssetCheckResult:
        return AssetCheckResult(
            passed=False, severity=AssetCheckSeverity.ERROR, description="3 minutes missing"
        )

    result = materialize([prices, no_gaps], instance=instance)
    assert result.success
    settings = config.load({config.ALERT_URL: webhook.url})
    on_success = quality.failed_check_alerts(settings)
    for _ in range(2):
        context = run_event_context(
            instance, on_success, result.run_id, DagsterEventType.RUN_SUCCESS, data_dir
        )
        on_success(context)
    [alert] = webhook.received
    assert (
        alert["title"] == f"check failed: no_gaps on quality_test/prices (run {result.run_id[:8]})"
    )
    assert "quality_test/prices:no_gaps: 3 minutes missing" in alert["message"]


def test_an_alert_never_carries_the_vendor_key(data_dir, monkeypatch):
    monkeypatch.setenv("MASSIVE_API_KEY", "sk-live-IN-ENV-5e5e5e")
    sender = AlertSender(data_dir)
    alert = Alert(
        "run:abc",
        "failed_run",
        "GET /v2/aggs failed for key sk-live-IN-ENV-5e5e5e",
        ["https://api.example/v2/aggs?apiKey=another-token&limit=5"],
        {"header": "Authorization: Bearer sk-live-IN-ENV-5e5e5e"},
    )
    assert sender.send(alert) and not sender.send(alert)  # once per incident
    text = (data_dir / "alerts.log").read_text()
    assert "sk-live-IN-ENV" not in text and "another-token" not in text
    assert text.count("\n") == 1 and "***" in text
