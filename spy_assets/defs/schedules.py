"""Jobs and schedules: the whole graph per session, each trading day after the close."""

from zoneinfo import ZoneInfo

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    Definitions,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

from spy_assets import calendar

all_sessions_job = define_asset_job(
    "all_assets_job",
    selection=AssetSelection.all(),
    description="Every asset and check for the selected sessions.",
)


@schedule(
    job=all_sessions_job,
    cron_schedule="30 16 * * 1-5",
    execution_timezone=calendar.MARKET_TZ,
    default_status=DefaultScheduleStatus.STOPPED,
    description="16:30 ET each weekday: build the session that just closed (skips holidays).",
)
def after_close_schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    today = context.scheduled_execution_time.astimezone(ZoneInfo(calendar.MARKET_TZ)).date()
    if not calendar.is_session(today):
        return SkipReason(f"{today} is not an NYSE session")
    return RunRequest(run_key=today.isoformat(), partition_key=today.isoformat())


def definitions() -> Definitions:
    return Definitions(jobs=[all_sessions_job], schedules=[after_close_schedule])
