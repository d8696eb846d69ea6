"""Freshness on the NYSE calendar with a fixed "now", and its sensor: a stale dataset fails its
freshness check and gives exactly one alert at a local webhook."""

import datetime as dt
import json

import pandas as pd
import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetMaterialization,
    Definitions,
    SensorResult,
    SkipReason,
    build_sensor_context,
)

from spy_assets import config, datasets
from spy_assets.defs import quality
from spy_assets.defs.factory import dataset_asset
from spy_assets.defs.partitions import sessions_partitions
from spy_assets.defs.resources import StorageResource, default_resources
from spy_assets.quality.freshness import Deadline, expected_session


def _et(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="America/New_York")


@pytest.mark.parametrize(
    "now, deadline, expected",
    [
        # An ordinary Tuesday: before and after 17:00 (60 min after the 16:00 close).
        ("2025-11-25 16:59", "60", "2025-11-24"),
        ("2025-11-25 17:00", "60", "2025-11-25"),
        # Thanksgiving (a holiday) all day, and the morning after: Wednesday is the latest.
        ("2025-11-27 23:00", "60", "2025-11-26"),
        ("2025-11-28 09:00", "60", "2025-11-26"),
        # The day after Thanksgiving closes at 13:00: due 14:00, not 17:00.
        ("2025-11-28 13:59", "60", "2025-11-26"),
        ("2025-11-28 14:00", "60", "2025-11-28"),
        # A weekend expects nothing new.
        ("2025-11-30 12:00", "60", "2025-11-28"),
        # A fixed time of day; on the early close it is still that time, never before the close.
        ("2025-11-25 18:29", "18:30", "2025-11-24"),
        ("2025-11-28 18:30", "18:30", "2025-11-28"),
        ("2025-11-28 12:00", "09:00", "2025-11-26"),
        ("2025-11-28 13:00", "09:00", "2025-11-28"),
    ],
)
def test_the_expected_session_follows_the_nyse_calendar(now, deadline, expected):
    assert expected_session(_et(now), Deadline.parse(deadline)) == dt.date.fromisoformat(expected)


def test_a_stale_dataset_fails_its_check_and_alerts_once(instance, data_dir, webhook):
    specs = datasets.all_datasets(["SPY"])[:2]  # vix/minute_bars, news/articles
    settings = config.load({config.ALERT_URL: webhook.url, config.FIRST_SESSION: "2025-11-03"})
    now = {"t": _et("2025-11-26 17:30")}
    sensor = quality.freshness_sensor(specs, settings, clock=lambda: now["t"])
    for name in ("vix/minute_bars", "news/articles"):
        instance.report_runless_asset_event(
            AssetMaterialization(AssetKey(name.split("/")), partition="2025-11-25")
        )
    instance.report_runless_asset_event(
        AssetMaterialization(AssetKey(["news", "articles"]), partition="2025-11-26")
    )
    cursor = None

    def tick():
        nonlocal cursor
        context = build_sensor_context(
            instance=instance,
            cursor=cursor,
            resources={"storage": StorageResource(root=str(data_dir))},
        )
        result = sensor(context)
        cursor = result.cursor if isinstance(result, SensorResult) else context.cursor
        return result

    first = tick()
    by_asset = {e.asset_key.to_user_string(): e for e in first.asset_events}
    assert not by_asset["vix/minute_bars"].passed and by_asset["news/articles"].passed
    assert by_asset["vix/minute_bars"].check_name == "freshness"
    assert by_asset["vix/minute_bars"].description == (
        "vix/minute_bars: stale, session 2025-11-26 was due 2025-11-26 17:00 EST; "
        "the latest stored session is 2025-11-25"
    )
    [alert] = webhook.received
    assert alert["title"] == "vix/minute_bars is stale: session 2025-11-26 is not stored"

    # Still stale the next day and over Thanksgiving: the same incident, no second alert.
    now["t"] = _et("2025-11-27 20:00")
    assert isinstance(tick(), SkipReason)
    assert len(webhook.received) == 1

    # Fresh again: the check passes; stale again later: a new incident, a new alert.
    instance.report_runless_asset_event(
        AssetMaterialization(AssetKey(["vix", "minute_bars"]), partition="2025-11-26")
    )
    [fresh] = tick().asset_events
    assert fresh.passed and fresh.asset_key == AssetKey(["vix", "minute_bars"])
    now["t"] = _et("2025-11-28 14:05")  # the early close was due at 14:00
    stale = tick().asset_events
    assert {e.asset_key.to_user_string() for e in stale} == {"vix/minute_bars", "news/articles"}
    assert [a["title"] for a in webhook.received[1:]] == [
        "vix/minute_bars is stale: session 2025-11-28 is not stored",
        "news/articles is stale: session 2025-11-28 is not stored",
    ]
    ledger = (data_dir / "quality" / "alerts_sent.jsonl").read_text().splitlines()
    assert [json.loads(line)["incident"] for line in ledger] == [
        "stale:vix/minute_bars:2025-11-26",
        "stale:vix/minute_bars:2025-11-28",
        "stale:news/articles:2025-11-28",
    ]


def test_alerts_go_to_a_log_file_by_default(instance, data_dir):
    [spec] = [s for s in datasets.all_datasets(["SPY"]) if s.name == "spy/training_data"]
    settings = config.load({config.FIRST_SESSION: "2025-11-03"})
    sensor = quality.freshness_sensor([spec], settings, clock=lambda: _et("2025-11-26 17:30"))
    context = build_sensor_context(
        instance=instance, resources={"storage": StorageResource(root=str(data_dir))}
    )
    [evaluation] = sensor(context).asset_events
    assert not evaluation.passed
    [line] = (data_dir / "alerts.log").read_text().splitlines()
    logged = json.loads(line)
    assert logged["kind"] == "stale" and logged["incident"] == "stale:spy/training_data:2025-11-26"
    assert "nothing built" in logged["message"]


def test_the_freshness_check_executed_alone_evaluates_now(instance):
    specs = [s for s in datasets.all_datasets(["SPY"]) if s.name in ("spy/scan_events",)]
    settings = config.load({config.FIRST_SESSION: "2025-11-03"})
    check = quality.freshness_checks(specs, settings, lambda: _et("2025-11-26 17:30"))
    partitions = sessions_partitions(settings.first_session)
    defs = Definitions(
        assets=[dataset_asset(s, partitions) for s in specs],
        asset_checks=[check],
        resources=default_resources(settings),
    )
    key = AssetKey(["spy", "scan_events"])
    instance.report_runless_asset_event(AssetMaterialization(key, partition="2025-11-26"))
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(), asset_check_selection={AssetCheckKey(key, "freshness")}
    )
    [evaluation] = job.execute_in_process(instance=instance).get_asset_check_evaluations()
    assert evaluation.passed
    assert evaluation.description == (
        "spy/scan_events: fresh, session 2025-11-26 (due 2025-11-26 17:00 EST) is stored"
    )
