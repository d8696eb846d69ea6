"""The live day end to end: landed micro-batches → sensors → runs on a real Dagster instance.

One scenario, built once for the module (runs are the expensive part):

- folder ``reference``: a pure backfill of 2025-11-25, -26 and -28;
- folder ``live``: -25 and -26 as the backfill stored them; 2025-11-28 (an early close) streamed:
  batches land in two parts, with a 10-minute disconnect, duplicates, out-of-order rows and one
  bar the vendor later corrects; the landing sensor turns each part into a run, the after-close
  sensor stitches the session; then a late option bar lands for 2025-11-25.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    RunRequest,
    SensorResult,
    SkipReason,
    build_sensor_context,
)

from spy_assets import calendar, config, ingest
from spy_assets.datasets import all_datasets
from spy_assets.definitions import build_definitions
from spy_assets.defs import live
from spy_assets.defs.resources import StorageResource
from spy_assets.defs.runs import failure_summary, materialize_sessions
from spy_assets.landing import LandingZone
from spy_assets.live.fold import LANDING_THROUGH_TAG, fold_state
from spy_assets.params import SelectionParams
from spy_assets.sources.synthetic import SyntheticMarket
from spy_assets.storage import VIX_MINUTE_BARS, Storage, dataset

HISTORY = [dt.date(2025, 11, 25), dt.date(2025, 11, 26)]
LIVE = dt.date(2025, 11, 28)  # closes at 13:00 ET
FIRST = dt.date(2025, 11, 3)
SPY_BARS, OPTION_BARS = dataset("SPY", "minute_bars"), dataset("SPY", "option_minute_bars")
ET = calendar.MARKET_TZ


def _at(session: dt.date, hhmm: str) -> pd.Timestamp:
    return pd.Timestamp(f"{session} {hhmm}", tz=ET).tz_convert("UTC")


def _digests(root: Path, session: dt.date | None = None) -> dict[str, str]:
    pattern = f"session={session}/data.parquet" if session else "session=*/data.parquet"
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / "parquet").rglob(pattern))
    }


def _sensor(name: str, when: pd.Timestamp):
    """A live sensor of the configuration whose clock reads ``when``."""
    defs = live.definitions(all_datasets(["SPY"]), FIRST, clock=lambda: when)
    return next(s for s in defs.sensors if s.name == name)


def _evaluate(name, when, instance, data_dir, cursor=None):
    context = build_sensor_context(
        instance=instance, cursor=cursor, resources={"storage": StorageResource(root=str(data_dir))}
    )
    return _sensor(name, when)(context)


def _execute(defs, instance, request: RunRequest):
    """Launch a sensor's run request as the daemon would: the live job, its assets, tags."""
    result = defs.resolve_job_def("live_job").execute_in_process(
        partition_key=request.partition_key,
        asset_selection=request.asset_selection,
        run_config=request.run_config,
        tags=request.tags,
        instance=instance,
        raise_on_error=False,
    )
    assert result.success, failure_summary(result)
    return result


def _metadata(result, name: str) -> dict:
    [event] = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == AssetKey(name.split("/"))
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


# ---------------------------------------------------------------- landing
def _stream_frames(market: SyntheticMarket, session: dt.date) -> dict[str, pd.DataFrame]:
    """What the consumer receives for a session: SPY, VIX and the contracts picked at the open,
    with the columns of the raw datasets."""
    spy = ingest.split_sessions(market.stock_bars("SPY", session, session), [session])[session]
    spy.insert(0, "ticker", "SPY")
    vix = ingest.split_sessions(market.index_bars("I:VIX", session, session), [session])[session]
    sel = SelectionParams()
    picked, _ = ingest.contracts_frame(
        "SPY",
        session,
        float(spy["open"].iloc[0]),
        sel.strike_increment,
        sel.strikes_per_side,
        sel.expiry_convention,
    )
    options = []
    for contract in picked["contract"]:
        bars = ingest.split_sessions(market.option_bars(contract, session, session), [session])
        options.append(bars[session].assign(contract=contract))
    return {SPY_BARS.name: spy, VIX_MINUTE_BARS.name: vix, OPTION_BARS.name: pd.concat(options)}


