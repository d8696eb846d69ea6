"""Jobs and schedules: the whole graph per session each trading day after the close, and the
retention purge."""

import datetime as dt
from zoneinfo import ZoneInfo

from dagster import (
    AssetSelection,
    Config,
    DailyPartitionsDefinition,
    DefaultScheduleStatus,
    Definitions,
    Failure,
    OpExecutionContext,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    job,
    op,
    schedule,
)
from pydantic import Field

from spy_assets import calendar, retention
from spy_assets.config import load as load_settings
from spy_assets.defs.resources import StorageResource
from spy_assets.errors import SpyAssetsError

all_sessions_job = define_asset_job(
    "all_assets_job",
    selection=AssetSelection.all(),
    description="Every asset and check for the selected sessions.",
)

#: 16:30 ET: the close (16:00, or 13:00 on an early close) plus the vendor's 15-minute delay.
AFTER_CLOSE_CRON = "30 16 * * 1-5"


def session_to_build(
    tick: dt.datetime, partitions: DailyPartitionsDefinition
) -> RunRequest | SkipReason:
    """The tick's decision: the session that closed today, from the NYSE calendar.

    The key never comes from Dagster's "last partition": with ``end_offset=1`` and exclusions,
    on an excluded day (a holiday, a weekend) that is the *next* session, which has not traded.
    The key is then checked to be a partition at the tick's time.
    """
    now = tick.astimezone(ZoneInfo(calendar.MARKET_TZ))
    today = now.date()
    if not calendar.is_session(today):
        return SkipReason(f"{today} is not an NYSE session (weekend, holiday or closure)")
    close = calendar.session_close(today).tz_convert(calendar.MARKET_TZ)
    if now < close:
        return SkipReason(f"{today} has not closed yet (closes {close:%H:%M} ET)")
    key = today.isoformat()
    if key not in partitions.get_partition_keys(current_time=now):
        return SkipReason(f"{key} is not a partition (before the first session of history?)")
    return RunRequest(run_key=key, partition_key=key)


def after_close_schedule(partitions: DailyPartitionsDefinition) -> ScheduleDefinition:
    @schedule(
        name="after_close_schedule",
        job=all_sessions_job,
        cron_schedule=AFTER_CLOSE_CRON,
        execution_timezone=calendar.MARKET_TZ,
        default_status=DefaultScheduleStatus.STOPPED,
        description="16:30 ET each weekday: build the session that just closed (early closes "
        "included; skips holidays).",
    )
    def _after_close(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        return session_to_build(context.scheduled_execution_time, partitions)

    return _after_close


class PurgeConfig(Config):
    dry_run: bool = Field(
        default=True, description="Only list what would be removed, and its size."
    )
    datasets: list[str] = Field(
        default_factory=list, description="Raw datasets to purge (default: all of them)."
    )
    session: str | None = Field(default=None, description="Only this session (YYYY-MM-DD).")


@op(description="Remove landing files and raw partitions past SPY_ASSETS_RETENTION's ages.")
def purge_old_data(
    context: OpExecutionContext, config: PurgeConfig, storage: StorageResource
) -> None:
    try:
        settings, store = load_settings(), storage.get()
        plan = retention.plan_today(
            store, settings.underlyings, settings.retention, config.datasets, config.session
        )
    except SpyAssetsError as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    for line in plan.to_text(config.dry_run).splitlines():
        context.log.info(line)
    if not config.dry_run:
        for removal in retention.apply_purge(plan, store.state_dir):
            context.log.info(f"removed {removal.kind} {removal.dataset} {removal.session}")


@job(description="Retention: a dry run by default (set dry_run: false to delete).")
def purge_job() -> None:
    purge_old_data()


def definitions(partitions: DailyPartitionsDefinition) -> Definitions:
    return Definitions(
        jobs=[all_sessions_job, purge_job], schedules=[after_close_schedule(partitions)]
    )
