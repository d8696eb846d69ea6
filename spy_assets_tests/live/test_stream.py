"""The live day end to end: the real ``massive.WebSocketClient`` against the feed simulator on
127.0.0.1, landing batches through the real landing zone."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from spy_assets import calendar
from spy_assets.errors import AuthError
from spy_assets.landing import LandingZone
from spy_assets.live.consumer import StreamConsumer, StreamSettings
from spy_assets.live.simulator import FAULT_KINDS, FeedSimulator, SessionTape, scattered_faults
from spy_assets.sources.synthetic import SyntheticMarket
from spy_assets.storage import VIX_MINUTE_BARS, dataset

SESSION = dt.date(2025, 11, 26)
SPY = dataset("SPY", "minute_bars").name
OPTIONS = dataset("SPY", "option_minute_bars").name
KEYS = {
    SPY: ["ticker", "timestamp"],
    OPTIONS: ["contract", "timestamp"],
    VIX_MINUTE_BARS.name: ["timestamp"],
}


@pytest.fixture(scope="module")
def tape():
    return SessionTape.synthetic(SESSION)


def _settings(data_dir, sim, **overrides):
    base = dict(
        feed=sim.feed,
        secure=False,
        delayed=False,
        backoff_initial_s=0.05,
        heartbeat_s=60.0,
        close_grace_s=60.0,
        quiet_s=1.0,
    )
    return StreamSettings(data_dir, **(base | overrides))


def _landed(zone, name, session=SESSION):
    rows = zone.read(zone.batches([name], session=session))
    return rows.drop(columns="received_at").sort_values(KEYS[name]).reset_index(drop=True)


def _expected(tape, name):
    return tape.frames[name].sort_values(KEYS[name]).reset_index(drop=True)


@pytest.fixture(scope="module")
def faulty_day(tape, tmp_path_factory):
    """The whole session at high speed with 10 forced disconnects (error closes past the
    client's reconnect limit, normal closes, force_disconnect), duplicates, swaps, junk and a
    late bar."""
    data_dir = tmp_path_factory.mktemp("faulty") / "data"
    faults = scattered_faults(len(tape.events["stocks"]), disconnects=10)
    with FeedSimulator(tape, speed=8000, faults=faults) as sim:
        # max_reconnects=1: the second error close within one connect() ends the client for
        # good, and the consumer's own loop has to carry the day.
        consumer = StreamConsumer(
            _settings(data_dir, sim, max_reconnects=1),
            sim.api_key,
            clock=sim.clock,
            session=SESSION,
        )
        result = consumer.run()
        assert sim.finished
        stats = sim.stats
    return data_dir, result, stats


def test_a_faulty_session_lands_every_bar_exactly_once(tape, faulty_day):
    data_dir, result, stats = faulty_day
    closes = [
        f
        for f in stats.faults_fired
        if f.kind in ("error_close", "normal_close", "force_disconnect")
    ]
    assert len(closes) == 10
    assert {f.kind for f in closes} == {"error_close", "normal_close", "force_disconnect"}
    assert {f.kind for f in stats.faults_fired} == set(FAULT_KINDS)  # swaps and repeats too
    assert sum(stats.connections.values()) == 3 + 10
    # The client gave up (or returned) and the consumer reconnected it, on every market.
    assert result.counts.outer_reconnects["stocks"] >= 2
    assert result.counts.outer_reconnects["indices"] >= 1
    assert result.counts.outer_reconnects["options"] >= 1
    zone = LandingZone.under(data_dir)
    for name in KEYS:
        landed = _landed(zone, name)
        assert not landed.duplicated(KEYS[name]).any(), name
        pd.testing.assert_frame_equal(landed, _expected(tape, name))
        assert landed["timestamp"].dtype == "datetime64[ms, UTC]"
    assert result.contracts == tape.contracts
    c = result.counts
    assert c.duplicates >= 5  # the injected ones and the repeat after each reconnect
    assert (c.malformed, c.unknown_event, c.unsubscribed, c.outside_session) == (1, 1, 1, 0)
    assert c.landed == tape.bar_count + 1 == c.bars - c.duplicates
    assert not list(data_dir.rglob("*.tmp"))


def test_a_late_bar_lands_in_its_own_session(tape, faulty_day):
    data_dir, _, _ = faulty_day
    zone = LandingZone.under(data_dir)
    previous = calendar.previous_session(SESSION)
    assert zone.sessions(SPY) == [previous, SESSION]
    late = _landed(zone, SPY, previous)
    assert len(late) == 1
    assert late["timestamp"].iloc[0] == pd.Timestamp(tape.late_bar["s"], unit="ms", tz="UTC")
    assert late["close"].iloc[0] == tape.late_bar["c"]


def test_a_refused_key_is_one_line_with_no_retry_and_no_key(tape, tmp_path, caplog):
    secret = "sk-live-0123456789abcdef"
    caplog.set_level(logging.DEBUG)
    with FeedSimulator(tape, speed=4000) as sim:
        consumer = StreamConsumer(
            _settings(tmp_path, sim), secret, clock=sim.clock, session=SESSION
        )
        started = time.monotonic()
        with pytest.raises(AuthError) as refused:
            consumer.run()
        assert time.monotonic() - started < 5
        time.sleep(0.5)
        assert sim.stats.auth_failures == 1  # stocks tried once; the others never connected
        assert sum(sim.stats.connections.values()) == 0
    message = str(refused.value)
    assert "\n" not in message and "refused the API key on the stocks WebSocket" in message
    assert secret not in message
    assert secret not in caplog.text
    assert not LandingZone.under(tmp_path).batches()


def test_sigterm_mid_batch_lands_everything_received(tape, tmp_path):
    data_dir = tmp_path / "data"
    env = dict(
        os.environ,
        SPY_ASSETS_DATA_DIR=str(data_dir),
        SPY_ASSETS_STREAM_FLUSH_S="60",  # nothing lands by itself before the signal
    )
    for name in ("MASSIVE_API_KEY", "POLYGON_API_KEY"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spy_assets.cli",
            "stream",
            "--simulate",
            str(SESSION),
            "--speed",
            "300",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    zone = LandingZone.under(data_dir)
    try:
        for line in proc.stderr:  # heartbeats every 0.2 s: stop once 20 minutes came in
            found = re.search(r"spy/minute_bars (\d+),", line)
            if found and int(found[1]) >= 20:
                break
        signalled = time.time_ns()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "SIGTERM received" in err
    summary = out.strip().splitlines()[-1]
    landed_total = int(summary.split(": ")[1].split()[0])
    assert "bars received" in err
    received = int(err.split("stopped (SIGTERM received): ")[1].split()[0])
    after = [b for b in zone.batches() if int(b.name.split("-")[0]) > signalled]
    assert after, "the held batch landed on SIGTERM"
    spy = _landed(zone, SPY)
    vix = _landed(zone, VIX_MINUTE_BARS.name)
    options = _landed(zone, OPTIONS)
    assert landed_total == received == len(spy) + len(vix) + len(options)
    # A prefix of the session, no hole, no duplicate, equal to what a backfill stores.
    assert 10 < len(spy) < 390
    for landed, name in ((spy, SPY), (vix, VIX_MINUTE_BARS.name)):
        expected = _expected(tape, name)
        pd.testing.assert_frame_equal(landed, expected.iloc[: len(landed)])
    last = max(spy["timestamp"].max(), vix["timestamp"].max())
    want = _expected(tape, OPTIONS)
    want = want[want["timestamp"] <= last - pd.Timedelta(minutes=1)]
    got = options.merge(want, how="inner")
    assert len(got) == len(want.merge(options, how="inner")) >= len(want)
    assert not list(data_dir.rglob("*.tmp"))


def test_without_resume_bars_published_while_nobody_listens_are_gone(tape, tmp_path):
    with FeedSimulator(tape, speed=16000, resume=False) as sim:
        while sim.clock.now() < calendar.session_open(SESSION).timestamp() + 3600:
            time.sleep(0.01)  # the first hour goes out to nobody
        consumer = StreamConsumer(
            _settings(tmp_path, sim),
            sim.api_key,
            clock=sim.clock,
            session=SESSION,
            source=SyntheticMarket(),  # the REST read of the opening bar
        )
        result = consumer.run()
    zone = LandingZone.under(tmp_path)
    spy = _landed(zone, SPY)
    assert spy["timestamp"].min() >= calendar.session_open(SESSION) + pd.Timedelta(minutes=59)
    expected = _expected(tape, SPY)
    pd.testing.assert_frame_equal(
        spy, expected.iloc[len(expected) - len(spy) :].reset_index(drop=True)
    )
    # Opened late: the contracts still come from the opening bar (read again from the source).
    assert result.contracts == tape.contracts


def test_the_feed_is_configuration(tmp_path):
    from massive.websocket.models import Feed

    from spy_assets import config
    from spy_assets.errors import ConfigError
    from spy_assets.live.consumer import settings_from_config

    cfg = config.load({})
    assert (cfg.stream_feed, cfg.stream_flush_s) == ("delayed", 1.0)
    delayed = settings_from_config(tmp_path, ("SPY",), cfg.stream_feed)
    assert (delayed.feed, delayed.secure, delayed.end_grace_s) == (Feed.Delayed.value, True, 1080)
    realtime = settings_from_config(tmp_path, ("SPY",), "realtime")
    assert (realtime.feed, realtime.secure, realtime.end_grace_s) == (
        Feed.RealTime.value,
        True,
        180,
    )
    local = config.load({"SPY_ASSETS_STREAM_FEED": "ws://127.0.0.1:8765"}).stream_feed
    assert settings_from_config(tmp_path, ("SPY",), local).feed == "127.0.0.1:8765"
    assert not settings_from_config(tmp_path, ("SPY",), local).secure
    for name, value in (("SPY_ASSETS_STREAM_FEED", "ftp://x"), ("SPY_ASSETS_STREAM_FLUSH_S", "0")):
        with pytest.raises(ConfigError, match=name):
            config.load({name: value})