def _land(zone: LandingZone, session, frames, lo: str, hi: str, skip=(), every=5) -> int:
    """Land the minutes in [lo, hi) ET as micro-batches of ``every`` minutes per dataset, in
    minute order across datasets, except the minutes in ``skip`` (a disconnect). Each batch
    repeats the last minute of the one before (duplicates), lists its rows newest first, and
    the first minute of each batch is held back to the next one (out of order)."""
    start, end = _at(session, lo), _at(session, hi)
    minutes = pd.date_range(start, end, freq="1min", inclusive="left")
    minutes = minutes[~minutes.isin([_at(session, m) for m in skip])]
    chunks = [minutes[i : i + every] for i in range(0, len(minutes), every)]
    landed = 0
    for i, chunk in enumerate(chunks):
        wanted = set(chunk[1:])
        if i > 0:
            wanted |= {chunks[i - 1][0], chunks[i - 1][-1]}  # the held-back one, a repeat
        if i == len(chunks) - 1:
            wanted.add(chunk[0])
        for name, frame in frames.items():
            rows = frame[frame["timestamp"].isin(wanted)].sort_values("timestamp", ascending=False)
            if rows.empty:
                continue
            rows = rows.assign(received_at=pd.Timestamp.now(tz="UTC"))
            zone.write_batch(name, session, rows)
            landed += 1
    return landed


# --------------------------------------------------------------- scenario
@dataclass
class LiveDay:
    reference: Path
    data: Path
    instance: DagsterInstance
    runs: dict[str, object] = field(default_factory=dict)
    requests: dict[str, object] = field(default_factory=dict)
    digests: dict[str, dict[str, str]] = field(default_factory=dict)
    corrected: pd.Series | None = None
    folded_bars: pd.DataFrame | None = None
    late_bar: pd.DataFrame | None = None


@pytest.fixture(scope="module")
def live_day(tmp_path_factory) -> LiveDay:
    root = tmp_path_factory.mktemp("live_day")
    (root / "home").mkdir()
    with DagsterInstance.local_temp(tempdir=str(root / "home")) as instance:
        day = LiveDay(root / "reference", root / "live", instance)
        ref_defs = build_definitions(
            ["SPY"], config.load({"SPY_ASSETS_DATA_DIR": str(day.reference)})
        )
        [backfill] = materialize_sessions(ref_defs, [*HISTORY, LIVE], instance, log_level="WARNING")
        assert backfill.success, failure_summary(backfill)
        for path in (day.reference / "parquet").rglob("session=2025-11-2[56]/data.parquet"):
            target = day.data / path.relative_to(day.reference)
            target.parent.mkdir(parents=True)
            shutil.copy2(path, target)
        defs = build_definitions(["SPY"], config.load({"SPY_ASSETS_DATA_DIR": str(day.data)}))
        _run_live_day(day, defs)
        yield day


def _run_live_day(day: LiveDay, defs) -> None:
    zone = LandingZone.under(day.data)
    frames = _stream_frames(SyntheticMarket(), LIVE)
    # The stream's bar for 11:30 differs from what REST has after the close (a vendor correction).
    spy = frames[SPY_BARS.name]
    fix = spy["timestamp"] == _at(LIVE, "11:30")
    spy.loc[fix, ["close", "high"]] = spy.loc[fix, "high"] + 0.01
    day.corrected = spy.loc[fix].iloc[0]
    # Part one: the open to 11:00, the socket down from 10:00 to 10:09.
    gap = [f"10:0{m}" for m in range(10)]
    _land(zone, LIVE, frames, "09:30", "11:00", skip=gap)
    day.digests["history"] = _digests(day.data)
    first = _evaluate("live_landing_sensor", _at(LIVE, "11:01"), day.instance, day.data)
    [request] = first.run_requests
    day.requests["fold1"], day.runs["fold1"] = request, _execute(defs, day.instance, request)
    day.requests["fold1_cursor"] = first.cursor
    # Part two: the rest of the session.
    _land(zone, LIVE, frames, "11:00", "13:00")
    second = _evaluate(
        "live_landing_sensor", _at(LIVE, "13:01"), day.instance, day.data, cursor=first.cursor
    )
    [request] = second.run_requests
    day.requests["fold2"], day.runs["fold2"] = request, _execute(defs, day.instance, request)
    day.requests["again"] = _evaluate(
        "live_landing_sensor", _at(LIVE, "13:02"), day.instance, day.data, cursor=second.cursor
    )
    day.digests["folded"] = _digests(day.data, LIVE)
    day.folded_bars = Storage(day.data).read(SPY_BARS, LIVE)
    # After the close: the stitch.
    day.requests["too_early"] = _evaluate(
        "live_after_close_sensor", _at(LIVE, "13:05"), day.instance, day.data
    )
    stitch = _evaluate("live_after_close_sensor", _at(LIVE, "13:30"), day.instance, day.data)
    [request] = stitch.run_requests
    day.requests["stitch"], day.runs["stitch"] = request, _execute(defs, day.instance, request)
    day.requests["stitch_again"] = _evaluate(
        "live_after_close_sensor", _at(LIVE, "16:00"), day.instance, day.data, stitch.cursor
    )
    day.digests["stitched"] = _digests(day.data)
    # Days later, a bar for 2025-11-25 lands: a far contract trading at a minute it had not.
    store = Storage(day.data)
    options = store.read(OPTION_BARS, HISTORY[0])
    contract = options.groupby("contract").size().idxmin()
    mine = options[options["contract"] == contract]
    minute = next(
        m for m in calendar.session_minutes(HISTORY[0])[200:] if m not in set(mine["timestamp"])
    )
    price = round(float(mine["close"].max()) * 2, 2)
    late = pd.DataFrame(
        {
            "contract": [contract],
            "timestamp": [minute],
            "open": price,
            "high": price,
            "low": price,
            "close": price,
            "volume": 3.0,
            "vwap": price,
            "transactions": 1,
            "received_at": pd.Timestamp.now(tz="UTC"),
        }
    )
    zone.write_batch(OPTION_BARS, HISTORY[0], late)
    day.late_bar = late
    later = pd.Timestamp("2025-12-01 10:00", tz=ET)
    result = _evaluate("live_landing_sensor", later, day.instance, day.data, cursor=second.cursor)
    [request] = result.run_requests
    day.requests["late"], day.runs["late"] = request, _execute(defs, day.instance, request)
    day.digests["late"] = _digests(day.data)


