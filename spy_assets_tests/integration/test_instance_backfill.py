"""How `spy-assets backfill` reads the runs it launched: gated sessions, failures, progress.

The end-to-end backfill through the instance (backfills, daemon, run queue, launcher) runs in
test_postgres_instance.py, test_celery_executor.py and test_crash_recovery.py; here real runs
of a small graph in a real instance give ``describe_run`` the events it reads.
"""

import datetime as dt

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    BackfillPolicy,
    DailyPartitionsDefinition,
    MetadataValue,
    asset,
    asset_check,
    materialize,
)

from spy_assets.defs.runs import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    SESSIONS_TAG,
    Progress,
    chunks,
    describe_run,
    followup_ranges,
)

WEEK = [dt.date(2025, 11, 17) + dt.timedelta(days=d) for d in range(5)]
PARTITIONS = DailyPartitionsDefinition(start_date="2025-11-17", end_date="2025-11-22")


def _graph(gated: list[str], broken: bool = False):
    """``bars`` → ``features``; the schema check of ``bars`` holds back ``gated`` sessions, and
    ``news`` raises when ``broken``."""

    @asset(partitions_def=PARTITIONS, backfill_policy=BackfillPolicy.single_run())
    def bars() -> None:
        return None

    @asset_check(asset=bars, name="schema", blocking=True, partitions_def=PARTITIONS)
    def bars_schema() -> AssetCheckResult:
        return AssetCheckResult(
            passed=not gated,
            severity=AssetCheckSeverity.ERROR,
            metadata={"gated_sessions": MetadataValue.json(gated)},
            description=f"bars failed its schema on {', '.join(gated)}" if gated else None,
        )

    @asset(deps=[bars], partitions_def=PARTITIONS, backfill_policy=BackfillPolicy.single_run())
    def features() -> None:
        return None

    @asset(partitions_def=PARTITIONS, backfill_policy=BackfillPolicy.single_run())
    def news() -> None:
        if broken:
            raise RuntimeError("the vendor refused the key")

    return [bars, bars_schema, features, news]


def _run(instance, nodes):
    tags = {
        ASSET_PARTITION_RANGE_START_TAG: str(WEEK[0]),
        ASSET_PARTITION_RANGE_END_TAG: str(WEEK[-1]),
        SESSIONS_TAG: ",".join(str(s) for s in WEEK),
    }
    result = materialize(nodes, instance=instance, tags=tags, raise_on_error=False)
    return instance.get_run_by_id(result.run_id)


def test_a_run_held_back_only_by_gated_sessions_goes_on_around_them(instance):
    run = _run(instance, _graph(gated=["2025-11-19"]))
    outcome = describe_run(instance, run)

    assert outcome.status == "FAILURE" and not outcome.success
    assert outcome.sessions == tuple(WEEK)
    assert outcome.gated == (dt.date(2025, 11, 19),)
    assert outcome.only_gated
    assert any(
        "bars:schema failed: bars failed its schema on 2025-11-19" in line for line in outcome.lines
    )
    # the sessions before and after the gated one get their own runs
    assert followup_ranges(outcome.sessions, outcome.gated) == [WEEK[:2], WEEK[3:]]


def test_a_step_failure_besides_gated_sessions_stops_the_backfill(instance):
    run = _run(instance, _graph(gated=["2025-11-19"], broken=True))
    outcome = describe_run(instance, run)

    assert outcome.gated == (dt.date(2025, 11, 19),)
    assert not outcome.only_gated
    assert "news: RuntimeError: the vendor refused the key" in outcome.lines


def test_a_successful_run_has_no_failure_lines(instance):
    outcome = describe_run(instance, _run(instance, _graph(gated=[])))
    assert outcome.success and outcome.lines == () and outcome.gated == ()


def test_followup_ranges_chunks_and_progress():
    assert followup_ranges(WEEK, [WEEK[1], WEEK[3]]) == [[WEEK[0]], [WEEK[2]], [WEEK[4]]]
    assert followup_ranges(WEEK, [WEEK[0]]) == [WEEK[1:]]
    assert followup_ranges(WEEK, WEEK) == []
    assert chunks(WEEK, 2) == [WEEK[:2], WEEK[2:4], WEEK[4:]]

    progress = Progress(total=250)
    progress.started -= 60  # a minute in
    progress.add(21)
    assert progress.line() == "21/250 sessions, 21.0/min, ETA 10 min 54 s"
    progress.add(229)
    assert progress.line() == "250/250 sessions, 250.0/min"


def test_the_executor_is_configuration():
    import pytest

    from spy_assets import config
    from spy_assets.definitions import build_definitions
    from spy_assets.errors import ConfigError

    def executor(**env: str) -> str:
        settings = config.load({"SPY_ASSETS_SOURCE": "synthetic", **env})
        return (
            build_definitions(settings=settings)
            .resolve_implicit_global_asset_job_def()
            .executor_def.name
        )

    assert executor() == "in_process"
    assert executor(SPY_ASSETS_EXECUTOR="multiprocess") == "multiprocess"
    assert executor(
        SPY_ASSETS_EXECUTOR="celery", SPY_ASSETS_CELERY_BROKER="redis://127.0.0.1:6379/0"
    ).startswith("celery")
    assert executor(SPY_ASSETS_EXECUTOR="k8s") == "k8s"
    with pytest.raises(ConfigError, match="SPY_ASSETS_EXECUTOR='bogus': use one of in_process"):
        config.load({"SPY_ASSETS_EXECUTOR": "bogus"})
    with pytest.raises(ConfigError, match="SPY_ASSETS_CELERY_BROKER is not a URL"):
        config.load({"SPY_ASSETS_CELERY_BROKER": "localhost"})
