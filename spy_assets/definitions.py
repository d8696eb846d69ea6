"""The code location: each domain's Definitions, merged."""

from __future__ import annotations

from collections.abc import Sequence

from dagster import Definitions

from spy_assets import config, datasets
from spy_assets.defs import analytics, automation, gates, live, quality, raw, resources, schedules
from spy_assets.defs.executors import executor_for
from spy_assets.defs.partitions import sessions_partitions


def build_definitions(
    underlyings: Sequence[str] | None = None, settings: config.Settings | None = None
) -> Definitions:
    """Every asset, check, job, schedule and resource for a configuration (the environment's,
    by default)."""
    settings = settings or config.load()
    specs = datasets.all_datasets(list(underlyings or settings.underlyings))
    partitions = sessions_partitions(settings.first_session)
    return Definitions.merge(
        raw.definitions(specs, partitions),
        analytics.definitions(specs, partitions),
        schedules.definitions(partitions),
        automation.definitions(),
        live.definitions(specs, settings.first_session),
        gates.definitions(),
        resources.definitions(settings),
        quality.definitions(specs, partitions, settings),
        # SPY_ASSETS_EXECUTOR: how every run executes its steps (in process by default)
        Definitions(executor=executor_for(settings)),
    )


defs = build_definitions()