# ------------------------------------------------------------------ tests
def test_landed_batches_become_runs_and_the_gap_is_repaired(live_day):
    store = Storage(live_day.data)
    first = live_day.requests["fold1"]
    assert first.run_key.startswith("fold:2025-11-28:")
    assert first.partition_key == "2025-11-28"
    assert first.tags[LANDING_THROUGH_TAG] == live_day.requests["fold1_cursor"]
    selected = sorted(k.to_user_string() for k in first.asset_selection)
    # the contracts once the open is known, news because the features read it
    assert selected == [
        "news/articles",
        "spy/features",
        "spy/minute_bars",
        "spy/option_contracts",
        "spy/option_minute_bars",
        "spy/scan_events",
        "vix/minute_bars",
    ]
    fold1 = _metadata(live_day.runs["fold1"], "spy/minute_bars")
    assert fold1["gap_minutes_repaired"] == 10
    assert fold1["source"] == "landing+synthetic"  # the gap came over REST
    assert _metadata(live_day.runs["fold1"], "vix/minute_bars")["gap_minutes_repaired"] == 10
    assert _metadata(live_day.runs["fold1"], "spy/option_minute_bars")["gap_minutes_repaired"] > 0
    # later batches only: the contracts are picked, the news is there
    second = sorted(k.to_user_string() for k in live_day.requests["fold2"].asset_selection)
    assert "spy/option_contracts" not in second and "news/articles" not in second
    fold2 = _metadata(live_day.runs["fold2"], "spy/minute_bars")
    assert fold2["gap_minutes_repaired"] == 0 and fold2["bars_new"] == 120
    assert isinstance(live_day.requests["again"], SkipReason)
    # the whole session, every minute once, the stream's own bars where it had them
    bars = live_day.folded_bars
    assert bars["timestamp"].tolist() == list(calendar.session_minutes(LIVE))
    row = bars.set_index("timestamp").loc[live_day.corrected["timestamp"]]
    assert row["close"] == live_day.corrected["close"]
    features = store.read(dataset("SPY", "features"), LIVE)
    assert features["timestamp"].max() == _at(LIVE, "12:59")


def test_the_stitch_after_the_close_equals_a_pure_backfill(live_day):
    assert isinstance(live_day.requests["too_early"], SkipReason)
    assert live_day.requests["stitch"].run_key == "stitch:2025-11-28"
    assert isinstance(live_day.requests["stitch_again"], SkipReason)
    meta = _metadata(live_day.runs["stitch"], "spy/minute_bars")
    assert meta["bars_replaced_by_rest"] == 1  # the corrected bar
    assert meta["gap_minutes_repaired"] == 0 and meta["bars_dropped_by_rest"] == 0
    stitched = {k: v for k, v in live_day.digests["stitched"].items() if "2025-11-28" in k}
    assert stitched == _digests(live_day.reference, LIVE)
    assert len(stitched) == 8  # every dataset of the session
    bars = "parquet/spy/minute_bars/session=2025-11-28/data.parquet"
    assert live_day.digests["folded"][bars] != stitched[bars]


