"""Sensors of the live day: landed batches become runs, news is polled, the close is stitched.

The stream consumer (a process of its own: a sensor never holds a socket) lands micro-batches
under ``<data dir>/landing``. Three sensors turn that into the session partitions:

- ``live_landing_sensor`` (cursor: the last batch name seen) requests one run per session with
  new batches, keyed by that session and its last batch, so nothing runs twice. The run folds
  the batches into the session's minute bars, option bars and VIX (``spy_assets.live.fold``),
  then rebuilds what reads them: contracts once the open is known, features and scan events;
  for a past session (late data) everything downstream, training data included.
- ``live_news_sensor`` reads the current session's news again every few minutes while the
  market is open and a stream is landing.
- ``live_after_close_sensor`` requests the stitch of each session the stream landed, once it
  has closed (early closes included): the whole graph of that session read again over REST.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from itertools import groupby

import pandas as pd
from dagster import (
    AssetSelection,
    DefaultSensorStatus,
    Definitions,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    sensor,
)

from spy_assets import calendar
from spy_assets.datasets import DatasetSpec
from spy_assets.defs.factory import asset_key
from spy_assets.defs.resources import StorageResource
from spy_assets.landing import LandingZone
from spy_assets.live.fold import LiveRun, is_landed, plan_fold
from spy_assets.storage import NEWS_ARTICLES

#: The late-data tag: the run rebuilds a past session because of data that landed late.
LATE_DATA_TAG = "spy_assets/late_data"
#: After the close, REST is complete once the vendor's delayed feed has caught up (15 min).
STITCH_DELAY = pd.Timedelta(minutes=20)
NEWS_INTERVAL_S = 300

Clock = Callable[[], pd.Timestamp]

live_job = define_asset_job(
    "live_job",
    selection=AssetSelection.all(),
    description="Runs of the live day: landed batches folded into a session, its news, and "
    "the stitch after the close. The sensors pick each run's assets.",
)


def _utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def _is_late(session: dt.date, now: pd.Timestamp) -> bool:
    """The session is over, stitch included: what lands for it now is late data."""
    return now >= calendar.session_close(session) + STITCH_DELAY


def _last_stitchable(now: pd.Timestamp) -> dt.date:
    """The latest session whose stitch is due (closed at least STITCH_DELAY ago)."""
    session = calendar.current_session(now)
    return session if _is_late(session, now) else calendar.previous_session(session)


def definitions(
    specs: Sequence[DatasetSpec], first_session: dt.date, clock: Clock = _utc_now
) -> Definitions:
    """The live job and its three sensors, on by default (they do nothing until a stream lands
    batches). ``clock`` is the sensors' time (a fixed one replays a past day)."""
    landed_names = [s.name for s in specs if is_landed(s.dataset)]

    @sensor(
        name="live_landing_sensor",
        job=live_job,
        minimum_interval_seconds=15,
        default_status=DefaultSensorStatus.RUNNING,
        description="Folds newly landed stream batches into their session's partitions and "
        "rebuilds what reads them (late data: everything downstream of that session).",
    )
    def live_landing_sensor(
        context: SensorEvaluationContext, storage: StorageResource
    ) -> SensorResult | SkipReason:
        store = storage.get()
        zone = LandingZone.under(store.state_dir)
        batches = zone.batches(landed_names, after=context.cursor)
        if not batches:
            return SkipReason("no new landed batches")
        now, requests = clock(), []
        current = calendar.current_session(now)
        for session, group in groupby(
            sorted(batches, key=lambda b: b.session), lambda b: b.session
        ):
            mine = sorted(group)
            if not first_session <= session <= current or not calendar.is_session(session):
                context.log.warning(
                    f"{len(mine)} landed batch(es) for {session} ignored: not a session of "
                    f"the partitions ({first_session} to {current})"
                )
                continue
            late = _is_late(session, now)
            plan = plan_fold(specs, store, zone, session, {b.dataset for b in mine}, late)
            through = mine[-1].name
            tags = LiveRun("fold", through).tags()
            if late:
                tags[LATE_DATA_TAG] = "true"
            requests.append(
                RunRequest(
                    run_key=f"fold:{session}:{through}",
                    partition_key=session.isoformat(),
                    asset_selection=[asset_key(n) for n in plan.datasets],
                    tags=tags,
                )
            )
        return SensorResult(run_requests=requests, cursor=batches[-1].name)

    @sensor(
        name="live_news_sensor",
        job=live_job,
        minimum_interval_seconds=NEWS_INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Every {NEWS_INTERVAL_S // 60} minutes while the market is open and a "
        "stream is landing: reads the session's news again.",
    )
    def live_news_sensor(
        context: SensorEvaluationContext, storage: StorageResource
    ) -> RunRequest | SkipReason:
        now = clock()
        today = now.tz_convert(calendar.MARKET_TZ).date()
        if not calendar.is_session(today):
            return SkipReason(f"{today} is not an NYSE session")
        if not calendar.session_open(today) <= now < calendar.session_close(today):
            return SkipReason(f"the market is closed ({now:%H:%M} UTC)")
        zone = LandingZone.under(storage.get().state_dir)
        if not any(zone.batches(landed_names, session=today)):
            return SkipReason(f"no stream is landing {today}")
        slot = now.floor(f"{NEWS_INTERVAL_S}s")
        op = asset_key(NEWS_ARTICLES.name).to_python_identifier()
        return RunRequest(
            run_key=f"news:{today}:{slot:%H%M}",
            partition_key=today.isoformat(),
            asset_selection=[asset_key(NEWS_ARTICLES.name)],
            run_config={"ops": {op: {"config": {"refetch": True}}}},
        )

    @sensor(
        name="live_after_close_sensor",
        job=live_job,
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING,
        description="After the close of a session the stream landed: reads the whole session "
        "again over REST, so that it equals a backfill byte for byte (cursor: the last session "
        "stitched).",
    )
    def live_after_close_sensor(
        context: SensorEvaluationContext, storage: StorageResource
    ) -> SensorResult | SkipReason:
        due = _last_stitchable(clock())
        after = dt.date.fromisoformat(context.cursor) if context.cursor else None
        zone = LandingZone.under(storage.get().state_dir)
        landed = sorted({s for name in landed_names for s in zone.sessions(name)})
        # Without a cursor only the session that just closed: older ones were not live here.
        todo = [s for s in landed if s <= due and (s > after if after else s == due)]
        if not todo:
            return SkipReason(f"no landed session to stitch up to {due}")
        through = zone.batches(landed_names)[-1].name
        requests = [
            RunRequest(
                run_key=f"stitch:{session}",
                partition_key=session.isoformat(),
                tags=LiveRun("stitch", through).tags(),
            )
            for session in todo
        ]
        return SensorResult(run_requests=requests, cursor=todo[-1].isoformat())

    return Definitions(
        jobs=[live_job],
        sensors=[live_landing_sensor, live_news_sensor, live_after_close_sensor],
    )
