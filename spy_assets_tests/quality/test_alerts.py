"""A failed run without a failed check: one alert with the project's own error, no key."""

import json

from dagster import DagsterEventType, build_run_status_sensor_context, materialize

from spy_assets import config, datasets
from spy_assets.defs import quality
from spy_assets.defs.factory import dataset_asset
from spy_assets.defs.partitions import sessions_partitions
from spy_assets.defs.resources import MarketDataResource, ResearchSettings, StorageResource
from spy_assets.sources.synthetic import SyntheticMarket
from spy_assets_tests.vendor_server import VendorServer

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
    [failure] = instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_FAILURE)
    settings = config.load({config.ALERT_URL: webhook.url})
    sensor = quality.failed_run_alerts(settings)
    for _ in range(2):  # a second look at the same run (a restarted sensor) sends nothing
        context = build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_event=failure.dagster_event,
            dagster_instance=instance,
            dagster_run=run,
            resources={"storage": StorageResource(root=str(data_dir))},
        ).for_run_failure()
        sensor(context)
    [alert] = webhook.received
    assert alert["title"].startswith(f"run {run.run_id[:8]} failed: spy__minute_bars: AuthError:")
    assert "HTTP 401" in alert["message"]
    assert WRONG_KEY not in json.dumps(alert)
    assert alert["type"] == "failure" and alert["path"] == "/alerts"