def test_a_late_bar_rebuilds_its_session_and_nothing_else(live_day):
    request = live_day.requests["late"]
    assert request.partition_key == "2025-11-25"
    assert request.tags[live.LATE_DATA_TAG] == "true"
    assert sorted(k.to_user_string() for k in request.asset_selection) == [
        "spy/features",
        "spy/option_minute_bars",
        "spy/scan_events",
        "spy/training_data",
    ]
    store = Storage(live_day.data)
    bar = live_day.late_bar.iloc[0]
    options = store.read(OPTION_BARS, HISTORY[0])
    stored = options[
        (options["contract"] == bar["contract"]) & (options["timestamp"] == bar["timestamp"])
    ]
    assert stored["close"].tolist() == [bar["close"]]
    features = store.read(dataset("SPY", "features"), HISTORY[0])
    hit = features[
        (features["contract"] == bar["contract"]) & (features["timestamp"] == bar["timestamp"])
    ]
    assert hit["close"].tolist() == [bar["close"]]
    events = store.read(dataset("SPY", "scan_events"), HISTORY[0])
    assert bar["close"] in events.loc[events["contract"] == bar["contract"], "peak_price"].tolist()
    before, after = live_day.digests["stitched"], live_day.digests["late"]
    changed = sorted(k for k in after if before.get(k) != after[k])
    assert changed == [
        f"parquet/spy/{name}/session=2025-11-25/data.parquet"
        for name in ("features", "option_minute_bars", "scan_events")
    ]
    # training data was rebuilt too; the far contract stays under the coverage it needs
    assert _metadata(live_day.runs["late"], "spy/training_data")["sessions"] == 1
    assert fold_state(LandingZone.under(live_day.data), OPTION_BARS, HISTORY[0]).landing_through


def test_news_is_polled_while_the_market_is_open(live_day, tmp_path):
    today = dt.date(2025, 12, 2)
    poll = _evaluate("live_news_sensor", _at(today, "10:07"), live_day.instance, tmp_path)
    assert isinstance(poll, SkipReason) and "no stream" in poll.skip_message
    LandingZone.under(tmp_path).write_batch(
        VIX_MINUTE_BARS, today, pd.DataFrame({"timestamp": [_at(today, "10:00")], "open": [17.0]})
    )
    poll = _evaluate("live_news_sensor", _at(today, "10:07"), live_day.instance, tmp_path)
    assert isinstance(poll, RunRequest)
    assert poll.run_key == "news:2025-12-02:1505" and poll.partition_key == "2025-12-02"
    assert poll.run_config == {"ops": {"news__articles": {"config": {"refetch": True}}}}
    closed = _evaluate("live_news_sensor", _at(today, "16:01"), live_day.instance, tmp_path)
    assert isinstance(closed, SkipReason) and "closed" in closed.skip_message
    holiday = pd.Timestamp("2025-11-27 11:00", tz=ET)
    assert (
        "not an NYSE session"
        in _evaluate("live_news_sensor", holiday, live_day.instance, tmp_path).skip_message
    )


def test_the_sensors_are_in_the_code_location():
    defs = build_definitions(["SPY"], config.load({}))
    names = {s.name for s in defs.sensors}
    assert {"live_landing_sensor", "live_news_sensor", "live_after_close_sensor"} <= names
    assert defs.resolve_job_def("live_job")


def test_batches_for_days_that_are_not_sessions_are_skipped(instance, tmp_path):
    zone = LandingZone.under(tmp_path)
    bar = pd.DataFrame({"timestamp": [_at(LIVE, "10:00")], "open": [17.0]})
    zone.write_batch(VIX_MINUTE_BARS, dt.date(2025, 11, 27), bar)  # Thanksgiving
    zone.write_batch(VIX_MINUTE_BARS, dt.date(2025, 12, 1), bar)  # not traded yet
    last = zone.write_batch(VIX_MINUTE_BARS, dt.date(2025, 1, 2), bar)  # before the partitions
    result = _evaluate("live_landing_sensor", _at(LIVE, "10:00"), instance, tmp_path)
    assert isinstance(result, SensorResult)
    assert result.run_requests == [] and result.cursor == last.name
