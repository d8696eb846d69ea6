"""The whole live path in one: the feed simulator replays a session with 10 forced disconnects,
duplicates and out-of-order messages through the real ``massive.WebSocketClient`` into the
landing zone; the landing sensor turns the batches into a run on a real Dagster instance; the
session's raw partitions then hold exactly what a pure backfill of that session stores."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from dagster import DagsterInstance

from spy_assets import config
from spy_assets.definitions import build_definitions
from spy_assets.defs.runs import failure_summary, materialize_sessions
from spy_assets.live.consumer import StreamConsumer
from spy_assets.live.simulator import FeedSimulator, SessionTape, scattered_faults
from spy_assets.storage import VIX_MINUTE_BARS, Storage, dataset
from spy_assets_tests.live.test_stream import _settings
from spy_assets_tests.live_sensors.test_live_day import _at, _evaluate, _execute

SESSION = dt.date(2025, 11, 26)
RAW = [dataset("SPY", "minute_bars"), dataset("SPY", "option_minute_bars"), VIX_MINUTE_BARS]


@pytest.fixture(scope="module")
def streamed_and_backfilled(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream_to_partitions")
    live_dir, reference_dir = root / "live", root / "reference"
    tape = SessionTape.synthetic(SESSION)
    faults = [
        f
        for f in scattered_faults(len(tape.events["stocks"]), disconnects=10)
        if f.kind != "late_bar"  # a late bar belongs to another session's test
    ]
    with FeedSimulator(tape, speed=8000, faults=faults) as sim:
        settings = _settings(live_dir, sim, max_reconnects=1)
        StreamConsumer(settings, sim.api_key, clock=sim.clock, session=SESSION).run()
        disconnects = sum(sim.stats.connections.values()) - 3
    (root / "home").mkdir()
    with DagsterInstance.local_temp(tempdir=str(root / "home")) as instance:
        reference = build_definitions(
            ["SPY"], config.load({"SPY_ASSETS_DATA_DIR": str(reference_dir)})
        )
        [backfill] = materialize_sessions(reference, [SESSION], instance, log_level="WARNING")
        assert backfill.success, failure_summary(backfill)
        defs = build_definitions(["SPY"], config.load({"SPY_ASSETS_DATA_DIR": str(live_dir)}))
        tick = _evaluate("live_landing_sensor", _at(SESSION, "16:01"), instance, live_dir)
        [request] = tick.run_requests
        _execute(defs, instance, request)
    return Storage(live_dir), Storage(reference_dir), disconnects


def test_a_streamed_session_equals_its_backfill_after_the_sensor_runs(streamed_and_backfilled):
    live, reference, disconnects = streamed_and_backfilled
    assert disconnects == 10
    for ds in RAW:
        streamed, stored = live.read(ds, SESSION), reference.read(ds, SESSION)
        assert not streamed.duplicated(list(ds.key)).any(), ds.name
        pd.testing.assert_frame_equal(streamed, stored, check_like=False, obj=ds.name)
